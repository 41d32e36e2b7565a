"""The parallel outer-product update of a crossbar of differential pairs (RPU scheme).

**Sign convention.** The requested weight change is

    ΔW_req = lr * Σ_b d_b x_bᵀ                 (n_out, n_in1), dimensionless weights

with *no* minus sign: for gradient descent the caller passes ``d = -δ`` (or a negative
``lr``). ``x`` drives the columns (inputs, bias column included), ``d`` the rows (outputs).

**Pulse coincidences** (Gokmen & Vlasov, Front. Neurosci. 2016; aihwkit
``rpu_pulsed_meta_parameter.cpp``). Per sample ``b``, column ``j`` fires a Bernoulli pulse
train of ``BL = bit_length`` slots with probability ``p_x,j`` per slot, row ``i`` one with
``p_d,i``; a coincidence in a slot fires one pulse on the pair ``(i, j)`` in direction
``sign(lr d_bi x_bj)``. The count ``n_bij = Σ_t a_bti c_btj`` has mean ``BL p_d,i p_x,j``.
With ``Δw₁`` the mean weight change of one coincidence (below) and, per sample,
``c = |lr| / (Δw₁ BL)``, update management sets

    p_x,j = min(1, |x_bj| sqrt(c d_max / x_max)),   p_d,i = min(1, |d_bi| sqrt(c x_max / d_max))

so that ``E[n_bij] Δw₁ = |ΔW_req,bij|`` and the largest probabilities on both sides are
equal (``x_max = max_j |x_bj|``, ``d_max = max_i |d_bi|``). Where a probability would exceed
1 it is clipped and the request of every entry in that row/column cannot be met: those
``(b, i, j)`` entries are counted in ``n_clipped_request`` (with update management this
happens exactly when ``|lr| x_max d_max / Δw₁ > BL``).

**Pairs.** ``balanced``: a coincidence pulses ``G+`` in direction ``s`` *and* ``G-`` in
direction ``-s`` (``Δw₁ = (mean dw_up_S + mean dw_down_S) / g_unit_S``); ``one_sided``
(unidirectional devices, e.g. PCM SET): ``s > 0`` pulses ``G+`` up, ``s < 0`` pulses ``G-``
up (``Δw₁ = mean dw_up_S / g_unit_S``); means over the non-stuck devices.

**Modes.** ``stochastic`` samples the pulse trains; ``expected`` applies the expected counts
``BL p_d p_x`` per sample, pulse by pulse with a final partial pulse; ``pulse_count`` applies
``round(|ΔW_req| / Δw₁)`` pulses per pair for the whole batch, capped at ``BL`` (the cap is
counted in ``n_clipped_request``). For an ``ideal`` card the update is exact
(``ΔG± = ±ΔW g_unit / 2`` balanced; ``ΔG+ = relu(ΔW) g_unit``, ``ΔG- = relu(-ΔW) g_unit``
one-sided), clipped to the devices' bounds.

The pulses of one sample are applied in rounds (a device's response is state dependent);
the cost is ``Σ_b max_ij n_bij`` elementwise rounds over the array.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .._numerics import einsum
from ..spec import DeviceCard, IdealResponse
from ._device_array import DeviceArray
from ._pulse import apply_delta_exact, apply_pulse_counts, has_c2c_noise

__all__ = ["UpdateReport", "coincidence_step", "default_scheme", "outer_product_update"]

_F32 = jnp.float32
_MODES = ("stochastic", "expected", "pulse_count")
_SCHEMES = ("balanced", "one_sided")


class UpdateReport(NamedTuple):
    """What one crossbar update did (all scalars, cheap to log every step).

    - ``pulses_applied``: int32, device pulses fired on the crossbar (a balanced
      coincidence pulses two devices; in ``expected`` mode the rounded expected counts);
    - ``n_clipped_bound``: int32, devices at least one of whose pulses (or exact update) was
      clipped at one of its bounds (stuck devices excluded);
    - ``n_clipped_request``: int32, requested entries (per sample ``(b, i, j)``; per pair in
      ``pulse_count`` mode) whose expected change had to be cut because a pulse probability
      (or the pulse count) exceeded what ``bit_length`` allows;
    - ``requested_norm``: float32, ``‖ΔW_req‖_F`` (weights, dimensionless);
    - ``realised_norm``: float32, ``‖ΔW_real‖_F`` with ``ΔW_real = (ΔG+ - ΔG-) / g_unit_S``;
    - ``realised_over_requested``: float32, ``<ΔW_real, ΔW_req> / ‖ΔW_req‖²`` (1 when the
      update is realised on average; 0 for an empty request).
    """

    pulses_applied: Int[Array, ""]
    n_clipped_bound: Int[Array, ""]
    n_clipped_request: Int[Array, ""]
    requested_norm: Float[Array, ""]
    realised_norm: Float[Array, ""]
    realised_over_requested: Float[Array, ""]


def default_scheme(card: DeviceCard) -> str:
    """``"one_sided"`` for a card with a refresh rule (unidirectional pair), else ``"balanced"``."""
    return "one_sided" if card.refresh is not None else "balanced"


def _mean_live(values: Array, live: Array) -> Array:
    n = jnp.maximum(jnp.sum(live, dtype=jnp.int32), 1).astype(_F32)
    return jnp.sum(jnp.where(live, values, 0.0)) / n


def _coincidence_step(devices: DeviceArray, g_unit_S: Array, scheme: str) -> Array:
    """``Δw₁``: mean weight change of one coincidence (dimensionless)."""
    live = ~devices.stuck
    up_S = _mean_live(devices.dw_up_S, live)
    if scheme == "one_sided":
        return up_S / g_unit_S
    return (up_S + _mean_live(devices.dw_down_S, live)) / g_unit_S


def coincidence_step(
    card: DeviceCard, devices: DeviceArray, g_unit_S: float, scheme: str | None = None
) -> float | None:
    """Mean weight change of one pulse coincidence on a crossbar (dimensionless), as the
    update uses it (``Δw₁`` of the module docstring; ``scheme`` ``None``:
    :func:`default_scheme`); ``None`` for an ``ideal`` card (exact updates, no pulses)."""
    if isinstance(card.response, IdealResponse):
        return None
    scheme = default_scheme(card) if scheme is None else scheme
    return float(_coincidence_step(devices, jnp.asarray(g_unit_S, _F32), scheme))


def _pair_pulses(counts: Array, sign: Array, scheme: str) -> tuple[Array, Array]:
    """Per-pair counts and signs -> per-device ``(2, n_out, n_in1)`` counts and directions."""
    if scheme == "one_sided":
        zero = jnp.zeros_like(counts)
        c2 = jnp.stack([jnp.where(sign > 0.0, counts, zero), jnp.where(sign < 0.0, counts, zero)])
        return c2, jnp.ones(c2.shape, _F32)
    return jnp.stack([counts, counts]), jnp.stack([sign, -sign])


def _report(
    g_old: Array,
    g_new: Array,
    dw_req: Array,
    g_unit_S: Array,
    pulses: Array,
    hit: Array,
    n_clip_req: Array,
) -> UpdateReport:
    dw_real = ((g_new[0] - g_old[0]) - (g_new[1] - g_old[1])) / g_unit_S
    req_sq = jnp.sum(dw_req * dw_req)
    ratio = jnp.where(req_sq > 0.0, jnp.sum(dw_real * dw_req) / jnp.where(req_sq > 0, req_sq, 1), 0)
    return UpdateReport(
        pulses_applied=jnp.asarray(pulses, jnp.int32),
        n_clipped_bound=jnp.sum(hit, dtype=jnp.int32),
        n_clipped_request=jnp.asarray(n_clip_req, jnp.int32),
        requested_norm=jnp.sqrt(req_sq).astype(_F32),
        realised_norm=jnp.sqrt(jnp.sum(dw_real * dw_real)).astype(_F32),
        realised_over_requested=ratio.astype(_F32),
    )


def _probabilities(
    x: Array, d: Array, lr: Array, dw1: Array, bit_length: int
) -> tuple[Array, Array, Array]:
    """Update-managed per-slot probabilities ``(p_x, p_d)`` and the clipped-request count."""
    ax, ad = jnp.abs(x), jnp.abs(d)
    x_max = jnp.max(ax, axis=1, keepdims=True)  # (B, 1)
    d_max = jnp.max(ad, axis=1, keepdims=True)
    ok = (x_max > 0.0) & (d_max > 0.0)
    c = jnp.abs(lr) / (dw1 * bit_length)
    safe_x = jnp.where(ok, x_max, 1.0)
    safe_d = jnp.where(ok, d_max, 1.0)
    a_x = jnp.where(ok, jnp.sqrt(c * safe_d / safe_x), 0.0)
    a_d = jnp.where(ok, jnp.sqrt(c * safe_x / safe_d), 0.0)
    px_raw, pd_raw = a_x * ax, a_d * ad
    # Entries (b, i, j) with a clipped probability on either side, both factors non-zero.
    nz_x = jnp.sum(ax > 0.0, axis=1, dtype=jnp.int32)
    nz_d = jnp.sum(ad > 0.0, axis=1, dtype=jnp.int32)
    cl_x = jnp.sum(px_raw > 1.0, axis=1, dtype=jnp.int32)
    cl_d = jnp.sum(pd_raw > 1.0, axis=1, dtype=jnp.int32)
    n_clip = jnp.sum(cl_d * nz_x + cl_x * nz_d - cl_d * cl_x)
    return jnp.minimum(px_raw, 1.0), jnp.minimum(pd_raw, 1.0), n_clip


def outer_product_update(
    card: DeviceCard,
    devices: DeviceArray,
    g_pair_S: Float[Array, "2 n_out n_in1"],
    x: Float[Array, "batch n_in1"],
    d: Float[Array, "batch n_out"],
    *,
    lr: float | Float[Array, ""],
    g_unit_S: float | Float[Array, ""],
    mode: str = "stochastic",
    bit_length: int = 31,
    scheme: str | None = None,
    c2c: str = "per_pulse",
    key: PRNGKeyArray | None,
) -> tuple[Float[Array, "2 n_out n_in1"], UpdateReport]:
    """Apply ``ΔW_req = lr Σ_b d_b x_bᵀ`` to a crossbar of device pairs through its devices.

    See the module docstring for the pulse scheme, update management and modes. Everything
    is traced (``lax.scan`` over the batch, ``lax.while_loop`` over pulse rounds), so the
    whole update runs inside ``jit``; ``card``, ``mode``, ``bit_length``, ``scheme`` and
    ``c2c`` are static.

    **Arguments:**

    - ``card``: device card of the crossbar (all devices of both arrays).
    - ``devices``: :class:`DeviceArray` of shape ``(2, n_out, n_in1)`` (``G+``, ``G-``).
    - ``g_pair_S``: float32 ``(2, n_out, n_in1)`` hidden conductances (S) of ``G+``, ``G-``.
    - ``x``: float32 ``(batch, n_in1)`` column (input) signals, bias column included.
    - ``d``: float32 ``(batch, n_out)`` row (output) signals.
    - ``lr``: learning rate (dimensionless; its sign multiplies the request).
    - ``g_unit_S``: siemens per weight unit (``W = (G+ - G-) / g_unit_S``), > 0.
    - ``mode``: ``"stochastic"`` | ``"expected"`` | ``"pulse_count"``.
    - ``bit_length``: pulse-train length BL (>= 1).
    - ``scheme``: ``"balanced"`` | ``"one_sided"``; ``None`` takes :func:`default_scheme`.
    - ``c2c``: ``"per_pulse"`` | ``"lumped"`` cycle-to-cycle noise (:func:`apply_pulse_counts`).
    - ``key``: PRNG key (pulse trains and device noise); ``None`` only for an ideal card or
      a noise-free card in a deterministic mode.

    **Returns:** ``(g_pair_S, report)``: new hidden conductances ``(2, n_out, n_in1)`` (S)
    and an :class:`UpdateReport`.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, found {mode!r}")
    scheme = default_scheme(card) if scheme is None else scheme
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme must be one of {_SCHEMES}, found {scheme!r}")
    if bit_length < 1:
        raise ValueError(f"bit_length must be >= 1, found {bit_length!r}")
    g_old = jnp.asarray(g_pair_S, _F32)
    if g_old.ndim != 3 or g_old.shape[0] != 2:
        raise ValueError(f"g_pair_S must have shape (2, n_out, n_in1), found {g_old.shape}")
    _, n_out, n_in1 = g_old.shape
    x = jnp.asarray(x, _F32)
    d = jnp.asarray(d, _F32)
    if x.ndim != 2 or d.ndim != 2 or x.shape[1] != n_in1 or d.shape[1] != n_out:
        raise ValueError(
            f"x must be (batch, {n_in1}) and d (batch, {n_out}) for a crossbar of shape "
            f"{g_old.shape}, found x {x.shape} and d {d.shape}"
        )
    if x.shape[0] != d.shape[0]:
        raise ValueError(f"x and d must share the batch axis, found {x.shape} and {d.shape}")
    lr_a = jnp.asarray(lr, _F32)
    g_unit = jnp.asarray(g_unit_S, _F32)
    dw_req = lr_a * einsum("bi,bj->ij", d, x)

    if isinstance(card.response, IdealResponse):
        if scheme == "one_sided":
            delta = jnp.stack([jnp.maximum(dw_req, 0.0), jnp.maximum(-dw_req, 0.0)]) * g_unit
        else:
            delta = jnp.stack([dw_req, -dw_req]) * (0.5 * g_unit)
        raw = g_old + delta
        g_new = apply_delta_exact(card, devices, g_old, delta)
        hit = (jnp.clip(raw, devices.b_min_S, devices.b_max_S) != raw) & ~devices.stuck
        return g_new, _report(g_old, g_new, dw_req, g_unit, 0, hit, 0)

    dw1 = _coincidence_step(devices, g_unit, scheme)
    sign_lr = jnp.sign(lr_a)
    if key is None and (mode == "stochastic" or has_c2c_noise(card)):
        raise ValueError(
            f"outer_product_update(mode={mode!r}) with card {card.name!r} draws noise: pass a key"
        )
    n_samples = 1 if mode == "pulse_count" else x.shape[0]
    if key is None:  # nothing random is drawn: placeholder keys, never used
        keys = jnp.zeros((n_samples + 1, 2), jnp.uint32)
    else:
        keys = jr.split(key, n_samples + 1)  # one for the pulse trains, one per sample

    if mode == "pulse_count":
        n_raw = jnp.round(jnp.abs(dw_req) / dw1)
        n_clip = jnp.sum(n_raw > bit_length, dtype=jnp.int32)
        counts = jnp.minimum(n_raw, float(bit_length))[None]
        signs = jnp.sign(dw_req)[None]
    else:
        px, pd, n_clip = _probabilities(x, d, lr_a, dw1, bit_length)
        signs = sign_lr * jnp.sign(d)[:, :, None] * jnp.sign(x)[:, None, :]
        if mode == "expected":
            counts = bit_length * pd[:, :, None] * px[:, None, :]
        else:
            # One draw for the row and column trains (each random-bit site costs compile time).
            u = jr.uniform(keys[-1], (x.shape[0], bit_length, n_out + n_in1), _F32)
            rows = (u[:, :, :n_out] < pd[:, None, :]).astype(_F32)
            cols = (u[:, :, n_out:] < px[:, None, :]).astype(_F32)
            counts = einsum("bto,bti->boi", rows, cols)

    def one_sample(carry: tuple, inp: tuple) -> tuple[tuple, None]:
        g, hit, pulses = carry
        counts_b, signs_b, key_b = inp
        c2, d2 = _pair_pulses(counts_b, signs_b, scheme)
        g, stats = apply_pulse_counts(card, devices, g, c2, d2, key=key_b, c2c=c2c)
        pulses = pulses + jnp.sum(jnp.where(d2 != 0.0, jnp.round(c2).astype(jnp.int32), 0))
        return (g, hit | stats.hit_bound, pulses), None

    init = (g_old, jnp.zeros(g_old.shape, bool), jnp.int32(0))
    (g_new, hit, pulses), _ = jax.lax.scan(one_sample, init, (counts, signs, keys[:-1]))
    return g_new, _report(g_old, g_new, dw_req, g_unit, pulses, hit, n_clip)
