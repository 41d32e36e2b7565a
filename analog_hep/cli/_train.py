"""``analog-hep train``: train a chip with hEP through a driver, recorded in HDF5."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a chip with hEP (or classic/symmetric/online EP) through a driver",
        description=(
            "Train the chip of CIRCUIT through a driver (the emulator by default) on a dataset. "
            "Options override the circuit's training section. With --out, every epoch is "
            "recorded and checkpointed in one HDF5 file; --resume continues a stopped run."
        ),
    )
    p.add_argument("circuit", help="circuit YAML file or name (e.g. circuits/digits.yaml)")
    p.add_argument("--driver", default="emulator", help="NAME[:KEY=VALUE,...] or tcp://HOST:PORT")
    p.add_argument(
        "--dataset",
        default="digits",
        help="digits | mnist:DIR | mnist-test:DIR | fashion-mnist:DIR",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument("--method", choices=("hep", "classic", "symmetric", "online"))
    p.add_argument("--points", type=int, help="N nudge points (classic: repeats)")
    p.add_argument("--beta", type=float, help="|beta|")
    p.add_argument("--lr", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--batch", type=int)
    p.add_argument("--update", choices=("auto", "outer_product", "program"))
    p.add_argument("--noise", type=float, help="override the neuron noise std")
    p.add_argument("--seed", type=int, help="run seed (data order, noise); default: circuit seed")
    p.add_argument("--max-train", type=int, help="use only the first N training samples")
    p.add_argument("--out", help="HDF5 record of the run (RUN.h5)")
    p.add_argument("--resume", action="store_true", help="continue the run recorded in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SpecError
    from ..spec import load_circuit
    from ..studies import TrainOptions, train

    if args.resume and not args.out:
        raise SpecError("--resume needs --out RUN.h5 (the record to continue)")
    circuit = load_circuit(args.circuit)
    for name in ("epochs", "points", "batch", "max_train"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise SpecError(f"--{name.replace('_', '-')}: expected an integer >= 1, found {v}")
    opts = TrainOptions.from_circuit(
        circuit,
        method=args.method,
        points=args.points,
        beta=args.beta,
        batch=args.batch,
        epochs=args.epochs,
        lr=args.lr,
        momentum=args.momentum,
        update=args.update,
        seed=args.seed,
        dataset=args.dataset,
        driver=args.driver,
        max_train=args.max_train,
        noise=args.noise,
    )
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    res = train(
        circuit,
        opts,
        out=args.out,
        resume=args.resume,
        progress=not (args.no_progress or args.json),
        log=log,
    )
    if args.json:
        out = {k: v for k, v in res.__dict__.items()}
        print(json.dumps(out))
    else:
        print(
            f"{res.circuit}: {res.method}, {res.epochs} epochs: test accuracy "
            f"{res.test_accuracy:.4f} (loss {res.test_loss:.4f}), train accuracy "
            f"{res.train_accuracy:.4f}; dropped updates {res.dropped_updates}, dropped samples "
            f"{res.dropped_samples}, N=2 fallbacks {res.fallback_steps}; {res.seconds:.1f} s"
        )
    return 0
