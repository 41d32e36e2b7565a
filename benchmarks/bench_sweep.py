"""A 64-point noise-by-seed gradcheck sweep on the toy circuit: vectorised vs 64 gradchecks.

The sweep (hEP, N = 8, |beta| = 0.1, batch 10; 8 neuron-noise levels x 8 seeds) runs

- vectorised: ``run_sweep`` in process; the 64 points share one static signature, so they
  are one ``vmap``-ed, compiled call (the summary's ``compiles`` counts its traces);
- one by one: 64 calls of ``analog_hep.studies.gradcheck`` (what a loop over
  ``analog-hep gradcheck`` does, minus process start-up).

Each path runs twice in this process: *cold* (compilation included) and *warm* (every
program compiled already). Prints both times, the ratios and the largest cosine difference
between the two paths.

    python benchmarks/bench_sweep.py [--noise-levels 8] [--seeds 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from analog_hep.spec import load_circuit
from analog_hep.studies import gradcheck, read_sweep_rows, run_sweep, sweep_from_text

SWEEP = """
kind: gradcheck
circuit: toy
base: {{method: hep, points: 8, beta: 0.1, batch: 10}}
grid:
  noise: {noise}
  seed: {seeds}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise-levels", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    noise = [round(float(v), 4) for v in np.linspace(0.0, 0.07, args.noise_levels)]
    seeds = list(range(args.seeds))
    sweep = sweep_from_text(SWEEP.format(noise=noise, seeds=seeds), name="bench_sweep.yaml")
    n = len(sweep.points)
    out: dict[str, float | int] = {"points": n}
    with tempfile.TemporaryDirectory() as tmp:
        cols = {}
        for label in ("cold", "warm"):
            path = Path(tmp) / f"{label}.h5"
            t0 = time.perf_counter()
            summary = run_sweep(sweep, path, workers=0, progress=False, log=lambda _: None)
            out[f"vectorised_{label}_s"] = time.perf_counter() - t0
            out[f"vectorised_{label}_compiles"] = summary.compiles
            out[f"vectorised_{label}_tasks"] = summary.tasks
            cols, _ = read_sweep_rows(path)
    circuit = load_circuit("toy")
    serial: dict[tuple[float, int], float] = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        for v in noise:
            for s in seeds:
                r = gradcheck(
                    circuit, method="hep", points=8, beta=0.1, batch=10, seed=s, noise=v
                )
                serial[(v, s)] = r.cosine_total
        out[f"serial_{label}_s"] = time.perf_counter() - t0
    diffs = [
        abs(c - serial[(round(float(v), 4), int(s))])
        for c, v, s in zip(cols["cosine_total"], cols["noise"], cols["seed"], strict=True)
    ]
    out["max_cosine_difference"] = float(max(diffs))
    out["speedup_warm"] = out["serial_warm_s"] / out["vectorised_warm_s"]
    out["speedup_cold"] = out["serial_cold_s"] / out["vectorised_cold_s"]
    if args.json:
        print(json.dumps(out))
        return
    print(f"{n} points (toy, hEP N=8, |beta|=0.1, batch 10; {len(noise)} noise x {len(seeds)} seeds)")
    for label in ("cold", "warm"):
        print(
            f"  {label}: vectorised {out[f'vectorised_{label}_s']:7.2f} s "
            f"({out[f'vectorised_{label}_tasks']} task, "
            f"{out[f'vectorised_{label}_compiles']} compile)   "
            f"64 gradchecks {out[f'serial_{label}_s']:7.2f} s   "
            f"speed-up {out[f'speedup_{label}']:.1f}x"
        )
    print(f"  largest |cosine difference| between the paths: {out['max_cosine_difference']:.1e}")


if __name__ == "__main__":
    main()
