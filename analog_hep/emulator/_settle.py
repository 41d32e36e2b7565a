"""Settling: the chip's neuron layers relax to a fixed point under a (complex) nudge.

Dynamics (DESIGN.md section 1), for neuron layer ``l = 1 .. L`` with ``s_0 = x`` clamped::

    u_l = W_{l-1} s_{l-1} + b_{l-1} + W_l^T s_{l+1}          (l < L)
    u_L = W_{L-1} s_{L-1} + b_{L-1} - beta W_o^T (softmax(o) - y),  o = W_o s_L + b_o
    s_l <- s_l + r (sigma(g_l u_l + c_l + noise) - s_l),     r = dt / tau

(``mse`` circuits nudge with ``-beta (s_L - y)`` instead of the readout term). All layers
update synchronously. Every crossbar product is a *read* of the device array: forward reads
are scaled by per-line ``forward_gain``, transposed reads by ``transpose_gain``, and each read
gets periphery noise (``read_noise_std``) and device read noise (``read_noise_rel``), drawn
per read. A complex state is read as two real reads (real and imaginary part) through the
same conductances, so mismatch is shared by both parts and noise is drawn for each. Neuron
noise is real (added to the real part of the pre-activation), as in the paper's code.

Layout inside the loop: a state is a real array ``(P, m, n)`` with ``P = 1`` (real) or
``P = 2`` (``[Re; Im]``), ``m`` rows (samples times nudge points): a crossbar read of all
parts and rows is one real matrix product. ``settle`` takes and returns ordinary real or
complex arrays ``(m, n)``. Noise per step comes from ``fold_in(key, step)``: it depends on
the key, the step and the shape only (not on call order, nor on whether a settle draws its
neuron noise ahead or step by step).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Inexact, PRNGKeyArray

from .. import _conv as conv
from .._geometry import ConvGeometry
from .._numerics import matmul
from ..physics import activation_fn, gaussian, shifted_sigmoid_parts, sincos
from ._chip import Chip

__all__ = [
    "Read",
    "SettleOut",
    "from_parts",
    "input_drive",
    "neuron_noise",
    "neuron_targets",
    "post_signals",
    "prepare_reads",
    "quantise",
    "settle",
    "softmax",
    "to_parts",
]

Parts = Float[Array, "p m n"]

# Neuron noise of a whole settle is drawn in one call when one step needs at most this many
# normals (and the whole settle at most 16 MiB): on the 2-core CPU that made the batch-20 free
# phase 1.2x faster and a 64-row one 1.1x slower (docs/performance.md). A speed setting only:
# drawn ahead or step by step, the numbers are the same (:func:`neuron_noise`).
NOISE_AHEAD_PER_STEP = 16384


class Read(NamedTuple):
    """What one crossbar read needs, computed once per settle from the conductances.

    ``w: (n_out, n_in)``, ``b: (n_out,)``, ``fwd_gain: (n_out,)``, ``bwd_gain: (n_in,)``;
    ``dev_var``: ``(n_out, n_in + 1)`` variance per unit input squared of the device read
    noise, ``read_noise_rel^2 (G+^2 + G-^2) / g_unit^2``, or ``None`` without device noise.
    """

    w: Float[Array, "n_out n_in"]
    b: Float[Array, " n_out"]
    fwd_gain: Float[Array, " n_out"]
    bwd_gain: Float[Array, " n_in"]
    dev_var: Float[Array, "n_out n_in1"] | None


class SettleOut(NamedTuple):
    """Result of one settle over ``m`` rows.

    ``states``: ``(s_0, s_1, ..., s_L)`` each ``(m, n_l)`` (``s_0`` is the clamped input);
    ``logits``: ``(m, classes)`` readout ``o`` at the final state (cross-entropy circuits,
    else ``None``); ``residual``: ``(m,)`` max over neurons of ``|sigma(.) - s|`` at the last
    step (activity units; a settled row has a small residual).
    """

    states: tuple[Inexact[Array, "m n"], ...]
    logits: Inexact[Array, "m c"] | None
    residual: Float[Array, " m"]


def prepare_reads(chip: Chip) -> dict[str, Read]:
    """Effective weights and read-noise coefficients of every crossbar (for a Tiki-Taka
    crossbar ``W = C + gamma A``, and ``A``'s device read noise times ``gamma``)."""
    reads = {}
    for name, xb in chip.crossbars.items():
        w, b = xb.weights()
        dev_var = None
        if xb.read_noise_rel > 0:
            dev_var = (xb.read_noise_rel / xb.g_unit_S) ** 2 * (xb.g_plus_S**2 + xb.g_minus_S**2)
        tt = xb.tiki_taka
        if tt is not None and tt.spec.gamma > 0 and tt.read_noise_rel > 0:
            # W = C + gamma A: A's devices are read too, their noise scaled by gamma.
            fast_var = (tt.spec.gamma * tt.read_noise_rel / tt.g_unit_S) ** 2 * (
                tt.g_plus_S**2 + tt.g_minus_S**2
            )
            dev_var = fast_var if dev_var is None else dev_var + fast_var
        reads[name] = Read(w, b, xb.forward_gain, xb.transpose_gain, dev_var)
    return reads


def to_parts(s: Inexact[Array, "m n"]) -> Parts:
    """``(m, n)`` real or complex -> ``(P, m, n)`` real parts."""
    return jnp.stack([s.real, s.imag]) if jnp.iscomplexobj(s) else s[None]


def from_parts(p: Parts) -> Inexact[Array, "m n"]:
    """``(P, m, n)`` real parts -> ``(m, n)`` real (P = 1) or complex (P = 2)."""
    return jax.lax.complex(p[0], p[1]) if p.shape[0] == 2 else p[0]


def _real_only(v: Float[Array, "m n"], p: int) -> Parts:
    """A real quantity (bias, neuron noise) as parts: it enters the real part only."""
    if p == 1:
        return v[None]
    return jnp.stack([v, jnp.zeros_like(v)])


def _noise(
    key: PRNGKeyArray, shape: tuple[int, ...], std: Array | None, var: Array | None
) -> Array | float:
    """Gaussian read noise: periphery ``std`` (or ``None``) plus device variance ``var``."""
    if var is None and std is None:
        return 0.0
    total = (0.0 if std is None else std**2) + (0.0 if var is None else var)
    return jnp.sqrt(total) * gaussian(key, shape)


def read_forward(r: Read, p: Parts, std: Array | None, key: PRNGKeyArray | None) -> Parts:
    """``W s + b`` through the array (gain mismatch and read noise included), on parts."""
    y = matmul(p, r.w.T) * r.fwd_gain
    var = None
    if r.dev_var is not None:
        var = matmul(p**2, r.dev_var[:, :-1].T) + r.dev_var[:, -1]
    if key is not None:
        y = y + _noise(key, y.shape, std, var)
    return y + _real_only(r.b[None], p.shape[0])


def read_transpose(r: Read, p: Parts, std: Array | None, key: PRNGKeyArray | None) -> Parts:
    """``W^T s`` through the same array, read in the other direction, on parts."""
    y = matmul(p, r.w) * r.bwd_gain
    var = None
    if r.dev_var is not None:
        var = matmul(p**2, r.dev_var[:, :-1])
    if key is not None:
        y = y + _noise(key, y.shape, std, var)
    return y


def _per_channel(v: Array, g: ConvGeometry) -> Array:
    """A per-row (per output channel) quantity ``(C_out,)`` at every position, channel-major."""
    return jnp.repeat(v, g.positions, axis=-1)


def _rows(p: Parts) -> Array:
    return p.reshape(-1, p.shape[-1])


def conv_forward(
    r: Read, g: ConvGeometry, p: Parts, std: Array | None, key: PRNGKeyArray | None
) -> Parts:
    """A conv crossbar's read at every position, before pooling: ``(P, m, C_out H_conv W_conv)``.

    One read per position through the same conductances: the line gains of the rows, read
    noise per position and row (periphery and device), the bias per channel.
    """
    n_p, m = p.shape[:2]
    y = conv.conv_read(_rows(p), r.w, g).reshape(n_p, m, -1) * _per_channel(r.fwd_gain, g)
    var = None
    if r.dev_var is not None:
        var = conv.conv_read(_rows(p**2), r.dev_var[:, :-1], g).reshape(n_p, m, -1)
        var = var + _per_channel(r.dev_var[:, -1], g)
    if key is not None:
        y = y + _noise(key, y.shape, std, var)
    return y + _real_only(_per_channel(r.b, g)[None], n_p)


def _pool_parts(z: Parts, g: ConvGeometry) -> Parts:
    """The periphery's pooling of a conv read, on parts."""
    if g.pool == "none":
        return z
    return to_parts(conv.pool(from_parts(z), g))


def conv_transposed(
    r: Read,
    g: ConvGeometry,
    z: Parts,
    s_post: Parts,
    std: Array | None,
    key: PRNGKeyArray | None,
) -> Parts:
    """The transposed read of a conv crossbar: the periphery drives ``J_pool(z)^T s_post``
    onto the rows at every position (``z``: the forward read this step), each position's
    column outputs (scaled by their line gains) are summed onto the input pixels they
    cover; read noise per position and column, summed the same way. ``(P, m, C_in H W)``."""
    n_p, m = s_post.shape[:2]
    d = to_parts(conv.pool_transpose(from_parts(z), from_parts(s_post), g))
    y = conv.conv_transpose(_rows(d), r.w * r.bwd_gain[None, :], g).reshape(n_p, m, -1)
    if key is not None:
        var = None
        if r.dev_var is not None:
            var = conv.conv_transpose(_rows(d**2), r.dev_var[:, :-1], g).reshape(n_p, m, -1)
        cover = None if std is None else conv.coverage(g, y.dtype)
        sd = None if std is None else std * jnp.sqrt(cover)  # type: ignore[operator]
        y = y + _noise(key, y.shape, sd, var)
    return y


def softmax(o: Inexact[Array, "m c"]) -> Inexact[Array, "m c"]:
    """Softmax that stays holomorphic for complex logits (shift by the real max)."""
    z = o - jax.lax.stop_gradient(jnp.max(o.real, axis=-1, keepdims=True))
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _softmax_parts(o: Parts) -> Parts:
    """:func:`softmax` on parts, with the polynomial ``sincos`` for complex logits."""
    z = o - jax.lax.stop_gradient(jnp.max(o[0], axis=-1, keepdims=True))
    if o.shape[0] == 1:
        e = jnp.exp(z)
        return e / jnp.sum(e, axis=-1, keepdims=True)
    mod = jnp.exp(z[0])
    sn, cs = sincos(z[1])
    er, ei = mod * cs, mod * sn
    sr, si = jnp.sum(er, axis=-1, keepdims=True), jnp.sum(ei, axis=-1, keepdims=True)
    den = sr**2 + si**2
    return jnp.stack([(er * sr + ei * si) / den, (ei * sr - er * si) / den])


def _times(beta: Parts, v: Parts) -> Parts:
    """Complex product of per-row ``beta`` ``(P, m, 1)`` and ``v`` ``(P', m, n)`` on parts."""
    if beta.shape[0] == 1:
        return beta * v
    if v.shape[0] == 1:
        return beta * v
    return jnp.stack([beta[0] * v[0] - beta[1] * v[1], beta[0] * v[1] + beta[1] * v[0]])


def _sigma_parts(chip: Chip, u: Parts) -> Parts:
    """The activation on parts; the shifted sigmoid has an exp/polynomial fast path."""
    cfg = chip.config
    if u.shape[0] == 2 and cfg.activation == "shifted_sigmoid":
        params = dict(cfg.activation_params)
        gr, gi = shifted_sigmoid_parts(u[0], u[1], a=params["a"], b=params["b"])
        return jnp.stack([gr, gi])
    sigma = activation_fn(cfg.activation, cfg.activation_params)
    return to_parts(sigma(from_parts(u)))


def quantise(v: Inexact[Array, ...], bits: int | None, lo: float, hi: float) -> Inexact[Array, ...]:
    """Uniform ``bits``-bit quantiser over ``[lo, hi]`` (clips); real and imaginary parts
    separately; identity when ``bits`` is ``None``."""
    if bits is None:
        return v
    n = 2**bits - 1

    def q(a: Array) -> Array:
        return lo + jnp.round(jnp.clip((a - lo) / (hi - lo), 0.0, 1.0) * n) * (hi - lo) / n

    return jax.lax.complex(q(v.real), q(v.imag)) if jnp.iscomplexobj(v) else q(v)


def neuron_noise(
    chip: Chip, key: PRNGKeyArray, shape: tuple[int, int, int], step: Array | int | None = None
) -> Float[Array, ...]:
    """The neuron noise of a settle of ``shape = (steps, m, sum n_l)``: all steps
    ``(steps, m, n)`` (``step=None``, one call) or step ``step``'s ``(m, n)`` alone, the same
    numbers: step ``t`` draws from ``fold_in(fold_in(key, t), 5)`` (one draw for all layers),
    a pure function of the settle's key, the step and the shape of one step."""

    def one(t: Array | int) -> Array:
        return chip.noise_std * gaussian(jr.fold_in(jr.fold_in(key, t), 5), shape[1:])

    return jax.vmap(one)(jnp.arange(shape[0])) if step is None else one(step)


def input_drive(
    r0: Read, x: Float[Array, "m n0"], geometry: ConvGeometry | None = None
) -> tuple[Array, Array | None]:
    """The first layer's input drive ``W_0 x + b_0`` ``(m, n_1)`` and its device read-noise
    variance. The drive is constant during a settle, so it is read once; read noise on it is
    still drawn per step (from this constant variance). A conv first crossbar
    (``geometry``) gives its read before pooling, ``(m, C_out H_conv W_conv)``: the
    periphery pools it, with that step's noise, in :func:`neuron_targets`."""
    if geometry is not None:
        out = conv_forward(r0, geometry, x[None], None, None)[0]
        var = None
        if r0.dev_var is not None:
            var = conv.conv_read(x**2, r0.dev_var[:, :-1], geometry)
            var = var + _per_channel(r0.dev_var[:, -1], geometry)
        return out, var
    drive = matmul(x, r0.w.T) * r0.fwd_gain + r0.b
    var = None
    if r0.dev_var is not None:
        var = matmul(x**2, r0.dev_var[:, :-1].T) + r0.dev_var[:, -1]
    return drive, var


def neuron_targets(
    chip: Chip,
    reads: dict[str, Read],
    drive: Float[Array, "m n1"],
    drive_var: Array | None,
    s: tuple[Parts, ...],
    beta: Parts,
    y: Float[Array, "m c"],
    *,
    key: PRNGKeyArray | None,
    nudged: bool = True,
    neuron_noise: Float[Array, "m n"] | None = None,
) -> tuple[Parts, ...]:
    """``sigma(g_l u_l + c_l + noise)`` for every neuron layer (the map the chip iterates).

    ``s = (s_1, ..., s_L)`` as parts ``(P, m, n_l)`` (input excluded); ``beta`` ``(P, m, 1)``;
    ``key=None`` gives the noiseless map (read noise is drawn from ``key``); ``nudged=False``
    skips the nudge term (``beta`` is known to be 0: the free phase never reads the readout
    crossbar backwards); ``neuron_noise`` ``(m, sum n_l)``: this step's neuron noise
    (:func:`neuron_noise`), or ``None`` for none.
    """
    cfg = chip.config
    names = cfg.crossbar_names
    n_hidden = len(cfg.layers) - 1
    p = s[0].shape[0]
    std = chip.read_noise_std if cfg.read_noise else None
    ks = (lambda i: None) if key is None else (lambda i: jr.fold_in(key, i))
    out = []
    m = drive.shape[0]
    widths = [si.shape[-1] for si in s]
    offsets = [0, *np.cumsum(widths).tolist()]
    geoms = [cfg.geometry(n) for n in names]
    # Conv crossbars between neuron layers are read forward before the layer loop: the
    # transposed read of crossbar l pools back through that same read (softmax pooling's
    # Jacobian depends on it). Same keys as a dense forward read.
    z = {
        l: conv_forward(reads[names[l - 1]], geoms[l - 1], s[l - 2], std, ks(10 * l + 1))
        for l in range(2, n_hidden + 1)
        if geoms[l - 1] is not None
    }
    for l in range(1, n_hidden + 1):
        # Parts terms (complex when the state is) and real-only terms (the input drive, the
        # offset, neuron noise) are kept apart: real ones are added in place to part 0.
        u = None
        real = None
        if l == 1:
            real = drive
            if key is not None and (std is not None or drive_var is not None):
                real = real + _noise(ks(0), drive.shape, std, drive_var)
            if geoms[0] is not None and geoms[0].pool != "none":
                real = conv.pool(real, geoms[0])
        elif l in z:
            u = _pool_parts(z[l], geoms[l - 1])  # type: ignore[arg-type]
        else:
            u = read_forward(reads[names[l - 1]], s[l - 2], std, ks(10 * l + 1))
        if l < n_hidden:
            g = geoms[l]
            if g is None:
                t = read_transpose(reads[names[l]], s[l], std, ks(10 * l + 2))
            else:
                t = conv_transposed(reads[names[l]], g, z[l + 1], s[l], std, ks(10 * l + 2))
            u = t if u is None else u + t
        elif nudged and cfg.loss == "cross_entropy":
            ro = reads["readout"]
            o = read_forward(ro, s[l - 1], std, ks(10 * l + 3))
            err = _softmax_parts(o) - _real_only(y, o.shape[0])
            t = -_times(beta, read_transpose(ro, err, std, ks(10 * l + 4)))
            u = t if u is None else u + t
        elif nudged:
            t = -_times(beta, s[l - 1] - _real_only(y, p))
            u = t if u is None else u + t
        gain = chip.neuron_gain[l - 1]
        if u is None:
            u = jnp.zeros((p, m, s[l - 1].shape[-1]), drive.dtype)
        u = gain * u
        real = chip.neuron_offset[l - 1] + (0.0 if real is None else gain * real)
        if neuron_noise is not None:
            real = real + neuron_noise[:, offsets[l - 1] : offsets[l]]
        u = u.at[0].add(real)  # in place: these terms are real
        out.append(_sigma_parts(chip, u))
    return tuple(out)


def settle(
    chip: Chip,
    x: Float[Array, "m n0"],
    y: Float[Array, "m c"],
    beta: Inexact[Array, " m"],
    init: tuple[Inexact[Array, "m n"], ...],
    *,
    steps: int,
    key: PRNGKeyArray | None,
    nudged: bool = True,
) -> SettleOut:
    """Run ``steps`` synchronous settle steps from ``init`` under nudge ``beta``.

    **Arguments:**

    - ``chip``: the fabricated chip.
    - ``x``: ``(m, n_0)`` float32 clamped inputs (already through the DAC).
    - ``y``: ``(m, classes)`` float32 one-hot targets (ignored where ``beta == 0``).
    - ``beta``: ``(m,)`` nudge per row, real or complex; complex makes the states complex.
    - ``init``: ``(s_1, ..., s_L)`` initial neuron states, each ``(m, n_l)``.
    - ``steps``: number of steps (static, >= 1).
    - ``key``: PRNG key for neuron and read noise; ``None`` only for a noiseless chip.
    - ``nudged``: ``False`` when ``beta`` is 0 for every row (the free phase): the nudge
      term is skipped rather than multiplied by zero.

    **Returns:** :class:`SettleOut` (states include ``s_0 = x``).

    **Raises:** ``ValueError`` if the chip is noisy and ``key`` is ``None``.
    """
    cfg = chip.config
    if chip.noisy and key is None:
        raise ValueError("this chip has neuron or read noise: settle needs a PRNG key")
    reads = prepare_reads(chip)
    cplx = jnp.iscomplexobj(beta) or any(jnp.iscomplexobj(s) for s in init)
    # float32 by default; float64 when x is float64 (precision studies under jax x64).
    cdtype = jnp.result_type(x.dtype, jnp.complex64)
    state = tuple(to_parts(s.astype(cdtype) if cplx else s.astype(x.dtype)) for s in init)
    beta_p = to_parts((beta.astype(cdtype) if cplx else beta.astype(x.dtype))[:, None])
    name0 = cfg.crossbar_names[0]
    drive, drive_var = input_drive(reads[name0], x, cfg.geometry(name0))

    widths = tuple(int(si.shape[-1]) for si in state)
    m = x.shape[0]
    noisy = cfg.neuron_noise and key is not None
    shape = (steps, m, sum(widths))
    ahead = None
    if noisy and shape[1] * shape[2] <= NOISE_AHEAD_PER_STEP and math.prod(shape) <= 2**22:
        # All steps' neuron noise in one call: per-step draws of a few thousand normals cost
        # more in per-op overhead than in arithmetic. The same numbers as step by step.
        ahead = neuron_noise(chip, key, shape)  # type: ignore[arg-type]

    def targets(
        s: tuple[Parts, ...], k: PRNGKeyArray | None, noise: Array | None
    ) -> tuple[Parts, ...]:
        return neuron_targets(
            chip, reads, drive, drive_var, s, beta_p, y, key=k, nudged=nudged, neuron_noise=noise
        )

    def noise_at(t: Array | int, drawn: Array | None) -> Array | None:
        if drawn is not None or not noisy:
            return drawn
        return neuron_noise(chip, key, shape, t)  # type: ignore[arg-type]

    def step(
        s: tuple[Parts, ...], tn: tuple[Array, Array | None]
    ) -> tuple[tuple[Parts, ...], None]:
        t, drawn = tn
        k = None if key is None else jr.fold_in(key, t)
        tgt = targets(s, k, noise_at(t, drawn))
        return tuple(si + cfg.rate * (ti - si) for si, ti in zip(s, tgt, strict=True)), None

    unroll = max(1, min(cfg.unroll, steps - 1))
    xs = (jnp.arange(steps - 1), None if ahead is None else ahead[:-1])
    state, _ = jax.lax.scan(step, state, xs, unroll=unroll)
    # Last step separately: its increment is the residual.
    k_last = None if key is None else jr.fold_in(key, steps - 1)
    tgt = targets(state, k_last, noise_at(steps - 1, None if ahead is None else ahead[-1]))
    gaps = [
        jnp.max(jnp.sqrt(jnp.sum((t - si) ** 2, axis=0)), axis=-1)
        for t, si in zip(tgt, state, strict=True)
    ]
    residual = jnp.max(jnp.stack(gaps), axis=0)
    state = tuple(si + cfg.rate * (ti - si) for si, ti in zip(state, tgt, strict=True))
    logits = None
    if cfg.loss == "cross_entropy":
        k_o = None if key is None else jr.fold_in(key, steps)
        std = chip.read_noise_std if cfg.read_noise else None
        logits = from_parts(read_forward(reads["readout"], state[-1], std, k_o))
    return SettleOut(states=(x, *(from_parts(s) for s in state)), logits=logits, residual=residual)


def post_signals(
    chip: Chip,
    states: tuple[Inexact[Array, "... n"], ...],
    *,
    key: PRNGKeyArray | None,
) -> dict[str, Inexact[Array, "... conv_size"]]:
    """The post-synaptic signal of every conv crossbar at settled ``states``.

    ``states``: ``(s_0, ..., s_L)`` with any leading axes (``(B, n_l)`` or ``(K, B, n_l)``).
    For a conv crossbar from layer ``l`` to ``l + 1`` the signal is ``J_pool(z)^T s_{l+1}``
    at every position, ``(..., C_out H_conv W_conv)`` (``z``: the crossbar's read of
    ``s_l``, with its read noise from ``key``): what the periphery drives onto the rows in
    the transposed read, and what the local learning rule multiplies with the input
    patches. Empty for an MLP. Without pooling it is ``s_{l+1}`` itself; with average
    pooling ``s_{l+1}`` spread over each window.
    """
    cfg = chip.config
    out: dict[str, Array] = {}
    std = chip.read_noise_std if cfg.read_noise else None
    reads = None
    for i, name in enumerate(cfg.crossbar_names):
        g = cfg.geometry(name)
        if g is None:
            continue
        if reads is None:
            reads = prepare_reads(chip)
        pre, post = states[i], states[i + 1]
        lead = pre.shape[:-1]
        p = to_parts(pre.reshape(-1, pre.shape[-1]))
        if g.pool in ("none", "average"):
            # The pooling's transpose does not depend on the read: no read needed.
            dtype = jnp.result_type(pre.dtype, post.dtype)
            z = to_parts(jnp.zeros((p.shape[1], g.conv_size), dtype))
        else:
            k = None if key is None else jr.fold_in(key, i)
            z = conv_forward(reads[name], g, p, std, k)
        d = conv.pool_transpose(from_parts(z), post.reshape(-1, post.shape[-1]), g)
        out[name] = d.reshape(*lead, g.conv_size)
    return out
