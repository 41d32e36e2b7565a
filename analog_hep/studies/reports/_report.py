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
  point, pulses per step; with several seeds, mean ± std per configuration (table and bar
  chart: the Table 1 study).
- a run record (``analog-hep-run/1``): loss and accuracy per epoch, loss and pulses per
  step, conductance histograms of every crossbar at the first and last checkpoint, and the
  chip's ``describe().extra`` (calibration) as recorded, with what changed per checkpoint.
- a stability map (``analog-hep-stability/1``): the map (paper Fig. 2b).

Figures are drawn with matplotlib (the ``plots`` extra) on the Agg backend. This module
writes the Markdown; files are read only through :mod:`._record_read`, figures are drawn in
:mod:`._report_plots`, and rows are grouped and averaged in :mod:`._report_tables`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SpecError
from ..gradients._stability import FORMAT as STABILITY_FORMAT
from ..gradients._stability import load_stability_map, plot_stability_map
from ..training._record_read import (
    RUN_FORMAT,
    SWEEP_FORMAT,
    RunData,
    SweepData,
    read_header,
    read_run,
    read_sweep,
)
from ._report_plots import (
    _plot_best_by_condition,
    _plot_conductances,
    _plot_curves,
    _plot_replicates,
    _plot_steps,
    _plot_vs_beta,
    _plot_vs_n,
)
from ._report_tables import (
    _REPLICATES,
    _TRAIN_COLUMNS,
    _TRAIN_PARAMS,
    _best_rows,
    _combos,
    _cond_title,
    _condition_columns,
    _fmt,
    _hep_vs_classic,
    _md_table,
    _pm,
    _replicate_rows,
    _setting,
    _slug,
    _varying,
)

__all__ = ["Report", "report"]


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


# -- gradcheck sweeps -------------------------------------------------------------------------


_BEST_COLUMNS = ("noise", "series", "best", "beta_best", "at_smallest", "beta_smallest", "rows")


def _gradcheck_metrics(cols: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """``(column, label)`` of the cosines a sweep has: the gradient's, and the realised
    update's when points carry ``update_lr``."""
    metrics = [("cosine_total", "cosine with the true gradient")]
    if "update_cosine" in cols and np.isfinite(cols["update_cosine"]).any():
        metrics.append(("update_cosine", "cosine of the realised update"))
    return metrics


def _condition_figures(
    cols: dict[str, np.ndarray],
    conds: list[str],
    metrics: list[tuple[str, str]],
    out_dir: Path,
    stem: str,
) -> list[Path]:
    """Per combination of conditions: cosine vs |beta| (per metric) and cosine vs N, drawn
    to ``out_dir/<stem>_...png``."""
    figures: list[Path] = []
    per_plot_conds = [c for c in conds if c != "update_lr"] if len(conds) > 1 else conds
    for cond in _combos(cols, per_plot_conds, np.ones(len(cols["key"]), bool)):
        suffix = ("_" + _slug(_cond_title(cond))) if cond else ""
        if len(set(cols["beta"])) > 1:
            for metric, label in metrics:
                name = "cosine" if metric == "cosine_total" else "update_cosine"
                path = out_dir / f"{stem}_{name}_vs_beta{suffix}.png"
                figures.append(_plot_vs_beta(cols, cond, path, metric, label))
        figures.append(_plot_vs_n(cols, cond, out_dir / f"{stem}_cosine_vs_n{suffix}.png"))
    return [f for f in figures if f]


def _best_tables(
    cols: dict[str, np.ndarray],
    conds: list[str],
    metrics: list[tuple[str, str]],
    out_dir: Path,
    stem: str,
) -> tuple[list[str], list[dict[str, Any]], list[Path]]:
    """Per metric: the best value per series (Markdown and rows), the hEP-vs-classic line
    and, when conditions vary, the bar chart of the best values by condition."""
    md: list[str] = []
    tables: list[dict[str, Any]] = []
    figures: list[Path] = []
    for metric, label in metrics:
        # update_lr changes only the update: it is no condition of the gradient itself
        conds_m = conds if metric != "cosine_total" else [c for c in conds if c != "update_lr"]
        rows = _best_rows(cols, conds_m, metric)
        if conds_m:
            path = out_dir / f"{stem}_best_{metric}_by_condition.png"
            f = _plot_best_by_condition(rows, conds_m, path, label)
            if f:
                figures.append(f)
        cond_cols = [c.removeprefix("set.") for c in conds_m]
        md.append(
            f"Best {label} over |beta| (mean over seeds; `rows`: rows averaged), the |beta| "
            "where it is reached, and the value at the smallest |beta|:\n"
        )
        md.append(_md_table(rows, [*cond_cols, *_BEST_COLUMNS]) + "\n")
        tables.extend({"metric": metric} | r for r in rows)
        md.extend(_hep_vs_classic(rows, cond_cols, label))
    return md, tables, figures


def _residuals_md(cols: dict[str, np.ndarray]) -> list[str]:
    """The largest free and nudge settle residuals of the sweep, if recorded."""
    resid = {k: float(np.nanmax(cols[k])) for k in ("free_residual", "nudge_residual") if k in cols}
    if not resid:
        return []
    return [
        "Largest settle residuals: "
        + ", ".join(f"{k} {v:.2e}" for k, v in resid.items())
        + " (activity units; under noise they include the noise).\n"
    ]


def _gradcheck_sweep(sweep: SweepData, out_dir: Path, rep: Report, md: list[str]) -> None:
    """Figures and tables of a gradcheck sweep (see the module's docstring)."""
    path, cols, n = sweep.path, sweep.columns, sweep.n_points
    md.append(f"## {path.name}: gradcheck sweep, {n} points\n")
    if sweep.description:
        md.append(f"{sweep.description}\n")
    if n == 0:
        md.append("No finished points.\n")
        return
    stem = _slug(path.stem)
    conds = _condition_columns(cols)
    metrics = _gradcheck_metrics(cols)
    figures = _condition_figures(cols, conds, metrics, out_dir, stem)
    best_md, tables, best_figures = _best_tables(cols, conds, metrics, out_dir, stem)
    md.extend(best_md)
    md.extend(_residuals_md(cols))
    figures += best_figures
    rep.tables[str(path)] = tables
    rep.figures.extend(figures)
    md.extend(f"![{f.stem}]({f.name})\n" for f in figures)


# -- training sweeps and run records ----------------------------------------------------------


def _train_sweep(sweep: SweepData, out_dir: Path, rep: Report, md: list[str]) -> None:
    """Final accuracies of every point, their curves per epoch and pulses per step."""
    path, cols, n = sweep.path, sweep.columns, sweep.n_points
    md.append(f"## {path.name}: training sweep, {n} points\n")
    if n == 0:
        md.append("No finished points.\n")
        return
    params = list(_TRAIN_PARAMS) + sorted(k for k in cols if k.startswith("set."))
    varying = _varying(cols, params)
    labels = {
        str(cols["key"][i]): ", ".join(f"{p}={_setting(cols, p, i)}" for p in varying) or "run"
        for i in range(n)
    }
    rows = []
    for i in range(n):
        row = {p.removeprefix("set."): _setting(cols, p, i) for p in varying}
        for k in _TRAIN_COLUMNS:
            if k in cols:
                row[k] = cols[k][i]
        rows.append(row)
    shown = [p.removeprefix("set.") for p in varying] + [k for k in _TRAIN_COLUMNS if k in cols]
    md.append(_md_table(rows, shown) + "\n")
    rep.tables[str(path)] = rows
    f = _plot_curves(sweep.runs, labels, out_dir / f"{_slug(path.stem)}_training.png")
    if f:
        rep.figures.append(f)
        md.append(f"![{f.stem}]({f.name})\n")
    if any(r in varying for r in _REPLICATES):
        reps = _replicate_rows(cols, varying)
        conf = [c.removeprefix("set.") for c in varying if c not in _REPLICATES]
        md.append("### Mean ± std over seeds (accuracies in %)\n")
        shown_rows = [
            {c: r[c] for c in conf}
            | {
                "n": r["n"],
                "train accuracy": _pm(r, "train_accuracy", 100),
                "test accuracy": _pm(r, "test_accuracy", 100),
                "dropped samples": _pm(r, "dropped_samples", 1, 0),
                "pulses per weight": _pm(r, "pulses_per_weight", 1, 1),
                "bound clips": _pm(r, "clipped_bound_total", 1, 0),
                "seconds": _pm(r, "seconds", 1, 0),
            }
            for r in reps
        ]
        cols_shown = [*conf, "n", "train accuracy", "test accuracy", "dropped samples"]
        if "pulses_per_weight" in cols:
            cols_shown += ["pulses per weight", "bound clips"]
        cols_shown.append("seconds")
        md.append(_md_table(shown_rows, cols_shown) + "\n")
        rep.tables[f"{path}#replicates"] = reps
        f = _plot_replicates(reps, conf, out_dir / f"{_slug(path.stem)}_seeds.png")
        if f:
            rep.figures.append(f)
            md.append(f"![{f.stem}]({f.name})\n")


def _extras(run: RunData) -> dict[str, Any]:
    """``{"created": extra, "changed": {epoch: {key: value}}}`` of a run record: the
    driver's ``describe().extra`` at creation and what differed from it at each checkpoint
    (absent in records written before it was stored)."""
    changed: dict[int, dict[str, Any]] = {}
    for ck in run.checkpoints:
        if ck.extra is None:
            continue
        diff = {k: v for k, v in ck.extra.items() if run.extra.get(k, object()) != v}
        if diff:
            changed[ck.epoch] = diff
    return {"created": run.extra, "changed": changed}


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


def _nonfinite_md(metrics: dict[str, np.ndarray]) -> list[str]:
    """One line per split whose loss left out samples with a NaN or inf loss."""
    out = []
    for split in ("train", "test"):
        bad = metrics.get(f"{split}_nonfinite")
        if bad is not None and np.nansum(bad) > 0:
            out.append(
                f"{split.capitalize()} samples with a NaN or inf loss per epoch (left out of "
                f"the {split} loss, which is – where none was finite): "
                f"{', '.join(_fmt(float(b)) for b in bad)}.\n"
            )
    return out


def _run_figures(run: RunData, out_dir: Path) -> list[Path]:
    """Loss and accuracy per epoch, loss and pulses per step, conductance histograms."""
    stem = _slug(run.path.stem)
    f_g = _plot_conductances(run, out_dir / f"{stem}_conductances.png")
    f = _plot_curves(
        {"run": {"metrics": run.metrics}},
        {"run": run.path.stem},
        out_dir / f"{stem}_training.png",
    )
    f_s = _plot_steps(run.steps, out_dir / f"{stem}_steps.png")
    return [x for x in (f, f_s, f_g) if x]


def _run_record(run: RunData, out_dir: Path, rep: Report, md: list[str]) -> None:
    """Curves, tables and the driver's ``describe().extra`` of a run record."""
    path, metrics, steps = run.path, run.metrics, run.steps
    extras = _extras(run)
    md.append(f"## {path.name}: training run\n")
    if run.method is not None:
        md.append(f"Method {run.method}; {len(metrics.get('epoch', []))} epochs recorded.\n")
    md.append(_extras_md(extras, run.driver))
    rep.extras[str(path)] = extras
    md.extend(_nonfinite_md(metrics))
    figures = _run_figures(run, out_dir)
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
    """The map of a stability-map file and its numbers."""
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
        header = read_header(f)
        fmt = header.format
        if fmt == SWEEP_FORMAT and header.kind == "gradcheck":
            _gradcheck_sweep(read_sweep(f), out, rep, md)
        elif fmt == SWEEP_FORMAT:
            _train_sweep(read_sweep(f), out, rep, md)
        elif fmt == RUN_FORMAT:
            _run_record(read_run(f), out, rep, md)
        elif fmt == STABILITY_FORMAT:
            _stability(f, out, rep, md)
        else:
            raise SpecError(f"{f}: not a sweep file, run record or stability map (format {fmt!r})")
    rep.markdown.write_text("\n".join(md), encoding="utf-8")
    return rep
