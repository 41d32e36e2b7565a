"""Write noise and quantised levels: the visible conductance of a pulsed device.

aihwkit keeps a hidden (persistent) weight ``w`` that the pulses move, and shows a visible
weight ``w + write_noise_std * dw_min * ξ`` that is re-sampled whenever the device is touched
(``getScaledWriteNoise()`` in ``rpu_pulsed_device.h``). In siemens::

    G_visible = q(G_hidden + write_noise_std * dw_min * scale_S * ξ)

where ``scale_S`` is :func:`normalised_scale_S` and ``q`` rounds to the card's ``levels``
(evenly spaced between ``g_min_S`` and ``g_max_S``; identity when ``levels`` is null).
Pulses and write-verify act on the hidden conductance; reads see the visible one.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from ..spec import DeviceCard, IdealResponse
from ._device_array import normalised_scale_S, quantise_levels

__all__ = ["resample_visible", "visible_conductance", "write_noise_std_S"]


def write_noise_std_S(card: DeviceCard) -> float:
    """Standard deviation (S) of the visible-conductance write noise: ``σ_w dw_min scale_S``."""
    resp = card.response
    if isinstance(resp, IdealResponse):
        return 0.0
    return float(resp.write_noise_std * resp.dw_min * normalised_scale_S(card))


def visible_conductance(
    card: DeviceCard,
    g_hidden_S: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None,
) -> Float[Array, "*shape"]:
    """Visible conductance of every device, freshly sampled (S).

    ``G_visible = q(G_hidden + write_noise_std * dw_min * scale_S * ξ)``; write noise is not
    clipped to the bounds (it is an apparent, not a stored, deviation).

    **Arguments:** ``g_hidden_S`` float32 ``(*shape)`` hidden conductances (S); ``key`` needed
    only when the card has ``write_noise_std > 0``.

    **Returns:** float32 ``(*shape)`` visible conductances (S).
    """
    g = jnp.asarray(g_hidden_S, jnp.float32)
    std_S = write_noise_std_S(card)
    if std_S > 0.0:
        if key is None:
            raise ValueError(f"card {card.name!r} has write_noise_std > 0: a key is required")
        g = g + std_S * jr.normal(key, g.shape, jnp.float32)
    return quantise_levels(g, card).astype(jnp.float32)


def resample_visible(
    card: DeviceCard,
    g_hidden_S: Float[Array, "*shape"],
    g_visible_S: Float[Array, "*shape"],
    touched: Bool[Array, "*shape"],
    *,
    key: PRNGKeyArray | None,
) -> Float[Array, "*shape"]:
    """Re-sample the visible conductance of the devices that were touched, keep the others.

    **Arguments:** ``g_hidden_S`` hidden conductances after the update; ``g_visible_S`` the
    previous visible conductances; ``touched`` bool mask of devices that received a pulse
    (for example ``PulseStats.pulses > 0``); all ``(*shape)``.

    **Returns:** float32 ``(*shape)`` visible conductances (S).
    """
    fresh = visible_conductance(card, g_hidden_S, key=key)
    return jnp.where(touched, fresh, jnp.asarray(g_visible_S, jnp.float32))
