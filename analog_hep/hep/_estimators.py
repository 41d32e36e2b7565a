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
Which states a crossbar couples comes from its :class:`Coupling` (``pre``/``post`` layer
indices, ``post = -1`` for the readout onto the logits: a chip's
``describe().crossbars``), never from its name or its position in the list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact

from .. import _conv as conv
from .._geometry import ConvGeometry
from .._numerics import matmul

__all__ = [
    "READOUT",
    "Coupling",
    "CrossbarLike",
    "classic_estimate",
    "couplings",
    "dphi_dtheta",
    "hep_estimate",
    "post_and_pre",
    "softmax_holomorphic",
]

Grads = dict[str, tuple[Array, Array]]
READOUT = -1
"""``post`` of a crossbar that maps its ``pre`` layer onto the logits (the readout)."""


class CrossbarLike(Protocol):
    """What a crossbar description must say (``drivers.CrossbarInfo`` does)."""

    @property
    def name(self) -> str: ...
    @property
    def pre(self) -> int: ...
    @property
    def post(self) -> int: ...
    @property
    def has_bias(self) -> bool: ...


class Coupling(NamedTuple):
    """Which states a crossbar couples: ``W`` maps layer ``pre`` onto layer ``post``
    (``post = -1``: onto the logits, a readout); ``has_bias`` whether it has a bias column;
    ``geometry`` its conv geometry (``None``: dense). Hashable, so it can be a static
    argument of a compiled function."""

    name: str
    pre: int
    post: int
    has_bias: bool = True
    geometry: ConvGeometry | None = None

    @property
    def is_readout(self) -> bool:
        """Whether the crossbar drives the logits (its ``post`` is the loss's error)."""
        return self.post == READOUT


_CANONICAL = re.compile(r"W(\d+)")


def couplings(
    crossbars: Sequence[CrossbarLike | str], has_bias: Sequence[bool] | None = None
) -> tuple[Coupling, ...]:
    """:class:`Coupling` s of ``crossbars``: descriptions with ``pre``/``post`` (a chip's
    ``describe().crossbars``; the controller passes only these), or, for callers that hold
    the emulator's names only (gradcheck on a fabricated chip), names of the emulator's
    layout ``W0 .. W{L-1}`` (``Wi`` couples layers ``i`` and ``i + 1``) then ``readout``
    (the last layer onto the logits). ``has_bias`` defaults to the description's (names:
    all with bias). **Raises** ``ValueError`` for a name outside that layout.
    """
    out: list[Coupling] = []
    n_layers = 1 + sum(1 for c in crossbars if not isinstance(c, str) or c != "readout")
    for i, c in enumerate(crossbars):
        if isinstance(c, str):
            match = _CANONICAL.fullmatch(c)
            if c == "readout":
                pre, post = n_layers - 1, READOUT
            elif match is not None:
                pre, post = int(match.group(1)), int(match.group(1)) + 1
            else:
                raise ValueError(
                    f"crossbar {c!r}: pass its description (pre/post), not a name outside "
                    "the emulator's layout W0 .. W{L-1}, readout"
                )
            bias = True if has_bias is None else bool(has_bias[i])
            out.append(Coupling(c, pre, post, bias))
        else:
            bias = c.has_bias if has_bias is None else bool(has_bias[i])
            geom = getattr(c, "geometry", None)
            out.append(Coupling(c.name, int(c.pre), int(c.post), bool(bias), geom))
    return tuple(out)


def post_and_pre(
    c: Coupling,
    states: Sequence[Inexact[Array, "k b n"]],
    logits: Inexact[Array, "k b c"] | None,
    betas: Inexact[Array, " k"],
    y: Float[Array, "b c"],
    post: Mapping[str, Array] | None,
) -> tuple[Inexact[Array, "k b p n_out"], Inexact[Array, "k b p n_in"]]:
    """The two factors of ``dPhi/dW`` of crossbar ``c`` at every point, sample and position:
    ``dPhi/dW = sum_p post_p pre_p^T``, ``dPhi/db = sum_p post_p``.

    Dense: one position, ``post = s_post`` (readout: ``-beta (softmax(o) - y)``), ``pre =
    s_pre``. Conv: ``H_conv W_conv`` positions, ``post`` the crossbar's post-synaptic signal
    from ``post[c.name]`` ``(K, B, C_out H_conv W_conv)`` (:class:`~analog_hep.drivers.Settled`),
    ``pre`` the input patches of ``s_pre``. **Raises** ``ValueError`` if a conv crossbar's
    signal is missing.
    """
    if c.is_readout:
        assert logits is not None, "a cross-entropy readout needs the logits"
        out = -betas[:, None, None] * (softmax_holomorphic(logits) - y)
        return out[:, :, None], states[c.pre][:, :, None]
    g = c.geometry
    if g is None:
        return states[c.post][:, :, None], states[c.pre][:, :, None]
    if post is None or c.name not in post:
        raise ValueError(
            f"conv crossbar {c.name!r}: the driver returned no post-synaptic signal "
            "(Settled.post) for it"
        )
    d = jnp.asarray(post[c.name])
    k, b = d.shape[:2]
    d = d.reshape(k, b, g.channels, g.positions).transpose(0, 1, 3, 2)
    x = jnp.asarray(states[c.pre])
    pre = conv.patches(x.reshape(-1, x.shape[-1]), g).reshape(
        x.shape[0], x.shape[1], *d.shape[2:3], g.n_in
    )
    return d, pre


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
    crossbars: Sequence[CrossbarLike | str],
    post: Mapping[str, Array] | None = None,
) -> Grads:
    """``sum_k weights_k * sum_b dPhi/dtheta(s_kb, beta_k) / B`` for every crossbar.

    ``crossbars``: descriptions with ``pre``/``post`` (or the emulator's names, see
    :func:`couplings`); ``post``: the conv crossbars' post-synaptic signals ``(K, B, ...)``
    (:func:`post_and_pre`). The weighted sum over points is folded into one matrix product
    per crossbar. **Returns** complex (or real) ``{name: (dW (n_out, n_in), db (n_out,))}``.
    """
    b = y.shape[0]
    out: Grads = {}
    wk = weights[:, None, None]
    for c in couplings(crossbars):
        pre = states[c.pre]
        if c.geometry is not None:
            sig, pre = post_and_pre(c, states, logits, betas, y, post)
            weighted = weights[:, None, None, None] * sig
        elif c.is_readout:
            assert logits is not None, "a cross-entropy readout needs the logits"
            err = softmax_holomorphic(logits) - y  # (K, B, C)
            weighted = -(wk * betas[:, None, None]) * err
        else:
            weighted = wk * states[c.post]
        post2 = weighted.reshape(-1, weighted.shape[-1])
        pre2 = pre.reshape(-1, pre.shape[-1])
        out[c.name] = (matmul(post2.T, pre2) / b, jnp.sum(post2, axis=0) / b)
    return out


def hep_estimate(
    states: Sequence[Inexact[Array, "k b n"]],
    logits: Inexact[Array, "k b c"] | None,
    y: Float[Array, "b c"],
    betas: Inexact[Array, " k"],
    crossbars: Sequence[CrossbarLike | str],
    post: Mapping[str, Array] | None = None,
) -> Grads:
    """Holomorphic EP estimate (paper eq. 8) from ``N = len(betas) >= 2`` points on a circle
    (``post``: conv crossbars' post-synaptic signals ``(N, B, ...)``, see :func:`dphi_dtheta`).

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
    g = dphi_dtheta(states, logits, y, weights, betas, crossbars, post)
    return {k: (dw.real, db.real) for k, (dw, db) in g.items()}


def classic_estimate(
    free_states: Sequence[Float[Array, "b n"]],
    free_logits: Float[Array, "b c"] | None,
    states: Sequence[Float[Array, "k b n"]],
    logits: Float[Array, "k b c"] | None,
    y: Float[Array, "b c"],
    beta: float,
    crossbars: Sequence[CrossbarLike | str],
    free_post: Mapping[str, Array] | None = None,
    post: Mapping[str, Array] | None = None,
) -> Grads:
    """Classic one-sided EP: ``(dPhi/dtheta(free) - mean_k dPhi/dtheta(s_k, beta)) / beta``.

    ``states`` holds ``K >= 1`` repeated settles at the same real ``beta`` (averaged: under
    noise this is the fair comparison with an N-point hEP estimate); ``free_post``/``post``
    the conv crossbars' post-synaptic signals ``(B, ...)``/``(K, B, ...)``.
    """
    k = states[0].shape[0]
    one = jnp.ones(1)
    f_states = [s[None] for s in free_states]
    f_logits = None if free_logits is None else free_logits[None]
    f_post = None if free_post is None else {n: jnp.asarray(v)[None] for n, v in free_post.items()}
    g0 = dphi_dtheta(f_states, f_logits, y, one, jnp.zeros(1), crossbars, f_post)
    betas = jnp.full(k, beta)
    g1 = dphi_dtheta(states, logits, y, jnp.full(k, 1.0 / k), betas, crossbars, post)
    return {n: ((g0[n][0] - g1[n][0]).real / beta, (g0[n][1] - g1[n][1]).real / beta) for n in g0}
