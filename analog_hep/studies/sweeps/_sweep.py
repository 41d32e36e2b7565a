"""Run a sweep: vectorised groups and heterogeneous points, serially or on Dask distributed.

Planning: the unfinished points of a :class:`~analog_hep.studies.Sweep` become *tasks*.
Gradcheck points with the same static signature (chip structure and static config, method,
N, batch, start, random or given inputs) form one group, cut into chunks of at most
``max_group`` points in expansion order; each chunk is one vmapped, compiled call
(:func:`~analog_hep.studies.gradcheck_batch`). Training points, and gradcheck points of a
sweep with ``vectorise: false``, are one task each. Chunking depends only on the sweep and
the finished points, never on the executor, so serial and Dask runs compute the same calls.

Execution: in process (``workers`` 0 or 1, or a single task), or as Dask tasks on a
``LocalCluster`` (``workers`` processes, one thread each) or on the scheduler at
``scheduler``. The driver process writes each task's rows to the sweep file as the task
finishes (:class:`~analog_hep.studies.SweepFile`); a restarted sweep skips the points the
file holds. A failed point is reported and gets no row, so a restart retries it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...emulator import Chip, ChipConfig, fabricate
from ...errors import SpecError
from ..gradients._gradcheck import _rel, cosine, gradcheck, random_batch
from ._sweep_file import SweepFile
from ._sweep_spec import GradcheckPoint, Point, Sweep, TrainPoint, load_sweep
from ._vectorised import GroupStatic, gradcheck_batch, trace_count, with_noise_flags

__all__ = [
    "SweepSummary",
    "Task",
    "TaskResult",
    "plan_tasks",
    "run_sweep",
    "run_task",
    "use_compile_cache",
]


@dataclass(frozen=True)
class Task:
    """Points computed together: a vectorised group (``vectorised``) or a single point."""

    id: int
    points: tuple[Point, ...]
    vectorised: bool
    size: int = 0
    """Vectorised tasks: the points of the compiled program (the chunks of a group are padded
    to one size, so that they share one compilation)."""
    parts: int = 1
    """Vectorised tasks: slices the program runs on (``size`` is a multiple), so that a
    process can run slices on several CPU cores at once."""


@dataclass
class TaskResult:
    """What a task sends back: finished rows, training tables by point key, per-point
    errors ``(key, message)``, traces of the vectorised core in the worker, seconds."""

    task: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    compiles: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class SweepSummary:
    """The outcome of :func:`run_sweep` (``--json`` prints :meth:`to_json`).

    ``points`` in the sweep; ``completed`` computed now; ``skipped`` finished before (found
    in the file); ``failed`` raised an error (no row; a restart retries them); ``tasks``
    compiled calls or single points run; ``compiles`` traces of the vectorised core, summed
    over workers; ``workers`` 0 for in-process runs; ``seconds`` wall time.
    """

    points: int
    completed: int
    skipped: int
    failed: int
    seconds: float
    out: str
    tasks: int
    compiles: int
    workers: int
    scheduler: str | None
    errors: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"errors": list(self.errors)}


# -- chips and data, cached per process ---------------------------------------------------------

_CHIPS: OrderedDict[str, Chip] = OrderedDict()
_CHIP_CACHE_SIZE = 16


def _chip_key(point: Point) -> str:
    spec = point.spec.model_copy(
        update={"neuron": point.spec.neuron.model_copy(update={"noise_std": 0.0})}
    )
    devices = {n: c.model_dump(mode="json") for n, c in point.devices}
    return json.dumps([spec.model_dump(mode="json"), devices], sort_keys=True)


def point_chip(point: Point) -> Chip:
    """The point's fabricated chip (cached per process by everything but the noise std, which
    is a leaf set here), with the static noise switches as the spec says."""
    key = _chip_key(point)
    chip = _CHIPS.get(key)
    if chip is None:
        chip, _ = fabricate(point.spec, dict(point.devices), point.spec.seed)
        _CHIPS[key] = chip
        while len(_CHIPS) > _CHIP_CACHE_SIZE:
            _CHIPS.popitem(last=False)
    noise = float(point.spec.neuron.noise_std)
    chip = dataclasses.replace(chip, noise_std=jnp.asarray(noise, jnp.float32))
    return with_noise_flags(chip, neuron=noise > 0, read=point.spec.periphery.read_noise_std > 0)


@lru_cache(maxsize=4)
def _dataset(spec: str) -> Any:
    from ...data import load_dataset

    return load_dataset(spec)


def point_inputs(point: Point) -> tuple[np.ndarray, np.ndarray]:
    """``(x (B, n_0), one-hot y (B, classes))`` of a gradcheck point, as ``gradcheck`` uses
    them: the first batch of its dataset in the order of ``seed``, or random inputs drawn from
    ``PRNGKey(seed)``."""
    p = point.params
    assert isinstance(p, GradcheckPoint)
    spec = point.spec
    if p.dataset is None:
        k_data = jr.split(jr.PRNGKey(p.seed), 3)[0]
        x, y = random_batch(spec.layers[0], spec.readout.classes, p.batch, key=k_data)
        return np.asarray(x), np.asarray(y)
    ds = _dataset(p.dataset)
    if ds.n_features != spec.layers[0] or ds.n_classes != spec.readout.classes:
        raise SpecError(
            f"dataset {p.dataset!r} ({ds.n_features} features, {ds.n_classes} classes) does not "
            f"fit circuit {spec.name!r} ({spec.layers[0]} inputs, {spec.readout.classes} classes)"
        )
    x, y = next(ds.batches("train", p.batch, seed=p.seed, epoch=0))
    return np.asarray(x, np.float32), ds.one_hot(y)


# -- planning ---------------------------------------------------------------------------------


def _chip_signature(point: Point) -> tuple[Any, ...]:
    """What decides the structure and static settings of the point's chip, from its spec.

    The chip's static config (noise switches normalised to on) and, per crossbar, the
    static fields of :class:`~analog_hep.emulator.Crossbar` (``g_unit_S``, ``has_bias``,
    ``read_noise_rel``): chips of different cards with the same conductance range share a
    compiled call. A group that still holds chips of different structure is split again when
    it runs (:func:`_run_group`), so this needs only to be fine enough to be useful.
    """
    spec = point.spec
    cfg = dataclasses.replace(ChipConfig.from_spec(spec), neuron_noise=True, read_noise=True)
    xbars = []
    for name, card in point.devices:
        xb = spec.crossbar(name)
        assert xb.mapping is not None
        g = card.conductance
        g_unit = (g.g_max_S - g.g_min_S) / xb.mapping.w_max
        xbars.append((name, g_unit, bool(xb.bias), float(card.read_noise_rel)))
    return (cfg, tuple(xbars))


def _signature(point: Point) -> tuple[Any, ...]:
    """What a point shares with every member of its vectorised group."""
    p = point.params
    assert isinstance(p, GradcheckPoint)
    return (
        *_chip_signature(point),
        p.method,
        p.n_points,
        p.batch,
        p.start,
        p.dataset is None,
    )


def plan_tasks(sweep: Sweep, points: Sequence[Point]) -> list[Task]:
    """Cut ``points`` (a subset of ``sweep.points``) into tasks; see the module docstring."""
    if sweep.spec.kind == "train" or not sweep.spec.vectorise:
        return [Task(i, (p,), False) for i, p in enumerate(points)]
    groups: dict[tuple[Any, ...], list[Point]] = {}
    for p in points:
        groups.setdefault(_signature(p), []).append(p)
    tasks: list[Task] = []
    size = sweep.spec.max_group
    for members in groups.values():
        n_chunks = math.ceil(len(members) / size)
        per = math.ceil(len(members) / n_chunks)
        parts = _parts(per)
        padded = math.ceil(per / parts) * parts
        for c in range(n_chunks):
            chunk = tuple(members[c * per : (c + 1) * per])
            tasks.append(Task(len(tasks), chunk, True, size=padded, parts=parts))
    return tasks


_MIN_PART = 8


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _parts(points: int) -> int:
    """Slices of a vectorised chunk: one per CPU core (at least 8 points each) on a CPU
    backend, where XLA runs one program on one core; one on an accelerator."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, min(_cpus(), points // _MIN_PART))


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


def _run_train(point: Point, result: TaskResult) -> None:
    from ..training._record import Record
    from ..training._train import TrainOptions, train

    p = point.params
    assert isinstance(p, TrainPoint)
    circuit = point.circuit()
    given = {k: v for k, v in p.model_dump().items() if v is not None and k != "noise"}
    opts = TrainOptions.from_circuit(circuit, **given)
    with tempfile.TemporaryDirectory(prefix="analog-hep-sweep-") as tmp:
        out = Path(tmp) / "run.h5"
        res = train(circuit, opts, out=out, progress=False, log=lambda _: None)
        with Record(out, "r") as rec:
            tables = {"metrics": rec.table("metrics"), "steps": rec.table("steps")}
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
        "seconds": res.seconds,
        "group_size": 1,
    }
    result.rows.append(row)
    result.runs[point.key] = tables


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
                        _run_train(point, result)
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


# -- executing ----------------------------------------------------------------------------------


def _serial(tasks: Iterable[Task], handle: Callable[[TaskResult], None]) -> None:
    threads = _cpus()
    for task in tasks:
        handle(run_task(task, threads))


def use_compile_cache(directory: str | None) -> None:
    """Keep compiled XLA programs in ``directory`` (JAX's persistent compilation cache), so
    that a restarted sweep and every Dask worker load what one process compiled. ``None``
    leaves JAX's setting alone."""
    if directory is None:
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _dask(
    tasks: Sequence[Task],
    handle: Callable[[TaskResult], None],
    *,
    workers: int,
    scheduler: str | None,
    compile_cache: str | None,
) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    if scheduler is not None:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        if compile_cache is not None:
            client.run(use_compile_cache, compile_cache)
        futures = {}
        for task in tasks:
            key = f"analog-hep-task-{task.id}-{task.points[0].key}"
            # retries: a task whose worker died runs again elsewhere (errors in a point are
            # returned in its TaskResult, not raised, so they are never retried)
            fut = client.submit(run_task, task, pure=False, key=key, retries=1)
            futures[fut] = task
        try:
            for fut in as_completed(list(futures)):
                task = futures[fut]
                try:
                    res = fut.result()
                except Exception as err:  # a worker died or the task could not run
                    res = TaskResult(task.id, errors=[(p.key, _message(err)) for p in task.points])
                handle(res)
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _have_dask() -> bool:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return False
    return True


def _workers(requested: int | None, n_tasks: int, scheduler: str | None) -> int:
    """0 (in process) or the number of LocalCluster workers to start."""
    if scheduler is not None:
        return -1
    if requested is None:
        requested = os.cpu_count() or 1
    n = min(requested, n_tasks)
    return n if n >= 2 else 0


def run_sweep(
    sweep: Sweep | str | Path,
    out: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    compile_cache: str | Path | None = None,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    log: Callable[[str], None] = print,
) -> SweepSummary:
    """Run every unfinished point of ``sweep`` and write one row per point to ``out``.

    **Arguments:**

    - ``sweep``: a :class:`Sweep` or the path of a sweep file.
    - ``out``: the sweep's HDF5 file; an existing one is continued (finished points skipped).
    - ``workers``: Dask ``LocalCluster`` worker processes; ``0``/``1`` run in process;
      ``None`` uses one per CPU, capped at the number of tasks (one task runs in process).
    - ``scheduler``: address of a running Dask scheduler (``tcp://host:8786``) instead.
    - ``progress``: a progress bar (tqdm, on stderr); ``on_rows``: called with each batch of
      rows after it is written; ``log``: where notes go.
    - ``compile_cache``: a folder for JAX's persistent compilation cache, set in this process
      and on every Dask worker (:func:`use_compile_cache`): restarts and workers then load
      programs compiled before instead of compiling them again.

    **Returns:** a :class:`SweepSummary`.

    **Raises:** :class:`~analog_hep.errors.SpecError` for a bad sweep file or output file.
    """
    t0 = time.perf_counter()
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    cache = None if compile_cache is None else str(Path(compile_cache).resolve())
    use_compile_cache(cache)
    meta = {"kind": sweep.spec.kind, "sweep_text": sweep.text, "sweep_path": sweep.path}
    errors: list[str] = []
    counts = {"completed": 0, "failed": 0, "compiles": 0}
    by_key = {p.key: p for p in sweep.points}
    with SweepFile(out, meta=meta) as file:
        finished = file.keys()
        todo = [p for p in sweep.points if p.key not in finished]
        skipped = len(sweep.points) - len(todo)
        if skipped:
            log(f"{out}: {skipped} of {len(sweep.points)} points finished already; skipping them")
        tasks = plan_tasks(sweep, todo)
        n_workers = _workers(workers, len(tasks), scheduler)
        if n_workers != 0 and not _have_dask():
            if workers is not None or scheduler is not None:
                raise SpecError(
                    "--workers/--scheduler need Dask: pip install 'analog-hep[studies]' "
                    "(or run in process with --workers 0)"
                )
            log("note: Dask is not installed (pip install 'analog-hep[studies]'): in process")
            n_workers = 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(sweep.points), initial=skipped, desc="sweep", unit="pt")

        def handle(res: TaskResult) -> None:
            file.append(res.rows)
            for key, tables in res.runs.items():
                file.save_run(key, tables)
            counts["completed"] += len(res.rows)
            counts["failed"] += len(res.errors)
            counts["compiles"] += res.compiles
            for key, msg in res.errors:
                p = by_key.get(key)
                where = f"point {p.index}" if p is not None else key
                errors.append(f"{where} ({key}): {msg}")
                log(f"{sweep.path}: {where} failed: {msg}")
            if bar is not None:
                bar.update(len(res.rows) + len(res.errors))
            if on_rows is not None:
                on_rows(res.rows)

        try:
            if n_workers == 0:
                _serial(tasks, handle)
            else:
                _dask(
                    tasks,
                    handle,
                    workers=max(n_workers, 0),
                    scheduler=scheduler,
                    compile_cache=cache,
                )
        finally:
            if bar is not None:
                bar.close()
    return SweepSummary(
        points=len(sweep.points),
        completed=counts["completed"],
        skipped=skipped,
        failed=counts["failed"],
        seconds=time.perf_counter() - t0,
        out=str(out),
        tasks=len(tasks),
        compiles=counts["compiles"],
        workers=max(n_workers, 0),
        scheduler=scheduler,
        errors=tuple(errors),
    )
