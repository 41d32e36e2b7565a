"""A 64-point noise-by-seed gradcheck sweep on the toy circuit: vectorised vs 64 gradchecks.

The sweep (hEP, N = 8, |beta| = 0.1, batch 10; 8 neuron-noise levels x 8 seeds) runs

- vectorised: ``run_sweep`` in process (expansion, planning, the compiled call, HDF5 rows);
  the 64 points share one static signature, so they are one ``vmap``-ed, compiled call
  (``compiles`` counts the traces of the vectorised core);
- one by one: 64 calls of ``analog_hep.studies.gradcheck`` (a loop over ``analog-hep
  gradcheck`` minus process start-up and output).

Each path runs in a fresh Python process (so neither inherits the other's compiled
programs): once *cold* (compilation included), then ``--repeats`` times *warm* (everything
compiled; the fastest is kept, as the machine may be shared). Prints both, the ratios and
the largest cosine difference between the two paths.

    python benchmarks/bench_sweep.py [--noise-levels 8] [--seeds 8] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SWEEP = """
kind: gradcheck
circuit: toy
base: {{method: hep, points: 8, beta: 0.1, batch: 10}}
grid:
  noise: {noise}
  seed: {seeds}
"""


def _grid(args: argparse.Namespace) -> tuple[list[float], list[int]]:
    noise = [round(float(v), 4) for v in np.linspace(0.0, 0.07, args.noise_levels)]
    return noise, list(range(args.seeds))


def _vectorised(args: argparse.Namespace) -> dict:
    from analog_hep.studies import read_sweep_rows, run_sweep, sweep_from_text

    noise, seeds = _grid(args)
    text = SWEEP.format(noise=noise, seeds=seeds)
    out: dict = {"times": [], "compiles": [], "tasks": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1 + args.repeats):
            path = Path(tmp) / f"run{i}.h5"
            t0 = time.perf_counter()
            summary = run_sweep(
                sweep_from_text(text, name="bench_sweep.yaml"),
                path,
                workers=0,
                progress=False,
                log=lambda _: None,
            )
            out["times"].append(time.perf_counter() - t0)
            out["compiles"].append(summary.compiles)
            out["tasks"].append(summary.tasks)
        cols, _ = read_sweep_rows(path)
    out["cosine"] = {
        f"{v:.4f}/{int(s)}": float(c)
        for v, s, c in zip(cols["noise"], cols["seed"], cols["cosine_total"], strict=True)
    }
    return out


def _serial(args: argparse.Namespace) -> dict:
    from analog_hep.spec import load_circuit
    from analog_hep.studies import gradcheck

    noise, seeds = _grid(args)
    circuit = load_circuit("toy")
    out: dict = {"times": [], "cosine": {}}
    for _ in range(1 + args.repeats):
        t0 = time.perf_counter()
        for v in noise:
            for s in seeds:
                r = gradcheck(circuit, method="hep", points=8, beta=0.1, batch=10, seed=s, noise=v)
                out["cosine"][f"{v:.4f}/{s}"] = r.cosine_total
        out["times"].append(time.perf_counter() - t0)
    return out


def _child(path: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--path",
        path,
        "--noise-levels",
        str(args.noise_levels),
        "--seeds",
        str(args.seeds),
        "--repeats",
        str(args.repeats),
    ]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise-levels", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="warm runs (the fastest is kept)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--path", choices=("vectorised", "serial"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.path is not None:  # a child process: one path, JSON on stdout
        fn = _vectorised if args.path == "vectorised" else _serial
        print(json.dumps(fn(args)))
        return
    vec = _child("vectorised", args)
    ser = _child("serial", args)
    n = args.noise_levels * args.seeds
    diff = max(abs(vec["cosine"][k] - ser["cosine"][k]) for k in ser["cosine"])
    out = {
        "points": n,
        "vectorised_cold_s": vec["times"][0],
        "vectorised_warm_s": min(vec["times"][1:]),
        "vectorised_compiles": vec["compiles"][0],
        "vectorised_tasks": vec["tasks"][0],
        "serial_cold_s": ser["times"][0],
        "serial_warm_s": min(ser["times"][1:]),
        "max_cosine_difference": diff,
    }
    out["speedup_warm"] = out["serial_warm_s"] / out["vectorised_warm_s"]
    out["speedup_cold"] = out["serial_cold_s"] / out["vectorised_cold_s"]
    if args.json:
        print(json.dumps(out))
        return
    grid = f"{args.noise_levels} noise x {args.seeds} seeds"
    print(f"{n} points (toy, hEP N=8, |beta|=0.1, batch 10; {grid})")
    print(
        f"  vectorised sweep: {out['vectorised_tasks']} task, {out['vectorised_compiles']} "
        f"compile; cold {out['vectorised_cold_s']:.2f} s, warm {out['vectorised_warm_s']:.2f} s"
    )
    print(
        f"  {n} gradchecks:    cold {out['serial_cold_s']:.2f} s, warm {out['serial_warm_s']:.2f} s"
    )
    print(
        f"  speed-up: warm {out['speedup_warm']:.1f}x, cold {out['speedup_cold']:.1f}x "
        "(cold is mostly XLA compilation, paid once per process)"
    )
    print(f"  largest |cosine difference| between the paths: {diff:.1e}")


if __name__ == "__main__":
    main()
