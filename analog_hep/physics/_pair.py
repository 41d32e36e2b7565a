"""Differential device pairs: weights from a pair, and refresh of one-sided pairs.

A weight is ``W = (G+ - G-) / g_unit_S``. A one-sided pair of unidirectional devices (PCM:
SET pulses only) can only grow both conductances, so both devices eventually saturate.
aihwkit's ``OneSidedUnitCell`` (``simulator/configs/compounds.py``) refreshes such a pair:
with the normalised conductances ``ĝ = (G - g_min_S) / (g_max_S - g_min_S)``, when

    max(ĝ+, ĝ-) > upper_threshold   and   min(ĝ+, ĝ-) > lower_threshold

both devices are reset to their lowest conductance ``b_min_S`` and the difference
``G+ - G-`` is rewritten onto one of them (``G+`` if positive, else ``G-``). Here the
rewrite is closed-loop, potentiation only (:func:`write_verify` with ``allow_down=False``);
aihwkit rewrites open-loop with ``refresh_update`` pulses. The card has no reset noise
parameters, so the reset itself is exact (aihwkit's PCM preset resets to ``b_min + 0.01 ±
0.02``, normalised).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ..spec import DeviceCard, IdealResponse
from ._device_array import DeviceArray, normalised_scale_S
from ._program import write_verify

__all__ = ["RefreshReport", "maybe_refresh", "pair_weights", "refresh_pair"]


class RefreshReport(NamedTuple):
    """Outcome of a refresh (scalars).

    - ``n_refreshed``: int32, pairs that were reset and rewritten;
    - ``n_failed``: int32, rewritten devices that missed their target (write-verify);
    - ``pulses``: int32, programming pulses spent.
    """

    n_refreshed: Int[Array, ""]
    n_failed: Int[Array, ""]
    pulses: Int[Array, ""]


def pair_weights(
    g_pair_S: Float[Array, "pair ..."], g_unit_S: float | Float[Array, ""]
) -> Float[Array, "*shape"]:
    """``W = (G+ - G-) / g_unit_S`` (dimensionless) from ``(2, *shape)`` conductances (S)."""
    g = jnp.asarray(g_pair_S, jnp.float32)
    return (g[0] - g[1]) / g_unit_S


def _needs_refresh(card: DeviceCard, g: Array) -> Array:
    assert card.refresh is not None
    lo, hi = card.conductance.g_min_S, card.conductance.g_max_S
    norm = (g - lo) / (hi - lo)
    upper = jnp.maximum(norm[0], norm[1])
    lower = jnp.minimum(norm[0], norm[1])
    return (upper > card.refresh.upper_threshold) & (lower > card.refresh.lower_threshold)


def _default_budget(card: DeviceCard) -> tuple[float, int]:
    resp = card.response
    if isinstance(resp, IdealResponse):
        return 1e-3 * (card.conductance.g_max_S - card.conductance.g_min_S), 0
    step_S = resp.dw_min * normalised_scale_S(card)
    states = (resp.w_max - resp.w_min) / resp.dw_min
    return step_S, int(min(max(2.0 * states, 16.0), 4096.0))


def refresh_pair(
    card: DeviceCard,
    devices: DeviceArray,
    g_pair_S: Float[Array, "pair ..."],
    *,
    key: PRNGKeyArray,
    tolerance_S: float | None = None,
    max_pulses: int | None = None,
) -> tuple[Float[Array, "pair ..."], RefreshReport]:
    """Refresh the saturated pairs of a one-sided crossbar (thresholds from ``card.refresh``).

    **Arguments:**

    - ``card``: device card with a ``refresh`` section.
    - ``devices``: :class:`DeviceArray` of shape ``(2, *shape)``.
    - ``g_pair_S``: float32 ``(2, *shape)`` conductances (S) of ``G+``, ``G-``.
    - ``key``: PRNG key for the rewrite.
    - ``tolerance_S``: write-verify tolerance (default: one nominal step
      ``dw_min * scale_S``).
    - ``max_pulses``: write-verify budget (default: twice the card's number of states,
      between 16 and 4096).

    **Returns:** ``(g_pair_S, RefreshReport)``; pairs that need no refresh are unchanged.
    """
    if card.refresh is None:
        raise ValueError(
            f"card {card.name!r} has no `refresh` section: only one-sided pairs are refreshed"
        )
    g = jnp.asarray(g_pair_S, jnp.float32)
    need = _needs_refresh(card, g)  # (*shape)
    diff = g[0] - g[1]
    reset = jnp.where(need[None], devices.b_min_S, g)
    target = reset + jnp.stack([jnp.maximum(diff, 0.0), jnp.maximum(-diff, 0.0)])
    active = need[None] & (target > reset)
    tol_default, budget_default = _default_budget(card)
    tol = tol_default if tolerance_S is None else tolerance_S
    budget = budget_default if max_pulses is None else max_pulses
    g_new, rep = write_verify(
        card,
        devices,
        reset,
        target,
        tolerance_S=tol,
        max_pulses=budget,
        key=key,
        allow_down=False,
        active=active,
    )
    return g_new, RefreshReport(
        n_refreshed=jnp.sum(need, dtype=jnp.int32),
        n_failed=rep.n_failed,
        pulses=rep.total_pulses,
    )


def maybe_refresh(
    card: DeviceCard,
    devices: DeviceArray,
    g_pair_S: Float[Array, "pair ..."],
    n_updates: int | Int[Array, ""],
    *,
    key: PRNGKeyArray,
) -> tuple[Float[Array, "pair ..."], RefreshReport]:
    """Refresh when ``n_updates`` is a multiple of ``card.refresh.every_updates`` (in jit).

    Call after every update with the number of updates done so far (>= 1). A card without a
    ``refresh`` section returns the pair unchanged.
    """
    g = jnp.asarray(g_pair_S, jnp.float32)
    zero = jnp.int32(0)
    idle = RefreshReport(n_refreshed=zero, n_failed=zero, pulses=zero)
    if card.refresh is None:
        return g, idle
    due = (jnp.asarray(n_updates, jnp.int32) % card.refresh.every_updates) == 0

    def run(g: Array) -> tuple[Array, RefreshReport]:
        return refresh_pair(card, devices, g, key=key)

    def skip(g: Array) -> tuple[Array, RefreshReport]:
        return g, idle

    return jax.lax.cond(due & jnp.any(_needs_refresh(card, g)), run, skip, g)
