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
import jax.random as jr
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
    stuck devices, are unchanged. A Tiki-Taka crossbar's fast array drifts under its own
    card. Nothing else of the chip changes.

    **Arguments:** ``cards`` crossbar name -> its card (``Circuit.devices``); ``t_s`` time
    since programming in seconds (> 0; no drift before the card's ``t0_s``).

    **Returns:** a :class:`Chip` of the same structure, shapes and dtypes.
    """
    out: dict[str, Crossbar] = {}
    for name, xb in chip.crossbars.items():
        card = cards[name]
        visible = drift_conductance(card, xb.devices, jnp.stack([xb.g_plus_S, xb.g_minus_S]), t_s)
        hidden = drift_conductance(card, xb.devices, xb.hidden_S, t_s)
        tt = xb.tiki_taka
        if tt is not None:
            pair = jnp.stack([tt.g_plus_S, tt.g_minus_S])
            fast = drift_conductance(tt.card, tt.devices, pair, t_s)
            fast_hidden = drift_conductance(tt.card, tt.devices, tt.hidden_S, t_s)
            tt = dataclasses.replace(tt, g_plus_S=fast[0], g_minus_S=fast[1], hidden_S=fast_hidden)
        out[name] = dataclasses.replace(
            xb, g_plus_S=visible[0], g_minus_S=visible[1], hidden_S=hidden, tiki_taka=tt
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
    outputs of the read they vanish). A Tiki-Taka crossbar with ``gamma > 0`` adds ``gamma``
    times the same read of its fast array.

    **Arguments:** ``key`` needed only when ``card.read_noise_rel > 0``.

    **Returns:** float32 ``(n_out, n_in + 1)`` outputs in weight units (dimensionless).
    """
    pair = jnp.stack([crossbar.g_plus_S, crossbar.g_minus_S])
    read = read_conductance(card, pair, key=key)
    w = (read[0] - read[1]) / crossbar.g_unit_S
    tt = crossbar.tiki_taka
    if tt is not None and tt.spec.gamma != 0.0:
        k_fast = None if key is None else jr.fold_in(key, 1)
        fast = read_conductance(tt.card, jnp.stack([tt.g_plus_S, tt.g_minus_S]), key=k_fast)
        w = w + jnp.float32(tt.spec.gamma) * (fast[0] - fast[1]) / tt.g_unit_S
    return crossbar.forward_gain[:, None] * w
