"""``analog-hep sweep``: run a grid or list of gradcheck or training points, vectorised and on
Dask, into one HDF5 file that a restart continues."""

from __future__ import annotations

import argparse
import sys

from ..errors import SpecError
from . import _args
from ._json import print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep file (grid/list of gradcheck or training points) into one HDF5 file",
        description=(
            "Expand SWEEP.yaml into points, run points of one shape as one vectorised compiled "
            "call and the others as tasks on Dask distributed (a LocalCluster unless "
            "--scheduler is given; in process with --workers 0 or 1), and write one row per "
            "point to OUT as points finish. Rerunning with the same OUT skips finished points. "
            "See docs/studies.md."
        ),
    )
    p.add_argument("sweep", help="sweep YAML file (see docs/studies.md)")
    p.add_argument("--out", required=True, help="HDF5 file of results (continued if it exists)")
    p.add_argument(
        "--workers",
        type=_args.nonneg_int,
        default=None,
        help="LocalCluster worker processes (default: one per CPU, at most one per task; "
        "0 or 1: in this process)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    p.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR",
        help="keep compiled programs in DIR (JAX's persistent cache), here and on every Dask "
        "worker: a restarted sweep and each worker load them instead of compiling again",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..studies import load_sweep, run_sweep

    if args.workers is not None and args.workers < 0:
        raise SpecError(f"--workers: expected an integer >= 0, found {args.workers}")
    if args.workers is not None and args.scheduler is not None:
        raise SpecError("--workers and --scheduler exclude each other (the cluster has workers)")
    sweep = load_sweep(args.sweep)
    quiet = args.json

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if quiet else sys.stdout)

    summary = run_sweep(
        sweep,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.no_progress,
        compile_cache=args.compile_cache,
        log=log,
    )
    if args.json:
        print_json(summary.to_json())
    else:
        where = (
            "in process"
            if summary.workers == 0 and summary.scheduler is None
            else (summary.scheduler or f"a LocalCluster of {summary.workers} workers")
        )
        print(
            f"{summary.out}: {summary.points} points: {summary.completed} computed, "
            f"{summary.skipped} skipped (finished before), {summary.failed} failed; "
            f"{summary.tasks} tasks {where}, {summary.compiles} compiles, "
            f"{summary.seconds:.1f} s"
        )
    return 1 if summary.failed else 0
