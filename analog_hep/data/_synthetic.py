"""A synthetic teacher task of any shape, for circuits no real dataset fits (the toy chip).

``synthetic:FxC`` draws ``F`` inputs uniformly in ``[0, 1]`` and labels each sample with the
argmax of a fixed random linear teacher ``T (x - 1/2)`` (``T`` a ``C x F`` standard normal
matrix): a linearly separable task, so any chip with ``F`` inputs and ``C`` classes can learn
it, and the same spec always gives the same data (NumPy generator seeded with 0).
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import SpecError

__all__ = ["SYNTHETIC_SPEC", "parse_synthetic", "synthetic_split"]

SYNTHETIC_SPEC = "synthetic:FxC (e.g. synthetic:6x4)"
_N_TRAIN, _N_TEST = 2000, 500
_MAX_FEATURES = 100_000  # a dataset of 2,500 rows of this width is ~1 GB of float32


def parse_synthetic(spec: str) -> tuple[int, int]:
    """``"synthetic:6x4"`` -> ``(6, 4)`` features and classes; one SpecError line otherwise."""
    m = re.fullmatch(r"\s*synthetic:(\d+)x(\d+)\s*", spec, flags=re.IGNORECASE)
    if m is None:
        raise SpecError(f"dataset spec {spec!r}: expected {SYNTHETIC_SPEC}")
    features, classes = int(m.group(1)), int(m.group(2))
    if not 1 <= features <= _MAX_FEATURES or not 2 <= classes <= features + 1_000:
        raise SpecError(
            f"dataset spec {spec!r}: expected 1 ... {_MAX_FEATURES} features and at least 2 "
            f"classes, found {features} features and {classes} classes"
        )
    return features, classes


def synthetic_split(
    features: int, classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train (2000, F), y_train, x_test (500, F), y_test)``: float32 inputs in [0, 1],
    int32 labels in ``[0, C)``, the same for the same shape."""
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((classes, features))
    x = rng.uniform(0.0, 1.0, (_N_TRAIN + _N_TEST, features))
    y = np.argmax((x - 0.5) @ teacher.T, axis=-1)
    x, y = x.astype(np.float32), y.astype(np.int32)
    return x[:_N_TRAIN], y[:_N_TRAIN], x[_N_TRAIN:], y[_N_TRAIN:]
