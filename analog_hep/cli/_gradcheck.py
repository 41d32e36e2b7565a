"""``analog-hep gradcheck``: compare an EP gradient estimate with the exact gradient."""

from __future__ import annotations

import argparse
import math

from ..errors import SpecError
from . import _args
from ._json import print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="estimate the gradient with hEP/EP on one batch and compare with the exact one",
        description=(
            "Fabricate the circuit's chip, settle it free and at the nudge schedule of METHOD, "
            "form the estimate from the settled states, and compare it with the implicit "
            "gradient of the loss at the noiseless free fixed point."
        ),
    )
    p.add_argument("circuit", help="circuit YAML file or name (e.g. toy)")
    p.add_argument("--method", choices=("hep", "classic", "symmetric"), default="hep")
    p.add_argument("--points", type=int, default=None, help="N (hep: >= 2; classic: repeats)")
    p.add_argument("--beta", type=float, required=True, help="|beta| (dimensionless)")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--seed", type=_args.seed, default=0, help="seed of inputs and noise")
    p.add_argument("--noise", type=float, default=None, help="neuron noise std per step")
    p.add_argument("--free-steps", type=int, default=None, help="override T1")
    p.add_argument("--nudge-steps", type=int, default=None, help="override T2")
    p.add_argument("--dataset", default=None, help="use a batch of real data (e.g. digits)")
    p.add_argument(
        "--start",
        choices=("free", "previous"),
        default="free",
        help="nudge points settle from the free state, or each from the previous point",
    )
    p.add_argument("--x64", action="store_true", help="settle in float64 (precision studies)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    from ..spec import load_circuit
    from ..studies import gradcheck

    if args.points is None:
        args.points = {"hep": 8, "classic": 1, "symmetric": 2}[args.method]
    for name in ("points", "batch"):
        if getattr(args, name) < 1:
            raise SpecError(f"--{name}: expected an integer >= 1, found {getattr(args, name)}")
    if not args.beta > 0:
        raise SpecError(f"--beta: expected a positive number, found {args.beta}")
    circuit = load_circuit(args.circuit)
    from ..spec import check_fits  # refuse a chip that cannot fit, before fabricating it

    check_fits(
        circuit.spec, batch=args.batch, points=args.points, path=circuit.path, text=circuit.text
    )
    inputs = None
    if args.dataset is not None:
        from ..data import load_dataset

        ds = load_dataset(args.dataset)
        n_in = circuit.spec.layers[0]
        if ds.n_features != n_in or ds.n_classes != circuit.spec.readout.classes:
            raise SpecError(
                f"--dataset {args.dataset}: {ds.n_features} features / {ds.n_classes} classes "
                f"do not fit circuit {circuit.spec.name!r} ({n_in} inputs, "
                f"{circuit.spec.readout.classes} classes)"
            )
        shape = circuit.spec.input_shape
        if shape is not None and ds.image_shape is not None and tuple(shape) != ds.image_shape:
            # Same number of features, other layout: a conv chip would read garbage patches.
            raise SpecError(
                f"--dataset {args.dataset}: images of shape {list(ds.image_shape)} do not fit "
                f"circuit {circuit.spec.name!r} (input_shape {list(shape)})"
            )
        batch = next(ds.batches("train", args.batch, seed=args.seed, epoch=0))
        inputs = (batch[0], ds.one_hot(batch[1]))
    try:
        res = gradcheck(
            circuit,
            method=args.method,
            points=args.points,
            beta=args.beta,
            batch=args.batch,
            seed=args.seed,
            noise=args.noise,
            free_steps=args.free_steps,
            nudge_steps=args.nudge_steps,
            inputs=inputs,
            start=args.start,
        )
    except ValueError as err:
        raise SpecError(str(err)) from None
    if args.json:
        print_json(res.to_json())
        return 0
    print(
        f"{res.circuit}: {res.method} N={res.points} |beta|={res.beta:g} batch={res.batch} "
        f"noise={res.noise:g} T1={res.free_steps} T2={res.nudge_steps}"
    )
    print(f"  free residual {res.free_residual:.2e}   nudge residual {res.nudge_residual:.2e}")
    print(f"  {'crossbar':<10} {'cosine':>12} {'rel. error':>12}")
    for n in res.cosine:
        print(f"  {n:<10} {res.cosine[n]:>12.6f} {res.rel_error[n]:>12.3e}")
    print(f"  {'total':<10} {res.cosine_total:>12.6f} {res.rel_error_total:>12.3e}")
    if res.circle_ratio and not math.isnan(res.circle_batch_ratio):
        # The nudge circle's own check (docs/gradients.md): |c_-1| / |c_1| of the states.
        verdict = (
            "probably encloses a singularity: estimate not trusted"
            if res.circle_alarm
            else "inside the holomorphic region"
        )
        print(
            f"  circle |c_-1|/|c_1|: batch {res.circle_batch_ratio:.2e}, max "
            f"{max(res.circle_ratio):.2e}, threshold {res.circle_threshold:.3g} "
            f"({res.circle_flagged}/{res.batch} samples above): {verdict}"
        )
    print(f"  loss {res.loss:.4f}   {res.seconds:.1f} s")
    return 0
