"""Conv chips in ``analog-hep bench``: settle-step time against this machine's convolution rate.

A conv chip's settle step reads every crossbar between neuron layers forward (a convolution
at every output position) and transposed (the same convolution's transpose, summed onto the
input pixels), and, under a nudge, the readout both ways; the input crossbar's read is
constant during a settle and done once. The work is counted as multiply-adds of those reads
(:func:`crossbar_macs`: ``C_out (C_in k k)`` per output position of a conv crossbar,
``n_out n_in`` for a dense one), 2 FLOP each, per real row block (a complex state is two).

:func:`conv_bench_case` times the free phase (``B`` rows) and the nudge phase (the schedule's
row blocks, ``2 B`` for the paper's N = 2) through the emulator's compiled settles, each
compiled ahead (compile time apart) and run for a fixed number of steps, so that a chip too
slow for whole settles (Table 2's at batch 128 on a CPU) is still measured per step. In the
same run it times the same reads as ``jax.lax.conv_general_dilated`` (and its transpose, as
the emulator reads it) in a compiled loop on the same shapes (:func:`reads_rate`), and the
same multiply-adds as plain matrix products (:func:`gemm_rate`): the settle's rate over
these is a ratio measured under one load. A projected epoch is ``ceil(images / B)``
training steps of ``T1`` free and ``T2`` nudge steps (settles only: the estimate and the
update are a few step-equivalents of the 250 + 60 of Table 2).
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._numerics import PRECISION, matmul
from ...emulator import EmulatorDriver
from ...emulator._phases import free_phase, nudge_phases, nudge_schedule
from ...hep import circle_betas
from ...spec import Circuit, CircuitSpec

__all__ = [
    "CONV_BENCH_HEADER",
    "EPOCH_IMAGES",
    "REFERENCE_EPOCH_S",
    "ConvBenchCase",
    "conv_bench_case",
    "conv_row",
    "crossbar_macs",
    "drive_flop",
    "gemm_rate",
    "reads_rate",
    "settle_step_flop",
]

EPOCH_IMAGES: dict[str, int] = {"cifar_vgg5": 50_000}
"""Training images per epoch of the data set a bench circuit is for (CIFAR-10's 50,000)."""

REFERENCE_EPOCH_S: dict[str, float] = {"cifar_vgg5": 235.0}
"""Seconds per epoch of the paper's own run on their GPU (issue 14 quotes 235 s for Table 2's
CIFAR-10 network; the shipped log of the reference code shows 230 s per epoch after a first
epoch of 597 s with compilation)."""


@dataclass
class ConvBenchCase:
    """One measured conv case (what ``--json`` prints in ``conv``). Times are per settle
    step (``*_step_ms``), rates in GFLOP/s; ``*_rows``: real row blocks per step."""

    circuit: str
    batch: int
    points: int
    free_rows: int
    nudge_rows: int
    free_steps: int
    nudge_steps: int
    timed_free_steps: int
    timed_nudge_steps: int
    free_step_ms: float
    nudge_step_ms: float
    free_gflop_per_step: float
    nudge_gflop_per_step: float
    free_gflops: float
    nudge_gflops: float
    conv_rate_free_gflops: float
    conv_rate_nudge_gflops: float
    gemm_rate_free_gflops: float
    gemm_rate_nudge_gflops: float
    fraction_of_conv_rate: float
    fraction_of_gemm_rate: float
    compile_s: float
    settle_s_per_train_step: float
    epoch_images: int | None
    epoch_s_projected: float | None
    reference_epoch_s: float | None
    peak_rss_MB: float


@dataclass(frozen=True)
class _Read:
    """One crossbar read of a settle step: ``geometry`` for a conv crossbar, else dense
    ``(n_out, n_in)``."""

    name: str
    macs: int
    shape: tuple[int, int]
    geometry: Any = None


def crossbar_macs(spec: CircuitSpec) -> list[_Read]:
    """Multiply-adds per row of one read of every crossbar (in ``crossbar_names`` order):
    a conv crossbar ``C_out (C_in k k)`` at each of its output positions, a dense one
    ``n_out n_in``; the same count both ways (the transposed read sums the same products
    onto the input)."""
    layers = spec.layers
    geoms = spec.geometries
    reads = []
    for i, name in enumerate(spec.crossbar_names):
        g = geoms[i]
        if g is not None:
            reads.append(_Read(name, g.channels * g.n_in * g.positions, (g.channels, g.n_in), g))
        elif name == "readout":
            n = (spec.readout.classes, layers[-1])
            reads.append(_Read(name, n[0] * n[1], n))
        else:
            n = (layers[i + 1], layers[i])
            reads.append(_Read(name, n[0] * n[1], n))
    return reads


def _step_reads(spec: CircuitSpec, *, nudged: bool) -> list[_Read]:
    """The reads of one settle step after the first crossbar's constant input drive: every
    crossbar between neuron layers, and the readout under a nudge (cross-entropy chips)."""
    reads = crossbar_macs(spec)[1:]
    return [r for r in reads if r.name != "readout" or nudged]


def settle_step_flop(spec: CircuitSpec, *, rows: int, nudged: bool) -> float:
    """FLOP of one settle step over ``rows`` real row blocks: each read forward and
    transposed, 2 FLOP per multiply-add."""
    return float(rows * sum(2 * 2 * r.macs for r in _step_reads(spec, nudged=nudged)))


def drive_flop(spec: CircuitSpec, *, rows: int) -> float:
    """FLOP of the input crossbar's read, once per settle (its input is clamped)."""
    return float(rows * 2 * crossbar_macs(spec)[0].macs)


def _conv_fn(g: Any, rows: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``jax.lax.conv_general_dilated`` as the emulator calls it (NCHW, OIHW, full
    precision) on flattened ``(rows, C_in H W)`` states."""
    c, h, wd = g.in_shape
    k, p = g.kernel, g.padding

    def f(x: jax.Array, w: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x.reshape(rows, c, h, wd),
            w.reshape(g.channels, c, k, k),
            window_strides=(g.stride, g.stride),
            padding=((p, p), (p, p)),
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=PRECISION,
        )
        return y.reshape(rows, g.conv_size)

    return f


def _timed_loop(body: Callable, carry: tuple, steps: int, repeats: int) -> float:
    """Best wall time (s) of ``steps`` iterations of ``body`` in one compiled ``scan``,
    compiled ahead (the compile is not timed)."""

    def loop(c: tuple) -> tuple:
        return jax.lax.scan(lambda s, _: (body(s), None), c, None, length=steps)[0]

    compiled = jax.jit(loop).lower(carry).compile()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(carry))
        best = min(best, time.perf_counter() - t)
    return float(best)


def _weights(reads: list[_Read]) -> list[jax.Array]:
    rng = np.random.default_rng(0)
    return [
        jnp.asarray(rng.standard_normal(r.shape, np.float32) / np.sqrt(r.shape[1])) for r in reads
    ]


Fn = Callable[[jax.Array, jax.Array], jax.Array]


def _read_pair(r: _Read, rows: int) -> tuple[Fn, Fn, tuple[int, int]]:
    """``(forward, transposed, (n_in, n_out))`` of one read on ``rows`` rows, as functions
    of ``(state, w)``: a conv crossbar's ``jax.lax.conv_general_dilated`` and its linear
    transpose (how the emulator reads it back), a dense one's two matrix products."""
    g = r.geometry
    if g is None:
        return (lambda x, w: matmul(x, w.T)), (lambda d, w: matmul(d, w)), (r.shape[1], r.shape[0])
    f = _conv_fn(g, rows)
    zeros = jax.ShapeDtypeStruct((rows, g.in_size), jnp.float32)

    def transposed(d: jax.Array, w: jax.Array) -> jax.Array:
        return jax.linear_transpose(lambda v: f(v, w), zeros)(d)[0]

    return f, transposed, (g.in_size, g.conv_size)


def reads_rate(
    spec: CircuitSpec, *, rows: int, nudged: bool, steps: int = 1, repeats: int = 1
) -> float:
    """GFLOP/s of one settle step's reads on ``rows`` rows, ``steps`` times in a compiled
    loop: each conv crossbar as ``jax.lax.conv_general_dilated`` forward and its linear
    transpose (:func:`_read_pair`), each dense one as two matrix products; a ``tanh`` on
    every output keeps the steps dependent (as ``matmul_rate`` does)."""
    reads = _step_reads(spec, nudged=nudged)
    ws = _weights(reads)
    pairs = [_read_pair(r, rows) for r in reads]
    carry = tuple(
        (jnp.full((rows, a), 0.5, jnp.float32), jnp.full((rows, b), 0.5, jnp.float32))
        for _, _, (a, b) in pairs
    )

    def body(c: tuple) -> tuple:
        return tuple(
            (jnp.tanh(bwd(d, w)), jnp.tanh(fwd(x, w)))
            for (fwd, bwd, _), w, (x, d) in zip(pairs, ws, c, strict=True)
        )

    t = _timed_loop(body, carry, steps, repeats)
    return settle_step_flop(spec, rows=rows, nudged=nudged) * steps / t / 1e9


def gemm_rate(
    spec: CircuitSpec, *, rows: int, nudged: bool, steps: int = 1, repeats: int = 1
) -> float:
    """GFLOP/s of the same multiply-adds as plain matrix products: per conv read
    ``(rows P, C_in k k) @ (C_in k k, C_out)`` and back (``P`` positions; the patches are
    not extracted), per dense read ``(rows, n_in) @ (n_in, n_out)`` and back."""
    reads = _step_reads(spec, nudged=nudged)
    ws = _weights(reads)
    m = [rows * (r.geometry.positions if r.geometry is not None else 1) for r in reads]
    carry = tuple(
        (jnp.full((mi, r.shape[1]), 0.5, jnp.float32), jnp.full((mi, r.shape[0]), 0.5, jnp.float32))
        for mi, r in zip(m, reads, strict=True)
    )

    def body(c: tuple) -> tuple:
        return tuple(
            (jnp.tanh(matmul(d, w)), jnp.tanh(matmul(x, w.T)))
            for w, (x, d) in zip(ws, c, strict=True)
        )

    t = _timed_loop(body, carry, steps, repeats)
    return settle_step_flop(spec, rows=rows, nudged=nudged) * steps / t / 1e9


def _aot_time(fn: Any, args: tuple, kwargs: dict, repeats: int) -> tuple[Any, float, float]:
    """``(output, compile s, best run s)`` of an equinox-jitted ``fn`` compiled ahead."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args, **kwargs).compile()
    compile_s = time.perf_counter() - t0
    best, out = np.inf, None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(*args, **kwargs))
        best = min(best, time.perf_counter() - t)
    return out, compile_s, float(best)


def conv_bench_case(
    circuit: Circuit,
    *,
    batch: int,
    points: int,
    beta: float,
    settle_steps: int | None = None,
    repeats: int = 1,
) -> ConvBenchCase:
    """Time a conv chip's free and nudge settles per step (see the module docstring).

    ``settle_steps``: steps per timed settle (``None``: the circuit's ``T1`` and ``T2``);
    a short settle's time per step includes its one-off work (the input drive, the last
    step's residual and the logits), small next to a step of a large chip. ``repeats``:
    timed runs of each compiled settle (the best is kept). The chip is noise-free (the
    bench's conv cases are the paper's ideal chips), on random inputs in ``[0, 1)``.
    """
    spec = circuit.spec
    if spec.neuron.noise_std > 0:
        raise ValueError(f"conv bench: {spec.name} has neuron noise; the conv cases are noise-free")
    free_steps, nudge_steps = spec.dynamics.steps
    t_free = settle_steps or free_steps
    t_nudge = settle_steps or nudge_steps
    drv = EmulatorDriver(circuit, seed=0)
    chip = drv.emulated_chip
    noisy = chip.noisy
    key = jax.random.PRNGKey(0) if noisy else None
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((batch, spec.layers[0]), np.float32))
    y = jnp.asarray(
        np.eye(spec.readout.classes, dtype=np.float32)[rng.integers(0, spec.readout.classes, batch)]
    )
    free, c_free, s_free = _aot_time(free_phase, (chip, x), {"steps": t_free, "key": key}, repeats)
    values, plan = nudge_schedule(circle_betas(beta, points), noisy=noisy, start="free")
    betas = jnp.asarray(values)
    _, c_nudge, s_nudge = _aot_time(
        nudge_phases, (chip, free, y, betas, plan), {"steps": t_nudge, "key": key}, repeats
    )
    parts = 2 if plan.complex_ else 1
    nudge_rows = sum(parts if not r else 1 for r in plan.real) * batch
    f_step = settle_step_flop(spec, rows=batch, nudged=False)
    n_step = settle_step_flop(spec, rows=nudge_rows, nudged=True)
    free_ms = s_free / t_free * 1e3
    nudge_ms = s_nudge / t_nudge * 1e3
    free_rate = (t_free * f_step + drive_flop(spec, rows=batch)) / s_free / 1e9
    nudge_rate = (t_nudge * n_step + drive_flop(spec, rows=nudge_rows)) / s_nudge / 1e9
    conv_f = reads_rate(spec, rows=batch, nudged=False, repeats=repeats)
    conv_n = reads_rate(spec, rows=nudge_rows, nudged=True, repeats=repeats)
    gemm_f = gemm_rate(spec, rows=batch, nudged=False, repeats=repeats)
    gemm_n = gemm_rate(spec, rows=nudge_rows, nudged=True, repeats=repeats)
    # One training step's settles: T1 free and T2 nudge steps.
    settle_s = (free_steps * free_ms + nudge_steps * nudge_ms) / 1e3
    # The settles' time at each reference rate over the time measured (1: as fast).
    conv_s = (free_steps * f_step / conv_f + nudge_steps * n_step / conv_n) / 1e9
    gemm_s = (free_steps * f_step / gemm_f + nudge_steps * n_step / gemm_n) / 1e9
    images = EPOCH_IMAGES.get(spec.name)
    return ConvBenchCase(
        circuit=spec.name,
        batch=batch,
        points=points,
        free_rows=batch,
        nudge_rows=nudge_rows,
        free_steps=free_steps,
        nudge_steps=nudge_steps,
        timed_free_steps=t_free,
        timed_nudge_steps=t_nudge,
        free_step_ms=free_ms,
        nudge_step_ms=nudge_ms,
        free_gflop_per_step=f_step / 1e9,
        nudge_gflop_per_step=n_step / 1e9,
        free_gflops=free_rate,
        nudge_gflops=nudge_rate,
        conv_rate_free_gflops=conv_f,
        conv_rate_nudge_gflops=conv_n,
        gemm_rate_free_gflops=gemm_f,
        gemm_rate_nudge_gflops=gemm_n,
        fraction_of_conv_rate=conv_s / settle_s,
        fraction_of_gemm_rate=gemm_s / settle_s,
        compile_s=c_free + c_nudge,
        settle_s_per_train_step=settle_s,
        epoch_images=images,
        epoch_s_projected=None if images is None else math.ceil(images / batch) * settle_s,
        reference_epoch_s=REFERENCE_EPOCH_S.get(spec.name),
        peak_rss_MB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


CONV_BENCH_HEADER = (
    f"{'conv circuit':<12} {'batch':>5} {'N':>2} {'rows f/n':>9} {'T1':>4} {'T2':>3} "
    f"{'timed':>7} {'free ms/st':>10} {'nudge ms/st':>11} {'GFLOP/st f/n':>14} "
    f"{'GFLOP/s f/n':>12} {'conv GFLOP/s':>13} {'GEMM GFLOP/s':>13} {'of conv':>7} "
    f"{'of GEMM':>7} "
    f"{'settles s/step':>14} {'epoch s':>9} {'ref s':>6}"
)


def conv_row(c: ConvBenchCase) -> str:
    """One line of the conv table (``ref s``: the paper's epoch on their GPU)."""

    def pair(a: float, b: float, fmt: str) -> str:
        return f"{a:{fmt}}/{b:{fmt}}"

    epoch = "-" if c.epoch_s_projected is None else f"{c.epoch_s_projected:.0f}"
    ref = "-" if c.reference_epoch_s is None else f"{c.reference_epoch_s:.0f}"
    return (
        f"{c.circuit:<12} {c.batch:>5} {c.points:>2} {f'{c.free_rows}/{c.nudge_rows}':>9} "
        f"{c.free_steps:>4} {c.nudge_steps:>3} "
        f"{f'{c.timed_free_steps}/{c.timed_nudge_steps}':>7} {c.free_step_ms:>10.2f} "
        f"{c.nudge_step_ms:>11.2f} "
        f"{pair(c.free_gflop_per_step, c.nudge_gflop_per_step, '.3g'):>14} "
        f"{pair(c.free_gflops, c.nudge_gflops, '.1f'):>12} "
        f"{pair(c.conv_rate_free_gflops, c.conv_rate_nudge_gflops, '.1f'):>13} "
        f"{pair(c.gemm_rate_free_gflops, c.gemm_rate_nudge_gflops, '.1f'):>13} "
        f"{c.fraction_of_conv_rate:>7.2f} {c.fraction_of_gemm_rate:>7.2f} "
        f"{c.settle_s_per_train_step:>14.3g} {epoch:>9} {ref:>6}"
    )
