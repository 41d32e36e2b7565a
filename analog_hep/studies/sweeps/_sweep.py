"""Run one task of a sweep (in this process or on a Dask worker): its rows, runs and errors.

A vectorised task is one compiled call (:func:`~analog_hep.studies.gradcheck_batch`) per chip
structure, normally one; a single point is a plain gradcheck or a training run. A failed
point is reported in the task's :class:`~._tasks.TaskResult` and gets no row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ...emulator import Chip
from ...errors import SpecError
from ..gradients._gradcheck import _rel, cosine, gradcheck
from ._sweep_spec import GradcheckPoint, Point, TrainPoint
from ._tasks import Task, TaskResult, point_chip, point_inputs
from ._vectorised import GroupStatic, gradcheck_batch, trace_count, with_noise_flags

__all__ = ["run_task", "update_quality"]


# -- computing --------------------------------------------------------------------------------


def _result_columns(res: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cosine_total": float(res["cosine_total"]),
        "rel_error_total": float(res["rel_error_total"]),
    }
    for n, v in res["cosine"].items():
        out[f"cosine.{n}"] = float(v)
    for n, v in res["rel_error"].items():
        out[f"rel_error.{n}"] = float(v)
    for k in ("loss", "free_residual", "nudge_residual", "adjoint_residual"):
        out[k] = float(res[k])
    return out


def update_quality(
    point: Point, x: np.ndarray, y: np.ndarray, truth: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """One learning step through the emulator driver, against the exact step.

    The controller settles the chip on ``(x, y)`` with the point's method, forms its
    estimate and sends ``-update_lr * estimate`` to the devices (outer-product pulses or
    programmed deltas, ``update``); the change of the effective weights the devices realised,
    ``dW``, is compared with ``-update_lr * dL/dW`` (``truth``, flat per crossbar).

    **Returns:** ``update_cosine`` (total and per crossbar), ``update_rel_error``
    (``|dW + lr g| / |lr g|``), ``update_gain`` (``|dW| / |lr g|``), ``pulses``,
    ``clipped`` (bound and request clips), ``refused`` and ``fallback`` (0/1).
    """
    from ...drivers import open_driver
    from ...hep import Controller, HepConfig

    p = point.params
    assert isinstance(p, GradcheckPoint) and p.update_lr is not None
    circuit = point.circuit()
    driver = open_driver("emulator", circuit, seed=p.seed)
    try:
        cfg = HepConfig(
            method=p.method,
            points=p.n_points,
            beta=p.beta,
            lr=p.update_lr,
            momentum=0.0,
            schedule="constant",
            total_steps=1,
            residual_tol=float("inf"),
            update=p.update,
        )
        ctrl = Controller(driver, cfg)
        has_bias = {c.name: c.has_bias for c in driver.describe().crossbars}
        w0 = driver.read_weights()
        rep = ctrl.train_step(x, y)
        w1 = driver.read_weights()
    finally:
        driver.close()
    names = list(truth)

    def flat(w: Mapping[str, tuple[np.ndarray, np.ndarray]], n: str) -> np.ndarray:
        parts = [np.ravel(w[n][0])] + ([np.ravel(w[n][1])] if has_bias[n] else [])
        return np.concatenate(parts).astype(np.float64)

    dw = {n: flat(w1, n) - flat(w0, n) for n in names}
    ideal = {n: -p.update_lr * np.asarray(truth[n], np.float64) for n in names}
    dw_all = np.concatenate([dw[n] for n in names])
    ideal_all = np.concatenate([ideal[n] for n in names])
    out: dict[str, Any] = {
        "update_cosine": cosine(dw_all, ideal_all),
        "update_rel_error": _rel(dw_all, ideal_all),
        "update_gain": float(np.linalg.norm(dw_all) / max(np.linalg.norm(ideal_all), 1e-300)),
        "pulses": int(sum(u.pulses for u in rep.updates)),
        "clipped": int(sum(u.clipped_bound + u.clipped_request for u in rep.updates)),
        "refused": int(rep.refused),
        "fallback": int(rep.fallback),
    }
    for n in names:
        out[f"update_cosine.{n}"] = cosine(dw[n], ideal[n])
    return out


def _run_group(task: Task, result: TaskResult, threads: int) -> None:
    """Run a vectorised task: one compiled call per chip structure (normally one)."""
    points = task.points
    neuron = any(p.spec.neuron.noise_std > 0 for p in points)
    read = any(p.spec.periphery.read_noise_std > 0 for p in points)
    chips = [with_noise_flags(point_chip(p), neuron=neuron, read=read) for p in points]
    by_structure: dict[Any, list[int]] = {}
    for i, chip in enumerate(chips):
        by_structure.setdefault(jax.tree.structure(chip), []).append(i)
    for members in by_structure.values():
        whole = len(members) == len(points)
        _run_members(
            [points[i] for i in members],
            [chips[i] for i in members],
            result,
            size=task.size if whole else len(members),
            parts=task.parts if whole else 1,
            threads=threads,
        )


def _run_members(
    points: list[Point],
    chips: list[Chip],
    result: TaskResult,
    *,
    size: int,
    parts: int,
    threads: int,
) -> None:
    first = points[0].params
    assert isinstance(first, GradcheckPoint)
    t0 = time.perf_counter()
    before = trace_count()
    params = [p.params for p in points]
    static = GroupStatic(
        method=first.method,
        points=first.n_points,
        batch=first.batch,
        start=first.start,
        random_inputs=first.dataset is None,
    )
    inputs = None if static.random_inputs else [point_inputs(p) for p in points]
    pad = max(size - len(points), 0)  # repeat the last point: one compiled size per group
    res = gradcheck_batch(
        chips + chips[-1:] * pad,
        [float(q.beta) for q in params] + [float(params[-1].beta)] * pad,  # type: ignore[union-attr]
        [int(q.seed) for q in params] + [int(params[-1].seed)] * pad,  # type: ignore[union-attr]
        static,
        inputs=None if inputs is None else inputs + inputs[-1:] * pad,
        parts=parts if (len(points) + pad) % parts == 0 else 1,
        threads=threads,
    )[: len(points)]
    seconds = time.perf_counter() - t0
    result.compiles += trace_count() - before
    for point, r in zip(points, res, strict=True):
        row = point.columns() | _result_columns(r)
        row |= {"seconds": seconds / len(points), "group_size": len(points)}
        p = point.params
        assert isinstance(p, GradcheckPoint)
        if p.update_lr is not None:
            try:
                x, y = point_inputs(point)
                row |= update_quality(point, x, y, r["truth"])
            except Exception as err:  # one point's update failing must not sink the group
                result.errors.append((point.key, _message(err)))
                continue
        result.rows.append(row)


def _run_single_gradcheck(point: Point, result: TaskResult) -> None:
    p = point.params
    assert isinstance(p, GradcheckPoint)
    t0 = time.perf_counter()
    x, y = point_inputs(point)
    res = gradcheck(
        point.circuit(),
        method=p.method,
        points=p.n_points,
        beta=p.beta,
        batch=p.batch,
        seed=p.seed,
        inputs=None if p.dataset is None else (x, y),
        start=p.start,
    )
    row = point.columns() | _result_columns(res.__dict__)
    row |= {"seconds": time.perf_counter() - t0, "group_size": 1}
    if p.update_lr is not None:
        row |= update_quality(point, x, y, res.truth)
    result.rows.append(row)


def _train_recorded(
    circuit: Any, opts: Any, out: Path
) -> tuple[Any, dict[str, dict[str, np.ndarray]]]:
    """Train into the record ``out`` (continued when a killed sweep left it); its result
    and its metrics and step tables."""
    from ..training._record import Record
    from ..training._train import train

    def run(resume: bool) -> Any:
        return train(circuit, opts, out=out, resume=resume, progress=False, log=lambda _: None)

    try:
        res = run(out.exists())
    except SpecError:
        if not out.exists():
            raise
        # A record this run cannot continue (written by other code, or cut mid-creation):
        # the run starts over rather than failing the point.
        out.unlink()
        res = run(False)
    with Record(out, "r") as rec:
        return res, {"metrics": rec.table("metrics"), "steps": rec.table("steps")}


def _run_train(point: Point, result: TaskResult, runs_dir: str | None = None) -> None:
    from ..training._train import TrainOptions

    p = point.params
    assert isinstance(p, TrainPoint)
    circuit = point.circuit()
    given = {k: v for k, v in p.model_dump().items() if v is not None and k != "noise"}
    opts = TrainOptions.from_circuit(circuit, **given)
    folder: Path | None = None
    if runs_dir is not None:
        with contextlib.suppress(OSError):  # a worker that cannot write there uses a temp dir
            Path(runs_dir).mkdir(parents=True, exist_ok=True)
            folder = Path(runs_dir)
    if folder is not None:
        out = folder / f"{point.key}.h5"
        res, tables = _train_recorded(circuit, opts, out)
        out.unlink()  # its row and tables go to the sweep file with this task's result
    else:
        with tempfile.TemporaryDirectory(prefix="analog-hep-sweep-") as tmp:
            res, tables = _train_recorded(circuit, opts, Path(tmp) / "run.h5")
    steps = tables["steps"]
    row = point.columns()
    row |= {k: v for k, v in dataclasses.asdict(opts).items() if v is not None}
    if opts.method == "symmetric":
        row["points"] = 2  # the controller's N, whatever the circuit's training section says
    row |= {
        "train_accuracy": res.train_accuracy,
        "train_loss": res.train_loss,
        "test_accuracy": res.test_accuracy,
        "test_loss": res.test_loss,
        "epochs_done": res.epochs,
        "dropped_updates": res.dropped_updates,
        "dropped_samples": res.dropped_samples,
        "fallback_steps": res.fallback_steps,
        "pulses_total": int(np.sum(steps.get("pulses", np.zeros(0)))),
        "pulses_per_weight": float(np.sum(steps.get("pulses", np.zeros(0)))) / _n_weights(circuit),
        "clipped_bound_total": int(np.sum(steps.get("clipped_bound", np.zeros(0)))),
        "seconds": res.seconds,
        "epoch_seconds": res.epoch_seconds,
        "group_size": 1,
    }
    result.rows.append(row)
    result.runs[point.key] = tables


def _n_weights(circuit: Any) -> int:
    """Weights of the chip, bias columns included (the pulses' denominator)."""
    spec = circuit.spec
    sizes = (*spec.layers, spec.readout.classes)
    return sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(sizes))


def _message(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def run_task(task: Task, threads: int = 1) -> TaskResult:
    """Compute one task (in this process or on a Dask worker); errors become messages.

    ``threads``: CPU threads a vectorised task may use for its slices (the results do not
    depend on it).
    """
    t0 = time.perf_counter()
    result = TaskResult(task=task.id)
    try:
        if task.vectorised:
            _run_group(task, result, threads)
        else:
            for point in task.points:
                try:
                    if point.kind == "train":
                        _run_train(point, result, task.runs_dir)
                    else:
                        _run_single_gradcheck(point, result)
                except Exception as err:
                    result.errors.append((point.key, _message(err)))
    except Exception as err:
        if os.environ.get("ANALOG_HEP_DEBUG"):
            traceback.print_exc()
        done = {r["key"] for r in result.rows} | {k for k, _ in result.errors}
        result.errors += [(p.key, _message(err)) for p in task.points if p.key not in done]
    result.seconds = time.perf_counter() - t0
    return result
