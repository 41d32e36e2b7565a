"""Fingerprint of the emulator's and the controller's outputs, to compare a restructuring
bitwise against the code before it.

    python benchmarks/behaviour_fingerprint.py > before.json     # on the old commit
    python benchmarks/behaviour_fingerprint.py > after.json      # on the new one
    python benchmarks/behaviour_fingerprint.py --compare before.json after.json

Each entry is a SHA-256 of the exact bytes of an output (gradcheck estimates and ground
truth, settled states under noise, trained weights), so equal digests mean bitwise equal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np


def _digest(*arrays: object) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def _gradchecks() -> dict[str, str]:
    from analog_hep.spec import load_circuit
    from analog_hep.studies import gradcheck

    out = {}
    cases = {
        "toy_hep8_b0.1": dict(method="hep", points=8, beta=0.1),
        "toy_hep4_b0.3": dict(method="hep", points=4, beta=0.3),
        "toy_sym_b0.05": dict(method="symmetric", points=2, beta=0.05),
        "toy_classic_b0.1": dict(method="classic", points=1, beta=0.1),
        "toy_hep6_b0.2_noise": dict(method="hep", points=6, beta=0.2, noise=0.04),
    }
    for name, kw in cases.items():
        res = gradcheck(load_circuit("toy"), batch=10, seed=3, **kw)
        out[name] = _digest(
            *[np.asarray(v) for k, v in sorted(res.estimate.items())],
            *[np.asarray(v) for k, v in sorted(res.truth.items())],
        )
    return out


def _training() -> dict[str, str]:
    from analog_hep.spec import load_circuit
    from analog_hep.studies import TrainOptions, train

    out = {}
    for name, kw in {
        "digits_hep": {},
        "digits_noise": {"noise": 0.04},
        "digits_online": {"method": "online"},
        "digits_classic": {"method": "classic", "points": 1},
    }.items():
        c = load_circuit("digits")
        opts = TrainOptions.from_circuit(c, epochs=1, max_train=200, **kw)
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/run.h5"
            res = train(c, opts, out=path, progress=False, log=lambda s: None)
            with h5py.File(path, "r") as f:
                w = f["final/weights"]
                weights = [np.asarray(w[k][p]) for k in sorted(w) for p in ("W", "b")]
        out[name] = _digest(*weights, np.asarray(res.history["train_loss"]))
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = p.parse_args()
    if args.compare:
        a, b = (json.loads(Path(f).read_text()) for f in args.compare)
        diff = {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
        for k, (x, y) in sorted(diff.items()):
            print(f"DIFFERENT {k}: {x} -> {y}")
        print(f"{len(a) - len(diff)} of {len(a)} outputs bitwise equal")
        return 1 if diff else 0
    json.dump(_gradchecks() | _training(), sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
