"""``analog-hep drift``: a trained chip evaluated at times after its last programming.

Reads a run record (``analog-hep train --out RUN.h5``), rebuilds its emulated chip from the
last checkpoint, lets the conductances drift under each card's power-law model and prints,
per time, the test accuracy without and with global drift compensation and the mean
``G(t)/G(t0)`` (docs/devices.md, "Drift after training"). A chip whose cards have no drift
model gets one note line and the (constant) table.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..errors import SpecError
from . import _args
from ._json import print_json

__all__ = ["parse_times", "register", "run"]

_DEFAULT_TIMES = "1,60,3600,86400,2.6e6,3.15e7"


def parse_times(text: str) -> tuple[float, ...]:
    """``"1,60,3.6e3"`` -> ``(1.0, 60.0, 3600.0)``: seconds, each a finite number > 0."""
    out = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated seconds > 0, found {item.strip()!r}"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated seconds > 0, found {item.strip()}"
            )
        out.append(value)
    return tuple(out)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``drift`` subcommand."""
    p = sub.add_parser(
        "drift",
        help="test accuracy of a trained chip at times after programming, as its devices drift",
        description=(
            "Evaluate the chip of a run record (analog-hep train --out RUN.h5) at times after "
            "its last programming under each card's power-law conductance drift, with and "
            "without global drift compensation (a reference read rescales each crossbar's "
            "outputs). Cards without a drift model do not drift (a note says so)."
        ),
    )
    p.add_argument("record", metavar="RUN.h5", help="run record of analog-hep train --out")
    p.add_argument(
        "--times",
        type=parse_times,
        default=parse_times(_DEFAULT_TIMES),
        help=f"seconds after programming, comma-separated ({_DEFAULT_TIMES})",
    )
    p.add_argument(
        "--seed", type=_args.seed, help="evaluation noise seed (default: the run's seed)"
    )
    p.add_argument("--dataset", default=None, help="data set to test on (default: the run's)")
    p.add_argument(
        "--program",
        choices=("one_sided", "balanced"),
        default=None,
        help=(
            "first program the trained weights once into fresh pairs of this form, as a chip "
            "is deployed (one_sided: one device of each pair at g_min, the least drift "
            "noise); default: the conductances as trained"
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="OUT.png", help="accuracy vs time (needs matplotlib)")
    p.set_defaults(func=run)


def _plot(result: Any, out: str) -> None:
    """Accuracy against time (log x), without and with compensation, as a PNG."""
    try:
        import matplotlib
    except ImportError:
        raise SpecError(
            f"--plot {out}: needs matplotlib: pip install 'analog-hep[plots]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p.t_s for p in result.points]
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(t, [100 * p.accuracy for p in result.points], "o-", label="drifted")
    ax.plot(
        t,
        [100 * p.accuracy_compensated for p in result.points],
        "s-",
        label="global drift compensation",
    )
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{result.circuit}: drift after training")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    try:
        fig.savefig(out, dpi=120)
    except OSError as err:
        raise SpecError(f"--plot {out}: cannot write ({err.strerror or err})") from None
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """Evaluate the record at ``--times``; print the table (or JSON); draw ``--plot``."""
    from ..studies.training._drift import evaluate_drift

    notes: list[str] = []
    result = evaluate_drift(
        args.record,
        args.times,
        seed=args.seed,
        dataset=args.dataset,
        program=args.program,
        log=notes.append,
    )
    if args.plot:
        _plot(result, args.plot)
    if args.json:
        out = result.as_dict()
        if args.plot:
            out["plot"] = args.plot
        print_json(out)
        return 0
    for note in notes:
        print(note)
    print(
        f"{result.circuit}: {result.record}, {result.checkpoint} (after epoch {result.epoch}), "
        f"test split of {result.dataset}, seed {result.seed}; recorded test accuracy "
        f"{result.recorded_test_accuracy:.4f}"
    )
    if result.programmed is not None:
        print(f"weights programmed once into {result.programmed} pairs before the clock started")
    cards = sorted({d["card"] for d in result.drift.values() if d is not None})
    for card in cards:
        d = next(v for v in result.drift.values() if v is not None and v["card"] == card)
        where = ", ".join(n for n, v in result.drift.items() if v is not None and v["card"] == card)
        print(
            f"drift: {card} ({where}): G(t) = G(t0) (t/t0)^-nu, nu {d['nu']:g} "
            f"(d2d {d['nu_dtod']:g}), t0 {d['t0_s']:g} s"
        )
    print(f"{'t (s)':>10}  {'time':>9}  {'accuracy':>8}  {'compensated':>11}  {'G(t)/G(t0)':>10}")
    for p in result.points:
        print(
            f"{p.t_s:>10.3g}  {p.time:>9}  {p.accuracy:>8.4f}  {p.accuracy_compensated:>11.4f}  "
            f"{p.g_ratio:>10.4f}"
        )
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
