"""A fabricated chip after drift, and the reference read of global drift compensation.

``drift_chip(chip, cards, t_s)`` is the chip ``t_s`` seconds after its last programming
under each crossbar card's power-law drift (:func:`analog_hep.physics.drift_conductance`:
``G(t) = G(t0) (max(t, t0_s) / t0_s)^-nu`` per device, ``nu`` drawn at fabrication);
``reference_read(crossbar, card, *, key)`` is what the periphery measures when it drives a
crossbar's inputs with known vectors (docs/devices.md, "Drift after training").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ..physics import drift_conductance, read_conductance
from ..spec import DeviceCard
from ._chip import Chip, Crossbar

__all__ = ["drift_chip", "reference_read"]


def drift_chip(chip: Chip, cards: Mapping[str, DeviceCard], t_s: float) -> Chip:
    """``chip`` ``t_s`` seconds after its last programming.

    Every device of every crossbar drifts with its own ``nu`` (``Crossbar.devices.nu``), both
    the visible conductances the array reads (``g_plus_S``, ``g_minus_S``) and the hidden
    ones pulses move (``hidden_S``); a crossbar whose card has no ``drift`` section, and
    stuck devices, are unchanged. Nothing else of the chip changes.

    **Arguments:** ``cards`` crossbar name -> its card (``Circuit.devices``); ``t_s`` time
    since programming in seconds (> 0; no drift before the card's ``t0_s``).

    **Returns:** a :class:`Chip` of the same structure, shapes and dtypes.
    """
    out: dict[str, Crossbar] = {}
    for name, xb in chip.crossbars.items():
        card = cards[name]
        visible = drift_conductance(card, xb.devices, jnp.stack([xb.g_plus_S, xb.g_minus_S]), t_s)
        hidden = drift_conductance(card, xb.devices, xb.hidden_S, t_s)
        out[name] = dataclasses.replace(
            xb, g_plus_S=visible[0], g_minus_S=visible[1], hidden_S=hidden
        )
    return dataclasses.replace(chip, crossbars=out)


def reference_read(
    crossbar: Crossbar, card: DeviceCard, *, key: PRNGKeyArray | None
) -> Float[Array, "n_out n_in1"]:
    """The outputs of one crossbar, read forward, for the one-hot inputs ``e_j``.

    ``Y[:, j] = g_f * (G+_r - G-_r) e_j / g_unit_S`` for ``j = 0 .. n_in`` (the last one is
    the bias line), where ``G_r`` is one read of the visible conductances with the card's
    relative read noise (fresh per device, from ``key``) and ``g_f`` the crossbar's
    forward output gain. Periphery noise and the ADC are left out (averaged over all
    outputs of the read they vanish).

    **Arguments:** ``key`` needed only when ``card.read_noise_rel > 0``.

    **Returns:** float32 ``(n_out, n_in + 1)`` outputs in weight units (dimensionless).
    """
    pair = jnp.stack([crossbar.g_plus_S, crossbar.g_minus_S])
    read = read_conductance(card, pair, key=key)
    w = (read[0] - read[1]) / crossbar.g_unit_S
    return crossbar.forward_gain[:, None] * w
