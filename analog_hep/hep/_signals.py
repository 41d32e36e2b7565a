"""Local learning signals as sums of outer products, the form a crossbar applies in parallel.

Every estimator of ``dL/dtheta`` here is a weighted sum over settled points ``k`` and samples
``b`` of ``dPhi/dW = post pre^T`` (``post = s_{l+1}`` and ``pre = [s_l, 1]`` for ``W_l``;
``post = -beta (softmax(o) - y)`` and ``pre = [s_L, 1]`` for the readout; which layers a
crossbar couples is its description's ``pre``/``post``, never its name or position)::

    g = Re sum_k w_k sum_b m_b post_kb pre_kb^T / sum_b m_b

with point weights ``w_k`` (hEP: ``-e^{-i phi_k} / (N |beta|)``; classic EP: ``1/beta`` for
the free point and ``-1/(K beta)`` for each nudged one) and sample mask ``m_b`` (samples
whose states did not settle are left out). Since ``Re(a b^T) = Re a Re b^T - Im a Im b^T``,
``g = U^T V`` with real factors ``U (R, n_out)``, ``V (R, n_in + 1)``: exactly what
:meth:`Driver.apply_outer_product` takes. The dense gradient is ``U^T V``.

A conv crossbar (one array read at every output position ``p``) has ``dPhi/dW = sum_p
post_p pre_p^T`` with ``pre_p`` the input patch at ``p`` and ``post_p`` the post-synaptic
signal the chip returns (``Settled.post``): its rows are samples x positions x points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact

from .._numerics import matmul
from ._estimators import Coupling, CrossbarLike, couplings, post_and_pre, softmax_holomorphic

__all__ = ["Factors", "dense", "outer_factors", "point_weights"]

Factors = dict[str, tuple[Float[Array, "r n_out"], Float[Array, "r n_in1"]]]


def point_weights(
    betas: Inexact[Array, " k"], method: str, *, radius: float
) -> Inexact[Array, " k"]:
    """Weights ``w_k`` of the nudged points: hEP/symmetric/online ``-e^{-i phi_k}/(K |beta|)``
    (``K`` all points, several periods for online), classic ``-1/(K beta)``."""
    k = betas.shape[0]
    if method == "classic":
        return jnp.full(k, -1.0 / (k * radius), jnp.complex64)
    phase = betas / jnp.abs(betas)
    return -jnp.conj(phase) / (k * radius)


def _parts(a: Array) -> tuple[Array, Array]:
    """Rows of ``U`` and ``V`` for ``Re(a b^T)``: real inputs need no imaginary rows."""
    return a.real, a.imag


def outer_factors(
    states: Sequence[Inexact[Array, "k b n"]],
    logits: Inexact[Array, "k b c"] | None,
    betas: Inexact[Array, " k"],
    weights: Inexact[Array, " k"],
    y: Float[Array, "b c"],
    mask: Float[Array, " b"],
    crossbars: Sequence[CrossbarLike | str],
    has_bias: Sequence[bool] | None = None,
    post: Mapping[str, Array] | None = None,
) -> Factors:
    """Real factors ``(U, V)`` per crossbar with ``g = U^T V`` (see the module docstring).

    ``states`` ``(s_0, ..., s_L)`` each ``(K, B, n_l)``; ``mask`` ``(B,)`` 0/1;
    ``crossbars`` the chip's descriptions (``pre``/``post``/``has_bias``, e.g.
    ``describe().crossbars``, or :class:`Coupling` s; see :func:`couplings`), ``has_bias``
    overrides theirs. Masked samples are zeroed with ``where`` (their states may be NaN) and
    the sum is divided by the number of kept samples. Complex points give ``2 K B`` rows,
    real ones ``K B``; a crossbar whose pre is the clamped input ``s_0`` (the same real
    ``(B, n_0)`` at every point, as the driver contract says) gets ``B`` rows. A conv
    crossbar has ``H_conv W_conv`` times as many rows (one per position), its post factor
    from ``post[name]`` ``(K, B, C_out H_conv W_conv)``.
    """
    keep = mask > 0
    n_keep = jnp.maximum(jnp.sum(mask), 1.0)
    scale = (weights[:, None] * mask[None, :]) / n_keep  # (K, B)
    out: Factors = {}
    cplx = any(jnp.iscomplexobj(s) for s in states) or jnp.iscomplexobj(weights)
    for c in couplings(crossbars, has_bias):
        if c.geometry is not None:
            out[c.name] = _conv_factors(c, states, logits, betas, y, post, keep, scale, cplx)
            continue
        if c.is_readout:
            assert logits is not None, "a cross-entropy readout needs the logits"
            sig = -betas[:, None, None] * (softmax_holomorphic(logits) - y)
        else:
            sig = states[c.post]
        pre = states[c.pre]
        sig = jnp.where(keep[None, :, None], sig, 0.0)
        pre = jnp.where(keep[None, :, None], pre, 0.0)
        bias = (
            jnp.ones((*pre.shape[:2], 1), pre.dtype)
            if c.has_bias
            else jnp.zeros((*pre.shape[:2], 1), pre.dtype)
        )
        pre = jnp.concatenate([pre, bias], axis=-1)
        if c.pre == 0 and not c.is_readout:
            # The input is clamped: the same real pre at every point, so the points' terms
            # sum into one row per sample (B rows instead of 2 K B; the largest crossbar's
            # update costs K times less, and a pulsed chip fires one train per sample).
            a = jnp.sum(scale[..., None] * sig, axis=0).real
            out[c.name] = (a.astype(jnp.float32), pre[0].real.astype(jnp.float32))
            continue
        a = (scale[..., None] * sig).reshape(-1, sig.shape[-1])
        b = pre.reshape(-1, pre.shape[-1])
        if cplx:
            u = jnp.concatenate([a.real, -a.imag])
            v = jnp.concatenate([b.real, b.imag])
        else:
            u, v = a.real, b.real
        out[c.name] = (u.astype(jnp.float32), v.astype(jnp.float32))
    return out


def _conv_factors(
    c: Coupling,
    states: Sequence[Array],
    logits: Array | None,
    betas: Array,
    y: Array,
    post: Mapping[str, Array] | None,
    keep: Array,
    scale: Array,
    cplx: bool,
) -> tuple[Array, Array]:
    """``(U, V)`` of a conv crossbar: rows points x samples x positions (the clamped input's
    points summed, as for a dense crossbar on ``s_0``)."""
    sig, pre = post_and_pre(c, states, logits, betas, y, post)
    sig = jnp.where(keep[None, :, None, None], sig, 0.0)
    pre = jnp.where(keep[None, :, None, None], pre, 0.0)
    ones = jnp.ones if c.has_bias else jnp.zeros
    pre = jnp.concatenate([pre, ones((*pre.shape[:3], 1), pre.dtype)], axis=-1)
    a = scale[..., None, None] * sig
    if c.pre == 0:
        a = jnp.sum(a, axis=0).real
        u, v = a.reshape(-1, a.shape[-1]), pre[0].real.reshape(-1, pre.shape[-1])
        return u.astype(jnp.float32), v.astype(jnp.float32)
    a = a.reshape(-1, a.shape[-1])
    b = pre.reshape(-1, pre.shape[-1])
    if cplx:
        u, v = jnp.concatenate([a.real, -a.imag]), jnp.concatenate([b.real, b.imag])
    else:
        u, v = a.real, b.real
    return u.astype(jnp.float32), v.astype(jnp.float32)


def dense(factors: Factors) -> dict[str, Float[Array, "n_out n_in1"]]:
    """``U^T V`` per crossbar: the gradient with the bias as the last column."""
    return {n: matmul(u.T, v) for n, (u, v) in factors.items()}
