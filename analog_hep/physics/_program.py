"""Write-verify (closed-loop) programming of target conductances.

The loop a chip's programming controller runs, on every device at once::

    repeat:
        read   G_r = read(visible(G))                     (write noise, levels, read noise)
        done   |G* - G_r| <= tolerance_S
        pulse  one pulse in direction sign(G* - G_r) on every device not done
    until every device is done or max_pulses pulses were spent

Devices that are not within tolerance at the last read are reported as failed (stuck
devices away from their target, targets outside a device's bounds, devices whose step is
larger than twice the tolerance, one-directional devices that overshot).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ..spec import DeviceCard, IdealResponse
from ._device_array import DeviceArray
from ._drift import read_conductance
from ._pulse import _pulse_once, apply_delta_exact
from ._write_noise import visible_conductance

__all__ = ["WriteVerifyReport", "write_verify"]


class WriteVerifyReport(NamedTuple):
    """Outcome of :func:`write_verify`.

    - ``pulses``: int32 ``(*shape)`` pulses spent on each device;
    - ``failed``: bool ``(*shape)`` devices not within tolerance at the last read;
    - ``n_failed``: int32 scalar, ``sum(failed)``;
    - ``total_pulses``: int32 scalar, ``sum(pulses)``;
    - ``iterations``: int32 scalar, verify reads done (at most ``max_pulses + 1``).
    """

    pulses: Int[Array, "*shape"]
    failed: Bool[Array, "*shape"]
    n_failed: Int[Array, ""]
    total_pulses: Int[Array, ""]
    iterations: Int[Array, ""]


def write_verify(
    card: DeviceCard,
    devices: DeviceArray,
    g_S: Float[Array, "*shape"],
    target_S: Float[Array, "*shape"],
    *,
    tolerance_S: float,
    max_pulses: int,
    key: PRNGKeyArray,
    allow_down: bool = True,
    active: Bool[Array, "*shape"] | None = None,
) -> tuple[Float[Array, "*shape"], WriteVerifyReport]:
    """Program ``target_S`` by pulse-read-verify, within ``tolerance_S`` and ``max_pulses``.

    Runs in a ``lax.while_loop`` (stops early when every device is done), so it traces once
    and runs inside ``jit``. An ``ideal`` card is programmed exactly
    (:func:`apply_delta_exact` to the target) with zero pulses.

    **Arguments:**

    - ``g_S``: float32 ``(*shape)`` hidden conductances (S) before programming.
    - ``target_S``: float32 ``(*shape)`` target conductances (S).
    - ``tolerance_S``: accepted ``|target - read|`` in siemens (> 0; choose at least half a
      step, ``dw_min * scale_S / 2``, or devices oscillate around their target).
    - ``max_pulses``: pulse budget per device (>= 0, static).
    - ``key``: PRNG key (reads, write noise, c2c noise; folded per round).
    - ``allow_down``: ``False`` for one-directional devices (PCM SET only): devices only
      potentiate and stop (fail) once read above ``target + tolerance``.
    - ``active``: optional bool mask of the devices to program; the others are untouched and
      never fail.

    **Returns:** ``(g_S, report)``: the hidden conductances after programming and a
    :class:`WriteVerifyReport`.
    """
    if not tolerance_S > 0.0:
        raise ValueError(f"tolerance_S must be > 0 siemens, found {tolerance_S!r}")
    if max_pulses < 0:
        raise ValueError(f"max_pulses must be >= 0, found {max_pulses!r}")
    g0 = jnp.asarray(g_S, jnp.float32)
    target = jnp.asarray(target_S, jnp.float32)
    act = jnp.ones(g0.shape, bool) if active is None else jnp.asarray(active, bool)

    if isinstance(card.response, IdealResponse):
        g = jnp.where(act, apply_delta_exact(card, devices, g0, target - g0), g0)
        failed = act & (jnp.abs(g - target) > tolerance_S)
        zeros = jnp.zeros(g0.shape, jnp.int32)
        return g, WriteVerifyReport(
            pulses=zeros,
            failed=failed,
            n_failed=jnp.sum(failed, dtype=jnp.int32),
            total_pulses=jnp.int32(0),
            iterations=jnp.int32(0),
        )

    def read(g: Array, r: Array) -> Array:
        k_wn, k_read = jr.split(jr.fold_in(key, 2 * r + 1))
        return read_conductance(card, visible_conductance(card, g, key=k_wn), key=k_read)

    def decide(g_read: Array, give_up: Array) -> tuple[Array, Array]:
        err = target - g_read
        ok = jnp.abs(err) <= tolerance_S
        d = jnp.where(ok | give_up | ~act, 0.0, jnp.sign(err))
        if not allow_down:
            give_up = give_up | (act & ~ok & (d < 0.0))
            d = jnp.maximum(d, 0.0)
        return d, give_up

    def cond(state: tuple) -> Array:
        r, _, _, _, _, pulsed = state
        return (r <= max_pulses) & pulsed

    def body(state: tuple) -> tuple:
        # Read, decide, pulse. The round r == max_pulses only reads (the budget is spent),
        # so the loop always ends on a read that no pulse followed.
        r, g, pulses, give_up, _, _ = state
        g_read = read(g, r)
        ok = jnp.abs(target - g_read) <= tolerance_S
        d, give_up = decide(g_read, give_up)
        d = jnp.where(r < max_pulses, d, 0.0)
        g, _ = _pulse_once(card, devices, g, d, jr.fold_in(key, 2 * r + 2))
        pulses = pulses + (d != 0.0).astype(jnp.int32)
        return r + 1, g, pulses, give_up, ok, jnp.any(d != 0.0)

    init = (
        jnp.int32(0),
        g0,
        jnp.zeros(g0.shape, jnp.int32),
        jnp.zeros(g0.shape, bool),
        jnp.zeros(g0.shape, bool),
        jnp.asarray(True),
    )
    r, g, pulses, _, ok, _ = jax.lax.while_loop(cond, body, init)
    failed = act & ~ok
    return g, WriteVerifyReport(
        pulses=pulses,
        failed=failed,
        n_failed=jnp.sum(failed, dtype=jnp.int32),
        total_pulses=jnp.sum(pulses, dtype=jnp.int32),
        iterations=r,
    )
