"""Convolutional reads, patches and pooling on flattened layer states (JAX).

Every function takes rows of flattened ``(C, H, W)`` states, ``(R, n)`` real or complex, and
a :class:`~analog_hep._geometry.ConvGeometry`; a crossbar's weights ``w`` are its
``(C_out, C_in k k)`` matrix (the array as programmed; the bias column apart). Convolutions
run at full float32 precision on every backend (see :mod:`analog_hep._numerics`); a complex
input is convolved as its real and imaginary parts (the conductances are real).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact

from ._geometry import ConvGeometry
from ._numerics import PRECISION, matmul

__all__ = [
    "conv_read",
    "conv_transpose",
    "coverage",
    "patches",
    "pool",
    "pool_transpose",
    "unpool_shape",
]

_DIMS = ("NCHW", "OIHW", "NCHW")


def _split(f, x: Array) -> Array:  # type: ignore[no-untyped-def]
    """Apply the real-linear ``f`` to a complex ``x`` part by part."""
    if jnp.iscomplexobj(x):
        return jax.lax.complex(f(x.real), f(x.imag))
    return f(x)


def _conv_real(x: Float[Array, "r n"], w: Float[Array, "o i"], g: ConvGeometry) -> Array:
    r = x.shape[0]
    c, h, wd = g.in_shape
    k, p = g.kernel, g.padding
    y = jax.lax.conv_general_dilated(
        x.reshape(r, c, h, wd),
        w.reshape(g.channels, c, k, k).astype(x.dtype),
        window_strides=(g.stride, g.stride),
        padding=((p, p), (p, p)),
        dimension_numbers=_DIMS,
        precision=PRECISION,
    )
    return y.reshape(r, g.conv_size)


def conv_read(
    x: Inexact[Array, "r n_in_size"], w: Float[Array, "c_out n_in"], g: ConvGeometry
) -> Inexact[Array, "r conv_size"]:
    """``W * x`` at every output position: ``(R, C_in H W)`` -> ``(R, C_out H_conv W_conv)``."""
    return _split(lambda a: _conv_real(a, w, g), x)


def _transpose_gemm(d: Float[Array, "r conv_size"], w: Array, g: ConvGeometry) -> Array:
    """:func:`conv_transpose` as one ``(R P, C_out) @ (C_out, C_in k k)`` product, then each
    kernel offset's outputs added onto the input pixels it covers (``k^2`` strided adds)."""
    r = d.shape[0]
    c, h, wd = g.in_shape
    k, p, s = g.kernel, g.padding, g.stride
    ho, wo = g.conv_hw
    rows = d.reshape(r, g.channels, ho * wo).transpose(0, 2, 1).reshape(-1, g.channels)
    v = matmul(rows, w.astype(d.dtype)).reshape(r, ho, wo, c, k, k)
    buf = jnp.zeros((r, c, h + 2 * p, wd + 2 * p), d.dtype)
    for ky in range(k):
        for kx in range(k):
            ys = slice(ky, ky + s * (ho - 1) + 1, s)
            xs = slice(kx, kx + s * (wo - 1) + 1, s)
            buf = buf.at[:, :, ys, xs].add(v[..., ky, kx].transpose(0, 3, 1, 2))
    return buf[:, :, p : p + h, p : p + wd].reshape(r, g.in_size)


def conv_transpose(
    d: Inexact[Array, "r conv_size"], w: Float[Array, "c_out n_in"], g: ConvGeometry
) -> Inexact[Array, "r n_in_size"]:
    """The transposed read ``W^T d`` at every position, summed onto the input pixels each
    position's patch covers: ``(R, C_out H_conv W_conv)`` -> ``(R, C_in H W)`` (the linear
    transpose of :func:`conv_read`).

    A crossbar with fewer output positions than kernel taps (cifar_vgg5's last, 2x2 from a
    4x4 input) is transposed as a matrix product and ``k^2`` adds: XLA's CPU transposed
    convolution takes a slow path there (1.6 s against 13 ms for 128 rows,
    docs/performance.md, "Conv chips")."""
    if g.positions <= g.kernel**2:
        return _split(lambda a: _transpose_gemm(a, w, g), d)

    def t(a: Array) -> Array:
        zeros = jax.ShapeDtypeStruct((a.shape[0], g.in_size), a.dtype)
        (out,) = jax.linear_transpose(lambda v: _conv_real(v, w, g), zeros)(a)
        return out

    return _split(t, d)


def coverage(g: ConvGeometry, dtype: jnp.dtype = jnp.float32) -> Float[Array, " n_in_size"]:
    """Per input pixel, how many (position, kernel offset) reads touch it: the number of
    transposed-read outputs summed onto it (each carries its own periphery noise)."""
    ones = jnp.ones((1, g.conv_size), dtype)
    w = jnp.zeros((g.channels, g.n_in), dtype).at[0].set(1.0)
    # Only output channel 0 carries ones: each (position, offset) is counted once.
    return conv_transpose(ones, w, g)[0]


def patches(
    x: Inexact[Array, "r n_in_size"], g: ConvGeometry
) -> Inexact[Array, "r positions n_in"]:
    """Input patches at every output position, ``(R, H_conv W_conv, C_in k k)``, in the
    order of the crossbar's columns (``patches @ W.T`` is :func:`conv_read`)."""

    def one(a: Array) -> Array:
        r = a.shape[0]
        c, h, wd = g.in_shape
        p = g.padding
        out = jax.lax.conv_general_dilated_patches(
            a.reshape(r, c, h, wd),
            filter_shape=(g.kernel, g.kernel),
            window_strides=(g.stride, g.stride),
            padding=((p, p), (p, p)),
            dimension_numbers=_DIMS,
            precision=PRECISION,
        )  # (R, C k k, H_conv, W_conv), feature order (C, kh, kw)
        return out.reshape(r, g.n_in, g.positions).transpose(0, 2, 1)

    return _split(one, x)


def unpool_shape(g: ConvGeometry, r: int) -> tuple[int, ...]:
    """``(R, C, H_out, ps, W_out, ps)``: a read before pooling, by pooling window."""
    c, ho, wo = g.out_shape
    ps = g.pool_size
    return (r, c, ho, ps, wo, ps)


def pool(z: Inexact[Array, "r conv_size"], g: ConvGeometry) -> Inexact[Array, "r out_size"]:
    """The periphery's pooling of a read, ``(R, C_out H_conv W_conv)`` -> ``(R, out_size)``.

    ``softmax``: ``sum z e^{z/T} / sum e^{z/T}`` per window, the window's largest real part
    subtracted (a shift it is invariant to) under ``stop_gradient``: holomorphic in ``z``;
    ``average``: the window mean; ``max``: the entry with the largest real part.
    """
    if g.pool == "none":
        return z
    r = z.shape[0]
    v = z.reshape(unpool_shape(g, r))
    if g.pool == "average":
        out = jnp.mean(v, axis=(3, 5))
    elif g.pool == "softmax":
        shift = jax.lax.stop_gradient(jnp.max(v.real, axis=(3, 5), keepdims=True))
        e = jnp.exp((v - shift) / g.temperature)
        out = jnp.sum(v * e, axis=(3, 5)) / jnp.sum(e, axis=(3, 5))
    else:  # max, by real part
        c, ho, wo = g.out_shape
        flat = v.transpose(0, 1, 2, 4, 3, 5).reshape(r, c, ho, wo, -1)
        idx = jnp.argmax(flat.real, axis=-1)[..., None]
        out = jnp.take_along_axis(flat, idx, axis=-1)[..., 0]
    return out.reshape(r, g.out_size)


def pool_transpose(
    z: Inexact[Array, "r conv_size"], s: Inexact[Array, "r out_size"], g: ConvGeometry
) -> Inexact[Array, "r conv_size"]:
    """``J_pool(z)^T s``: the signal the periphery drives back onto the crossbar's rows
    for the transposed read (holomorphic: no conjugation), ``(R, conv_size)``."""
    if g.pool == "none":
        return s
    dtype = jnp.result_type(z, s)
    _, vjp = jax.vjp(lambda a: pool(a, g), z.astype(dtype))
    (out,) = vjp(s.astype(dtype))
    return out
