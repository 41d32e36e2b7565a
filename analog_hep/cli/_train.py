"""``analog-hep train``: train a chip with hEP through a driver, recorded in HDF5.

Every training setting comes from the circuit's ``training`` section, else from
:data:`analog_hep.spec.DEFAULT_TRAINING` (whose hEP settings are
:class:`analog_hep._hep_settings.HepSettings`' defaults), and each can be overridden by an
option: one per hEP setting, named like it. Before the
chip is fabricated, the chip and a training step are checked against this machine's memory.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import get_args

from .._hep_settings import (
    CircleReaction,
    Guard,
    HepSchedule,
    HepSettings,
    LrSchedule,
    Method,
    UpdatePath,
    UpdateScheme,
)
from ..errors import SpecError
from ..spec import DEFAULT_TRAINING, Circuit
from . import _args
from ._json import print_json

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train a chip with hEP (or classic/symmetric/online EP) through a driver",
        description=(
            "Train the chip of CIRCUIT through a driver (the emulator by default) on a dataset. "
            "Options override the circuit's training section; a circuit without one uses the "
            "defaults of docs/specs.md (in parentheses below). With --out, every epoch is "
            "recorded and checkpointed in one HDF5 file; --resume continues a stopped run."
        ),
    )
    p.add_argument("circuit", help="circuit YAML file or name (e.g. circuits/digits.yaml)")
    p.add_argument("--driver", default="emulator", help="NAME[:KEY=VALUE,...] or tcp://HOST:PORT")
    p.add_argument(
        "--dataset",
        default=None,
        help=(
            "digits | mnist:DIR | mnist-test:DIR | fashion-mnist:DIR | cifar10:DIR | "
            "cifar100:DIR | cifar100-coarse:DIR | imagenet32:DIR | synthetic[:FxC]; an image "
            "set may end in ?augment=crop,flip&normalize=channel (quote it in the shell; "
            "docs/data.md) (default: digits, or synthetic sized to a circuit no shipped "
            "dataset fits)"
        ),
    )
    p.add_argument(
        "--epochs",
        type=_args.positive_int,
        help=f"passes over the data ({DEFAULT_TRAINING.epochs})",
    )
    defaults = HepSettings()  # shown in the help: a circuit's training section comes first
    p.add_argument("--method", choices=get_args(Method), help=f"estimator ({defaults.method})")
    p.add_argument(
        "--points",
        type=_args.positive_int,
        help=f"N nudge points (classic: repeats) ({defaults.points})",
    )
    p.add_argument(
        "--beta", type=_args.positive_float, help=f"|beta| (dimensionless) ({defaults.beta})"
    )
    p.add_argument("--lr", type=_args.positive_float, help=f"SGD learning rate ({defaults.lr})")
    p.add_argument(
        "--momentum",
        type=_args.momentum,
        help=f"SGD momentum, 0 ... 1 (excluded) ({defaults.momentum})",
    )
    p.add_argument(
        "--schedule",
        choices=get_args(LrSchedule),
        help=f"learning-rate schedule ({defaults.schedule})",
    )
    p.add_argument(
        "--batch", type=_args.positive_int, help=f"samples per step ({DEFAULT_TRAINING.batch})"
    )
    p.add_argument(
        "--residual-tol",
        type=_args.positive_float,
        help=(
            "largest settle residual (activity units) of a state used for learning "
            f"({defaults.residual_tol})"
        ),
    )
    p.add_argument(
        "--update",
        choices=get_args(UpdatePath),
        help=f"how updates reach the chip ({defaults.update})",
    )
    p.add_argument(
        "--online-periods",
        type=_args.positive_int,
        help=f"online: nudge periods per sample ({defaults.online_periods})",
    )
    p.add_argument(
        "--online-steps",
        type=_args.positive_int,
        help=f"online: settle steps per nudge point ({defaults.online_steps})",
    )
    p.add_argument(
        "--fallback-fraction",
        type=_args.fraction,
        help=(
            "above this fraction of unsettled samples a step falls back to real nudges "
            f"({defaults.fallback_fraction})"
        ),
    )
    p.add_argument(
        "--circle-check",
        choices=get_args(CircleReaction),
        help=(
            "when the nudge circle probably encloses a singularity (docs/gradients.md) "
            f"({defaults.circle_check})"
        ),
    )
    p.add_argument(
        "--hep-schedule",
        choices=get_args(HepSchedule),
        help=(
            "hEP points settled all from the free state (parallel) or in turn around the "
            "circle, each from the previous one (sequential); auto: sequential on a noisy "
            f"chip (docs/gradients.md) ({defaults.hep_schedule})"
        ),
    )
    p.add_argument(
        "--ramp-points",
        type=_args.nonneg_int,
        help=f"sequential hEP: real points from 0 to the first one ({defaults.ramp_points})",
    )
    p.add_argument(
        "--guard",
        choices=get_args(Guard),
        help=(
            "samples whose nudged points did not settle: drop, keep_finite, or a second "
            f"settle with symmetric or half_beta nudges (docs/gradients.md) ({defaults.guard})"
        ),
    )
    p.add_argument(
        "--update-scheme",
        choices=get_args(UpdateScheme),
        help=(
            "how the learning signal becomes device pulses: direct, mixed_precision (digital "
            "accumulator) or tiki_taka (the chip's fast and slow arrays; docs/devices.md) "
            f"({defaults.update_scheme})"
        ),
    )
    p.add_argument(
        "--mp-threshold",
        type=_args.positive_float,
        help=f"mixed_precision: send pulses at |chi| >= this x dw_min ({defaults.mp_threshold})",
    )
    p.add_argument(
        "--mp-accumulator-bits",
        type=_args.accumulator_bits,
        help=f"mixed_precision: accumulator bits, 0 = float32 ({defaults.mp_accumulator_bits})",
    )
    p.add_argument(
        "--mp-max-pulses",
        type=_args.pulse_cap,
        help=f"mixed_precision: most pulses per weight and step ({defaults.mp_max_pulses})",
    )
    p.add_argument(
        "--mp-dw-min",
        type=_args.nonneg_float,
        help=(
            "mixed_precision: one pulse's weight change; 0 = as the chip describes it "
            f"({defaults.mp_dw_min})"
        ),
    )
    p.add_argument("--noise", type=_args.nonneg_float, help="override the neuron noise std")
    p.add_argument(
        "--seed", type=_args.seed, help="run seed (data order, noise); default: circuit seed"
    )
    p.add_argument(
        "--max-train", type=_args.positive_int, help="use only the first N training samples"
    )
    p.add_argument("--out", help="HDF5 record of the run (RUN.h5)")
    p.add_argument("--resume", action="store_true", help="continue the run recorded in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# (features, classes) of every built-in dataset, so that the default dataset is chosen
# before anything is loaded or fabricated; the ones read from the user's files are named in
# the error for a circuit of their shape.
_DATASET_SHAPES = {
    "digits": (64, 10),
    "mnist:DIR, mnist-test:DIR or fashion-mnist:DIR": (784, 10),
    "cifar10:DIR": (3072, 10),
    "cifar100:DIR": (3072, 100),
    "cifar100-coarse:DIR": (3072, 20),
    "imagenet32:DIR": (3072, 1000),
}


def default_dataset(circuit: Circuit, given: str | None) -> tuple[str, str | None]:
    """The dataset spec to train ``circuit`` on, and a note when it was chosen for it.

    ``given`` wins (``synthetic`` without a shape is sized to the circuit). Without one:
    digits; for a circuit of the shape of a data set read from the user's files (MNIST,
    CIFAR, ImageNet 32x32), a one-line error naming it;
    for a shape no shipped dataset has (the toy chip), ``synthetic:FxC`` of that shape.
    """
    spec = circuit.spec
    features, classes = spec.layers[0], spec.readout.classes
    sized = f"synthetic:{features}x{classes}"
    if given is not None:
        return (sized, None) if given.strip().lower() == "synthetic" else (given, None)
    if (features, classes) == _DATASET_SHAPES["digits"]:
        return "digits", None
    fitting = [name for name, shape in _DATASET_SHAPES.items() if shape == (features, classes)]
    if fitting:
        raise SpecError(
            f"{circuit.path or spec.name}: circuit {spec.name!r} has {features} inputs and "
            f"{classes} classes: pass --dataset {' or '.join(fitting)} (docs/data.md)"
        )
    return sized, (
        f"note: no shipped dataset has {features} inputs and {classes} classes: training "
        f"circuit {spec.name!r} on {sized}, a synthetic linear-teacher task (docs/data.md)"
    )


def _is_local_emulator(driver: str) -> bool:
    """Whether the chip is fabricated in this process (so its memory is this machine's)."""
    return driver.split(":", 1)[0] == "emulator"


def run(args: argparse.Namespace) -> int:
    """Load the circuit, build the options, check memory, train; print the result."""
    from ..spec import check_fits, load_circuit
    from ..studies import TrainOptions, train
    from ..studies.training._train import loss_text

    if args.resume and not args.out:
        raise SpecError("--resume needs --out RUN.h5 (the record to continue)")
    circuit = load_circuit(args.circuit)
    dataset, dataset_note = default_dataset(circuit, args.dataset)
    opts = TrainOptions.from_circuit(
        circuit,
        **{f.name: getattr(args, f.name) for f in fields(HepSettings)},  # one option each
        batch=args.batch,
        epochs=args.epochs,
        seed=args.seed,
        dataset=dataset,
        driver=args.driver,
        max_train=args.max_train,
        noise=args.noise,
    )
    log = (lambda s: print(s, file=sys.stderr)) if args.json else print
    if dataset_note is not None:
        log(dataset_note)
    if circuit.spec.training is None:
        log(
            f"note: {circuit.spec.name} has no training section: using the defaults "
            "(docs/specs.md) where no option is given"
        )
    if _is_local_emulator(opts.driver):  # refuse before fabricating a chip that cannot fit
        check_fits(
            circuit.spec,
            batch=opts.batch,
            points=opts.points,
            path=circuit.path,
            text=circuit.text,
        )
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
        print_json(out)
    else:
        print(
            f"{res.circuit}: {res.method}, {res.epochs} epochs: test accuracy "
            f"{res.test_accuracy:.4f} ({loss_text(res.test_loss, res.test_nonfinite)}), train "
            "accuracy "
            f"{res.train_accuracy:.4f}; dropped updates {res.dropped_updates}, dropped samples "
            f"{res.dropped_samples}, N=2 fallbacks {res.fallback_steps}; {res.seconds:.1f} s"
        )
    return 0
