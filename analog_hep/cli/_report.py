"""``analog-hep report``: PNG figures and a Markdown summary from HDF5 results."""

from __future__ import annotations

import argparse

from ._json import print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="draw figures and write a Markdown summary of sweeps, runs and stability maps",
        description=(
            "Read sweep files (analog-hep sweep), run records (analog-hep train --out) and "
            "stability maps (analog-hep stability-map), draw every figure they support as PNG "
            "into DIR and write DIR/report.md with the tables. Needs matplotlib (the plots "
            "extra)."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE.h5", help="HDF5 files to report on")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SpecError
    from ..studies import report

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SpecError("report needs matplotlib: pip install 'analog-hep[plots]'") from None
    rep = report(args.files, args.out)
    if args.json:
        tables = {
            k: [{c: (v.item() if hasattr(v, "item") else v) for c, v in r.items()} for r in rows]
            for k, rows in rep.tables.items()
        }
        print_json(
            {
                "markdown": str(rep.markdown),
                "figures": [str(f) for f in rep.figures],
                "tables": tables,
                "extras": rep.extras,
            }
        )
        return 0
    print(f"wrote {rep.markdown} and {len(rep.figures)} figures:")
    for f in rep.figures:
        print(f"  {f}")
    return 0
