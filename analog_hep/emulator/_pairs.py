"""One array of differential device pairs updated by pulses: the outer-product update, the
refresh of one-sided pairs and the write noise of the devices it touched. The driver's
plain update and a Tiki-Taka crossbar's fast array both use it."""

from __future__ import annotations

import jax.random as jr

from ..physics import maybe_refresh, outer_product_update, resample_visible, write_noise_std_S

__all__ = ["update_pair", "visible_after"]


def visible_after(card, hidden_old, hidden_new, visible_old, key):
    """Write noise: devices that were written get a fresh visible conductance."""
    if not write_noise_std_S(card):
        return hidden_new
    return resample_visible(card, hidden_new, visible_old, hidden_new != hidden_old, key=key)


def update_pair(
    card, devices, g_pair, visible, cols, rows, lr, g_unit_S, n_updates, mode, bit_length, key
):
    """Pulse ``lr Σ rows colsᵀ`` into the pair array, refresh it when due, redraw the write
    noise of the devices touched; ``(hidden, visible, UpdateReport)``."""
    k_upd, k_ref, k_vis = jr.split(key, 3)
    g_new, rep = outer_product_update(
        card,
        devices,
        g_pair,
        cols,
        rows,
        lr=lr,
        g_unit_S=g_unit_S,
        mode=mode,
        bit_length=bit_length,
        key=k_upd,
    )
    g_new, _ = maybe_refresh(card, devices, g_new, n_updates, key=k_ref)
    return g_new, visible_after(card, g_pair, g_new, visible, k_vis), rep
