"""``analog-hep conformance``: run the driver conformance kit against a driver."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..drivers import CHECKS

    p = sub.add_parser(
        "conformance",
        help="check that a driver meets the driver contract (structure, schedules, updates, "
        "gradients)",
        description=(
            "Run the conformance kit (docs/drivers.md) against a driver on a small circuit: "
            "structure and capabilities, validation before any I/O, schedule and update "
            "semantics, typed failures, and the symmetric (and hEP) gradient against the "
            "emulator's exact gradient. Exit code 0 when every check passed or was skipped, "
            "1 when one failed."
        ),
    )
    p.add_argument("--driver", required=True, help="NAME[:KEY=VALUE,...] or tcp://HOST:PORT[?...]")
    p.add_argument("--circuit", default="toy", help="circuit YAML file or name (default toy)")
    p.add_argument("--seed", type=int, default=0, help="run seed passed to the driver")
    p.add_argument(
        "--check",
        action="append",
        choices=tuple(CHECKS),
        help="run only this check (repeatable); default: all",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..drivers import run_conformance
    from ..spec import load_circuit

    circuit = load_circuit(args.circuit)
    report = run_conformance(args.driver, circuit, seed=args.seed, checks=args.check)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        for r in report.results:
            print(f"{r.status.upper():7s} {r.name:18s} {r.seconds:6.2f} s  {r.message}")
        n_fail = sum(r.status == "failed" for r in report.results)
        verdict = "conforms" if report.passed else f"does NOT conform ({n_fail} failed)"
        print(f"driver {report.driver} on circuit {report.circuit}: {verdict}")
    return 0 if report.passed else 1
