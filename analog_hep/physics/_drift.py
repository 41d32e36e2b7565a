"""Power-law conductance drift and per-read noise.

Drift (PCM-like, aihwkit ``DriftParameter``; Nandakumar et al., ICECS 2019)::

    G(t) = G(t0) * (t / t0_s) ** (-nu)        for t >= t0_s (no drift before t0_s)

with ``nu`` drawn per device at fabrication (``DeviceArray.nu``: ``nu (1 + nu_dtod ξ)``,
clipped at 0). Read noise: every read sees ``G (1 + read_noise_rel ξ)`` with a fresh ``ξ``
per device and read.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..spec import DeviceCard
from ._device_array import DeviceArray

__all__ = ["drift_conductance", "read_conductance"]


def drift_conductance(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    t_s: float | Float[Array, ""],
) -> Float[Array, "*shape"]:
    """Conductance after drifting from ``t0_s`` (when it was programmed) to ``t_s``.

    ``G(t) = G(t0) (max(t, t0_s) / t0_s)^(-nu)`` per device; identity for a card without
    ``drift`` and for stuck devices.

    **Arguments:** ``g_S`` float32 ``(*shape)`` conductances at ``t0_s`` (S); ``t_s`` time
    since programming in seconds (scalar, > 0).

    **Returns:** float32 ``(*shape)`` drifted conductances (S).
    """
    g = jnp.asarray(g_S, jnp.float32)
    if card.drift is None:
        return g
    t0_s = card.drift.t0_s
    ratio = jnp.maximum(jnp.asarray(t_s, jnp.float32), t0_s) / t0_s
    factor = ratio ** (-devices.nu)
    return jnp.where(devices.stuck, g, g * factor)


def read_conductance(
    card: DeviceCard,
    g_S: Float[Array, "*shape"],
    *,
    key: PRNGKeyArray | None,
) -> Float[Array, "*shape"]:
    """One noisy read of every device: ``G (1 + read_noise_rel ξ)`` (S).

    **Arguments:** ``g_S`` float32 ``(*shape)`` conductances (S); ``key`` needed only when
    ``card.read_noise_rel > 0``.

    **Returns:** float32 ``(*shape)`` read conductances (S).
    """
    g = jnp.asarray(g_S, jnp.float32)
    if card.read_noise_rel == 0.0:
        return g
    if key is None:
        raise ValueError(f"card {card.name!r} has read_noise_rel > 0: a key is required")
    return g * (1.0 + card.read_noise_rel * jr.normal(key, g.shape, jnp.float32))
