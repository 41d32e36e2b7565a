"""``analog-hep bench``: the JSON it prints, also when a time limit stops it half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def test_bench_stopped_by_sigterm_prints_the_cases_it_measured():
    proc = subprocess.Popen(
        [sys.executable, "-m", "analog_hep", "bench", "--quick", "--table1-only", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rows = []
    for line in proc.stderr:  # the table goes to stderr under --json
        if line.startswith("mnist_mlp"):
            rows.append(line)
            proc.send_signal(signal.SIGTERM)  # stop after the first measured case
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    result = json.loads(out)
    assert result["interrupted"] is True
    case = result["cases"][0]
    assert {"circuit", "batch", "noise", "samples_per_s", "compile_s", "settle_gflops"} <= set(case)
    assert case["circuit"] == "mnist_mlp" and case["batch"] == 20 and case["noise"] == 0.0
    assert case["samples_per_s"] > 0 and 0 < case["matmul_peak_gflops"] < 1e7
    assert case["settle_gflop_per_step"] > 3.8  # 3.86 GFLOP for the noise-0 Table 1 step


def test_compile_cache_env_var_keeps_compiled_programs(tmp_path):
    """``ANALOG_HEP_COMPILE_CACHE`` makes every command write its compiled programs there,
    and a second run loads them (JAX logs the cache hit when compiles are logged)."""
    cache = tmp_path / "xla"
    cmd = [sys.executable, "-m", "analog_hep", "gradcheck", "toy", "--points", "4"]
    cmd += ["--beta", "0.1", "--batch", "4", "--json"]
    env = {**os.environ, "ANALOG_HEP_COMPILE_CACHE": str(cache)}
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    first = {p.name for p in cache.iterdir()}
    assert any("nudge_phases" in name for name in first), first
    second = subprocess.run(
        cmd, env={**env, "JAX_LOG_COMPILES": "1"}, check=True, capture_output=True, text=True
    )
    assert "Persistent compilation cache hit for 'jit_nudge_phases'" in second.stderr
    assert first <= {p.name for p in cache.iterdir()}


def _old_mlp_settle_flop(spec, *, batch, rows_nudge):
    """The MLP count before conv crossbars (kept here to pin it)."""
    layers = spec.layers
    free, nudge = spec.dynamics.steps
    hidden = sum(2 * 2 * layers[i + 1] * layers[i] for i in range(1, len(layers) - 1))
    readout = 2 * 2 * spec.readout.classes * layers[-1]
    drive = 2 * layers[1] * layers[0]
    flop = free * batch * hidden + batch * drive
    return flop + nudge * rows_nudge * (hidden + readout) + rows_nudge * drive


def test_settle_flop_counts_conv_reads_at_every_position_and_keeps_the_mlp_count():
    from analog_hep.spec import load_circuit
    from analog_hep.studies.bench._bench import _part_rows, settle_flop
    from analog_hep.studies.bench._conv_bench import drive_flop, settle_step_flop

    mlp = load_circuit("mnist_mlp")
    for points, noisy in ((10, False), (10, True), (4, True)):
        rows = _part_rows(points, noisy) * 20
        new = settle_flop(mlp, batch=20, points=points, noisy=noisy)
        assert new == _old_mlp_settle_flop(mlp.spec, batch=20, rows_nudge=rows)
    # Table 2's chip: conv 2-4 read both ways at every output position, per row and step:
    # 256 ch x (128 x 9) x 16 x 16 + 512 x (256 x 9) x 8 x 8 + 512 x (512 x 9) x 2 x 2 MACs;
    # the readout (10 x 512) only under a nudge; conv 1 (128 x 27 x 32 x 32) once per settle.
    vgg = load_circuit("circuits/cifar_vgg5.yaml").spec
    macs = 256 * 1152 * 256 + 512 * 2304 * 64 + 512 * 4608 * 4
    assert settle_step_flop(vgg, rows=128, nudged=False) == 128 * 4 * macs
    assert settle_step_flop(vgg, rows=256, nudged=True) == 256 * 4 * (macs + 10 * 512)
    assert drive_flop(vgg, rows=128) == 128 * 2 * 128 * 27 * 1024
    # digits_cnn: its conv crossbar reads the clamped input (once per settle); the dense
    # 128 x 512 between neuron layers is read both ways every step.
    cnn = load_circuit("digits_cnn").spec
    assert settle_step_flop(cnn, rows=20, nudged=False) == 20 * 4 * (128 * 512)
    assert drive_flop(cnn, rows=20) == 20 * 2 * 32 * 9 * 64


def test_conv_bench_case_runs_and_prints_its_figures():
    """The conv case on a tiny batch and two settle steps: every figure is a positive number
    and the row prints them (no timing asserts: the machine is shared)."""
    import dataclasses

    from analog_hep.spec import load_circuit
    from analog_hep.studies.bench._conv_bench import (
        CONV_BENCH_HEADER,
        conv_bench_case,
        conv_row,
    )

    case = conv_bench_case(load_circuit("digits_cnn"), batch=2, points=2, beta=0.5, settle_steps=2)
    assert case.free_rows == 2 and case.nudge_rows == 4  # N = 2: two real row blocks
    assert case.timed_free_steps == case.timed_nudge_steps == 2
    assert (case.free_steps, case.nudge_steps) == (80, 40)  # the circuit's T1, T2
    figures = dataclasses.asdict(case)
    for name in (
        "free_step_ms",
        "nudge_step_ms",
        "free_gflops",
        "nudge_gflops",
        "conv_rate_free_gflops",
        "conv_rate_nudge_gflops",
        "gemm_rate_free_gflops",
        "gemm_rate_nudge_gflops",
        "fraction_of_conv_rate",
        "fraction_of_gemm_rate",
    ):
        assert 0 < figures[name] < 1e7, name
    step_s = (80 * case.free_step_ms + 40 * case.nudge_step_ms) / 1e3
    assert abs(case.settle_s_per_train_step - step_s) < 1e-9
    assert case.epoch_s_projected is None  # only Table 2's chip has an epoch to project
    json.dumps(figures)  # what --json prints
    row = conv_row(case)
    assert row.split()[0] == "digits_cnn" and f"{case.free_step_ms:.2f}" in row
    assert len(CONV_BENCH_HEADER.split()) > 10


def test_bench_refuses_an_unknown_case():
    out = subprocess.run(
        [sys.executable, "-m", "analog_hep", "bench", "--case", "vgg99"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "--case: unknown 'vgg99'" in out.stdout and "cifar_vgg5" in out.stdout
