"""Matrix products in full float32 on every backend.

On GPUs with tensor cores, XLA multiplies float32 matrices in TF32 (10-bit mantissa) unless
asked otherwise. For the settle loop that breaks the exactness the method promises: on an
NVIDIA H100 the hEP gradient of the Table 1 circuit (N = 10, |beta| = 0.1, long settles)
had relative error 2.7e-2 at the default precision and 8.9e-6 with full float32 products
(docs/performance.md). On CPUs both are the same. Every product of the emulator, the device
updates and the estimators goes through :func:`matmul` or :func:`einsum`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["PRECISION", "einsum", "matmul"]

PRECISION = jax.lax.Precision.HIGHEST


def matmul(a: Array, b: Array) -> Array:
    """``a @ b`` with float32 (or float64) accumulation and operands on every backend."""
    return jnp.matmul(a, b, precision=PRECISION)


def einsum(spec: str, *operands: Array) -> Array:
    """``jnp.einsum`` at full precision (see :func:`matmul`)."""
    return jnp.einsum(spec, *operands, precision=PRECISION)
