"""``analog-hep bench``: training-step speed against this machine's matrix-product rate."""

from __future__ import annotations

import argparse

from . import _args
from ._json import print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time full hEP training steps and compare with the machine's matmul rate",
        description=(
            "Times a full hEP training step (free settle, N nudged settles, estimate, update) "
            "through the emulator driver for the Table 1 circuit (784-256-256-10, T1=200, "
            "T2=50, N=10, |beta|=0.4) at batch 20 and 128 with neuron noise 0 and 0.04, the "
            "toy and digits circuits, and a scaling table over batch, width, N and T2."
        ),
    )
    p.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--table1-only",
        action="store_true",
        help="only the Table 1 circuit (no toy, digits, scaling)",
    )
    p.add_argument(
        "--unroll",
        type=_args.positive_int,
        default=None,
        metavar="K",
        help="settle steps per compiled loop iteration (emulator option unroll; default 1)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    from ..studies import BENCH_HEADER, run_bench

    if args.unroll is not None and args.unroll < 1:
        print(f"analog-hep bench: --unroll: expected an integer >= 1, found {args.unroll}")
        return 2
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    log(BENCH_HEADER)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A time limit (SIGTERM) still gets the cases measured so far, marked "interrupted".
    signal.signal(signal.SIGTERM, stop)
    result: dict = {}
    code = 0
    try:
        run_bench(
            quick=args.quick,
            log=log,
            table1_only=args.table1_only,
            unroll=args.unroll,
            result=result,
        )
    except KeyboardInterrupt:
        result["interrupted"] = True
        log("analog-hep bench: interrupted; the cases above were measured")
        code = 130
    if args.json:
        print_json(result)
    return code
