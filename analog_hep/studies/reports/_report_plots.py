"""The report's figures (matplotlib on the Agg backend): gradient cosines of gradcheck
sweeps, training curves, loss and pulses per step, conductance histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..training._record_read import RunData
from ._report_tables import (
    _REPLICATES,
    _aggregate,
    _cond_title,
    _mask,
    _series,
    _series_label,
    _sortable,
)

_SERIES_COLORS = {"hep": "tab:orange", "classic": "tab:blue", "symmetric": "tab:green"}


def _plt() -> Any:
    """matplotlib's pyplot on the Agg backend (imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(method: str, points: int, n_hep: list[int]) -> Any:
    """The line colour of a series: shades of orange by N when hEP has several N."""
    if method == "hep" and len(n_hep) > 1:
        import matplotlib

        cmap = matplotlib.colormaps["Oranges"]
        return cmap(0.35 + 0.65 * n_hep.index(points) / max(len(n_hep) - 1, 1))
    return _SERIES_COLORS.get(method, "black")


def _panels(plt: Any, n: int, rows: int) -> tuple[Any, Any]:
    """A figure of ``rows`` x ``n`` panels sharing axes, sized for a legend on the right."""
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


def _plot_best_by_condition(
    rows: list[dict], cond_names: list[str], out: Path, ylabel: str
) -> Path | None:
    """Bars of the best value per condition and series, one panel per noise level."""
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


def _plot_replicates(reps: list[dict[str, Any]], conf: list[str], out: Path) -> Path | None:
    """Test accuracy (bars: mean over seeds, error bars: std) and train accuracy (dots) of
    every configuration; one panel per neuron-noise level when the noise varies."""
    if not reps:
        return None
    plt = _plt()
    by_noise = "noise" in conf
    panels: dict[str, list[dict[str, Any]]] = {}
    for r in reps:
        panels.setdefault(str(r["noise"]) if by_noise else "", []).append(r)
    names = [c for c in conf if c != "noise"]
    width = max(4.0, 0.55 * max(len(v) for v in panels.values()) + 1.5)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width * len(panels), 4.6), squeeze=False, sharey=True
    )
    for ax, (noise, rows) in zip(axes[0], panels.items(), strict=True):
        x = np.arange(len(rows))
        mean = np.array([100 * r.get("test_accuracy_mean", np.nan) for r in rows])
        std = np.nan_to_num(np.array([100 * r.get("test_accuracy_std", np.nan) for r in rows]))
        ax.bar(x, mean, yerr=std, color="tab:orange", alpha=0.8, capsize=3, label="test")
        train = [100 * r.get("train_accuracy_mean", np.nan) for r in rows]
        ax.plot(x, train, "k.", label="train")
        labels = [", ".join(str(r[c]) for c in names if r.get(c) not in ("–", None)) for r in rows]
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set(ylabel="accuracy (%)", title=f"noise {noise}" if by_noise else "")
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("final accuracy, mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def _crossbars(driver: dict[str, np.ndarray]) -> list[str]:
    """The crossbars of a checkpoint's driver part: the groups its keys are in."""
    return sorted({k.split("/", 1)[0] for k in driver if "/" in k})


def _plot_conductances(run: RunData, out: Path) -> Path | None:
    """Histograms of G+ and G- of every crossbar at the first and last checkpoint."""
    cks = run.checkpoints
    if not cks:
        return None
    last = run.checkpoint_state(cks[-1].name)
    if "driver" not in last:
        return None
    names = _crossbars(last["driver"])
    if not names:
        return None
    picks = [cks[0], cks[-1]] if len(cks) > 1 else [cks[-1]]
    states = [run.checkpoint_state(ck.name) if ck is not cks[-1] else last for ck in picks]
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for j, (ck, state) in enumerate(zip(picks, states, strict=True)):
            driver = state.get("driver", {})
            for part, ls in (("g_plus_S", "-"), ("g_minus_S", "--")):
                if f"{name}/{part}" not in driver:
                    continue
                v = np.asarray(driver[f"{name}/{part}"]).ravel() * 1e6
                ax.hist(
                    v,
                    bins=60,
                    histtype="step",
                    ls=ls,
                    lw=1.1,
                    color=f"C{j}",
                    label=f"{part.split('_')[1]}, epoch {ck.epoch}",
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
    """Loss per step (with a running mean) and pulses per step of a run record."""
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
