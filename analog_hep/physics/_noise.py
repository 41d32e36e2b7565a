"""Fast Gaussian noise for the settle loop, seeded from JAX keys.

Neuron and read noise are drawn at every settle step for every neuron of every row: a
noisy Table 1 training step needs about 7 million normal draws. ``jax.random.normal``
(threefry + inverse error function) costs about 11-14 ns per draw on the 2-core CPU
machines, more than the step's matrix products. Here each draw costs about 4 ns: one
threefry call turns the key into two 32-bit seeds, a counter-based integer hash (the
MurmurHash3 finaliser) of ``(element index, seed)`` gives uniform bits, and Box-Muller with
the polynomial ``sincos`` turns pairs of uniforms into pairs of normals. The stream is a pure
function of the key (same key, same noise, on any device); statistics are checked in
``tests/test_physics_noise.py`` (moments, Kolmogorov-Smirnov, correlation).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._complex import sincos

__all__ = ["gaussian"]

_GOLDEN = 0x9E3779B1


def _fmix32(h: Array) -> Array:
    """MurmurHash3's 32-bit finaliser: a bijective avalanche mix of ``uint32`` words."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def gaussian(
    key: PRNGKeyArray, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32
) -> Float[Array, ...]:
    """Standard normal draws of ``shape`` from ``key`` (a fast, non-cryptographic stream).

    Uniforms have 24-bit resolution, so draws are bounded by about 5.8 standard deviations
    (probability of a larger draw in an exact normal: 7e-9).
    """
    n = math.prod(shape)
    half = (n + 1) // 2
    seed = jr.bits(key, (2,), jnp.uint32)
    i = jax.lax.iota(jnp.uint32, half) * jnp.uint32(_GOLDEN)
    h1 = _fmix32(i ^ seed[0])
    h2 = _fmix32((i + jnp.uint32(0x7F4A7C15)) ^ seed[1])
    u1 = ((h1 >> 8).astype(jnp.float32) + 0.5) * (1.0 / 16777216.0)  # (0, 1)
    u2 = (h2 >> 8).astype(jnp.float32) * (1.0 / 16777216.0)  # [0, 1)
    radius = jnp.sqrt(-2.0 * jnp.log(u1))
    s, c = sincos(2.0 * math.pi * u2 - math.pi)
    z = jnp.concatenate([radius * c, radius * s])[:n]
    return z.reshape(shape).astype(dtype)
