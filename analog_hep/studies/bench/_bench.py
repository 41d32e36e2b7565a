"""``analog-hep bench``: speed of a full hEP training step against this machine's limit.

For each case, a full training step through the emulator driver (free settle, N nudged
settles, estimate, update) is timed, and the matrix-product work of its settle loop is
counted from the circuit (every crossbar read is ``2 n_out n_in`` FLOP per row and real
part; complex states are two real parts; noise-free schedules settle only the N/2 + 1
points that are not complex conjugates of one another). The same run measures the float32
matrix-product rate of this machine on the settle's own shapes (a compiled loop of the same
products), so ``settle_gflops / matmul_peak_gflops`` is a ratio measured under one load.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..._numerics import matmul
from ...emulator import EmulatorDriver
from ...hep import Controller, HepConfig, circle_betas
from ...spec import Circuit, load_circuit
from ..sweeps._overrides import with_overrides
from ._conv_bench import (
    CONV_BENCH_HEADER,
    ConvBenchCase,
    conv_bench_case,
    conv_row,
    drive_flop,
    reads_rate,
    settle_step_flop,
)

__all__ = [
    "BENCH_HEADER",
    "CASES",
    "CONV_BENCH_HEADER",
    "QUICK_CASES",
    "BenchCase",
    "ConvBenchCase",
    "run_bench",
]


@dataclass
class BenchCase:
    """One measured case (what ``--json`` prints in ``cases``)."""

    circuit: str
    batch: int
    noise: float
    points: int
    schedule: str
    free_steps: int
    nudge_steps: int
    width: int
    unroll: int
    samples_per_s: float
    step_ms: float
    compile_s: float
    settle_gflop_per_step: float
    settle_gflops: float
    matmul_peak_gflops: float
    fraction_of_peak: float
    peak_rss_MB: float
    peak_kind: str = "matmul"  # what matmul_peak_gflops measured: "matmul" or "conv" reads


def _part_rows(points: int, noisy: bool) -> int:
    """Real row blocks per sample in the nudge settles: a complex point is two (real and
    imaginary part), a point on the real axis one; noise-free schedules settle only one of
    each pair of complex-conjugate points."""
    betas = [complex(b) for b in circle_betas(1.0, points)]
    if not noisy:
        betas = list({(round(b.real, 12), abs(round(b.imag, 12))): b for b in betas}.values())
    if all(abs(b.imag) < 1e-12 for b in betas):
        return len(betas)
    return sum(1 if abs(b.imag) < 1e-12 else 2 for b in betas)


def settle_flop(circuit: Circuit, *, batch: int, points: int, noisy: bool) -> float:
    """Matrix-product FLOP in the settle loop of one training step (a conv crossbar's reads
    counted at every output position: :func:`crossbar_macs`)."""
    spec = circuit.spec
    free, nudge = spec.dynamics.steps
    rows_nudge = _part_rows(points, noisy) * batch
    flop = free * settle_step_flop(spec, rows=batch, nudged=False)
    flop += drive_flop(spec, rows=batch)
    flop += nudge * settle_step_flop(spec, rows=rows_nudge, nudged=True)
    flop += drive_flop(spec, rows=rows_nudge)
    return float(flop)


def matmul_rate(rows: int, n: int, steps: int, *, repeats: int = 3) -> float:
    """GFLOP/s of ``steps`` pairs of ``(rows, n) @ (n, n)`` products in a compiled loop (the
    settle loop's shape: one forward and one transposed read per step)."""
    w = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)) / np.sqrt(n), jnp.float32)
    x0 = jnp.ones((rows, n), jnp.float32) * 0.5

    @jax.jit
    def loop(x):
        def body(s, _):
            y = jnp.tanh(matmul(s, w.T) + matmul(s, w))
            return y, None

        return jax.lax.scan(body, x, None, length=steps)[0]

    loop(x0).block_until_ready()
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        loop(x0).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * 2 * rows * n * n * steps / best / 1e9


def _controller(
    circuit: Circuit,
    *,
    points: int,
    beta: float,
    seed: int,
    unroll: int | None = None,
    schedule: str = "parallel",
) -> Controller:
    drv = EmulatorDriver(
        circuit, seed=seed, options={} if unroll is None else {"unroll": str(unroll)}
    )
    cfg = HepConfig(
        method="hep",
        points=points,
        beta=beta,
        lr=0.05,
        momentum=0.0,
        schedule="constant",
        total_steps=1000,
        residual_tol=float("inf"),
        update="auto",
        hep_schedule=schedule,  # type: ignore[arg-type]
    )
    return Controller(drv, cfg)


def bench_case(
    circuit: Circuit,
    *,
    batch: int,
    noise: float,
    points: int,
    beta: float,
    repeats: int,
    unroll: int | None = None,
    schedule: str = "parallel",
) -> BenchCase:
    """Time a full training step of ``circuit`` (see the module docstring). ``schedule``:
    the hEP points settled in parallel from the free state (``K B`` rows per settle step)
    or in sequence (``B`` rows per step, ``K`` times the steps): the same FLOP, other
    shapes."""
    spec = with_overrides(circuit.spec, noise=noise)
    circuit = dataclasses.replace(circuit, spec=spec)
    ctrl = _controller(circuit, points=points, beta=beta, seed=0, unroll=unroll, schedule=schedule)
    rng = np.random.default_rng(0)
    x = rng.random((batch, spec.layers[0]), np.float32)
    y = np.eye(spec.readout.classes, dtype=np.float32)[rng.integers(0, spec.readout.classes, batch)]
    t0 = time.perf_counter()
    ctrl.train_step(x, y)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        ctrl.train_step(x, y)
        times.append(time.perf_counter() - t)
    step = float(np.median(times))
    sequential = ctrl.plan.sequential
    noisy = noise > 0 or sequential  # a sequential schedule settles every point
    flop = settle_flop(circuit, batch=batch, points=points, noisy=noisy)
    free, nudge = spec.dynamics.steps
    width = spec.layers[-1]
    rows = 2 * batch if sequential else _part_rows(points, noisy) * batch
    loop_steps = nudge * (points if sequential else 1)
    conv_chip = any(g is not None for g in spec.geometries)
    if conv_chip:
        # The settle's own reads as XLA convolutions on the nudge rows (a conv chip has no
        # one square width to stand for it).
        peak = reads_rate(spec, rows=rows, nudged=True, steps=loop_steps, repeats=3)
    else:
        peak = matmul_rate(rows, width, loop_steps)
    rate = flop / step / 1e9
    return BenchCase(
        circuit=spec.name,
        batch=batch,
        noise=noise,
        points=points,
        schedule="sequential" if sequential else "parallel",
        free_steps=free,
        nudge_steps=nudge,
        width=width,
        unroll=ctrl.driver.chip.config.unroll,  # type: ignore[attr-defined]
        samples_per_s=batch / step,
        step_ms=step * 1e3,
        compile_s=max(first - step, 0.0),
        settle_gflop_per_step=flop / 1e9,
        settle_gflops=rate,
        matmul_peak_gflops=peak,
        fraction_of_peak=rate / peak,
        peak_rss_MB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_kind="conv" if conv_chip else "matmul",
    )


def _with_width(circuit: Circuit, width: int) -> Circuit:
    layers = (circuit.spec.layers[0], *([width] * (len(circuit.spec.layers) - 1)))
    spec = circuit.spec.model_copy(update={"layers": layers})
    return dataclasses.replace(circuit, spec=spec)


CASES: tuple[str, ...] = ("table1", "toy", "digits", "scaling", "digits_cnn", "cifar_vgg5")
"""Case groups ``run_bench`` knows, in the order they run (``--case``)."""

QUICK_CASES: tuple[str, ...] = ("table1", "toy", "digits", "scaling", "digits_cnn")
"""What ``--quick`` runs without ``--case``: everything but Table 2's chip (minutes per step
on a 2-core CPU)."""

# Conv cases: batch, hEP points and |beta| (the circuits' training settings), steps per
# timed settle (None: the circuit's T1 and T2) and whether a full training step is timed too.
CONV_CASES: dict[str, dict[str, Any]] = {
    "digits_cnn": {"batch": 20, "points": 2, "beta": 0.5, "settle_steps": None, "step": True},
    # Table 2's chip at its batch: a training step is 250 + 60 settle steps of 2-110 s each
    # on the 2-core CPU (docs/performance.md), so one step of each settle is timed.
    "cifar_vgg5": {"batch": 128, "points": 2, "beta": 1.0, "settle_steps": 1, "step": False},
}


def run_bench(
    *,
    quick: bool,
    log=print,
    table1_only: bool = False,
    unroll: int | None = None,
    result: dict[str, Any] | None = None,
    cases: tuple[str, ...] | None = None,
    settle_steps: int | None = None,
) -> dict[str, Any]:
    """The cases of ``cases`` (default: all of :data:`CASES`, or :data:`QUICK_CASES` with
    ``quick``): ``table1``, the Table 1 circuit at batch 20 and 128, noise 0 and 0.04 (hEP
    points in parallel) and noise 0.04 with the points in sequence; ``toy`` and ``digits``;
    ``scaling`` over batch, width and N (noise 0.04, so every point is settled);
    ``digits_cnn`` (a training step at batch 20 and its settles per step) and
    ``cifar_vgg5`` (Table 2's chip at batch 128: ``settle_steps`` steps of each settle,
    default 1; :mod:`._conv_bench`). ``table1_only`` is ``cases=("table1",)``;
    ``unroll`` is the emulator's option. ``result`` (optional) is filled as cases finish, so
    a caller stopped half-way still has what was measured; the same dict is returned. Each
    table's header and rows go to ``log`` as they are measured."""
    if cases is None:
        cases = ("table1",) if table1_only else (QUICK_CASES if quick else CASES)
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; known: {', '.join(CASES)}")
    result = {} if result is None else result
    result.update(cases=[], scaling=[], conv=[], device=str(jax.devices()[0]))

    headers: set[str] = set()

    def header(text: str) -> None:
        # Each table's header once, before its first row (none for a table not run).
        if text not in headers:
            headers.add(text)
            log(text)

    def done(case: BenchCase, table: str) -> None:
        result[table].append(dataclasses.asdict(case))
        header(BENCH_HEADER)
        log(("scaling " if table == "scaling" else "") + _row(case))

    table1 = load_circuit("mnist_mlp")
    repeats = 3 if quick else 5
    if "table1" in cases:
        _table1(table1, quick=quick, repeats=repeats, unroll=unroll, done=done)
    for name, points in (("toy", 8), ("digits", 6)):
        if name not in cases:
            continue
        done(
            bench_case(
                load_circuit(name),
                batch=20,
                noise=0.0,
                points=points,
                beta=0.4,
                repeats=repeats,
                unroll=unroll,
            ),
            "cases",
        )
    if "scaling" in cases:
        _scaling(table1, quick=quick, repeats=repeats, unroll=unroll, done=done)
    for name, how in CONV_CASES.items():
        if name not in cases:
            continue
        circuit = load_circuit(name)
        if how["step"]:
            done(
                bench_case(
                    circuit,
                    batch=how["batch"],
                    noise=0.0,
                    points=how["points"],
                    beta=how["beta"],
                    repeats=repeats,
                    unroll=unroll,
                ),
                "cases",
            )
        case = conv_bench_case(
            circuit,
            batch=how["batch"],
            points=how["points"],
            beta=how["beta"],
            settle_steps=settle_steps or how["settle_steps"],
            repeats=1 if how["settle_steps"] else (2 if quick else 3),
        )
        header(CONV_BENCH_HEADER)
        result["conv"].append(dataclasses.asdict(case))
        log(conv_row(case))
    return result


def _table1(table1: Circuit, *, quick: bool, repeats: int, unroll: int | None, done) -> None:
    """The Table 1 circuit at batch 20 (and 128), noise 0 and 0.04, points in parallel,
    then the noisy steps with the points in sequence."""
    grid = [(20, 0.0), (20, 0.04)] if quick else [(20, 0.0), (20, 0.04), (128, 0.0), (128, 0.04)]
    for batch, noise in grid:
        done(
            bench_case(
                table1,
                batch=batch,
                noise=noise,
                points=10,
                beta=0.4,
                repeats=repeats,
                unroll=unroll,
            ),
            "cases",
        )
    # The same noisy steps with the points settled in sequence (the default on noisy chips):
    # the cost of not batching the points as rows.
    for batch in (20,) if quick else (20, 128):
        done(
            bench_case(
                table1,
                batch=batch,
                noise=0.04,
                points=10,
                beta=0.4,
                repeats=repeats,
                unroll=unroll,
                schedule="sequential",
            ),
            "cases",
        )


def _scaling(table1: Circuit, *, quick: bool, repeats: int, unroll: int | None, done) -> None:
    """The noisy Table 1 step over batch, width, N and T2."""
    base = dict(batch=20, noise=0.04, points=10, beta=0.4, repeats=repeats, unroll=unroll)
    for b in (10, 20, 40) if quick else (10, 20, 40, 80):
        done(bench_case(table1, **{**base, "batch": b}), "scaling")
    for w in (128, 256) if quick else (128, 256, 512):
        done(bench_case(_with_width(table1, w), **base), "scaling")
    for n in (4, 8) if quick else (4, 8, 16):
        done(bench_case(table1, **{**base, "points": n}), "scaling")
    for t2 in (25, 50) if quick else (25, 50, 100):
        dyn = table1.spec.dynamics.model_copy(update={"nudge_steps": t2})
        c = dataclasses.replace(table1, spec=table1.spec.model_copy(update={"dynamics": dyn}))
        done(bench_case(c, **base), "scaling")


BENCH_HEADER = (
    f"{'circuit':<10} {'batch':>5} {'noise':>5} {'N':>3} {'sched':>5} {'T1':>4} {'T2':>4} "
    f"{'width':>5} "
    f"{'samples/s':>10} {'step ms':>8} {'compile s':>9} {'GFLOP/step':>10} {'GFLOP/s':>8} "
    f"{'peak GFLOP/s':>12} {'of peak':>7}"
)


def _row(c: BenchCase) -> str:
    return (
        f"{c.circuit:<10} {c.batch:>5} {c.noise:>5g} {c.points:>3} {c.schedule[:5]:>5} "
        f"{c.free_steps:>4} {c.nudge_steps:>4} {c.width:>5} {c.samples_per_s:>10.1f} "
        f"{c.step_ms:>8.1f} "
        f"{c.compile_s:>9.1f} {c.settle_gflop_per_step:>10.3f} {c.settle_gflops:>8.1f} "
        f"{c.matmul_peak_gflops:>12.1f} {c.fraction_of_peak:>7.2f}"
    )
