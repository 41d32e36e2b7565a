"""Complex arithmetic on explicit (real, imaginary) parts, fast on CPUs.

The settle loop keeps a complex state as a real array with a leading "part" axis of size 2
(``[Re; Im]``) so that every crossbar product is a real matrix product of the stacked parts
(4 real FLOP per complex multiply-add instead of 8). The elementwise functions here act on
such parts. ``sincos`` is a polynomial: on XLA:CPU ``jnp.sin``/``jnp.cos`` lower to scalar
library calls, several times slower than a vectorised polynomial (see
docs/performance.md).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["shifted_sigmoid_parts", "sincos"]

_TWO_PI = 2.0 * math.pi


def sincos(q: Float[Array, ...]) -> tuple[Float[Array, ...], Float[Array, ...]]:
    """``(sin q, cos q)`` to about 1e-7 absolute in float32, for any real ``q``.

    Range reduction to ``r`` in ``[-pi, pi]``, Taylor series of the half angle
    ``h = r / 2`` in ``[-pi/2, pi/2]`` (truncation below 6e-8), then the double-angle
    formulas ``sin r = 2 sin h cos h``, ``cos r = 1 - 2 sin^2 h``.
    """
    r = q - _TWO_PI * jnp.round(q / _TWO_PI)
    h = 0.5 * r
    h2 = h * h
    # Horner forms of the Taylor series of sin h (to h^13) and cos h (to h^12).
    s = h * (
        1.0
        + h2
        * (
            -1 / 6
            + h2
            * (
                1 / 120
                + h2
                * (-1 / 5040 + h2 * (1 / 362880 + h2 * (-1 / 39916800 + h2 * (1.0 / 6227020800.0))))
            )
        )
    )
    c = 1.0 + h2 * (
        -1 / 2
        + h2
        * (
            1 / 24
            + h2 * (-1 / 720 + h2 * (1 / 40320 + h2 * (-1 / 3628800 + h2 * (1.0 / 479001600.0))))
        )
    )
    return 2.0 * s * c, 1.0 - 2.0 * s * s


def shifted_sigmoid_parts(
    re: Float[Array, ...], im: Float[Array, ...], *, a: float, b: float
) -> tuple[Float[Array, ...], Float[Array, ...]]:
    """``1 / (1 + exp(a z + b))`` for ``z = re + i im``, returned as ``(Re, Im)``.

    With ``w = a z + b`` and ``v = w`` (``Re w <= 0``) or ``v = -w`` (``Re w > 0``),
    ``t = e^v`` has ``|t| <= 1``, so ``1 / (1 + t)`` never overflows; for ``Re w > 0``,
    ``sigma = 1 - 1 / (1 + t)``.
    """
    wr = a * re + b
    wi = a * im
    flip = wr > 0
    t_mod = jnp.exp(-jnp.abs(wr))
    vi = jnp.where(flip, -wi, wi)
    s, c = sincos(vi)
    tr = t_mod * c
    ti = t_mod * s
    den = (1.0 + tr) ** 2 + ti**2
    gr = (1.0 + tr) / den
    gi = -ti / den
    return jnp.where(flip, 1.0 - gr, gr), jnp.where(flip, -gi, gi)
