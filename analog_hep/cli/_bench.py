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
            "toy and digits circuits, a scaling table over batch, width, N and T2, and the "
            "conv chips: digits_cnn at batch 20 (a training step, and its settles per step) "
            "and Table 2's cifar_vgg5 at batch 128 on random 3x32x32 inputs (one step of "
            "each settle timed: minutes on a 2-core CPU; the settle's GFLOP/s next to this "
            "machine's convolution and matrix rates on the same shapes, and a projected "
            "CIFAR-10 epoch). --quick leaves out cifar_vgg5 unless --case names it."
        ),
    )
    p.add_argument("--quick", action="store_true", help="fewer cases and repeats")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--table1-only",
        action="store_true",
        help="only the Table 1 circuit (the same as --case table1)",
    )
    p.add_argument(
        "--case",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this case group (repeatable): table1, toy, digits, scaling, "
        "digits_cnn, cifar_vgg5",
    )
    p.add_argument(
        "--settle-steps",
        type=_args.positive_int,
        default=None,
        metavar="K",
        help="steps per timed settle of the conv cases (default: digits_cnn its T1 and T2, "
        "cifar_vgg5 1)",
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

    from ..studies import run_bench
    from ..studies.bench import CASES

    if args.unroll is not None and args.unroll < 1:
        print(f"analog-hep bench: --unroll: expected an integer >= 1, found {args.unroll}")
        return 2
    if args.table1_only and args.case:
        print("analog-hep bench: --table1-only is --case table1; give one or the other")
        return 2
    unknown = [c for c in args.case or () if c not in CASES]
    if unknown:
        print(f"analog-hep bench: --case: unknown {unknown[0]!r}; known: {', '.join(CASES)}")
        return 2
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print

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
            cases=None if args.case is None else tuple(dict.fromkeys(args.case)),
            settle_steps=args.settle_steps,
        )
    except KeyboardInterrupt:
        result["interrupted"] = True
        log("analog-hep bench: interrupted; the cases above were measured")
        code = 130
    if args.json:
        print_json(result)
    return code
