"""Run a sweep: its tasks serially or on Dask distributed, rows written as they finish.

Planning is :func:`~._tasks.plan_tasks`; one task runs in :func:`~._sweep.run_task`.
Execution: in process (``workers`` 0 or 1, or a single task), or as Dask tasks on a
``LocalCluster`` (``workers`` processes, one thread each) or on the scheduler at
``scheduler``. The driver process writes each task's rows to the sweep file as the task
finishes (:class:`~analog_hep.studies.SweepFile`); a restarted sweep skips the points the
file holds. A failed point is reported and gets no row, so a restart retries it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from ...errors import SpecError
from ._sweep import _message, run_task
from ._sweep_file import SweepFile
from ._sweep_load import load_sweep
from ._sweep_spec import Sweep
from ._tasks import Task, TaskResult, _cpus, plan_tasks

__all__ = ["SweepSummary", "run_sweep", "use_compile_cache"]


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
            dashboard_address=":0",  # a free port: never a clash with another cluster
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


def runs_folder(out: str | Path) -> Path:
    """Where a training sweep keeps the records of its unfinished runs: ``OUT.runs/``
    beside the sweep file (a finished run's record is removed once its row and tables are
    in the sweep file)."""
    out = Path(out).resolve()
    return out.with_name(out.name + ".runs")


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
        if sweep.spec.kind == "train":
            runs = runs_folder(out)
            tasks = [dataclasses.replace(t, runs_dir=str(runs)) for t in tasks]
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
