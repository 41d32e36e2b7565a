"""Reports: PNG figures and a Markdown summary from sweep files, run records and stability maps.

``report([FILE.h5, ...], out_dir)`` recognises each file by its ``format`` attribute:

- a gradcheck sweep (``analog-hep-sweep/1``, kind ``gradcheck``): gradient cosine against
  |beta| per method and N, one panel per neuron-noise level (paper Fig. 2d and 3c); cosine
  against N per |beta| when N varies (Fig. 4b); the best cosine per condition when other
  fields vary (a device card, a mismatch spread, ...), and the realised update's cosine
  when points carry ``update_lr``. Seeds (``seed``, ``set.seed``) are replicates: lines are
  their mean, bands their range. Tables: the best cosine of every series and the |beta|
  where it is reached.
- a training sweep (kind ``train``): final accuracies, test accuracy per epoch of every
  point, pulses per step.
- a run record (``analog-hep-run/1``): loss and accuracy per epoch, loss and pulses per
  step, conductance histograms of every crossbar at the first and last checkpoint, and the
  chip's ``describe().extra`` (calibration) as recorded, with what changed per checkpoint.
- a stability map (``analog-hep-stability/1``): the map (paper Fig. 2b).

Figures are drawn with matplotlib (the ``plots`` extra) on the Agg backend.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import SpecError
from ._stability import FORMAT as STABILITY_FORMAT
from ._stability import load_stability_map, plot_stability_map
from ._sweep_file import FORMAT as SWEEP_FORMAT
from ._sweep_file import read_sweep_rows, read_sweep_runs

__all__ = ["Report", "report"]

RUN_FORMAT = "analog-hep-run/1"
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
_SERIES_COLORS = {"hep": "tab:orange", "classic": "tab:blue", "symmetric": "tab:green"}


@dataclass
class Report:
    """What :func:`report` wrote: ``markdown`` (the summary) and ``figures`` (PNG paths), and
    ``tables``: per input file, the summary rows as dicts (what ``--json`` prints)."""

    markdown: Path
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Per run record: the driver's describe().extra at creation ("created") and at each
    # checkpoint where it changed ("changed": {epoch: {key: value}}).
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)


# Result columns of a training sweep shown in the report's table.
_TRAIN_COLUMNS = (
    "train_accuracy",
    "test_accuracy",
    "test_loss",
    "dropped_updates",
    "pulses_total",
    "seconds",
)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_")[:80]


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        return f"{v:.4g}"
    return str(v)


def _md_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table (``|`` in cells escaped)."""

    def cell(v: Any) -> str:
        return _fmt(v).replace("|", "\\|")

    head = "| " + " | ".join(cell(c) for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


# -- gradcheck sweeps ---------------------------------------------------------------------------


def _series_label(method: str, points: int) -> str:
    if method == "hep":
        return f"hEP N={points}"
    if method == "classic":
        return "classic EP" + (f" (mean of {points} nudges)" if points > 1 else "")
    return "symmetric EP (N=2)"


def _varying(cols: dict[str, np.ndarray], names: Sequence[str]) -> list[str]:
    out = []
    for n in names:
        if n in cols and len({_fmt(v) for v in cols[n]}) > 1:
            out.append(n)
    return out


def _condition_columns(cols: dict[str, np.ndarray]) -> list[str]:
    names = list(_CONDITIONS) + sorted(
        k for k in cols if k.startswith("set.") and k not in _REPLICATES
    )
    vary = _varying(cols, names)
    if "devices" in vary:  # a device sweep: the card names say it all
        vary = [v for v in vary if not v.endswith(".device")]
    return vary


@dataclass(frozen=True)
class _Line:
    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray


def _aggregate(x: np.ndarray, y: np.ndarray) -> _Line:
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
    m = np.ones(len(cols["key"]), bool)
    for k, v in fixed.items():
        m &= np.asarray([_fmt(a) == _fmt(v) for a in cols[k]])
    return m


def _combos(cols: dict[str, np.ndarray], names: Sequence[str], mask: np.ndarray) -> list[dict]:
    if not names:
        return [{}]
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for i in np.flatnonzero(mask):
        key = tuple(_fmt(cols[n][i]) for n in names)
        seen.setdefault(key, {n: cols[n][i] for n in names})
    return [seen[k] for k in sorted(seen, key=lambda k: [_sortable(v) for v in k])]


def _sortable(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def _series(cols: dict[str, np.ndarray], mask: np.ndarray) -> list[tuple[str, int]]:
    pairs = {(str(cols["method"][i]), int(cols["points"][i])) for i in np.flatnonzero(mask)}
    order = {"hep": 0, "symmetric": 1, "classic": 2}
    return sorted(pairs, key=lambda p: (order.get(p[0], 9), p[1]))


def _cond_title(cond: dict[str, Any]) -> str:
    return ", ".join(f"{k.removeprefix('set.')}={_fmt(v)}" for k, v in cond.items())


def _color(method: str, points: int, n_hep: list[int]) -> Any:
    if method == "hep" and len(n_hep) > 1:
        import matplotlib

        cmap = matplotlib.colormaps["Oranges"]
        return cmap(0.35 + 0.65 * n_hep.index(points) / max(len(n_hep) - 1, 1))
    return _SERIES_COLORS.get(method, "black")


def _panels(plt: Any, n: int, rows: int) -> tuple[Any, Any]:
    width = max(4.0 * n + 2.4, 7.5)
    return plt.subplots(
        rows, n, figsize=(width, 3.3 * rows + 0.8), squeeze=False, sharex=True, sharey="row"
    )


def _finish(fig: Any, axes: Any, title: str, out: Path) -> Path:
    """Legend to the right of the panels, title on top, save."""
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle(title, fontsize=10)
    right = 1.0 - 2.1 / fig.get_figwidth()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(right + 0.01, 0.5), fontsize=8)
    fig.tight_layout(rect=(0, 0, right, 0.96))
    fig.savefig(out, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def _plot_vs_beta(
    cols: dict[str, np.ndarray],
    cond: dict[str, Any],
    out: Path,
    metric: str,
    ylabel: str,
) -> Path | None:
    """Top row: ``metric`` against |beta| per series, one panel per noise level (Fig. 2d,
    3c); bottom row: ``1 - metric`` on a log scale, where near-exact estimates differ."""
    plt = _plt()
    base = _mask(cols, cond) & np.isfinite(cols[metric])
    if not base.any():
        return None
    noises = sorted({float(v) for v in cols["noise"][base]})
    series = _series(cols, base)
    n_hep = sorted({p for m, p in series if m == "hep"})
    fig, axes = _panels(plt, len(noises), 2)
    betas = cols["beta"][base]
    log_x = betas.max() / max(betas.min(), 1e-12) > 10
    for j, noise in enumerate(noises):
        top, bottom = axes[0][j], axes[1][j]
        m_noise = base & np.isclose(cols["noise"], noise)
        for method, points in series:
            m = m_noise & (cols["method"] == method) & (cols["points"] == points)
            if not m.any():
                continue
            line = _aggregate(cols["beta"][m], cols[metric][m])
            c = _color(method, points, n_hep)
            lab = _series_label(method, points)
            top.plot(line.x, line.mean, "o-", ms=3.5, color=c, label=lab)
            err = np.clip(1.0 - line.mean, 1e-16, None)
            bottom.plot(line.x, err, "o-", ms=3.5, color=c)
            if line.n.max() > 1:
                top.fill_between(line.x, line.lo, line.hi, color=c, alpha=0.18, lw=0)
                bottom.fill_between(
                    line.x,
                    np.clip(1.0 - line.hi, 1e-16, None),
                    np.clip(1.0 - line.lo, 1e-16, None),
                    color=c,
                    alpha=0.18,
                    lw=0,
                )
        top.set_title(f"neuron noise std {noise:g}", fontsize=10)
        bottom.set_xlabel("|beta|")
        bottom.set_yscale("log")
        for ax in (top, bottom):
            if log_x:
                ax.set_xscale("log")
            ax.grid(alpha=0.3, which="both" if ax is bottom else "major")
    axes[0][0].set_ylabel(ylabel)
    axes[1][0].set_ylabel("1 - " + ylabel.split(" with ")[0].split(" of ")[0])
    lo = np.nanmin(cols[metric][base])
    axes[0][0].set_ylim(max(min(lo, 0.9) - 0.05, -1.0), 1.005)
    reps = [r for r in _REPLICATES if r in cols and len(set(cols[r][base])) > 1]
    note = f"; mean over {', '.join(reps)} (band: range)" if reps else ""
    title = _cond_title(cond)
    return _finish(fig, axes, (title + ": " if title else "") + f"{ylabel} vs |beta|{note}", out)


def _plot_vs_n(cols: dict[str, np.ndarray], cond: dict[str, Any], out: Path) -> Path | None:
    """hEP's cosine against N per |beta| (Fig. 4b); symmetric EP counts as N = 2."""
    plt = _plt()
    hep = _mask(cols, cond) & (cols["method"] == "hep") & np.isfinite(cols["cosine_total"])
    if len(set(cols["points"][hep])) < 2:
        return None
    sym = _mask(cols, cond) & (cols["method"] == "symmetric") & np.isfinite(cols["cosine_total"])
    base = hep | sym
    noises = sorted({float(v) for v in cols["noise"][base]})
    betas = sorted({float(v) for v in cols["beta"][base]})
    if len(betas) > 6:  # keep the figure readable: six radii spread over the range
        betas = [betas[i] for i in np.linspace(0, len(betas) - 1, 6).round().astype(int)]
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    fig, axes = _panels(plt, len(noises), 2)
    ns = sorted({int(v) for v in cols["points"][base]})
    for k, noise in enumerate(noises):
        top, bottom = axes[0][k], axes[1][k]
        for j, beta in enumerate(betas):
            m = base & np.isclose(cols["noise"], noise) & np.isclose(cols["beta"], beta)
            if not m.any():
                continue
            line = _aggregate(cols["points"][m], cols["cosine_total"][m])
            c = cmap(j / max(len(betas) - 1, 1))
            top.plot(line.x, line.mean, "o-", ms=3.5, color=c, label=f"|beta| = {beta:g}")
            bottom.plot(line.x, np.clip(1.0 - line.mean, 1e-16, None), "o-", ms=3.5, color=c)
        top.set_title(f"neuron noise std {noise:g}", fontsize=10)
        bottom.set_xlabel("N (points on the circle; 2 = symmetric EP)")
        bottom.set_yscale("log")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.minorticks_off()
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cosine with the true gradient")
    axes[1][0].set_ylabel("1 - cosine")
    title = _cond_title(cond)
    return _finish(fig, axes, (title + ": " if title else "") + "hEP cosine vs N", out)


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


def _plot_best_by_condition(
    rows: list[dict], cond_names: list[str], out: Path, ylabel: str
) -> Path | None:
    if not cond_names:
        return None
    plt = _plt()
    keys = [k.removeprefix("set.") for k in cond_names]
    labels = sorted({" / ".join(str(r[k]) for k in keys) for r in rows}, key=_sortable)
    noises = sorted({r["noise"] for r in rows})
    series = list(dict.fromkeys(r["series"] for r in rows))
    fig, axes = plt.subplots(
        len(noises),
        1,
        figsize=(max(6.0, 0.9 * len(labels) + 2), 2.8 * len(noises) + 0.6),
        squeeze=False,
        sharex=True,
    )
    width = 0.8 / max(len(series), 1)
    for ax, noise in zip(axes[:, 0], noises, strict=True):
        for j, s in enumerate(series):
            vals = []
            for lab in labels:
                hit = [
                    r["best"]
                    for r in rows
                    if r["noise"] == noise
                    and r["series"] == s
                    and " / ".join(str(r[k]) for k in keys) == lab
                ]
                vals.append(hit[0] if hit else np.nan)
            method = next(r["method"] for r in rows if r["series"] == s)
            ax.bar(
                np.arange(len(labels)) + (j - (len(series) - 1) / 2) * width,
                vals,
                width,
                label=s,
                color=_SERIES_COLORS.get(method),
            )
        ax.set_ylabel(ylabel)
        ax.set_title(f"neuron noise std {noise:g}", fontsize=10)
        finite = [r["best"] for r in rows if np.isfinite(r["best"])]
        ax.set_ylim(max(min(finite) - 0.05, -1.0) if finite else 0, 1.0)
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    at = {r["beta_best"] for r in rows}
    where = f"at |beta| = {next(iter(at)):g}" if len(at) == 1 else "best over |beta|"
    fig.suptitle(f"{ylabel} by {', '.join(keys)} ({where})", fontsize=10)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="upper center",
        ncol=len(series),
        fontsize=8,
        bbox_to_anchor=(0.5, 0.985 - 0.35 / fig.get_figheight()),
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.75 / fig.get_figheight()))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _gradcheck_sweep(path: Path, out_dir: Path, rep: Report, md: list[str]) -> None:
    cols, attrs = read_sweep_rows(path)
    stem = _slug(path.stem)
    n = len(cols.get("key", []))
    md.append(f"## {path.name}: gradcheck sweep, {n} points\n")
    desc = re.search(r"^description:\s*(.+)$", str(attrs.get("sweep_text", "")), re.M)
    if desc:
        md.append(f"{desc.group(1).strip()}\n")
    if n == 0:
        md.append("No finished points.\n")
        return
    conds = _condition_columns(cols)
    figures: list[Path] = []
    metrics = [("cosine_total", "cosine with the true gradient")]
    if "update_cosine" in cols and np.isfinite(cols["update_cosine"]).any():
        metrics.append(("update_cosine", "cosine of the realised update"))
    per_plot_conds = [c for c in conds if c != "update_lr"] if len(conds) > 1 else conds
    for cond in _combos(cols, per_plot_conds, np.ones(n, bool)):
        suffix = ("_" + _slug(_cond_title(cond))) if cond else ""
        if len(set(cols["beta"])) > 1:
            for metric, label in metrics:
                name = "cosine" if metric == "cosine_total" else "update_cosine"
                f = _plot_vs_beta(
                    cols, cond, out_dir / f"{stem}_{name}_vs_beta{suffix}.png", metric, label
                )
                if f:
                    figures.append(f)
        f = _plot_vs_n(cols, cond, out_dir / f"{stem}_cosine_vs_n{suffix}.png")
        if f:
            figures.append(f)
    tables = []
    for metric, label in metrics:
        # update_lr changes only the update: it is no condition of the gradient itself
        conds_m = conds if metric != "cosine_total" else [c for c in conds if c != "update_lr"]
        rows = _best_rows(cols, conds_m, metric)
        if conds_m:
            f = _plot_best_by_condition(
                rows, conds_m, out_dir / f"{stem}_best_{metric}_by_condition.png", label
            )
            if f:
                figures.append(f)
        cond_cols = [c.removeprefix("set.") for c in conds_m]
        shown = [
            *cond_cols,
            "noise",
            "series",
            "best",
            "beta_best",
            "at_smallest",
            "beta_smallest",
            "rows",
        ]
        md.append(
            f"Best {label} over |beta| (mean over seeds; `rows`: rows averaged), the |beta| "
            "where it is reached, and the value at the smallest |beta|:\n"
        )
        md.append(_md_table(rows, shown) + "\n")
        tables.extend({"metric": metric} | r for r in rows)
        md.extend(_hep_vs_classic(rows, cond_cols, label))
    resid = {k: float(np.nanmax(cols[k])) for k in ("free_residual", "nudge_residual") if k in cols}
    if resid:
        md.append(
            "Largest settle residuals: "
            + ", ".join(f"{k} {v:.2e}" for k, v in resid.items())
            + " (activity units; under noise they include the noise).\n"
        )
    rep.tables[str(path)] = tables
    rep.figures.extend(figures)
    md.extend(f"![{f.stem}]({f.name})\n" for f in figures)


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


# -- training sweeps and run records --------------------------------------------------------------


def _plot_curves(
    runs: dict[str, dict[str, dict[str, np.ndarray]]], labels: dict[str, str], out: Path
) -> Path | None:
    """Accuracy and loss per epoch (test solid, train dashed), and pulses per step."""
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    have = {k: r for k, r in runs.items() if r.get("metrics")}
    if not have:
        return None
    pulses = any("pulses" in r.get("steps", {}) for r in have.values())
    fig, axes = plt.subplots(1, 3 if pulses else 2, figsize=(14 if pulses else 9.5, 3.8))
    for j, (key, r) in enumerate(have.items()):
        m, s = r["metrics"], r.get("steps", {})
        lab, c = labels.get(key, key), f"C{j % 10}"
        if "epoch" not in m:
            continue
        for ax, what in ((axes[0], "accuracy"), (axes[1], "loss")):
            if f"test_{what}" in m:
                ax.plot(m["epoch"], m[f"test_{what}"], "o-", ms=3, color=c, label=lab)
            if f"train_{what}" in m:
                ax.plot(m["epoch"], m[f"train_{what}"], "--", lw=1, color=c)
        if pulses and "pulses" in s:
            axes[2].plot(np.arange(1, len(s["pulses"]) + 1), s["pulses"], lw=0.8, color=c)
    axes[0].set(xlabel="epoch", ylabel="accuracy", title="accuracy (test solid, train dashed)")
    axes[1].set(xlabel="epoch", ylabel="loss", title="loss (test solid, train dashed)")
    if pulses:
        axes[2].set(xlabel="step", ylabel="pulses", title="pulses applied per step")
    for ax in axes[:2]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
    if len(have) <= 12:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _train_sweep(path: Path, out_dir: Path, rep: Report, md: list[str]) -> None:
    cols, _ = read_sweep_rows(path)
    runs = read_sweep_runs(path)
    n = len(cols.get("key", []))
    md.append(f"## {path.name}: training sweep, {n} points\n")
    if n == 0:
        md.append("No finished points.\n")
        return
    params = ["method", "points", "beta", "batch", "epochs", "lr", "noise", "devices", "seed"]
    params += sorted(k for k in cols if k.startswith("set."))
    varying = _varying(cols, params)
    labels = {
        str(cols["key"][i]): ", ".join(f"{p}={_fmt(cols[p][i])}" for p in varying) or "run"
        for i in range(n)
    }
    rows = []
    for i in range(n):
        row = {p.removeprefix("set."): _fmt(cols[p][i]) for p in varying}
        for k in _TRAIN_COLUMNS:
            if k in cols:
                row[k] = cols[k][i]
        rows.append(row)
    shown = [p.removeprefix("set.") for p in varying] + [k for k in _TRAIN_COLUMNS if k in cols]
    md.append(_md_table(rows, shown) + "\n")
    rep.tables[str(path)] = rows
    f = _plot_curves(runs, labels, out_dir / f"{_slug(path.stem)}_training.png")
    if f:
        rep.figures.append(f)
        md.append(f"![{f.stem}]({f.name})\n")


def _checkpoints(h5: h5py.File) -> list[str]:
    if "checkpoints" not in h5:
        return []
    return sorted(k for k in h5["checkpoints"] if not k.endswith(".partial"))


def _plot_conductances(h5: h5py.File, out: Path) -> Path | None:
    cks = _checkpoints(h5)
    if not cks or "driver" not in h5["checkpoints"][cks[-1]]:
        return None
    plt = _plt()
    picks = [cks[0], cks[-1]] if len(cks) > 1 else [cks[-1]]
    names = sorted(h5["checkpoints"][cks[-1]]["driver"])
    names = [n for n in names if isinstance(h5["checkpoints"][cks[-1]]["driver"][n], h5py.Group)]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for j, ck in enumerate(picks):
            g = h5["checkpoints"][ck]["driver"][name]
            epoch = int(ck.split("_")[1]) + 1
            for part, ls in (("g_plus_S", "-"), ("g_minus_S", "--")):
                if part not in g:
                    continue
                v = np.asarray(g[part]).ravel() * 1e6
                ax.hist(
                    v,
                    bins=60,
                    histtype="step",
                    ls=ls,
                    lw=1.1,
                    color=f"C{j}",
                    label=f"{part.split('_')[1]}, epoch {epoch}",
                )
        ax.set_title(f"crossbar {name}", fontsize=10)
        ax.set_xlabel("conductance (µS)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("devices")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("conductance histograms (G+ solid, G- dashed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _plot_steps(steps: dict[str, np.ndarray], out: Path) -> Path | None:
    if "loss" not in steps:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(1, len(steps["loss"]) + 1)
    axes[0].plot(x, steps["loss"], lw=0.6, color="tab:gray", label="per step")
    k = max(1, len(x) // 50)
    if k > 1:
        smooth = np.convolve(steps["loss"], np.ones(k) / k, mode="valid")
        axes[0].plot(x[k - 1 :], smooth, color="tab:red", label=f"mean of {k}")
    axes[0].set(xlabel="step", ylabel="free-phase loss", title="loss per step")
    axes[0].legend(fontsize=8)
    if "pulses" in steps:
        axes[1].plot(x, steps["pulses"], lw=0.7, color="tab:blue")
        axes[1].set(xlabel="step", ylabel="pulses", title="pulses applied per step")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _json(raw: Any, where: str) -> dict[str, Any]:
    """A JSON-object attribute, decoded; one line naming ``where`` when it is not one."""
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a JSON object, found {type(value).__name__}")
    return value


def _extras(h5: h5py.File, path: Path) -> dict[str, Any]:
    """``{"created": extra, "changed": {epoch: {key: value}}}`` of a run record: the
    driver's ``describe().extra`` at creation and what differed from it at each checkpoint
    (absent in records written before it was stored)."""
    created = h5.attrs.get("extra")
    created = {} if created is None else _json(created, f"{path}: attribute 'extra'")
    changed: dict[int, dict[str, Any]] = {}
    for name in _checkpoints(h5):
        raw = h5["checkpoints"][name].attrs.get("extra")
        if raw is None or not re.fullmatch(r"epoch_\d+", name):
            continue
        now = _json(raw, f"{path}: checkpoints/{name}: attribute 'extra'")
        diff = {k: v for k, v in now.items() if created.get(k, object()) != v}
        if diff:
            changed[int(name.split("_")[-1]) + 1] = diff
    return {"created": created, "changed": changed}


def _extras_md(extras: dict[str, Any], driver: str) -> str:
    """Markdown: the recorded ``describe().extra`` as a key/value table, then changes."""
    if not extras["created"] and not extras["changed"]:
        return f"Driver `{driver}`: no `describe().extra` recorded.\n"
    rows = [{"key": k, "value": json.dumps(v)} for k, v in extras["created"].items()]
    out = [f"Driver `{driver}`, `describe().extra` when the record was created:\n"]
    out.append(_md_table(rows, ["key", "value"]) + "\n")
    for epoch, diff in extras["changed"].items():
        what = ", ".join(f"`{k}` = {json.dumps(v)}" for k, v in diff.items())
        out.append(f"Changed at the checkpoint after epoch {epoch}: {what}.\n")
    return "\n".join(out)


def _run_record(path: Path, out_dir: Path, rep: Report, md: list[str]) -> None:
    stem = _slug(path.stem)
    with h5py.File(path, "r", locking=False) as h5:
        metrics = {k: np.asarray(v) for k, v in h5.get("metrics", {}).items()}
        steps = {k: np.asarray(v) for k, v in h5.get("steps", {}).items()}
        method = str(h5.attrs.get("config", ""))
        driver = str(h5.attrs.get("driver", "?"))
        extras = _extras(h5, path)
        f_g = _plot_conductances(h5, out_dir / f"{stem}_conductances.png")
    md.append(f"## {path.name}: training run\n")
    m = re.search(r'"method": "(\w+)"', method)
    if m:
        md.append(f"Method {m.group(1)}; {len(metrics.get('epoch', []))} epochs recorded.\n")
    md.append(_extras_md(extras, driver))
    rep.extras[str(path)] = extras
    for split in ("train", "test"):
        bad = metrics.get(f"{split}_nonfinite")
        if bad is not None and np.nansum(bad) > 0:
            md.append(
                f"{split.capitalize()} samples with a NaN or inf loss per epoch (left out of "
                f"the {split} loss, which is – where none was finite): "
                f"{', '.join(_fmt(float(b)) for b in bad)}.\n"
            )
    figures = []
    f = _plot_curves(
        {"run": {"metrics": metrics}}, {"run": path.stem}, out_dir / f"{stem}_training.png"
    )

    figures += [x for x in (f, _plot_steps(steps, out_dir / f"{stem}_steps.png"), f_g) if x]
    if metrics:
        rows = [{k: metrics[k][i] for k in metrics} for i in range(len(metrics["epoch"]))]
        md.append(_md_table(rows, list(metrics)) + "\n")
        rep.tables[str(path)] = rows
    if "pulses" in steps:
        md.append(
            f"Pulses per step: mean {np.mean(steps['pulses']):.4g}, total "
            f"{np.sum(steps['pulses']):.4g} over {len(steps['pulses'])} steps.\n"
        )
    rep.figures.extend(figures)
    md.extend(f"![{f.stem}]({f.name})\n" for f in figures)


def _stability(path: Path, out_dir: Path, rep: Report, md: list[str]) -> None:
    smap = load_stability_map(path)
    f = plot_stability_map(smap, out_dir / f"{_slug(path.stem)}_stability.png")
    s = smap.summary()
    md.append(f"## {path.name}: stability map of {smap.circuit}\n")
    md.append(
        _md_table(
            [s],
            [
                "extent",
                "resolution",
                "steps",
                "tol",
                "stable_radius",
                "stable_fraction",
                "free_residual",
            ],
        )
        + "\n"
    )
    md.append(
        f"Every |beta| below {smap.stable_radius:.3g} settles within {smap.steps} steps: hEP "
        "circles of smaller radius see only settled points.\n"
    )
    rep.figures.append(f)
    rep.tables[str(path)] = [s]
    md.append(f"![{f.stem}]({f.name})\n")


def report(files: Sequence[str | Path], out_dir: str | Path) -> Report:
    """Draw every figure the files support and write ``out_dir/report.md``.

    **Arguments:** ``files`` sweep files, run records and stability maps (HDF5);
    ``out_dir`` where PNGs and the Markdown go (created).

    **Returns:** a :class:`Report`.

    **Raises:** :class:`~analog_hep.errors.SpecError` for a file that is not one of these.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rep = Report(markdown=out / "report.md")
    md = ["# analog-hep report\n"]
    for f in map(Path, files):
        try:
            with h5py.File(f, "r", locking=False) as h5:
                fmt, kind = h5.attrs.get("format"), h5.attrs.get("kind")
        except OSError as err:
            raise SpecError(f"{f}: cannot read as HDF5 ({err})") from None
        if fmt == SWEEP_FORMAT and kind == "gradcheck":
            _gradcheck_sweep(f, out, rep, md)
        elif fmt == SWEEP_FORMAT:
            _train_sweep(f, out, rep, md)
        elif fmt == RUN_FORMAT:
            _run_record(f, out, rep, md)
        elif fmt == STABILITY_FORMAT:
            _stability(f, out, rep, md)
        else:
            raise SpecError(f"{f}: not a sweep file, run record or stability map (format {fmt!r})")
    rep.markdown.write_text("\n".join(md), encoding="utf-8")
    return rep
