"""Gradient estimators of equilibrium propagation, as pure functions of settled states.

With ``Phi = sum_l s_{l+1}^T (W_l s_l + b_l) - beta l(o(s_L), y)`` the learning signal is local:
``dPhi/dW_l = s_{l+1} s_l^T``, ``dPhi/db_l = s_{l+1}``, and for the readout
``dPhi/dW_o = -beta (softmax(o) - y) s_L^T``, ``dPhi/db_o = -beta (softmax(o) - y)``.
Estimates are of ``dL/dtheta`` for the batch-mean loss ``L`` (paper: Laborieux & Zenke 2022):

- hEP, ``N >= 2`` points ``beta_k = |beta| e^{i phi_k}`` on a circle (eq. 8):
  ``-(1 / (N |beta|)) Re sum_k dPhi/dtheta(s_k, beta_k) e^{-i phi_k}``; ``N = 2`` with
  ``beta = +-|beta|`` is the symmetric estimate;
- classic EP (``N = 1``): ``(dPhi/dtheta(s_0, 0) - dPhi/dtheta(s_beta, beta)) / beta``,
  averaged over repeated nudged settles when several are given.

These functions know nothing about how the states were produced (emulator or chip).
States are ``(s_0, ..., s_L)`` each ``(K, B, n_l)``; ``logits`` ``(K, B, classes)`` or ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact

from .._numerics import matmul

__all__ = ["classic_estimate", "dphi_dtheta", "hep_estimate", "softmax_holomorphic"]

Grads = dict[str, tuple[Array, Array]]


def softmax_holomorphic(o: Inexact[Array, "... c"]) -> Inexact[Array, "... c"]:
    """Softmax valid for complex logits (shifted by the real maximum)."""
    z = o - jnp.max(o.real, axis=-1, keepdims=True)
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def dphi_dtheta(
    states: Sequence[Inexact[Array, "k b n"]],
    logits: Inexact[Array, "k b c"] | None,
    y: Float[Array, "b c"],
    weights: Inexact[Array, " k"],
    betas: Inexact[Array, " k"],
    names: Sequence[str],
) -> Grads:
    """``sum_k weights_k * sum_b dPhi/dtheta(s_kb, beta_k) / B`` for every crossbar.

    The weighted sum over points is folded into one matrix product per crossbar.
    **Returns** complex (or real) ``{name: (dW (n_out, n_in), db (n_out,))}``.
    """
    b = y.shape[0]
    out: Grads = {}
    wk = weights[:, None, None]
    for i, name in enumerate(names):
        if name == "readout":
            assert logits is not None, "a cross-entropy readout needs the logits"
            err = softmax_holomorphic(logits) - y  # (K, B, C)
            post = -(wk * betas[:, None, None]) * err
            pre = states[-1]
        else:
            post = wk * states[i + 1]
            pre = states[i]
        post2 = post.reshape(-1, post.shape[-1])
        pre2 = pre.reshape(-1, pre.shape[-1])
        out[name] = (matmul(post2.T, pre2) / b, jnp.sum(post2, axis=0) / b)
    return out


def hep_estimate(
    states: Sequence[Inexact[Array, "k b n"]],
    logits: Inexact[Array, "k b c"] | None,
    y: Float[Array, "b c"],
    betas: Inexact[Array, " k"],
    names: Sequence[str],
) -> Grads:
    """Holomorphic EP estimate (paper eq. 8) from ``N = len(betas) >= 2`` points on a circle.

    **Raises:** ``ValueError`` unless the betas share one modulus and are evenly spaced.
    """
    betas = jnp.asarray(betas)
    n = betas.shape[0]
    if n < 2:
        raise ValueError("hEP needs at least 2 points; use classic_estimate for N = 1")
    radius = jnp.abs(betas[0])
    phase = betas / jnp.abs(betas)
    # e^{-i phi_k} / (N |beta|), with the minus sign of eq. (8).
    weights = -jnp.conj(phase) / (n * radius)
    g = dphi_dtheta(states, logits, y, weights, betas, names)
    return {k: (dw.real, db.real) for k, (dw, db) in g.items()}


def classic_estimate(
    free_states: Sequence[Float[Array, "b n"]],
    free_logits: Float[Array, "b c"] | None,
    states: Sequence[Float[Array, "k b n"]],
    logits: Float[Array, "k b c"] | None,
    y: Float[Array, "b c"],
    beta: float,
    names: Sequence[str],
) -> Grads:
    """Classic one-sided EP: ``(dPhi/dtheta(free) - mean_k dPhi/dtheta(s_k, beta)) / beta``.

    ``states`` holds ``K >= 1`` repeated settles at the same real ``beta`` (averaged: under
    noise this is the fair comparison with an N-point hEP estimate).
    """
    k = states[0].shape[0]
    one = jnp.ones(1)
    f_states = [s[None] for s in free_states]
    f_logits = None if free_logits is None else free_logits[None]
    g0 = dphi_dtheta(f_states, f_logits, y, one, jnp.zeros(1), names)
    betas = jnp.full(k, beta)
    g1 = dphi_dtheta(states, logits, y, jnp.full(k, 1.0 / k), betas, names)
    return {
        n: ((g0[n][0] - g1[n][0]).real / beta, (g0[n][1] - g1[n][1]).real / beta) for n in names
    }
