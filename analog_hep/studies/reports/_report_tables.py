"""The report's tables: grouping sweep rows into series and conditions, replicate means,
the best value per series, and Markdown tables (no plotting, no file access)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..._hep_settings import LEGACY_DEFAULTS, HepSettings

_REPLICATES = ("seed", "set.seed")
_CONDITIONS = (
    "circuit",
    "devices",
    "free_steps",
    "nudge_steps",
    "batch",
    "start",
    "dataset",
    "update_lr",
    "update",
)


# Result columns of a training sweep shown in the report's table.
_TRAIN_COLUMNS = (
    "train_accuracy",
    "test_accuracy",
    "test_loss",
    "dropped_updates",
    "dropped_samples",
    "pulses_total",
    "pulses_per_weight",
    "clipped_bound_total",
    "seconds",
    "epoch_seconds",
)

# Settings of a training sweep's points that name a configuration (seeds are replicates).
_TRAIN_PARAMS = (
    "method",
    "points",
    "beta",
    "hep_schedule",
    "guard",
    "update_scheme",
    "mp_threshold",
    "mp_dw_min",
    "online_periods",
    "online_steps",
    "batch",
    "epochs",
    "lr",
    "noise",
    "devices",
    "seed",
)
# Columns averaged over replicates in the training sweep's second table.
_REPLICATE_COLUMNS = (
    "train_accuracy",
    "test_accuracy",
    "dropped_samples",
    "pulses_per_weight",
    "clipped_bound_total",
    "seconds",
)


def _replicate_rows(cols: dict[str, np.ndarray], varying: Sequence[str]) -> list[dict]:
    """One row per configuration (the ``varying`` settings other than seeds): the number of
    seeds ``n``, then ``<col>_mean`` and ``<col>_std`` (sample std, ``ddof = 1``; NaN for
    one seed) of :data:`_REPLICATE_COLUMNS`, in the order configurations first appear."""
    conf = [v for v in varying if v not in _REPLICATES]
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in range(len(cols["key"])):
        groups.setdefault(tuple(_setting(cols, c, i) for c in conf), []).append(i)
    rows = []
    for label, idx in groups.items():
        row: dict[str, Any] = {c.removeprefix("set."): v for c, v in zip(conf, label, strict=True)}
        row["n"] = len(idx)
        for c in _REPLICATE_COLUMNS:
            if c not in cols:
                continue
            x = np.asarray(cols[c][idx], float)
            x = x[x >= 0]  # these are counts, times and accuracies: -1 marks a missing value
            row[f"{c}_mean"] = float(np.mean(x)) if len(x) else math.nan
            row[f"{c}_std"] = float(np.std(x, ddof=1)) if len(x) > 1 else math.nan
        rows.append(row)
    return rows


def _pm(row: dict[str, Any], col: str, scale: float = 1.0, digits: int = 2) -> str:
    """``mean +- std`` of ``col`` in a replicate row (``scale`` 100: percent)."""
    mean, std = row.get(f"{col}_mean", math.nan), row.get(f"{col}_std", math.nan)
    if math.isnan(mean):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    return text if math.isnan(std) else f"{text} ± {std * scale:.{digits}f}"


def _slug(text: str) -> str:
    """``text`` as a file-name fragment (at most 80 characters)."""
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:80]


def _fmt(v: Any) -> str:
    """A table cell: floats to 4 significant digits, NaN as a dash."""
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def _setting(cols: dict[str, np.ndarray], name: str, i: int) -> str:
    """A training point's setting as a table cell; a setting of another update scheme than
    the point's (``mp_*``, ``set.*.tiki_taka.*``) is a dash: it did not act."""
    schemes = cols.get("update_scheme")
    own = None
    if name.startswith("mp_"):
        own = "mixed_precision"
    elif ".tiki_taka." in name:
        own = "tiki_taka"
    if own is not None and schemes is not None and _scheme_of(schemes[i]) != own:
        return "–"
    value = cols[name][i]
    if name in _SETTINGS and _missing(value):
        # A row written before the setting existed ran with its value of then.
        return _fmt(LEGACY_DEFAULTS.get(name, _SETTINGS[name]))
    return _fmt(value)


_SETTINGS = {f.name: f.default for f in fields(HepSettings)}


def _missing(value: Any) -> bool:
    """How a sweep file stores a column a row lacks: ``""``, ``-1`` or NaN."""
    if isinstance(value, (bytes, str)):
        return value in ("", b"")
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return isinstance(value, (int, np.integer)) and value == -1


def _scheme_of(value: Any) -> str:
    return "direct" if _missing(value) else str(value)


def _md_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table (``|`` in cells escaped)."""

    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|")

    head = "| " + " | ".join(cell(c) for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _series_label(method: str, points: int) -> str:
    """The legend label of a method with N points."""
    if method == "hep":
        return f"hEP N={points}"
    if method == "classic":
        return "classic EP" + (f" (mean of {points} nudges)" if points > 1 else "")
    return "symmetric EP (N=2)"


def _varying(cols: dict[str, np.ndarray], names: Sequence[str]) -> list[str]:
    """The columns among ``names`` that take more than one value."""
    out = []
    for n in names:
        if n in cols and len({_fmt(v) for v in cols[n]}) > 1:
            out.append(n)
    return out


def _condition_columns(cols: dict[str, np.ndarray]) -> list[str]:
    """The columns that vary between points other than the plotted ones (conditions)."""
    names = list(_CONDITIONS) + sorted(
        k for k in cols if k.startswith("set.") and k not in _REPLICATES
    )
    vary = _varying(cols, names)
    if "devices" in vary:  # a device sweep: the card names say it all
        vary = [v for v in vary if not v.endswith(".device")]
    return vary


@dataclass(frozen=True)
class _Line:
    """A replicate-averaged line: per ``x`` the mean, range and number of values."""

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray


def _aggregate(x: np.ndarray, y: np.ndarray) -> _Line:
    """Mean, range and count of the finite ``y`` per distinct ``x`` (replicates averaged)."""
    xs = np.unique(x)
    mean, lo, hi, n = [], [], [], []
    for v in xs:
        sel = y[(x == v) & np.isfinite(y)]
        mean.append(np.mean(sel) if sel.size else np.nan)
        lo.append(np.min(sel) if sel.size else np.nan)
        hi.append(np.max(sel) if sel.size else np.nan)
        n.append(sel.size)
    return _Line(xs, np.asarray(mean), np.asarray(lo), np.asarray(hi), np.asarray(n))


def _mask(cols: dict[str, np.ndarray], fixed: dict[str, Any]) -> np.ndarray:
    """The rows whose columns equal ``fixed`` (compared as table cells)."""
    m = np.ones(len(cols["key"]), bool)
    for k, v in fixed.items():
        m &= np.asarray([_fmt(a) == _fmt(v) for a in cols[k]])
    return m


def _combos(cols: dict[str, np.ndarray], names: Sequence[str], mask: np.ndarray) -> list[dict]:
    """The distinct combinations of the ``names`` columns among the rows in ``mask``, sorted."""
    if not names:
        return [{}]
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for i in np.flatnonzero(mask):
        key = tuple(_fmt(cols[n][i]) for n in names)
        seen.setdefault(key, {n: cols[n][i] for n in names})
    return [seen[k] for k in sorted(seen, key=lambda k: [_sortable(v) for v in k])]


def _sortable(v: str) -> tuple[int, float, str]:
    """A sort key: numbers first, in numeric order, then text."""
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def _series(cols: dict[str, np.ndarray], mask: np.ndarray) -> list[tuple[str, int]]:
    """The ``(method, points)`` series of the rows in ``mask``: hEP, symmetric, classic."""
    pairs = {(str(cols["method"][i]), int(cols["points"][i])) for i in np.flatnonzero(mask)}
    order = {"hep": 0, "symmetric": 1, "classic": 2}
    return sorted(pairs, key=lambda p: (order.get(p[0], 9), p[1]))


def _cond_title(cond: dict[str, Any]) -> str:
    """A condition as ``name=value, ...`` for titles and file names."""
    return ", ".join(f"{k.removeprefix('set.')}={_fmt(v)}" for k, v in cond.items())


def _best_rows(cols: dict[str, np.ndarray], conds: list[str], metric: str) -> list[dict]:
    """Best (over |beta|) of the replicate-mean ``metric`` per condition, noise and series."""
    rows = []
    all_mask = np.isfinite(cols[metric])
    for cond in _combos(cols, conds, all_mask):
        mc = _mask(cols, cond) & all_mask
        for noise in sorted({float(v) for v in cols["noise"][mc]}):
            mn = mc & np.isclose(cols["noise"], noise)
            for method, points in _series(cols, mn):
                m = mn & (cols["method"] == method) & (cols["points"] == points)
                line = _aggregate(cols["beta"][m], cols[metric][m])
                if not np.isfinite(line.mean).any():
                    continue
                i = int(np.nanargmax(line.mean))
                row = {k.removeprefix("set."): _fmt(v) for k, v in cond.items()}
                row |= {
                    "noise": noise,
                    "series": _series_label(method, points),
                    "method": method,
                    "best": float(line.mean[i]),
                    "beta_best": float(line.x[i]),
                    "beta_smallest": float(line.x[0]),
                    "at_smallest": float(line.mean[0]),
                    "rows": int(line.n[i]),
                }
                rows.append(row)
    return rows


def _hep_vs_classic(rows: list[dict], cond_cols: list[str], label: str) -> list[str]:
    """One line per (condition, noise): hEP's best minus classic EP's best."""
    out = []
    groups: dict[tuple, dict[str, float]] = {}
    for r in rows:
        key = (*(r[c] for c in cond_cols), r["noise"])
        g = groups.setdefault(key, {})
        g[r["method"]] = max(g.get(r["method"], -np.inf), r["best"])
    diffs = [
        (k, g["hep"] - g["classic"]) for k, g in groups.items() if {"hep", "classic"} <= set(g)
    ]
    if diffs:
        worst = min(d for _, d in diffs)
        wins = sum(d > 0 for _, d in diffs)
        out.append(
            f"hEP's best {label} exceeds classic EP's best in {wins} of {len(diffs)} "
            f"(condition, noise) cells; smallest margin {worst:+.4f}.\n"
        )
    return out
