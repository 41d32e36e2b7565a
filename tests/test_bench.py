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
