"""``analog-hep stability-map``: the settle residual over a grid of complex beta (Fig. 2b)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SpecError
from . import _args
from ._json import print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stability-map",
        help="map where the nudged chip settles over the complex beta plane (paper Fig. 2b)",
        description=(
            "Fabricate the circuit's chip (noise off), settle it free, then settle it from the "
            "free state at every beta of a grid over [-R, R] x [-R, R] i; store the settle "
            "residual and the distance from the free state in HDF5 and draw them."
        ),
    )
    p.add_argument("circuit", help="circuit YAML file or name (e.g. toy)")
    p.add_argument(
        "--extent",
        type=_args.positive_float,
        default=1.5,
        metavar="R",
        help="half-width of the grid in Re and Im beta (default 1.5: the paper's width 3)",
    )
    p.add_argument(
        "--resolution",
        type=_args.positive_int,
        default=200,
        metavar="M",
        help="M: (M+1)^2 grid points (default 200; the paper used 1000)",
    )
    p.add_argument(
        "--steps",
        type=_args.positive_int,
        default=200,
        help="nudged settle steps per point (default 200, as the paper)",
    )
    p.add_argument(
        "--free-steps", type=_args.positive_int, default=None, help="override T1 of the free state"
    )
    p.add_argument(
        "--tol",
        type=_args.positive_float,
        default=1e-4,
        help="largest residual counted as settled (activity units, default 1e-4)",
    )
    p.add_argument(
        "--batch",
        type=_args.positive_int,
        default=1,
        help="random samples (default 1, as the paper)",
    )
    p.add_argument("--seed", type=_args.seed, default=0, help="seed of the random samples")
    p.add_argument(
        "--circle",
        type=_args.positive_float,
        action="append",
        default=[],
        metavar="RADIUS",
        help="draw the hEP circle |beta| = RADIUS (repeatable)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="HDF5 file (default: stability_<circuit>.h5); the PNG goes next to it",
    )
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..spec import load_circuit
    from ..studies import plot_stability_map, save_stability_map, stability_map

    for name in ("resolution", "steps", "batch"):
        if getattr(args, name) < 1:
            raise SpecError(f"--{name}: expected an integer >= 1, found {getattr(args, name)}")
    for name in ("extent", "tol"):
        if not getattr(args, name) > 0:
            raise SpecError(f"--{name}: expected a positive number, found {getattr(args, name)}")
    if args.free_steps is not None and args.free_steps < 1:
        raise SpecError(f"--free-steps: expected an integer >= 1, found {args.free_steps}")
    circuit = load_circuit(args.circuit)
    smap = stability_map(
        circuit,
        extent=args.extent,
        resolution=args.resolution,
        steps=args.steps,
        tol=args.tol,
        batch=args.batch,
        seed=args.seed,
        free_steps=args.free_steps,
    )
    out = Path(args.out or f"stability_{circuit.spec.name}.h5")
    save_stability_map(smap, out)
    png = None
    if not args.no_plot:
        try:
            png = plot_stability_map(smap, out.with_suffix(".png"), circles=args.circle)
        except ImportError:
            print("note: matplotlib is not installed (pip install analog-hep[plots]); no PNG")
    info = smap.summary() | {"out": str(out), "png": None if png is None else str(png)}
    if args.json:
        print_json(info)
        return 0
    print(
        f"{smap.circuit}: {smap.resolution + 1}^2 betas over [-{smap.extent:g}, "
        f"{smap.extent:g}]^2, {smap.steps} steps: {100 * smap.stable_fraction:.1f}% settled "
        f"below {smap.tol:g}; every |beta| < {smap.stable_radius:.3g} settles"
    )
    print(f"  wrote {out}" + (f" and {png}" if png else "") + f" ({smap.seconds:.1f} s)")
    return 0
