"""Calibrate the circle diagnostic: false-alarm and miss rates against the exact gradient.

For each circuit, |beta|, N and batch seed, one ``gradcheck`` (hEP estimate and ground
truth on a batch of 10) gives the cosine to the exact gradient and the diagnostic
(``rho_b = |c_{-1}| / |c_1|`` per sample, the batch value). A run is *good* when the
cosine is >= 0.99, *bad* when it is < 0.9. A false alarm is a flagged good run, a miss an
unflagged bad run. Rows go to a JSON-lines file (appended, so runs on several machines
combine); ``--summary`` prints the table of docs/gradients.md from such files.

    python benchmarks/circle_diagnostic.py run --circuit toy --out runs/circle.jsonl
    python benchmarks/circle_diagnostic.py summary runs/circle.jsonl

The grids (``--betas``, ``--points``, ``--seeds``) default to the documented ones.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

GRIDS = {
    # circuit: (betas, points, seeds, dataset, settle overrides (T1, T2))
    "toy": ((0.1, 0.3, 0.5, 0.8, 1.0, 1.5), (4, 8), range(5), None, (None, None)),
    "digits": ((0.1, 0.4, 0.8, 1.5, 3.0), (6,), range(4), "digits", (None, None)),
    "mnist_mlp": (
        (0.1, 0.4, 1.0, 2.0),
        (10,),
        range(3),
        "mnist-test:/work/shared/data/mnist",
        (1000, 500),
    ),
    "tests/data/deep_small.yaml": ((0.05, 0.1, 0.2, 0.4), (4, 8), range(10), None, (None, None)),
}
# Candidate thresholds on the implied bias rho^{N/(N-2)} (the shipped one: CIRCLE_BIAS).
BIASES = (0.02, 0.05, 0.1, 0.2)


def run(args: argparse.Namespace) -> None:
    from analog_hep.spec import load_circuit
    from analog_hep.studies import gradcheck

    betas, points, seeds, dataset, (t1, t2) = GRIDS[args.circuit]
    betas = args.betas or betas
    points = args.points or points
    seeds = range(args.seeds) if args.seeds else seeds
    circuit = load_circuit(args.circuit)
    ds = None
    if dataset is not None:
        from analog_hep.data import load_dataset

        ds = load_dataset(dataset)
    with open(args.out, "a") as out:
        for seed in seeds:
            inputs = None
            if ds is not None:
                x, y = next(ds.batches("train", 10, seed=seed, epoch=0))
                inputs = (x, ds.one_hot(y))
            for n in points:
                for beta in betas:
                    r = gradcheck(
                        circuit,
                        method="hep",
                        points=n,
                        beta=beta,
                        batch=10,
                        seed=seed,
                        free_steps=t1,
                        nudge_steps=t2,
                        inputs=inputs,
                    )
                    row = {
                        "circuit": r.circuit,
                        "points": n,
                        "beta": beta,
                        "seed": seed,
                        "cosine": r.cosine_total,
                        "rel_error": r.rel_error_total,
                        "free_residual": r.free_residual,
                        "nudge_residual": r.nudge_residual,
                        "ratio": r.circle_ratio,
                        "batch_ratio": r.circle_batch_ratio,
                    }
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(
                        f"{r.circuit} N={n} |beta|={beta:g} seed={seed}: cosine "
                        f"{r.cosine_total:.6f} rho batch {r.circle_batch_ratio:.2e} max "
                        f"{max(r.circle_ratio):.2e} residuals {r.free_residual:.0e} "
                        f"{r.nudge_residual:.0e}",
                        flush=True,
                    )


def _rates(rows: list[dict], flag) -> tuple[int, int, int, int, int]:
    """(runs, good, false alarms, bad, misses) under the batch rule ``flag(row)``."""
    good = [r for r in rows if r["cosine"] >= 0.99]
    bad = [r for r in rows if not r["cosine"] >= 0.9]  # NaN (diverged) counts as bad
    fa = sum(bool(flag(r)) for r in good)
    miss = sum(not flag(r) for r in bad)
    return len(rows), len(good), fa, len(bad), miss


def summary(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for f in args.files for line in Path(f).read_text().splitlines()]
    rows = [r for r in rows if r["free_residual"] < 1e-3 and r["nudge_residual"] < 1e-3]
    from analog_hep.hep._circle import CIRCLE_BIAS, circle_threshold

    def batch(bias: float):
        return lambda r: (r["batch_ratio"] or math.nan) > circle_threshold(r["points"], bias)

    def any_sample(bias: float):
        t = lambda r: circle_threshold(r["points"], bias)  # noqa: E731
        return lambda r: np.nanmax(np.asarray(r["ratio"], float)) > t(r)

    rules = {"batch rho (shipped)": batch, "largest sample rho": any_sample}
    circuits = sorted({r["circuit"] for r in rows})
    print(
        "settled runs only (free and nudge residual < 1e-3); good: cosine >= 0.99, bad: < 0.9;\n"
        "FA: false alarms / good runs, miss: unflagged / bad runs; flagged when "
        "rho^{N/(N-2)} > bias"
    )
    for name, rule in rules.items():
        print(f"\nrule: {name}")
        print("| circuit | runs | good | bad | " + " | ".join(f"bias {b:g}" for b in BIASES) + " |")
        print("|---|---|---|---|" + "---|" * len(BIASES))
        for c in [*circuits, "all"]:
            sub = rows if c == "all" else [r for r in rows if r["circuit"] == c]
            cells = []
            for b in BIASES:
                n, g, fa, nb, miss = _rates(sub, rule(b))
                cells.append(f"FA {fa}/{g}, miss {miss}/{nb}")
            n, g, _, nb, _ = _rates(sub, rule(CIRCLE_BIAS))
            print(f"| {c} | {n} | {g} | {nb} | " + " | ".join(cells) + " |")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(required=True)
    r = sub.add_parser("run")
    r.add_argument("--circuit", required=True, choices=sorted(GRIDS))
    r.add_argument("--betas", type=float, nargs="*")
    r.add_argument("--points", type=int, nargs="*")
    r.add_argument("--seeds", type=int, default=None, help="seeds 0..S-1")
    r.add_argument("--out", required=True)
    r.set_defaults(func=run)
    s = sub.add_parser("summary")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=summary)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
