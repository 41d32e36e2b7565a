"""Per-device parameters of a crossbar, drawn once at fabrication, and initial programming.

Device-to-device draws follow aihwkit's pulsed device (``rpu_pulsed_device.cpp``, populate
step), converted from normalised units to siemens with the card's linear map
``G = g_min_S + (w - w_min) * scale_S``, ``scale_S = (g_max_S - g_min_S) / (w_max - w_min)``:

- bounds ``b_max = w_max (1 + w_max_dtod xi)``, ``b_min = w_min (1 + w_min_dtod xi)``;
- step gain ``g = 1 + dw_min_dtod xi`` (or ``exp(dw_min_dtod xi)`` when log-normal);
- asymmetry ``r = up_down_dtod xi``, ``up_bias = min(up_down, 0)``,
  ``down_bias = -max(up_down, 0)``; ``dw_up = |up_bias + g + r| dw_min``,
  ``dw_down = |down_bias + g - r| dw_min``;
- stuck devices (card ``faults``) have zero steps and a fixed conductance.

Shapes: every field has the crossbar's device shape ``(..., n_out, n_in)`` (a leading axis of
2 holds the ``G+``/``G-`` devices of a differential pair).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ..spec import DeviceCard, IdealResponse
from ..spec.device_models import device_model

__all__ = ["DeviceArray", "draw_devices", "normalised_scale_S", "program_conductance"]


class DeviceArray(eqx.Module):
    """Per-device constants of one array of devices (all in siemens unless stated).

    **Fields** (each ``Float[Array, "*shape"]``):

    - ``b_min_S``, ``b_max_S``: the device's own conductance bounds;
    - ``dw_up_S``, ``dw_down_S``: magnitude of the mean step of one up/down pulse at
      the reference state (zero for ideal and stuck devices);
    - ``gamma_up``, ``gamma_down``: per-device slope/exponent of state-dependent models
      (dimensionless; ``linear_step`` slopes, ``pow_step`` exponents; zero otherwise);
    - ``stuck``: ``Bool`` mask of stuck devices;
    - ``nu``: drift exponent (dimensionless; zero without drift).
    """

    b_min_S: Float[Array, "*shape"]
    b_max_S: Float[Array, "*shape"]
    dw_up_S: Float[Array, "*shape"]
    dw_down_S: Float[Array, "*shape"]
    gamma_up: Float[Array, "*shape"]
    gamma_down: Float[Array, "*shape"]
    stuck: Bool[Array, "*shape"]
    nu: Float[Array, "*shape"]


def normalised_scale_S(card: DeviceCard) -> float:
    """Siemens per normalised unit of the card's pulse-response parameters.

    For an ideal card (no normalised range) the range ``[-1, 1]`` is assumed, so that a
    "normalised unit" is half the conductance range.
    """
    span_S = card.conductance.g_max_S - card.conductance.g_min_S
    resp = card.response
    if isinstance(resp, IdealResponse):
        return span_S / 2.0
    return span_S / (resp.w_max - resp.w_min)


def _gamma_draw(card: DeviceCard, key: PRNGKeyArray, shape: tuple[int, ...]) -> tuple[Array, Array]:
    """Per-device slopes/exponents of the card's model (the registry's ``gammas``), else 0."""
    resp = card.response
    k_up, k_down = jr.split(key)
    zeros = jnp.zeros(shape, jnp.float32)
    gammas = device_model(resp).gammas
    if gammas is None:
        return zeros, zeros
    return gammas(
        jnp,
        resp,
        lambda: jr.normal(k_up, shape, dtype=jnp.float32),
        lambda: jr.normal(k_down, shape, dtype=jnp.float32),
        zeros,
    )


def draw_devices(card: DeviceCard, shape: tuple[int, ...], *, key: PRNGKeyArray) -> DeviceArray:
    """Draw the device-to-device parameters of ``shape`` devices of one technology.

    **Arguments:** ``card`` the device card; ``shape`` the device array shape;
    ``key`` a JAX PRNG key (the only source of randomness).

    **Returns:** a :class:`DeviceArray` whose fields all have ``shape``.
    """
    g_min_S = card.conductance.g_min_S
    g_max_S = card.conductance.g_max_S
    scale_S = normalised_scale_S(card)
    keys = jr.split(key, 8)
    resp = card.response
    if isinstance(resp, IdealResponse):
        b_min_S = jnp.full(shape, g_min_S, jnp.float32)
        b_max_S = jnp.full(shape, g_max_S, jnp.float32)
        dw_up_S = dw_down_S = jnp.zeros(shape, jnp.float32)
    else:
        w_max = resp.w_max * (1.0 + resp.w_max_dtod * jr.normal(keys[0], shape, dtype=jnp.float32))
        w_min = resp.w_min * (1.0 + resp.w_min_dtod * jr.normal(keys[1], shape, dtype=jnp.float32))
        # A bound may not cross zero (aihwkit's consistency rule), nor go below 0 siemens.
        w_max = jnp.maximum(w_max, 0.0)
        w_min = jnp.minimum(w_min, 0.0)
        b_max_S = g_min_S + (w_max - resp.w_min) * scale_S
        b_min_S = jnp.maximum(g_min_S + (w_min - resp.w_min) * scale_S, 0.0)
        xi = jr.normal(keys[2], shape, dtype=jnp.float32)
        gain = (
            jnp.exp(resp.dw_min_dtod * xi)
            if resp.dw_min_dtod_log_normal
            else 1.0 + resp.dw_min_dtod * xi
        )
        r = resp.up_down_dtod * jr.normal(keys[3], shape, dtype=jnp.float32)
        up_bias = min(resp.up_down, 0.0)
        down_bias = -max(resp.up_down, 0.0)
        dw_up_S = jnp.abs(up_bias + gain + r) * resp.dw_min * scale_S
        dw_down_S = jnp.abs(down_bias + gain - r) * resp.dw_min * scale_S
    gamma_up, gamma_down = _gamma_draw(card, keys[4], shape)

    faults = card.faults
    u = jr.uniform(keys[5], shape, dtype=jnp.float32)
    off = u < faults.stuck_off_prob
    on = (u >= faults.stuck_off_prob) & (u < faults.stuck_off_prob + faults.stuck_on_prob)
    rnd = (u >= faults.stuck_off_prob + faults.stuck_on_prob) & (
        u < faults.stuck_off_prob + faults.stuck_on_prob + faults.stuck_random_prob
    )
    stuck = off | on | rnd
    stuck_at_S = jnp.where(
        on,
        g_max_S,
        jnp.where(
            rnd,
            g_min_S + (g_max_S - g_min_S) * jr.uniform(keys[6], shape, dtype=jnp.float32),
            g_min_S,
        ),
    )
    # A stuck device has a zero-width range: clipping to its bounds pins it.
    b_min_S = jnp.where(stuck, stuck_at_S, b_min_S)
    b_max_S = jnp.where(stuck, stuck_at_S, b_max_S)
    dw_up_S = jnp.where(stuck, 0.0, dw_up_S)
    dw_down_S = jnp.where(stuck, 0.0, dw_down_S)

    if card.drift is not None:
        nu = card.drift.nu * (
            1.0 + card.drift.nu_dtod * jr.normal(keys[7], shape, dtype=jnp.float32)
        )
        nu = jnp.maximum(nu, 0.0)
    else:
        nu = jnp.zeros(shape, jnp.float32)
    f32 = jnp.float32
    return DeviceArray(
        b_min_S=b_min_S.astype(f32),
        b_max_S=b_max_S.astype(f32),
        dw_up_S=dw_up_S.astype(f32),
        dw_down_S=dw_down_S.astype(f32),
        gamma_up=gamma_up.astype(f32),
        gamma_down=gamma_down.astype(f32),
        stuck=stuck,
        nu=nu.astype(f32),
    )


def quantise_levels(g_S: Float[Array, "*shape"], card: DeviceCard) -> Float[Array, "*shape"]:
    """Round to the nearest of the card's ``levels`` evenly spaced conductances (if any)."""
    levels = card.conductance.levels
    if levels is None:
        return g_S
    lo, hi = card.conductance.g_min_S, card.conductance.g_max_S
    step_S = (hi - lo) / (levels - 1)
    return lo + jnp.clip(jnp.round((g_S - lo) / step_S), 0, levels - 1) * step_S


def program_conductance(
    card: DeviceCard,
    devices: DeviceArray,
    target_S: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None,
) -> Float[Array, "*shape"]:
    """Program target conductances once (open loop): ``G = clip(G* + e, b_min, b_max)``.

    The programming error ``e`` is Gaussian with std ``program_noise_rel * (g_max_S - g_min_S)``;
    the result is rounded to the card's levels and clipped to each device's own bounds
    (a stuck device keeps its stuck value).

    **Arguments:** ``target_S`` target conductances (S), shape of ``devices``; ``key`` needed
    only when the card has programming noise.

    **Returns:** the programmed conductances (S), same shape, float32.
    """
    g_S = target_S
    if card.program_noise_rel > 0.0:
        if key is None:
            raise ValueError(f"card {card.name!r} has program_noise_rel > 0: a key is required")
        span_S = card.conductance.g_max_S - card.conductance.g_min_S
        g_S = g_S + card.program_noise_rel * span_S * jr.normal(
            key, jnp.shape(g_S), dtype=jnp.float32
        )
    g_S = quantise_levels(g_S, card)
    g_S = jnp.clip(g_S, devices.b_min_S, devices.b_max_S)
    return jax.lax.stop_gradient(g_S).astype(jnp.float32)
