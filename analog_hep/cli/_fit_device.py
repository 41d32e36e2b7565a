"""``analog-hep fit-device``: fit a device card to measured pulse-response data."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import SpecError
from . import _args
from ._json import print_json

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``fit-device`` subcommand."""
    from ..spec.device_models import FIT_MODELS  # the registry's models with a fit

    p = sub.add_parser(
        "fit-device",
        help="fit a device card to measured pulse-response data (CSV)",
        description=(
            "Fit a device card to measured pulse-response data. The CSV has a header and one "
            "row per pulse: device,pulse,direction,conductance_S (direction +1 potentiating, "
            "-1 depressing, 0 a read without a pulse; conductance read after the pulse, in "
            "siemens; extra columns ignored). Prints the fitted parameters with standard "
            "errors and the residual, and writes a card that loads."
        ),
    )
    p.add_argument("measurements", metavar="MEASUREMENTS.csv", help="pulse-response CSV file")
    p.add_argument("--model", required=True, choices=FIT_MODELS, help="response model to fit")
    p.add_argument("--out", required=True, metavar="CARD.yaml", help="where to write the card")
    p.add_argument("--name", default=None, help="card name (default: the stem of --out)")
    p.add_argument(
        "--nodes",
        type=_args.positive_int,
        default=11,
        help="piecewise: number of table nodes (default 11)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.4g}"


def run(args: argparse.Namespace) -> int:
    """Fit, print, write the card; ``SpecError`` for bad input (exit 2)."""
    from ..studies import fit_device, read_measurements, result_card_yaml

    out = Path(args.out)
    name = args.name if args.name is not None else out.stem
    if not name:
        raise SpecError(f"--out: expected a file name like devices/NAME.yaml, found {args.out!r}")
    data = read_measurements(args.measurements)
    result = fit_device(data, args.model, name=name, nodes=args.nodes)
    text = result_card_yaml(result)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise SpecError(f"--out: cannot write {str(out)!r}: {err.strerror}") from None
    if args.json:
        summary = result.summary()
        summary["out"] = str(out)
        print_json(summary)
        return 0
    w = sys.stdout.write
    w(
        f"fit-device: model {result.model}, {result.n_devices} device(s), "
        f"{result.n_pulses} steps ({result.n_skipped} skipped)\n"
    )
    w(f"  {'parameter':<22} {'value':>12}  {'std error':>10}\n")
    for k, v in result.params.items():
        w(f"  {k:<22} {_fmt(v):>12}  {_fmt(result.stderr.get(k, float('nan'))):>10}\n")
    w(f"  {'dw_min_std (c2c)':<22} {_fmt(result.dw_min_std):>12}\n")
    for k, v in result.d2d.items():
        w(f"  {k + ' (d2d)':<22} {_fmt(v):>12}\n")
    w(f"  rms step residual: {result.rms_residual_S:.4g} S\n")
    for msg in result.warnings:
        w(f"  warning: {msg}\n")
    w(f"wrote {out}\n")
    return 0
