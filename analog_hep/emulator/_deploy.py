"""Programming a trained chip for deployment: its weights written once more into pairs.

Training leaves a pair's two devices wherever the updates put them: a one-sided pair with
refresh (PCM) carries a large common conductance in both devices, a balanced pair sits
around mid-range. Each device then drifts with its own exponent, and the weight, a
difference, moves by the spread of the drift times that common conductance. Before a chip
is put to inference, the trained weights can be read and programmed once into the pair form
of ``scheme`` (``one_sided``: ``G+ = g_min + relu(W) g_unit``, ``G- = g_min + relu(-W)
g_unit``; ``balanced``: ``mid +- W g_unit / 2``) with the card's programming noise, levels
and write noise, as aihwkit's inference flow programs its weights (docs/devices.md, "Drift
after training").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import PRNGKeyArray

from ..physics import program_conductance, visible_conductance, write_noise_std_S
from ..spec import DeviceCard, MappingSpec
from ._chip import Chip, Crossbar, _target_pair_S

__all__ = ["program_weights"]


def _programmed(
    xb: Crossbar, card: DeviceCard, scheme: Literal["one_sided", "balanced"], key: PRNGKeyArray
) -> Crossbar:
    w = (xb.g_plus_S - xb.g_minus_S) / xb.g_unit_S  # (n_out, n_in + 1), bias column last
    span_S = card.conductance.g_max_S - card.conductance.g_min_S
    mapping = MappingSpec(scheme=scheme, w_max=span_S / xb.g_unit_S)
    g_plus, g_minus, _, _ = _target_pair_S(w, mapping, card)
    k_prog, k_vis = jr.split(key)
    hidden = program_conductance(card, xb.devices, jnp.stack([g_plus, g_minus]), key=k_prog)
    visible = visible_conductance(card, hidden, key=k_vis) if write_noise_std_S(card) else hidden
    return dataclasses.replace(xb, g_plus_S=visible[0], g_minus_S=visible[1], hidden_S=hidden)


def program_weights(
    chip: Chip,
    cards: Mapping[str, DeviceCard],
    *,
    scheme: Literal["one_sided", "balanced"],
    key: PRNGKeyArray,
) -> Chip:
    """``chip`` with every crossbar's weights, as its array reads them now, programmed once
    into fresh pairs of ``scheme`` (open loop, the card's programming and write noise from
    ``key``; a stuck device stays stuck). The weight scale ``g_unit_S`` is kept. A Tiki-Taka
    crossbar's slow array is programmed; its fast array is left as it is.

    **Arguments:** ``cards`` crossbar name -> card (``Circuit.devices``); ``scheme``
    ``one_sided`` (one device of each pair at ``g_min``: the least common conductance, the
    least drift noise) or ``balanced``; ``key`` a PRNG key.

    **Returns:** a :class:`Chip` of the same structure.
    """
    out = {
        name: _programmed(xb, cards[name], scheme, jr.fold_in(key, i))
        for i, (name, xb) in enumerate(chip.crossbars.items())
    }
    return dataclasses.replace(chip, crossbars=out)
