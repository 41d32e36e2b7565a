"""Which samples does the guard drop under neuron noise, and are they special?

Trains a chip with hEP through the emulator driver (the controller's real step) and, at
every step, looks at the settled states the controller judged: per sample its label, its
free-phase loss and margin (top logit minus the runner-up), and per nudge point whether it
settled. Dropped samples are compared with all samples of the same steps (their mean loss,
margin, and the labels they carry), and failures are counted by point index around the
circle (point 0 is +|beta|, N/2 is -|beta|, the others are complex).

    python benchmarks/guard_study.py --dataset mnist-test:../shared/data/mnist \
        --noise 0.04 --schedule parallel --epochs 2 --json guard_parallel.json

The numbers of docs/gradients.md ("The guard under noise") come from this script.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import jax
import numpy as np

from analog_hep.data import load_dataset
from analog_hep.drivers import NudgeSchedule, Settled
from analog_hep.emulator import EmulatorDriver
from analog_hep.hep import Controller
from analog_hep.spec import load_circuit
from analog_hep.studies import TrainOptions
from analog_hep.studies.sweeps._overrides import with_overrides


class Watching(EmulatorDriver):
    """The emulator, keeping the last settled schedule of ``circle`` points."""

    def __init__(self, *args: Any, circle: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.circle = circle
        self.last: Settled | None = None

    def run_schedule(self, schedule: NudgeSchedule) -> Settled:
        s = super().run_schedule(schedule)
        if len(schedule.betas) >= self.circle:  # the step's main schedule, not a fallback
            self.last = s
        return s


def _per_sample(s: Settled, y: np.ndarray, tol: float) -> dict[str, np.ndarray]:
    """Free loss, margin, label and per-point settled flags of a batch."""
    logits = np.asarray(jax.device_get(s.free_logits)).real
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    label = y.argmax(axis=1)
    top2 = np.sort(logits, axis=1)[:, -2:]
    res = np.asarray(jax.device_get(s.residual))
    pts_ok = np.isfinite(res) & (res <= tol)
    for st in s.states[1:]:
        pts_ok &= np.isfinite(np.asarray(jax.device_get(st))).all(axis=-1)
    free_res = np.asarray(jax.device_get(s.free_residual))
    return {
        "loss": -logp[np.arange(len(label)), label],
        "margin": top2[:, 1] - top2[:, 0],
        "correct": logits.argmax(axis=1) == label,
        "label": label,
        "points_ok": pts_ok,  # (K, B)
        "free_ok": np.isfinite(free_res) & (free_res <= tol),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--circuit", default="circuits/mnist_mlp.yaml")
    ap.add_argument("--dataset", default="mnist-test:../shared/data/mnist")
    ap.add_argument("--noise", type=float, default=0.04)
    ap.add_argument("--schedule", choices=["parallel", "sequential"], default="parallel")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write the figures here too")
    args = ap.parse_args()

    import dataclasses

    circuit = load_circuit(args.circuit)
    circuit = dataclasses.replace(circuit, spec=with_overrides(circuit.spec, noise=args.noise))
    opts = TrainOptions.from_circuit(
        circuit, dataset=args.dataset, seed=args.seed, hep_schedule=args.schedule, guard="drop"
    )
    ds = load_dataset(args.dataset)
    n_train = ds.n_train if args.max_train is None else min(args.max_train, ds.n_train)
    steps = math.floor(n_train / opts.batch)
    drv = Watching(circuit, seed=args.seed, circle=opts.points)
    ctrl = Controller(drv, opts.hep_config(steps * args.epochs))
    every: dict[str, list[np.ndarray]] = {k: [] for k in ("loss", "margin", "correct", "label")}
    dropped: dict[str, list[np.ndarray]] = {k: [] for k in every}
    fails_by_point = np.zeros(opts.points, np.int64)
    first_fail = np.zeros(opts.points, np.int64)
    per_epoch: list[int] = []
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        n_drop = 0
        for i, (xb, yb) in enumerate(ds.batches("train", opts.batch, seed=args.seed, epoch=epoch)):
            if i >= steps:
                break
            y = ds.one_hot(yb)
            rep = ctrl.train_step(xb, y)
            assert drv.last is not None
            d = _per_sample(drv.last, y, opts.residual_tol)
            bad = d["free_ok"] & ~d["points_ok"].all(axis=0)
            n_drop += rep.dropped
            for k in every:
                every[k].append(d[k])
                dropped[k].append(d[k][bad])
            fails_by_point += (~d["points_ok"][:, bad]).sum(axis=1)
            for b in np.flatnonzero(bad):
                first_fail[np.argmax(~d["points_ok"][:, b])] += 1
        per_epoch.append(n_drop)
    a = {k: np.concatenate(v) for k, v in every.items()}
    b = {k: np.concatenate(v) for k, v in dropped.items()}
    n_all, n_bad = len(a["loss"]), len(b["loss"])
    labels_all = np.bincount(a["label"], minlength=10) / max(n_all, 1)
    labels_bad = np.bincount(b["label"], minlength=10) / max(n_bad, 1)
    out = {
        "schedule": args.schedule,
        "noise": args.noise,
        "epochs": args.epochs,
        "samples": n_all,
        "dropped_per_epoch": per_epoch,
        "dropped_fraction": n_bad / max(n_all, 1),
        "loss_mean_all": float(a["loss"].mean()),
        "loss_mean_dropped": float(b["loss"].mean()) if n_bad else math.nan,
        "margin_mean_all": float(a["margin"].mean()),
        "margin_mean_dropped": float(b["margin"].mean()) if n_bad else math.nan,
        "accuracy_all": float(a["correct"].mean()),
        "accuracy_dropped": float(b["correct"].mean()) if n_bad else math.nan,
        "label_share_all": labels_all.round(4).tolist(),
        "label_share_dropped": labels_bad.round(4).tolist(),
        "failed_points_by_index": fails_by_point.tolist(),
        "first_failed_point_by_index": first_fail.tolist(),
        "betas": [str(complex(b)) for b in np.asarray(drv.last.betas)] if drv.last else [],
        "seconds": time.perf_counter() - t0,
    }
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
