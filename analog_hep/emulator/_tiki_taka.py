"""The update of a Tiki-Taka crossbar: pulses into the fast array ``A``, and every
``transfer_every`` updates a transfer from ``A`` through the buffer ``H`` into the slow array
``C`` (the crossbar's own pairs), in one compiled call (docs/devices.md, "Tiki-Taka").

Keys: the update's key is ``fold_in(base_key, call)`` as for a plain crossbar; ``A``'s pulses
use it exactly as a plain crossbar's pulses do, and the transfer draws from
``fold_in(key, TRANSFER_KEY)``. The transfer schedule follows the driver's update counter of
the crossbar, which its checkpoint holds, so a resumed run transfers where an uninterrupted
one does.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from .._numerics import einsum
from ..physics import (
    UpdateReport,
    chopper_signs,
    maybe_refresh,
    read_conductance,
    transfer,
    transfer_mask,
)
from ..spec import DeviceCard
from ._chip import Crossbar
from ._pairs import update_pair, visible_after

__all__ = ["TRANSFER_KEY", "tiki_taka_step"]

TRANSFER_KEY = 15
"""``fold_in(update key, TRANSFER_KEY)``: the draws of a transfer (read noise, ``C``'s
pulses, refresh, write noise)."""


def _columns(xb: Crossbar) -> int:
    """Columns in the transfer cycle: the inputs, and the bias line when the crossbar has one."""
    n_in1 = xb.g_plus_S.shape[1]
    return n_in1 if xb.has_bias else n_in1 - 1


def _transfer(card: DeviceCard, xb: Crossbar, bit_length: int, key: jax.Array):
    """One transfer of ``xb``'s next columns into ``C``; the new crossbar and the counts
    ``(pulses, clipped at a bound, capped at bit_length)``."""
    tt = xb.tiki_taka
    assert tt is not None
    spec = tt.spec
    n_in1 = xb.g_plus_S.shape[1]
    n_cols = _columns(xb)
    k_read, k_move, k_ref, k_vis = jr.split(key, 4)
    mask = transfer_mask(tt.pointer, n_cols=n_cols, count=spec.columns_per_transfer, n_in1=n_in1)
    signs = chopper_signs(tt.column_reads, spec.chopper_period)
    # The read sees A's visible conductances, with its card's per-device read noise.
    read_a = read_conductance(tt.card, jnp.stack([tt.g_plus_S, tt.g_minus_S]), key=k_read)
    w_a = (read_a[0] - read_a[1]) / tt.g_unit_S
    hidden, buffer, rep = transfer(
        card,
        xb.devices,
        xb.hidden_S,
        w_a,
        tt.buffer,
        signs,
        mask,
        g_unit_S=xb.g_unit_S,
        transfer_lr=spec.transfer_lr,
        threshold=spec.threshold,
        read_noise_std=spec.read_noise_std,
        forget_buffer=spec.forget_buffer,
        bit_length=bit_length,
        key=k_move,
    )
    transfers = tt.transfers + 1
    hidden, _ = maybe_refresh(card, xb.devices, hidden, transfers, key=k_ref)
    visible = visible_after(
        card, xb.hidden_S, hidden, jnp.stack([xb.g_plus_S, xb.g_minus_S]), k_vis
    )
    tt = dataclasses.replace(
        tt,
        buffer=buffer,
        pointer=(tt.pointer + min(spec.columns_per_transfer, n_cols)) % n_cols,
        column_reads=tt.column_reads + mask.astype(jnp.int32),
        transfers=transfers,
    )
    new = dataclasses.replace(
        xb, g_plus_S=visible[0], g_minus_S=visible[1], hidden_S=hidden, tiki_taka=tt
    )
    return new, (rep.pulses, rep.n_clipped_bound, rep.n_clipped_request)


def _weight_change(old: Crossbar, new: Crossbar) -> jax.Array:
    """``ΔW = ΔC + gamma ΔA`` (bias column included) from conductance differences, so that
    an array nobody touched contributes exactly 0."""
    change = ((new.g_plus_S - old.g_plus_S) - (new.g_minus_S - old.g_minus_S)) / old.g_unit_S
    a0, a1 = old.tiki_taka, new.tiki_taka
    assert a0 is not None and a1 is not None
    if a0.spec.gamma != 0.0:
        fast = ((a1.g_plus_S - a0.g_plus_S) - (a1.g_minus_S - a0.g_minus_S)) / a0.g_unit_S
        change = change + jnp.float32(a0.spec.gamma) * fast
    return change


@eqx.filter_jit
def tiki_taka_step(
    card: DeviceCard,
    xb: Crossbar,
    cols: jax.Array,
    rows: jax.Array,
    lr: jax.Array,
    n_updates: jax.Array,
    base_key: jax.Array,
    call: jax.Array,
    mode: str,
    bit_length: int,
) -> tuple[Crossbar, UpdateReport, jax.Array]:
    """Validate (finite factors), pulse ``lr Σ rows colsᵀ`` into ``A`` (each column times
    its chopper sign) and, on every ``transfer_every``-th update, transfer.

    **Arguments:** ``card`` ``C``'s card; ``xb`` the crossbar (with ``tiki_taka``); ``cols``
    float32 ``(R, n_in + 1)``, ``rows`` float32 ``(R, n_out)``; ``lr`` float32 scalar;
    ``n_updates`` int32, this update's number (1 for the first); ``base_key`` and ``call``:
    the driver's key and call counter; ``mode``, ``bit_length`` the periphery's (static).

    **Returns:** ``(crossbar, report, ok)``: the updated crossbar; an :class:`UpdateReport`
    whose counts add ``A``'s pulses and ``C``'s and whose norms are those of the effective
    weights ``W = C + gamma A`` (bias column included); ``ok`` False for non-finite factors
    (the caller then keeps the old crossbar).
    """
    tt = xb.tiki_taka
    assert tt is not None
    ok = jnp.all(jnp.isfinite(rows)) & jnp.all(jnp.isfinite(cols))
    if not xb.has_bias:
        cols = cols.at[:, -1].set(0.0)
    cols, rows = jnp.where(ok, cols, 0.0), jnp.where(ok, rows, 0.0)
    key = jr.fold_in(base_key, call)
    signs = chopper_signs(tt.column_reads, tt.spec.chopper_period)
    hidden_a, visible_a, rep_a = update_pair(
        tt.card,
        tt.devices,
        tt.hidden_S,
        jnp.stack([tt.g_plus_S, tt.g_minus_S]),
        cols * signs[None, :],
        rows,
        lr,
        tt.g_unit_S,
        n_updates,
        mode,
        bit_length,
        key,
    )
    tt = dataclasses.replace(tt, g_plus_S=visible_a[0], g_minus_S=visible_a[1], hidden_S=hidden_a)
    written = dataclasses.replace(xb, tiki_taka=tt)
    zero = jnp.int32(0)

    def run(x: Crossbar):
        return _transfer(card, x, bit_length, jr.fold_in(key, TRANSFER_KEY))

    def idle(x: Crossbar):
        return x, (zero, zero, zero)

    due = (jnp.asarray(n_updates, jnp.int32) % tt.spec.transfer_every) == 0
    new, (pulses_c, hit_c, capped_c) = jax.lax.cond(due, run, idle, written)

    requested = lr * einsum("ri,rj->ij", rows, cols)
    change = _weight_change(xb, new)
    if not xb.has_bias:
        change = change.at[:, -1].set(0.0)
    req_sq = jnp.sum(requested * requested)
    safe = jnp.where(req_sq > 0.0, req_sq, 1.0)
    report = UpdateReport(
        pulses_applied=rep_a.pulses_applied + pulses_c,
        n_clipped_bound=rep_a.n_clipped_bound + hit_c,
        n_clipped_request=rep_a.n_clipped_request + capped_c,
        requested_norm=jnp.sqrt(req_sq).astype(jnp.float32),
        realised_norm=jnp.sqrt(jnp.sum(change * change)).astype(jnp.float32),
        realised_over_requested=jnp.where(
            req_sq > 0.0, jnp.sum(change * requested) / safe, 0.0
        ).astype(jnp.float32),
    )
    return new, report, ok
