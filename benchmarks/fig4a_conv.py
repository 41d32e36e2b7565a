"""Fig. 4a analogue: hEP on a holomorphic VGG-like conv chip against its non-holomorphic twin.

The paper (Laborieux & Zenke 2022, Fig. 4a) compares the cosine similarity of EP estimates
to the true gradient over |beta| on 10 images, for the readout crossbar and for all
parameters, in a seven-layer VGG-like CNN: holomorphic (softmax pooling, holotanh) with hEP
N = 2, 4, 8 against max pooling and a piecewise-linear activation with symmetric EP (N = 2,
real +-|beta|). Here: circuits/vgg7_holo.yaml and circuits/vgg7_maxpool_relu.yaml (ideal
devices, no noise; their comments give the reductions from the paper's network) on the
first 10 images of the mnist-test test split; the true gradient is the implicit gradient at
the free fixed point (``emulator.ground_truth``), the estimates are exactly gradcheck's
(``studies.gradients.nudged_estimate``: one free phase and one ground truth per chip serve
every (N, |beta|)).

    python benchmarks/fig4a_conv.py fig4a --dataset mnist-test:/work/shared/data/mnist \
        [--betas 0.05 0.1 0.2 0.5 1 2 5] [--json fig4a.json]

prints two tables (readout crossbar, all crossbars) and one of the first conv crossbar
(W0, the deepest from the loss).

    python benchmarks/fig4a_conv.py n-table [--circuit circuits/digits_cnn.yaml] [--x64]

prints the relative error of hEP (N = 2 ... 16) and classic EP over |beta| on one conv
chip (default: digits_cnn on the first 10 digits test images, float64, settled 400 steps).
docs/gradients.md ("Conv chips") has the numbers of both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import jax

if "--x64" in sys.argv:  # before any array is made
    jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

from analog_hep.data import load_dataset
from analog_hep.emulator import dac, fabricate, free_phase, ground_truth
from analog_hep.spec import load_circuit
from analog_hep.studies import cosine
from analog_hep.studies.gradients._gradcheck import flat_grads, nudged_estimate
from analog_hep.studies.sweeps._overrides import with_overrides

HOLO = "circuits/vgg7_holo.yaml"
TWIN = "circuits/vgg7_maxpool_relu.yaml"
# (column label, circuit, method, N)
COLUMNS = (
    ("holo hEP N=2", HOLO, "hep", 2),
    ("holo hEP N=4", HOLO, "hep", 4),
    ("holo hEP N=8", HOLO, "hep", 8),
    ("maxpool symmetric N=2", TWIN, "symmetric", 2),
)


def _images(spec: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images of the test split ``(n, n_features)``, one-hot labels."""
    ds = load_dataset(spec)
    x, y = ds.x_test[:n], ds.one_hot(ds.y_test[:n])
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    return x.astype(dtype), y.astype(dtype)


def run_circuit(
    path: str,
    runs: list[tuple[str, int]],
    betas: list[float],
    x: np.ndarray,
    y: np.ndarray,
    steps: tuple[int | None, int | None] = (None, None),
) -> dict[str, Any]:
    """Cosines and relative errors of every ``(method, N)`` in ``runs`` at every ``|beta|``
    on one chip; ``steps``: ``(T1, T2)`` overrides (``None``: the circuit's)."""
    t0 = time.perf_counter()
    circuit = load_circuit(path)
    spec = with_overrides(circuit.spec, free_steps=steps[0], nudge_steps=steps[1])
    chip, _ = fabricate(spec, dict(circuit.devices), spec.seed)
    cfg = chip.config
    xd, yd = dac(chip, jnp.asarray(x)), jnp.asarray(y)
    truth = ground_truth(
        chip, xd, yd, steps=cfg.free_steps, max_adjoint_iterations=max(20 * cfg.free_steps, 2000)
    )
    free = free_phase(chip, xd, steps=cfg.free_steps, key=None)
    t = flat_grads(chip, truth.grads)
    names = cfg.crossbar_names
    t_all = np.concatenate([t[n] for n in names])
    out: dict[str, Any] = {
        "circuit": circuit.spec.name,
        "free_steps": cfg.free_steps,
        "nudge_steps": cfg.nudge_steps,
        "free_residual": float(jnp.max(free.residual)),
        "adjoint_residual": float(truth.adjoint_residual),
        "loss": float(truth.loss),
        "runs": [],
    }
    for method, n in runs:
        for beta in betas:
            est = nudged_estimate(chip, free, yd, method=method, points=n, beta=beta)  # type: ignore[arg-type]
            e = flat_grads(chip, est.grads)
            e_all = np.concatenate([e[k] for k in names])
            out["runs"].append(
                {
                    "method": method,
                    "points": n,
                    "beta": beta,
                    "cosine_total": cosine(e_all, t_all),
                    "rel_error_total": float(np.linalg.norm(e_all - t_all) / np.linalg.norm(t_all)),
                    "cosine": {k: cosine(e[k], t[k]) for k in names},
                    "nudge_residual": float(jnp.max(est.points.residual)),
                }
            )
    out["seconds"] = time.perf_counter() - t0
    return out


def _table(results: dict[str, dict[str, Any]], betas: list[float], key: str) -> str:
    """A markdown table: rows |beta|, columns COLUMNS, cells the cosine ``key``."""
    head = "| abs(beta) | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for beta in betas:
        cells = []
        for _, path, method, n in COLUMNS:
            run = next(
                r
                for r in results[path]["runs"]
                if r["method"] == method and r["points"] == n and r["beta"] == beta
            )
            v = run["cosine_total"] if key == "total" else run["cosine"][key]
            flag = "" if run["nudge_residual"] < 1e-3 else "*"
            cells.append(f"{v:.6f}{flag}")
        lines.append(f"| {beta:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fig4a(args: argparse.Namespace) -> None:
    """The Fig. 4a analogue's tables."""
    x, y = _images(args.dataset, args.images)
    results = {}
    for path in dict.fromkeys(c[1] for c in COLUMNS):
        runs = [(m, n) for _, q, m, n in COLUMNS if q == path]
        results[path] = r = run_circuit(path, runs, args.betas, x, y)
        _summary(r)
    print(f"jax {jax.__version__}, {args.images} images of {args.dataset} (test split)")
    for title, key in (("readout crossbar", "readout"), ("all crossbars", "total"), ("W0", "W0")):
        print(f"\ncosine to the true gradient, {title} (* = a nudged point did not settle)")
        print(_table(results, args.betas, key))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"betas": args.betas, "results": results}, f, indent=1)


def n_table(args: argparse.Namespace) -> None:
    """Relative error over |beta| (rows) and N (columns), classic EP last."""
    x, y = _images(args.dataset, args.images)
    runs = [("hep", n) for n in args.points] + [("classic", 1)]
    r = run_circuit(args.circuit, runs, args.betas, x, y, (args.free_steps, args.nudge_steps))
    _summary(r)
    dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    print(f"jax {jax.__version__}, {dtype}, {args.images} images of {args.dataset} (test split)")
    print("relative error |g - g_true| / |g_true| (* = a nudged point did not settle)")
    print("| abs(beta) | " + " | ".join(f"N={n}" for n in args.points) + " | classic |")
    print("|---" * (len(runs) + 1) + "|")
    for beta in args.betas:
        cells = []
        for method, n in runs:
            q = next(
                q
                for q in r["runs"]
                if q["method"] == method and q["points"] == n and q["beta"] == beta
            )
            flag = "" if q["nudge_residual"] < 1e-3 else "*"
            cells.append(f"{q['rel_error_total']:.1e}{flag}")
        print(f"| {beta:g} | " + " | ".join(cells) + " |")


def _summary(r: dict[str, Any]) -> None:
    print(
        f"{r['circuit']}: T1={r['free_steps']} T2={r['nudge_steps']} free residual "
        f"{r['free_residual']:.1e}, adjoint residual {r['adjoint_residual']:.1e}, loss "
        f"{r['loss']:.4f}, max nudge residual "
        f"{max(q['nudge_residual'] for q in r['runs']):.1e}, {r['seconds']:.0f} s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("fig4a", help="vgg7_holo (hEP N = 2, 4, 8) against vgg7_maxpool_relu")
    a.add_argument("--dataset", default="mnist-test:/work/shared/data/mnist")
    a.add_argument("--images", type=int, default=10)
    a.add_argument("--betas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1, 2, 5])
    a.add_argument("--json", default=None, help="write every cosine (per crossbar) here")
    a.add_argument("--x64", action="store_true", help="settle in float64")
    a.set_defaults(func=fig4a)
    b = sub.add_parser("n-table", help="relative error over |beta| and N on one conv chip")
    b.add_argument("--circuit", default="circuits/digits_cnn.yaml")
    b.add_argument("--dataset", default="digits")
    b.add_argument("--images", type=int, default=10)
    b.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.5, 1, 2])
    b.add_argument("--points", type=int, nargs="+", default=[2, 4, 8, 16])
    b.add_argument("--free-steps", type=int, default=400)
    b.add_argument("--nudge-steps", type=int, default=400)
    b.add_argument("--x64", action="store_true", help="settle in float64")
    b.set_defaults(func=n_table)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
