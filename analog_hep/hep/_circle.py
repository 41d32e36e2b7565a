"""Is the nudge circle inside the region where ``beta -> s*(beta)`` is holomorphic?

hEP is exact only when the circle ``|beta| e^{i phi_k}`` lies in a disk where the fixed point
is a holomorphic function of ``beta`` (paper Theorem 1). The ``N`` settled points already
measure this. For ``f(beta) = sum_m a_m beta^m`` holomorphic on a disk of radius ``R > r``,
the DFT over the points ``beta_k = r e^{2 i pi k/N}`` is

    c_j = (1/N) sum_k f(beta_k) e^{-2 i pi j k/N} = sum_m a_{j + mN} r^{j + mN},

so ``|c_j| ~ (r/R)^j``: the first coefficient ``c_1`` (the one the estimate uses) is
``O(r/R)`` and the negative frequency ``c_{-1} = c_{N-1}`` only ``O((r/R)^{N-1})``. A
singularity (branch point, pole) inside the circle adds Laurent terms ``b_m beta^{-m}`` to
the sampled function (or, when the settles land on different branches, a jump), which put
weight ``O(1)`` relative to ``c_1`` into ``c_{-1}``. The per-sample statistic is

    rho_b = |c_{-1}(s_b)| / |c_1(s_b)|    (norms over all hidden neurons)

``~ (r/R)^{N-2}`` while the circle is inside the disk, ``O(1)`` once it encloses a
singularity. The estimate's own aliasing bias is ``~ (r/R)^N ~ rho^{N/(N-2)}``: a batch
is flagged when that implied bias exceeds ``CIRCLE_BIAS`` (0.1), i.e. when
``rho > CIRCLE_BIAS^{(N-2)/N}`` (0.32 at N = 4, 0.18 at N = 8, 0.16 at N = 10).
It costs one ``(K, B, n)`` weighted sum per layer, no extra settle. ``N = 2`` (symmetric
EP) has ``c_{-1} = c_1`` and no such information: the statistic is ``NaN`` there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Inexact

__all__ = [
    "CIRCLE_BIAS",
    "CircleCheck",
    "circle_check",
    "circle_flags",
    "circle_threshold",
    "fourier_coefficient",
]

# Implied relative bias rho^{N/(N-2)} above which the estimate is flagged. Calibrated on the
# toy, digits, MNIST and deep_small circuits over a grid of |beta|, N and batches: no miss
# (cosine < 0.9 unflagged) and the fewest false alarms (cosine >= 0.99 flagged) there
# (docs/gradients.md, benchmarks/circle_diagnostic.py).
CIRCLE_BIAS = 0.1


class CircleCheck(NamedTuple):
    """The circle diagnostic of one batch.

    ``ratio`` ``(B,)``: ``rho_b = |c_{-1}| / |c_1|`` per sample (``NaN`` where undefined:
    fewer than 3 points per period, or a state that is not finite); ``batch_ratio`` scalar:
    ``sqrt(sum_b |c_{-1,b}|^2 / sum_b |c_{1,b}|^2)`` over the kept samples (samples weighted
    by their share of the signal).
    """

    ratio: Float[Array, " b"]
    batch_ratio: Float[Array, ""]


def fourier_coefficient(
    x: Inexact[Array, "k b n"], phases: Inexact[Array, " k"], j: int
) -> Inexact[Array, "b n"]:
    """``c_j = mean_k x_k conj(u_k)^j`` with unit phases ``u_k = beta_k / |beta_k|``.

    For ``N`` evenly spaced points this is the DFT coefficient ``j``; for several periods of
    the same points (online hEP) the periods are averaged.
    """
    w = jnp.conj(phases) ** j if j >= 0 else phases ** (-j)
    return jnp.einsum("k,kbn->bn", w / phases.shape[0], x)


def circle_check(
    states: Sequence[Inexact[Array, "k b n"]],
    betas: Inexact[Array, " k"],
    mask: Float[Array, " b"] | None = None,
    *,
    per_period: int,
) -> CircleCheck:
    """The statistic from the hidden states ``(s_1, ..., s_L)`` of the nudged points.

    **Arguments:** ``states`` the hidden layers, each ``(K, B, n_l)`` (activity units; the
    clamped input ``s_0`` carries nothing and is left out); ``betas`` ``(K,)`` as applied;
    ``mask`` ``(B,)`` 0/1 samples to summarise (all when ``None``); ``per_period`` ``N``
    points per turn of the circle (static). **Returns** :class:`CircleCheck`.
    """
    b = states[0].shape[1]
    if per_period < 3:
        nan = jnp.full((b,), jnp.nan, jnp.float32)
        return CircleCheck(nan, jnp.float32(jnp.nan))
    betas = jnp.asarray(betas).astype(jnp.complex64)
    phases = betas / jnp.abs(betas)
    pos = jnp.zeros(b, jnp.float32)
    neg = jnp.zeros(b, jnp.float32)
    for s in states:
        s = jnp.asarray(s).astype(jnp.complex64)
        pos += jnp.sum(jnp.abs(fourier_coefficient(s, phases, 1)) ** 2, axis=-1)
        neg += jnp.sum(jnp.abs(fourier_coefficient(s, phases, -1)) ** 2, axis=-1)
    ratio = jnp.sqrt(neg / pos)  # NaN for non-finite states; inf for a sample never nudged
    keep = jnp.isfinite(ratio) if mask is None else jnp.isfinite(ratio) & (mask > 0)
    batch = jnp.sqrt(jnp.sum(jnp.where(keep, neg, 0.0)) / jnp.sum(jnp.where(keep, pos, 0.0)))
    return CircleCheck(ratio.astype(jnp.float32), batch.astype(jnp.float32))


def circle_threshold(per_period: int, bias: float = CIRCLE_BIAS) -> float:
    """The ``rho`` whose implied bias ``rho^{N/(N-2)}`` is ``bias``: ``bias^{(N-2)/N}``
    (``NaN`` for ``N < 3``, where there is no statistic)."""
    return bias ** ((per_period - 2) / per_period) if per_period >= 3 else math.nan


def circle_flags(
    ratio: Float[Array, "*b"], per_period: int, bias: float = CIRCLE_BIAS
) -> Bool[Array, "*b"]:
    """True where the circle probably encloses a singularity: ``rho > circle_threshold``.
    Works on per-sample ``rho_b`` and on the batch value; ``NaN`` is never flagged."""
    return jnp.asarray(ratio) > circle_threshold(per_period, bias)
