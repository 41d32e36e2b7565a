"""Pulsed conductance updates: one "update once" per pulse, vectorised over whole arrays.

Each pulse moves a device by the response of its card's model (aihwkit pulsed devices,
``rpu_<model>_device.cpp``), written in the card's normalised state ``w`` and converted to
siemens with the card's linear map (:func:`normalised_scale_S`)::

    w = w_min + (G - g_min_S) / scale_S,        dG = dw * scale_S

Per-device constants come from a :class:`DeviceArray` (already in siemens): the step sizes
``dw_up_S``/``dw_down_S`` (``Δw^d``), the device's own bounds ``b_min_S``/``b_max_S``
(normalised ``β_min``/``β_max``) and the slopes/exponents ``gamma_up``/``gamma_down``.
With ``f^d(w)`` the model's state factor and ``σ = dw_min_std`` (c2c noise, one standard
normal ``ξ`` per pulse), one pulse in direction ``d ∈ {+1, -1}`` is::

    G ← clip(G + d Δw^d f^d(w) + n^d(w) ξ, b_min_S, b_max_S)

with ``f^d`` and ``n^d`` per model in the device-model registry
(:mod:`analog_hep.spec.device_models`, one module per model; the table is in
docs/devices.md, section 3). Stuck devices have ``b_min_S == b_max_S`` and zero steps: they
never move. The ``ideal`` model has no pulses; its updates are exact (:func:`apply_delta_exact`).

Dimensionless factors are computed in float32 on the normalised state; everything returned
is a conductance in siemens (float32).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ..spec import DeviceCard, IdealResponse
from ..spec.device_models import DeviceState, Factors, device_model
from ._device_array import DeviceArray, normalised_scale_S, quantise_levels

__all__ = [
    "PulseStats",
    "apply_delta_exact",
    "apply_pulse_counts",
    "expected_step_S",
    "has_c2c_noise",
    "n_pulses",
    "pulse_noise_S",
    "pulse_step",
]

_F32 = jnp.float32


def _require_pulsed(card: DeviceCard, what: str) -> None:
    if isinstance(card.response, IdealResponse):
        raise ValueError(
            f"{what}: card {card.name!r} uses the 'ideal' model, which has no pulse response; "
            "ideal devices are updated exactly with `apply_delta_exact` (or give the card a "
            "pulsed response model such as constant_step)"
        )


def has_c2c_noise(card: DeviceCard) -> bool:
    """Whether a pulse of this card draws cycle-to-cycle noise (static)."""
    resp = card.response
    if isinstance(resp, IdealResponse):
        return False
    return resp.dw_min_std > 0.0


def _normalised(card: DeviceCard, g_S: Array) -> Array:
    """``w = w_min + (G - g_min_S) / scale_S`` (dimensionless)."""
    resp = card.response
    w_min = 0.0 if isinstance(resp, IdealResponse) else resp.w_min
    return w_min + (g_S - card.conductance.g_min_S) / normalised_scale_S(card)


def _factors(card: DeviceCard, devices: DeviceArray, w: Array) -> Factors:
    """State factors ``(f_up, f_down, extra_noise)`` of the card's model at normalised ``w``.

    The equations are the registry's (:mod:`analog_hep.spec.device_models`, one module per
    model), evaluated with ``jax.numpy``. ``extra_noise`` is a state-dependent additive c2c
    noise in normalised units (ExpStep's complex noise), or ``None``.
    """
    resp = card.response
    scale_S = normalised_scale_S(card)
    g_min_S = card.conductance.g_min_S
    bw_min = resp.w_min + (devices.b_min_S - g_min_S) / scale_S
    bw_max = resp.w_min + (devices.b_max_S - g_min_S) / scale_S
    state = DeviceState(w, bw_min, bw_max, devices.gamma_up, devices.gamma_down)
    factors = device_model(resp).factors
    assert factors is not None  # pulsed models only (_require_pulsed)
    return factors(jnp, resp, state)


def _noise_is_mult(card: DeviceCard) -> bool:
    resp = card.response
    return bool(getattr(resp, "mult_noise", True))


def _step_terms(
    card: DeviceCard, devices: DeviceArray, g_S: Array, direction: Array
) -> tuple[Array, Array]:
    """Mean step and c2c noise std of one pulse, both in siemens, before clipping.

    ``direction`` is float32 in {-1, 0, +1}; both terms are zero where it is 0.
    """
    w = _normalised(card, g_S)
    f_up, f_down, extra = _factors(card, devices, w)
    up = direction > 0.0
    down = direction < 0.0
    dw_S = jnp.where(up, devices.dw_up_S, jnp.where(down, devices.dw_down_S, 0.0))
    f = jnp.where(up, f_up, jnp.where(down, f_down, 0.0))
    mean_S = direction * dw_S * f
    sigma = card.response.dw_min_std
    if sigma == 0.0:
        return mean_S, jnp.zeros_like(mean_S)
    if not _noise_is_mult(card):
        noise_S = sigma * dw_S  # additive: aihwkit Δw^d (1 + σ ξ) + s w
    elif extra is not None:
        touched = (direction != 0.0).astype(_F32)
        noise_S = sigma * (jnp.abs(mean_S) + touched * extra * normalised_scale_S(card))
    else:
        noise_S = sigma * jnp.abs(mean_S)
    return mean_S, noise_S


def expected_step_S(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    direction: Int[Array, "*shape"],
) -> Float[Array, "*shape"]:
    """Noise-free conductance change ``d Δw^d f^d(w) scale_S`` of one pulse (S), unclipped.

    **Arguments:** ``g_S`` conductances (S) before the pulse; ``direction`` int in
    {-1, 0, +1} (0 = no pulse), same shape as ``devices``.

    **Returns:** float32 ``(*shape)`` change in siemens (what the model's equation predicts
    on average over cycle-to-cycle noise, before clipping to the bounds).
    """
    _require_pulsed(card, "expected_step_S")
    mean_S, _ = _step_terms(card, devices, g_S.astype(_F32), jnp.asarray(direction).astype(_F32))
    return mean_S


def pulse_noise_S(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    direction: Int[Array, "*shape"],
) -> Float[Array, "*shape"]:
    """Standard deviation (S) of the cycle-to-cycle noise of one pulse, per device."""
    _require_pulsed(card, "pulse_noise_S")
    _, noise_S = _step_terms(card, devices, g_S.astype(_F32), jnp.asarray(direction).astype(_F32))
    return noise_S


def _clip(devices: DeviceArray, g_raw: Array, direction: Array) -> tuple[Array, Array]:
    """Clip to each device's own bounds; flag pulsed, non-stuck devices that hit a bound."""
    g_new = jnp.clip(g_raw, devices.b_min_S, devices.b_max_S)
    hit = (g_new != g_raw) & (direction != 0.0) & ~devices.stuck
    return g_new, hit


def _pulse_once(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Array,
    direction: Array,
    key: PRNGKeyArray | None,
) -> tuple[Array, Array]:
    mean_S, noise_S = _step_terms(card, devices, g_S, direction)
    g_raw = g_S + mean_S
    if has_c2c_noise(card):
        if key is None:
            raise ValueError(
                f"card {card.name!r} has dw_min_std > 0 (cycle-to-cycle noise): a key is required"
            )
        g_raw = g_raw + noise_S * jr.normal(key, g_S.shape, _F32)
    return _clip(devices, g_raw, direction)


def pulse_step(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    direction: Int[Array, "*shape"],
    *,
    key: PRNGKeyArray | None,
) -> Float[Array, "*shape"]:
    """Apply ONE pulse to every device whose ``direction`` is non-zero.

    ``G ← clip(G + d Δw^d f^d(w) + n^d(w) ξ, b_min_S, b_max_S)`` (module docstring), with
    one fresh standard normal ``ξ`` per device. The model is chosen from
    ``card.response.model`` at trace time. Operates on the hidden conductance; the visible
    one (write noise, levels) is :func:`visible_conductance`.

    **Arguments:**

    - ``card``: a pulsed device card (not ``ideal``; use :func:`apply_delta_exact`).
    - ``devices``: per-device constants, shape ``(*shape)``.
    - ``g_S``: float32 ``(*shape)`` conductances (S) before the pulse.
    - ``direction``: int ``(*shape)`` in {-1, 0, +1}: +1 potentiate, -1 depress, 0 no pulse.
    - ``key``: PRNG key for the c2c noise (may be ``None`` when ``dw_min_std == 0``).

    **Returns:** float32 ``(*shape)`` conductances (S) after the pulse.
    """
    _require_pulsed(card, "pulse_step")
    d = jnp.sign(jnp.asarray(direction).astype(_F32))
    g_new, _ = _pulse_once(card, devices, jnp.asarray(g_S, _F32), d, key)
    return g_new


class PulseStats(NamedTuple):
    """What a pulse train did, per device.

    - ``pulses``: ``(*shape)`` pulses applied to each device (the counts as given: int32,
      or float32 for fractional counts);
    - ``hit_bound``: bool ``(*shape)``: a pulse of this (non-stuck) device was clipped at
      one of its bounds.
    """

    pulses: Array
    hit_bound: Bool[Array, "*shape"]


def apply_pulse_counts(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    counts: Int[Array, "*shape"] | Float[Array, "*shape"],
    direction: Int[Array, "*shape"] | Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None,
    c2c: str = "per_pulse",
) -> tuple[Float[Array, "*shape"], PulseStats]:
    """Apply ``counts[i]`` pulses in ``direction[i]`` to each device, one after the other.

    Pulses are applied in rounds (``lax.while_loop`` up to ``ceil(max(counts))``); in round
    ``r`` every device with ``counts > r`` receives one pulse (devices are independent, so
    this is the same as pulsing each device ``counts`` times in a row). Fractional counts
    (the expected-value update) end with a partial pulse of size ``φ = counts - floor(counts)``:
    mean step ``φ`` times the model's step, noise ``sqrt(φ)`` times its noise.

    **Arguments:**

    - ``counts``: ``(*shape)`` non-negative pulse counts (int, or float for fractional).
    - ``direction``: ``(*shape)`` in {-1, 0, +1}.
    - ``c2c``: ``"per_pulse"`` draws the cycle-to-cycle noise of every pulse (exact, one
      normal per device per round); ``"lumped"`` follows the noise-free trajectory pulse by
      pulse (clipping each pulse) and adds the summed noise variance ``Σ n^d(w_k)^2`` as one
      normal draw per device at the end, then clips again. The mean is exact for the
      linear-family models (constant/linear step, soft bounds) away from the bounds; the
      lumped variance ignores noise fed back through the state. Much cheaper on CPU, where
      drawing normals dominates the cost.

    **Returns:** ``(g_S, PulseStats)``.
    """
    _require_pulsed(card, "apply_pulse_counts")
    if c2c not in ("per_pulse", "lumped"):
        raise ValueError(f"c2c must be 'per_pulse' or 'lumped', found {c2c!r}")
    g0 = jnp.asarray(g_S, _F32)
    counts = jnp.asarray(counts)
    d_all = jnp.sign(jnp.asarray(direction).astype(_F32))
    counts_f = jnp.where(d_all != 0.0, jnp.maximum(counts.astype(_F32), 0.0), 0.0)
    noisy = has_c2c_noise(card)
    if noisy and key is None:
        raise ValueError(
            f"card {card.name!r} has dw_min_std > 0 (cycle-to-cycle noise): a key is required"
        )
    lumped = noisy and c2c == "lumped"
    n_rounds = jnp.ceil(jnp.max(counts_f, initial=0.0)).astype(jnp.int32)

    def cond(state: tuple) -> Array:
        return state[0] < n_rounds

    def body(state: tuple) -> tuple:
        r, g, var, hit = state
        frac = jnp.clip(counts_f - r.astype(_F32), 0.0, 1.0)
        d = jnp.where(frac > 0.0, d_all, 0.0)
        mean_S, noise_S = _step_terms(card, devices, g, d)
        g_raw = g + frac * mean_S
        if noisy and not lumped:
            assert key is not None
            xi = jr.normal(jr.fold_in(key, r), g.shape, _F32)
            g_raw = g_raw + jnp.sqrt(frac) * noise_S * xi
        if lumped:
            var = var + frac * noise_S * noise_S
        g_new, h = _clip(devices, g_raw, d)
        return r + 1, g_new, var, hit | h

    init = (jnp.int32(0), g0, jnp.zeros_like(g0), jnp.zeros(g0.shape, bool))
    _, g, var, hit = jax.lax.while_loop(cond, body, init)
    if lumped:
        assert key is not None
        xi = jr.normal(jr.fold_in(key, 0), g.shape, _F32)
        g, h = _clip(devices, g + jnp.sqrt(var) * xi, counts_f)
        hit = hit | h
    return g, PulseStats(pulses=counts, hit_bound=hit)


def n_pulses(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    direction: Int[Array, "*shape"],
    n: int | Int[Array, "*shape"],
    *,
    key: PRNGKeyArray | None,
) -> Float[Array, "*shape"]:
    """Apply ``n`` pulses (a number, or one count per device) in ``direction``, sequentially.

    Same as calling :func:`pulse_step` ``n`` times with keys ``fold_in(key, r)``.

    **Returns:** float32 ``(*shape)`` conductances (S).
    """
    counts = jnp.broadcast_to(jnp.asarray(n, jnp.int32), jnp.shape(g_S))
    g, _ = apply_pulse_counts(card, devices, g_S, counts, direction, key=key)
    return g


def apply_delta_exact(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    delta_S: Float[Array, "*shape"],
) -> Float[Array, "*shape"]:
    """Exact (floating-point) update of an ideal device: ``G ← clip(q(G + ΔG), b_min, b_max)``.

    ``q`` rounds to the card's ``levels`` (if any); stuck devices keep their value.

    **Arguments:** ``g_S``, ``delta_S``: float32 ``(*shape)`` conductance and requested
    change (S).

    **Returns:** float32 ``(*shape)`` conductances (S).
    """
    g = quantise_levels(jnp.asarray(g_S, _F32) + jnp.asarray(delta_S, _F32), card)
    return jnp.clip(g, devices.b_min_S, devices.b_max_S).astype(_F32)
