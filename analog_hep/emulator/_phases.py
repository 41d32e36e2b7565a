"""Free phase and nudge schedules on the emulated chip, batched in one compiled call.

A nudge schedule is ``K`` complex ``beta`` values: an array (data, traced: one compile per
shape whatever ``|beta|``) and a :class:`NudgePlan` (static: which points are settled, which
are conjugates of one another or lie on the real axis, where they start). With
``start="free"`` every point settles from the free state and all ``K x B`` rows run as one
batch (the crossbar products become matrix products); with ``start="previous"`` the points
settle one after the other, each from the previous point (adiabatic walk around the circle).
On a noiseless chip, points that are complex conjugates of one another have conjugate fixed
points, so only one of each pair is settled (about N/2 + 1 solves for hEP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, Inexact, PRNGKeyArray

from ._chip import Chip
from ._settle import SettleOut, quantise, settle

__all__ = [
    "NudgePlan",
    "Points",
    "dac",
    "free_phase",
    "measure",
    "nudge_phases",
    "nudge_plan",
    "nudge_points",
    "nudge_schedule",
    "settle_points",
]


class Points(NamedTuple):
    """Settled states of ``K`` nudge points for a batch of ``B`` samples.

    ``betas: (K,)`` complex; ``states``: ``(s_0, ..., s_L)`` each ``(K, B, n_l)``;
    ``logits``: ``(K, B, classes)`` or ``None``; ``residual``: ``(K, B)``.
    """

    betas: Inexact[Array, " k"]
    states: tuple[Inexact[Array, "k b n"], ...]
    logits: Inexact[Array, "k b c"] | None
    residual: Float[Array, "k b"]


def dac(chip: Chip, x: Float[Array, "b n0"]) -> Float[Array, "b n0"]:
    """Inputs as the input DAC drives them (quantised to ``dac_bits`` over ``input_range``)."""
    cfg = chip.config
    x = jnp.asarray(x)
    x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)
    return quantise(x, cfg.dac_bits, *cfg.input_range)


def measure(chip: Chip, out: SettleOut) -> SettleOut:
    """What the activity ADC reads out of a settled state (``adc_bits`` over ``activity_range``)."""
    cfg = chip.config
    if cfg.adc_bits is None:
        return out
    states = (
        out.states[0],
        *(quantise(s, cfg.adc_bits, *cfg.activity_range) for s in out.states[1:]),
    )
    return out._replace(states=states)


@eqx.filter_jit
def free_phase(
    chip: Chip, x: Float[Array, "b n0"], *, steps: int, key: PRNGKeyArray | None
) -> SettleOut:
    """Settle from rest (all neurons at 0) with ``beta = 0``; ``x`` already through the DAC."""
    b = x.shape[0]
    init = tuple(jnp.zeros((b, n), x.dtype) for n in chip.config.layers[1:])
    y = jnp.zeros((b, chip.config.classes), x.dtype)
    return settle(chip, x, y, jnp.zeros(b, x.dtype), init, steps=steps, key=key, nudged=False)


def _unique_conjugates(
    betas: tuple[complex, ...],
) -> tuple[tuple[int, ...], tuple[tuple[int, bool], ...]]:
    """Representatives to settle and, for each point, ``(representative index, conjugate?)``."""
    reps: list[int] = []
    where: list[tuple[int, bool]] = []
    for k, b in enumerate(betas):
        for j, r in enumerate(reps):
            if betas[r] == b:
                where.append((j, False))
                break
            if betas[r] == complex(b).conjugate():
                where.append((j, True))
                break
        else:
            reps.append(k)
            where.append((len(reps) - 1, False))
    return tuple(reps), tuple(where)


@dataclass(frozen=True)
class NudgePlan:
    """The static structure of a nudge schedule of ``K`` points (hashable: part of the
    compiled program's identity); the values of ``beta`` are data.

    ``complex_``: some point is off the real axis (complex states); ``start``: ``"free"`` or
    ``"previous"``; ``reps``: the points settled (indices into the schedule); ``where``: per
    point, ``(index into reps, conjugate?)``; ``real``: per settled point, whether it lies on
    the real axis. A circle of any radius has the same plan (``circle_betas`` snaps its
    symmetries exactly).
    """

    complex_: bool
    start: Literal["free", "previous"]
    reps: tuple[int, ...]
    where: tuple[tuple[int, bool], ...]
    real: tuple[bool, ...]


def nudge_plan(
    betas: Sequence[complex],
    *,
    start: Literal["free", "previous"],
    share_conjugates: bool,
) -> NudgePlan:
    """The plan of a schedule of Python numbers ``betas`` (``K`` values; only which are equal,
    conjugate or real matters). ``share_conjugates``: settle one of each conjugate pair (exact
    on a noiseless chip only; ignored for ``start="previous"``)."""
    bs = tuple(complex(b) for b in betas)
    if share_conjugates and start == "free":
        reps, where = _unique_conjugates(bs)
    else:
        reps, where = tuple(range(len(bs))), tuple((k, False) for k in range(len(bs)))
    real = tuple(bs[k].imag == 0.0 for k in reps)
    return NudgePlan(any(b.imag != 0 for b in bs), start, reps, where, real)


def nudge_schedule(
    betas: Sequence[complex],
    *,
    noisy: bool,
    start: Literal["free", "previous"],
    dtype: jnp.dtype = jnp.float32,
) -> tuple[np.ndarray, NudgePlan]:
    """A schedule of Python numbers as ``(values, plan)`` for :func:`nudge_phases`.

    ``values``: ``(K,)`` in ``dtype`` (the inputs' float dtype) or its complex type when some
    point is complex; ``noisy``: the chip draws noise (then every point is settled).
    """
    plan = nudge_plan(betas, start=start, share_conjugates=not noisy)
    if plan.complex_:
        values = np.asarray([complex(b) for b in betas], jnp.result_type(dtype, jnp.complex64))
    else:
        values = np.asarray([complex(b).real for b in betas], dtype)
    return values, plan


def tile_rows(a: Array, k: int) -> Array:
    """``(B, ...)`` -> ``(k B, ...)``: ``k`` copies of the rows, copy-major (point ``j``'s
    rows are ``j B .. (j + 1) B``)."""
    return jnp.broadcast_to(a, (k, *a.shape)).reshape(k * a.shape[0], *a.shape[1:])


def nudge_points(
    chip: Chip,
    free: SettleOut,
    y: Float[Array, "b c"],
    betas: Inexact[Array, " k"],
    plan: NudgePlan,
    *,
    steps: int,
    key: PRNGKeyArray | None,
) -> Points:
    """Settle the chip at every ``beta`` of the schedule (traceable: :func:`nudge_phases`
    compiles it; vectorised studies ``vmap`` it over chips and ``|beta|``).

    **Arguments:**

    - ``free``: the free phase's :class:`SettleOut` (``B`` rows), the starting state.
    - ``y``: ``(B, classes)`` one-hot targets.
    - ``betas``: ``(K,)`` the schedule's values (real, or complex when ``plan.complex_``).
    - ``plan``: its static structure (:func:`nudge_plan`).
    - ``steps``: settle steps per point.
    - ``key``: PRNG key (``None`` only for a noiseless chip).

    **Returns:** :class:`Points` with ``K = len(plan.where)``.
    """
    k_pts = len(plan.where)
    b = y.shape[0]
    x = free.states[0]
    if plan.start == "previous":

        def one(
            s: tuple[Array, ...], kb: tuple[Array, Array]
        ) -> tuple[tuple[Array, ...], SettleOut]:
            kk, bt = kb
            out = settle(
                chip, x, y, jnp.full(b, bt), s, steps=steps, key=None if key is None else kk
            )
            return out.states[1:], out

        keys = jr.split(key if key is not None else jr.PRNGKey(0), k_pts)
        init = tuple(s.astype(betas.dtype) for s in free.states[1:])
        _, outs = jax.lax.scan(one, init, (keys, betas))
        states = (jnp.broadcast_to(x, (k_pts, *x.shape)), *outs.states[1:])
        return Points(betas, states, outs.logits, outs.residual)

    every = plan.reps == tuple(range(k_pts))
    reps = betas if every else betas[jnp.asarray(plan.reps)]
    out = settle_points(chip, free, y, reps, real=plan.real, steps=steps, key=key)

    def expand(a: Array | None) -> Array | None:
        if a is None or every:
            return a
        return jnp.stack([jnp.conj(a[j]) if c else a[j] for j, c in plan.where])

    states = (jnp.broadcast_to(x, (k_pts, *x.shape)), *(expand(s) for s in out.states[1:]))
    return Points(betas, states, expand(out.logits), expand(out.residual))  # type: ignore[arg-type]


@eqx.filter_jit
def nudge_phases(
    chip: Chip,
    free: SettleOut,
    y: Float[Array, "b c"],
    betas: Inexact[Array, " k"],
    plan: NudgePlan,
    *,
    steps: int,
    key: PRNGKeyArray | None,
) -> Points:
    """:func:`nudge_points` in one compiled call: one compile per shape and plan, whatever
    the values of ``betas`` (make both with :func:`nudge_schedule`)."""
    return nudge_points(chip, free, y, betas, plan, steps=steps, key=key)


def settle_points(
    chip: Chip,
    free: SettleOut,
    y: Float[Array, "b c"],
    betas: Inexact[Array, " k"],
    *,
    real: tuple[bool, ...],
    steps: int,
    key: PRNGKeyArray | None,
) -> Points:
    """Settle ``K`` points from the free state, all ``K x B`` rows in parallel.

    ``betas`` may be traced (vmapped studies); ``real`` says, statically, which of them lie
    on the real axis. Those keep real states (neuron and read noise are real), so when
    complex points are settled beside them they run as real rows (half the products of a
    complex row) in a second settle with key ``fold_in(key, 1)`` (the complex rows use
    ``fold_in(key, 0)``; one group uses ``key`` itself). docs/performance.md has the gain.
    """
    k_pts = betas.shape[0]
    b = y.shape[0]
    x = free.states[0]
    cplx = jnp.iscomplexobj(betas)
    if cplx and 0 < sum(real) < k_pts:
        groups = [[k for k in range(k_pts) if not real[k]], [k for k in range(k_pts) if real[k]]]
    else:
        groups = [list(range(k_pts))]
    per_point: dict[int, tuple[tuple[Array, ...], Array | None, Array]] = {}
    for g, group in enumerate(groups):
        r = len(group)
        as_real = cplx and real[group[0]] and len(groups) > 1
        b_rows = betas[jnp.asarray(group)]
        rows_beta = jnp.repeat(b_rows.real if as_real else b_rows, b)
        init = tuple(
            tile_rows(s, r).astype(x.dtype if as_real else betas.dtype) for s in free.states[1:]
        )
        g_key = key if key is None or len(groups) == 1 else jr.fold_in(key, g)
        out = settle(
            chip, tile_rows(x, r), tile_rows(y, r), rows_beta, init, steps=steps, key=g_key
        )

        def split(a: Array, r: int = r, as_real: bool = as_real) -> Array:
            a = a.reshape(r, b, *a.shape[1:])
            return a.astype(betas.dtype) if as_real else a

        states = tuple(split(s) for s in out.states[1:])
        logits = None if out.logits is None else split(out.logits)
        residual = out.residual.reshape(r, b)
        for i, k in enumerate(group):
            per_point[k] = (
                tuple(s[i] for s in states),
                None if logits is None else logits[i],
                residual[i],
            )
    pts = [per_point[k] for k in range(k_pts)]
    states = (
        jnp.broadcast_to(x, (k_pts, *x.shape)),
        *(jnp.stack([p[0][i] for p in pts]) for i in range(len(free.states) - 1)),
    )
    logits = None if pts[0][1] is None else jnp.stack([p[1] for p in pts])
    return Points(betas, states, logits, jnp.stack([p[2] for p in pts]))  # type: ignore[arg-type]
