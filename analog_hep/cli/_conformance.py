"""``analog-hep conformance``: run the driver conformance kit against a driver."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import _args
from ._json import print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..conformance import CHECKS

    p = sub.add_parser(
        "conformance",
        help="check that a driver meets the driver contract (structure, schedules, updates, "
        "gradients)",
        description=(
            "Run the conformance kit (docs/drivers.md) against a driver on a small circuit: "
            "structure and capabilities, validation before any I/O, schedule and update "
            "semantics, typed failures, and the symmetric (and hEP) gradient against the "
            "emulator's exact gradient. Exit code 0 when every check passed or was skipped, "
            "1 when one failed, 2 when the driver cannot be opened (unknown name, bad options, "
            "unreachable address)."
        ),
    )
    p.add_argument("--driver", required=True, help="NAME[:KEY=VALUE,...] or tcp://HOST:PORT[?...]")
    p.add_argument("--circuit", default="toy", help="circuit YAML file or name (default toy)")
    p.add_argument("--seed", type=_args.seed, default=0, help="run seed passed to the driver")
    p.add_argument(
        "--check",
        action="append",
        choices=tuple(CHECKS),
        help="run only this check (repeatable); default: all",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..conformance import run_conformance
    from ..spec import load_circuit

    circuit = load_circuit(args.circuit)
    if not _opens(args.driver, circuit, args.seed):
        return 1
    report = run_conformance(args.driver, circuit, seed=args.seed, checks=args.check)
    if args.json:
        print_json(report.to_json())
    else:
        for r in report.results:
            print(f"{r.status.upper():7s} {r.name:18s} {r.seconds:6.2f} s  {r.message}")
        n_fail = sum(r.status == "failed" for r in report.results)
        verdict = "conforms" if report.passed else f"does NOT conform ({n_fail} failed)"
        print(f"driver {report.driver} on circuit {report.circuit}: {verdict}")
    return 0 if report.passed else 1


def _opens(arg: str, circuit: Any, seed: int) -> bool:
    """Open and close the driver once, so that one that cannot be opened is one line, not a
    failure of every check.

    **Returns:** ``True`` when it opened; ``False`` (after printing one line) when its
    factory raised an untyped exception, a defect of the driver (exit code 1).

    **Raises:** :class:`SpecError` (exit code 2) when it raised a typed error: an unknown
    name, a bad option or an unreachable address is the caller's to fix.
    """
    from ..drivers import open_driver
    from ..errors import AnalogHepError, SpecError

    try:
        open_driver(arg, circuit, seed=seed).close()
    except AnalogHepError as err:
        raise SpecError(f"cannot open driver {arg!r}: {type(err).__name__}: {err}") from None
    except Exception as err:
        print(
            f"analog-hep conformance: driver {arg!r} does NOT conform: opening it raised "
            f"{type(err).__name__} ({err}); a driver raises the typed errors of "
            "analog_hep.errors (docs/drivers.md)",
            file=sys.stderr,
        )
        return False
    return True
