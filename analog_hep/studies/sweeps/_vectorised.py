"""Many gradchecks of one shape in one compiled call: ``vmap`` over the sweep axis.

Points that share every static setting (chip structure and flags, method, N, settle
lengths, batch size, start) differ only in array values: neuron-noise std, |beta|, the seed
of inputs and noise, and chip leaves such as mismatch draws or a fabrication seed. They run
as one ``jax.vmap`` of a pure gradcheck core (free phase, nudge phases, estimator, ground
truth) inside one ``eqx.filter_jit``. Chip leaves that are equal across the group are shared
(not stacked), so a noise-by-seed sweep stores one chip.

The core is :func:`analog_hep.studies.gradcheck`'s sequence of the emulator's own functions
(same key split, DAC/ADC, settle and estimators), with ``|beta|`` as data: the nudge values
are ``|beta|`` times the schedule of radius 1, settled by
:func:`analog_hep.emulator.nudge_points` under that schedule's static plan. On a noiseless chip
``gradcheck`` settles one of each conjugate pair of points where this core settles all of
them (a group may mix noise levels), which changes results by rounding only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ...emulator import Chip, dac, free_phase, ground_truth, nudge_plan, nudge_points
from ...hep import circle_betas
from ..gradients._gradcheck import (
    _rel,
    cosine,
    points_estimate,
    random_batch,
    refuse_non_holomorphic,
)

__all__ = ["GroupStatic", "gradcheck_batch", "stack_chips", "trace_count", "with_noise_flags"]

_TRACES = [0]
_COMPILED: set[tuple[Any, ...]] = set()


def trace_count() -> int:
    """How many times the vectorised gradcheck has been traced (= compiled) in this process."""
    return _TRACES[0]


@dataclass(frozen=True)
class GroupStatic:
    """Static settings shared by a group (hashable: part of the compiled program's identity).

    ``method``/``points``: the estimator and N (classic: repeats); ``batch``: samples per
    point; ``start``: where nudged settles start; ``random_inputs``: draw the batch from each
    point's key (as ``gradcheck`` does) instead of taking given inputs.
    """

    method: Literal["hep", "classic", "symmetric"]
    points: int
    batch: int
    start: Literal["free", "previous"]
    random_inputs: bool


def with_noise_flags(chip: Chip, *, neuron: bool, read: bool) -> Chip:
    """The chip with its static noise switches set (the stds are leaves and unchanged).

    A group whose members have different noise stds must draw noise in every member (a zero
    std then adds exactly zero), so the switches are on for all of them.
    """
    cfg = dataclasses.replace(chip.config, neuron_noise=neuron, read_noise=read)
    return dataclasses.replace(chip, config=cfg)


def stack_chips(chips: Sequence[Chip]) -> tuple[Chip, Chip]:
    """Split chips of one structure into ``(batched, shared)`` (``eqx.partition`` style).

    Leaves equal in every chip go to ``shared`` (unstacked); the others are stacked along a
    new leading axis into ``batched``. ``eqx.combine(member_of_batched, shared)`` gives one
    chip back.

    **Raises:** ``ValueError`` if the chips differ in structure or static settings.
    """
    treedef = jax.tree.structure(chips[0])
    for c in chips[1:]:
        if jax.tree.structure(c) != treedef:
            raise ValueError("chips of one vectorised group must share structure and config")
    columns = zip(*(jax.tree.leaves(c) for c in chips), strict=True)
    batched: list[Any] = []
    shared: list[Any] = []
    for col in columns:
        first = col[0]
        same = all(a is first for a in col) or all(
            a.shape == first.shape and bool(np.array_equal(np.asarray(a), np.asarray(first)))
            for a in col[1:]
        )
        if same:
            batched.append(None)
            shared.append(first)
        else:
            batched.append(jnp.stack(col))
            shared.append(None)
    return jax.tree.unflatten(treedef, batched), jax.tree.unflatten(treedef, shared)


def _unit_betas(method: str, points: int) -> tuple[complex, ...]:
    """The schedule for ``|beta| = 1`` (its plan is that of every radius)."""
    if method == "classic":
        return (1.0 + 0j,) * points
    return circle_betas(1.0, 2 if method == "symmetric" else points)


def _flat(chip: Chip, g: dict[str, tuple[Array, Array]]) -> dict[str, Array]:
    out = {}
    for n in chip.config.crossbar_names:
        w, b = g[n]
        parts = [w.ravel()] + ([b.ravel()] if chip.crossbars[n].has_bias else [])
        out[n] = jnp.concatenate(parts)
    return out


def _core(
    chip: Chip,
    data: tuple[Array, Array] | None,
    beta: Float[Array, ""],
    key: PRNGKeyArray,
    static: GroupStatic,
) -> dict[str, Any]:
    """One gradcheck, as :func:`analog_hep.studies.gradcheck` computes it."""
    cfg = chip.config
    k_data, k_free, k_nudge = jr.split(key, 3)
    if data is None:
        x, y = random_batch(cfg.layers[0], cfg.classes, static.batch, key=k_data)
    else:
        x, y = data
    x = dac(chip, x)
    noisy = chip.noisy
    truth = ground_truth(
        chip, x, y, steps=cfg.free_steps, max_adjoint_iterations=max(20 * cfg.free_steps, 2000)
    )
    k_free = k_free if noisy else None
    k_nudge = k_nudge if noisy else None
    free = free_phase(chip, x, steps=cfg.free_steps, key=k_free)
    unit = _unit_betas(static.method, static.points)
    plan = nudge_plan(unit, start=static.start, share_conjugates=False)
    dtype = jnp.complex64 if plan.complex_ else jnp.float32
    values = unit if plan.complex_ else [b.real for b in unit]
    betas = beta.astype(dtype) * jnp.asarray(values, dtype)
    pts = nudge_points(chip, free, y, betas, plan, steps=cfg.nudge_steps, key=k_nudge)
    est, _ = points_estimate(
        chip, free, pts, y, method=static.method, beta=beta, free_key=k_free, nudge_key=k_nudge
    )
    return {
        "estimate": _flat(chip, est),
        "truth": _flat(chip, truth.grads),
        "loss": truth.loss,
        "free_residual": jnp.max(free.residual),
        "nudge_residual": jnp.max(pts.residual),
        "adjoint_residual": truth.adjoint_residual,
    }


@eqx.filter_jit
def _batched(
    batched: Chip,
    shared: Chip,
    data: tuple[Array, Array] | None,
    betas: Float[Array, " p"],
    seeds: Array,
    static: GroupStatic,
) -> dict[str, Any]:
    _TRACES[0] += 1  # runs at trace time only: counts compilations

    def one(member: Chip, d: Any, beta: Array, seed: Array) -> dict[str, Any]:
        return _core(eqx.combine(member, shared), d, beta, jr.PRNGKey(seed), static)

    return jax.vmap(one)(batched, data, betas, seeds)


def gradcheck_batch(
    chips: Sequence[Chip],
    betas: Sequence[float],
    seeds: Sequence[int],
    static: GroupStatic,
    *,
    inputs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    parts: int = 1,
    threads: int = 1,
) -> list[dict[str, Any]]:
    """Gradchecks of ``P`` points in one compiled, vmapped program.

    **Arguments:**

    - ``chips``: ``P`` chips of one structure and config (use :func:`with_noise_flags` to
      align the noise switches); leaves equal across them are shared.
    - ``betas``: ``P`` values of ``|beta|`` (dimensionless); ``seeds``: ``P`` seeds of
      inputs and noise (``jr.PRNGKey(seed)``, split as ``gradcheck`` splits it).
    - ``static``: the settings the group shares.
    - ``inputs``: ``P`` pairs ``(x (B, n_0), one-hot y (B, classes))`` when
      ``static.random_inputs`` is false.
    - ``parts``: run the program on ``parts`` consecutive slices of the points (``P`` must
      be a multiple; every slice has the same shape, so it compiles once); ``threads``: how
      many slices run at once (XLA runs one program on one CPU core; slices in threads use
      several). The results do not depend on ``threads``.

    **Returns:** ``P`` dicts with ``cosine_total``, ``rel_error_total``, ``cosine`` and
    ``rel_error`` per crossbar, ``loss``, ``free_residual``, ``nudge_residual``,
    ``adjoint_residual`` (floats) and ``estimate``/``truth`` (flat float32 arrays per crossbar,
    bias last where the crossbar has one), as :class:`GradcheckResult` has them.
    """
    p = len(chips)
    if not (len(betas) == len(seeds) == p) or p == 0:
        raise ValueError(f"need as many betas and seeds as chips (> 0), got {p}")
    if parts < 1 or p % parts:
        raise ValueError(f"parts must divide the {p} points, got {parts}")
    if not static.random_inputs and (inputs is None or len(inputs) != p):
        raise ValueError("static.random_inputs is false: give one input batch per chip")
    seeds_arr = np.asarray(seeds, np.uint32)
    if not np.array_equal(seeds_arr, np.asarray(seeds)):
        raise ValueError(f"seeds must be integers in [0, 2^32), got {list(seeds)}")
    refuse_non_holomorphic(chips[0], static.method, static.points)
    size = p // parts

    def run(k: int) -> dict[str, Any]:
        sl = slice(k * size, (k + 1) * size)
        batched, shared = stack_chips(chips[sl])
        data = None
        if inputs is not None and not static.random_inputs:
            data = (
                jnp.stack([jnp.asarray(x, jnp.float32) for x, _ in inputs[sl]]),
                jnp.stack([jnp.asarray(y, jnp.float32) for _, y in inputs[sl]]),
            )
        beta = jnp.asarray(betas[sl], jnp.float32)
        res = _batched(batched, shared, data, beta, seeds_arr[sl], static)
        return jax.tree.map(np.asarray, res)

    # A program not yet compiled here is compiled by the first slice alone (slices started
    # together would each trace and compile it); the other slices then run in threads.
    seen = (static, size, jax.tree.structure(chips[0]), inputs is None)
    results = [] if seen in _COMPILED else [run(0)]
    _COMPILED.add(seen)
    todo = range(len(results), parts)
    if len(todo) > 1 and threads > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(todo))) as pool:
            results += list(pool.map(run, todo))
    else:
        results += [run(k) for k in todo]
    out = jax.tree.map(lambda *a: np.concatenate(a), *results)
    names = chips[0].config.crossbar_names
    rows = []
    for i in range(p):
        e = {n: out["estimate"][n][i] for n in names}
        t = {n: out["truth"][n][i] for n in names}
        e_all = np.concatenate([e[n] for n in names])
        t_all = np.concatenate([t[n] for n in names])
        rows.append(
            {
                "cosine_total": cosine(e_all, t_all),
                "rel_error_total": _rel(e_all, t_all),
                "cosine": {n: cosine(e[n], t[n]) for n in names},
                "rel_error": {n: _rel(e[n], t[n]) for n in names},
                "loss": float(out["loss"][i]),
                "free_residual": float(out["free_residual"][i]),
                "nudge_residual": float(out["nudge_residual"][i]),
                "adjoint_residual": float(out["adjoint_residual"][i]),
                "estimate": e,
                "truth": t,
            }
        )
    return rows


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), seconds)``."""
    t0 = time.perf_counter()
    res = fn(*args, **kwargs)
    return res, time.perf_counter() - t0
