"""Argument types for numeric options: range-checked at parse time, one clear line each.

Used as ``type=`` in ``add_argument``; a bad value makes argparse print
``analog-hep CMD: error: argument --beta: expected a positive number, found -0.2`` and exit 2
(the command line reads every negative number as a value, see :mod:`analog_hep.cli`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from ..spec import seed_problem

__all__ = [
    "fraction",
    "momentum",
    "nonneg_float",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "seed",
]


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, found {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, found {text}")
    return value


def _checked(kind: type, ok: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = _number(text, kind)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, found {text}")
        return value

    parse.__name__ = expected  # argparse names the type in some messages
    return parse


positive_float = _checked(float, lambda v: v > 0, "a positive number")
"""A finite float > 0 (``--beta``, ``--lr``, ``--residual-tol``)."""
nonneg_float = _checked(float, lambda v: v >= 0, "a number >= 0")
"""A finite float >= 0 (``--noise``, ``--momentum``)."""
fraction = _checked(float, lambda v: 0 <= v <= 1, "a number in 0 ... 1")
"""A float in [0, 1] (``--fallback-fraction``)."""
momentum = _checked(float, lambda v: 0 <= v < 1, "a number in 0 ... 1 (1 excluded)")
"""A float in [0, 1) (``--momentum``)."""
positive_int = _checked(int, lambda v: v >= 1, "an integer >= 1")
"""An int >= 1 (``--epochs``, ``--points``, ``--batch``)."""
nonneg_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
"""An int >= 0 (``--workers``)."""
accumulator_bits = _checked(
    int, lambda v: v == 0 or 2 <= v <= 32, "0 (float32) or an integer in 2 ... 32"
)
"""0 or an int in [2, 32] (``--mp-accumulator-bits``)."""
pulse_cap = _checked(int, lambda v: 1 <= v <= 1024, "an integer in 1 ... 1024")
"""An int in [1, 1024] (``--mp-max-pulses``)."""


def seed(text: str) -> int:
    """A seed: an integer in 0 ... 2**32 - 1 (what JAX's PRNGKey and NumPy take)."""
    value = int(_number(text, int))
    problem = seed_problem(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value
