"""Tiki-Taka transfers: from a fast array ``A`` through a digital buffer ``H`` to the slow
array ``C`` of a crossbar (TTv2, Gokmen 2021; chopped TTv2, Rasch et al. 2024).

A transfer reads the columns ``j`` of a column set ``J`` of ``A`` (weights
``W_A = (A+ - A-) / g_unit_A``), each times its chopper sign ``c_j`` and with additive
Gaussian read noise, and filters them in ``H`` (weight units of ``C``)::

    H[:, j] += transfer_lr (c_j W_A[:, j] + read_noise_std ξ)            j in J
    n_ij     = clip(trunc(H_ij / (threshold Δw_C)), -BL, BL)
    H_ij    -= n_ij threshold Δw_C            (H_ij = 0 where n_ij != 0 with forget_buffer)

and fires ``|n_ij|`` whole pulses in direction ``sign(n_ij)`` on ``C``'s pair ``(i, j)``
through the device physics (:func:`apply_pulse_counts`, so state dependence, asymmetry,
noise and bounds act pulse by pulse). ``Δw_C`` is the mean weight change of one pulse on
``C``'s pairs (the update's ``Δw₁``), ``BL`` the periphery's ``bit_length``.

The chopper (chopped TTv2): column ``j``'s sign is ``c_j = (-1)^floor(r_j / k)`` with ``r_j``
the number of reads of column ``j`` so far and ``k`` the chopper period (``k = 0``: no
chopper, ``c_j = 1``). Updates are written into ``A`` with the columns times ``c_j`` and read
back times ``c_j``, so the signal keeps its sign in ``H`` while ``A``'s own offsets flip sign
and average out. Flips are deterministic (aihwkit's ``in_chop_random: false``), so a run is
reproducible from its seed.

Every function is pure and jit-able; sizes, ``bit_length``, ``forget_buffer``, the chopper
period and the card are static.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ..spec import DeviceCard
from ._device_array import DeviceArray
from ._noise import gaussian
from ._pulse import apply_pulse_counts
from ._update import _coincidence_step, _pair_pulses, default_scheme

__all__ = [
    "TransferReport",
    "buffer_pulses",
    "chopper_signs",
    "read_columns",
    "transfer",
    "transfer_mask",
]

_F32 = jnp.float32


class TransferReport(NamedTuple):
    """What one transfer did to ``C`` (scalars).

    - ``pulses``: int32, device pulses fired on ``C`` (a balanced pair pulse moves two);
    - ``n_clipped_bound``: int32, ``C`` devices a pulse clipped at a bound;
    - ``n_clipped_request``: int32, entries whose pulse count was capped at ``bit_length``
      (the rest stays in ``H``);
    - ``step``: float32, ``threshold Δw_C`` (weight units).
    """

    pulses: Int[Array, ""]
    n_clipped_bound: Int[Array, ""]
    n_clipped_request: Int[Array, ""]
    step: Float[Array, ""]


def chopper_signs(column_reads: Int[Array, " n_in1"], period: int) -> Float[Array, " n_in1"]:
    """The chopper sign ``c_j = (-1)^floor(r_j / period)`` of every column (all 1 when
    ``period`` is 0).

    **Arguments:** ``column_reads`` int ``(n_in1,)`` reads of each column so far;
    ``period`` static int >= 0.

    **Returns:** float32 ``(n_in1,)`` in {+1, -1}.

    >>> import jax.numpy as jnp
    >>> chopper_signs(jnp.array([0, 1, 2, 3]), 2).tolist()
    [1.0, 1.0, -1.0, -1.0]
    """
    if period < 0:
        raise ValueError(f"the chopper period must be >= 0, found {period!r}")
    reads = jnp.asarray(column_reads)
    if period == 0:
        return jnp.ones(reads.shape, _F32)
    return (1 - 2 * ((reads // period) % 2)).astype(_F32)


def transfer_mask(
    pointer: Int[Array, ""], *, n_cols: int, count: int, n_in1: int
) -> Bool[Array, " n_in1"]:
    """The columns a transfer reads: ``pointer, pointer + 1, ...`` modulo ``n_cols``,
    ``min(count, n_cols)`` of them (never one twice).

    **Arguments:** ``pointer`` int32 scalar, the next column (``0 <= pointer < n_cols``);
    ``n_cols`` the columns in the cycle (static; ``n_in + 1`` with a bias line, else
    ``n_in``); ``count`` columns per transfer (static, >= 1); ``n_in1`` the array's columns.

    **Returns:** bool ``(n_in1,)``.

    >>> import jax.numpy as jnp
    >>> transfer_mask(jnp.int32(3), n_cols=4, count=2, n_in1=5).tolist()
    [True, False, False, True, False]
    """
    if count < 1 or not 1 <= n_cols <= n_in1:
        raise ValueError(f"need count >= 1 and 1 <= n_cols <= n_in1, found {count, n_cols, n_in1}")
    cols = (jnp.asarray(pointer, jnp.int32) + jnp.arange(min(count, n_cols))) % n_cols
    return jnp.zeros(n_in1, bool).at[cols].set(True)


def read_columns(
    w_a: Float[Array, "n_out n_in1"],
    signs: Float[Array, " n_in1"],
    mask: Bool[Array, " n_in1"],
    *,
    read_noise_std: float,
    key: PRNGKeyArray | None,
) -> Float[Array, "n_out n_in1"]:
    """One transfer read of ``A``: ``c_j W_A[:, j] + read_noise_std ξ`` on the masked
    columns, 0 elsewhere.

    **Arguments:** ``w_a`` float32 ``(n_out, n_in1)`` ``A``'s weights as the array reads them
    (weight units); ``signs`` float32 ``(n_in1,)`` chopper signs; ``mask`` bool ``(n_in1,)``
    the columns read; ``read_noise_std`` static std (weight units, >= 0); ``key`` needed when
    ``read_noise_std > 0``.

    **Returns:** float32 ``(n_out, n_in1)``.

    **Raises:** ``ValueError`` for read noise without a key.
    """
    r = jnp.asarray(w_a, _F32) * jnp.asarray(signs, _F32)[None, :]
    if read_noise_std > 0.0:
        if key is None:
            raise ValueError("read_columns with read_noise_std > 0 draws noise: pass a key")
        r = r + jnp.float32(read_noise_std) * gaussian(key, r.shape)
    return jnp.where(mask[None, :], r, 0.0)


def buffer_pulses(
    buffer: Float[Array, "n_out n_in1"],
    read: Float[Array, "n_out n_in1"],
    mask: Bool[Array, " n_in1"],
    *,
    transfer_lr: float,
    step: Float[Array, ""],
    bit_length: int,
    forget_buffer: bool,
) -> tuple[Float[Array, "n_out n_in1"], Float[Array, "n_out n_in1"], Int[Array, ""]]:
    """Filter a read into the buffer and take out the whole pulses it holds.

    ``H += transfer_lr read`` and ``n = clip(trunc(H / step), -BL, BL)`` on the masked
    columns; then ``H -= n step`` (or ``H = 0`` where ``n != 0``, ``forget_buffer``).
    Columns outside ``mask`` keep their buffer bitwise.

    **Arguments:** ``buffer`` float32 ``(n_out, n_in1)`` ``H`` (weight units); ``read`` the
    read (:func:`read_columns`); ``mask`` the columns read; ``transfer_lr`` (> 0);
    ``step`` float32 scalar ``threshold Δw_C`` (> 0; a step <= 0 fires nothing);
    ``bit_length`` most pulses per entry (static); ``forget_buffer`` (static).

    **Returns:** ``(buffer, n, n_capped)``: the new ``H``, float32 signed whole pulse counts
    ``(n_out, n_in1)``, and int32 the entries capped at ``bit_length``.

    >>> import jax.numpy as jnp
    >>> h, n, _ = buffer_pulses(jnp.zeros((1, 2)), jnp.array([[2.5, -0.4]]),
    ...     jnp.array([True, True]), transfer_lr=1.0, step=jnp.float32(1.0),
    ...     bit_length=31, forget_buffer=False)
    >>> n.tolist(), h.tolist()
    ([[2.0, -0.0]], [[0.5, -0.4000000059604645]])
    """
    m = mask[None, :]
    h = jnp.where(m, buffer + jnp.float32(transfer_lr) * read, buffer)
    live = step > 0.0
    safe = jnp.where(live, step, 1.0)
    raw = jnp.where(m & live, jnp.trunc(h / safe), 0.0)
    n_capped = jnp.sum(jnp.abs(raw) > bit_length, dtype=jnp.int32)
    n = jnp.clip(raw, -float(bit_length), float(bit_length))
    h = jnp.where(n != 0.0, 0.0, h) if forget_buffer else jnp.where(m, h - n * safe, h)
    return h.astype(_F32), n.astype(_F32), n_capped


def transfer(
    card: DeviceCard,
    devices: DeviceArray,
    g_pair_S: Float[Array, "2 n_out n_in1"],
    w_a: Float[Array, "n_out n_in1"],
    buffer: Float[Array, "n_out n_in1"],
    signs: Float[Array, " n_in1"],
    mask: Bool[Array, " n_in1"],
    *,
    g_unit_S: float,
    transfer_lr: float,
    threshold: float,
    read_noise_std: float,
    forget_buffer: bool,
    bit_length: int,
    scheme: str | None = None,
    key: PRNGKeyArray,
) -> tuple[Float[Array, "2 n_out n_in1"], Float[Array, "n_out n_in1"], TransferReport]:
    """One Tiki-Taka transfer of the masked columns of ``A`` into ``C`` (module docstring).

    **Arguments:**

    - ``card``, ``devices``: ``C``'s card (pulsed) and :class:`DeviceArray` ``(2, n_out,
      n_in1)``; ``g_pair_S`` float32 ``(2, n_out, n_in1)`` ``C``'s hidden conductances (S).
    - ``w_a``: float32 ``(n_out, n_in1)`` ``A``'s weights as read (weight units).
    - ``buffer``: float32 ``(n_out, n_in1)`` ``H`` (weight units of ``C``).
    - ``signs``, ``mask``: the columns' chopper signs and the columns read.
    - ``g_unit_S``: ``C``'s siemens per weight unit; ``transfer_lr``, ``threshold``,
      ``read_noise_std``, ``forget_buffer``: the crossbar's ``tiki_taka`` settings;
      ``bit_length``: most pulses per entry and transfer; ``scheme`` ``C``'s pair scheme
      (``None``: :func:`default_scheme`).
    - ``key``: read noise and ``C``'s pulse noise.

    **Returns:** ``(g_pair_S, buffer, report)``: ``C``'s new hidden conductances, the new
    ``H`` and a :class:`TransferReport`.
    """
    scheme = default_scheme(card) if scheme is None else scheme
    k_read, k_pulse = jr.split(key)
    read = read_columns(w_a, signs, mask, read_noise_std=read_noise_std, key=k_read)
    step = jnp.float32(threshold) * _coincidence_step(devices, jnp.float32(g_unit_S), scheme)
    buffer, n, n_capped = buffer_pulses(
        buffer,
        read,
        mask,
        transfer_lr=transfer_lr,
        step=step,
        bit_length=bit_length,
        forget_buffer=forget_buffer,
    )
    c2, d2 = _pair_pulses(jnp.abs(n), jnp.sign(n), scheme)
    g, stats = apply_pulse_counts(card, devices, g_pair_S, c2, d2, key=k_pulse)
    pulses = jnp.sum(jnp.where(d2 != 0.0, jnp.round(c2).astype(jnp.int32), 0))
    hit = jnp.sum(stats.hit_bound & ~devices.stuck, dtype=jnp.int32)
    return g, buffer, TransferReport(pulses, hit, n_capped, step.astype(_F32))
