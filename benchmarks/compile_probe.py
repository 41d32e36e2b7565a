"""Where the compile time of a training step goes: one Table 1 case, per compiled function.

    python benchmarks/compile_probe.py --batch 128 --noise 0

Prints one JSON line: the first step's time (trace + compile + run), the median step, and
JAX's own compile log per function (``jax_log_compiles``), so a compile-time change can be
told apart from a run-time one. XLA flags come from the environment (``XLA_FLAGS``); a
persistent compilation cache from ``--cache DIR``. Used by ``benchmarks/gpu_compile.sh``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import time

import jax
import numpy as np

from analog_hep.spec import load_circuit
from analog_hep.studies.bench._bench import _controller
from analog_hep.studies.sweeps._overrides import with_overrides


class _CompileLog(logging.Handler):
    """Collects ``Finished XLA compilation of NAME in SECONDS sec`` records."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"Finished XLA compilation of (.+?) in ([0-9.e+-]+) sec", record.getMessage())
        if m:
            self.seconds[m.group(1)] = self.seconds.get(m.group(1), 0.0) + float(m.group(2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--cache", default=None, help="persistent compilation cache directory")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    log = _CompileLog()
    logger = logging.getLogger("jax")
    logger.addHandler(log)
    logger.setLevel(logging.DEBUG)
    jax.config.update("jax_log_compiles", True)

    circuit = load_circuit("mnist_mlp")
    circuit = dataclasses.replace(circuit, spec=with_overrides(circuit.spec, noise=args.noise))
    ctrl = _controller(circuit, points=10, beta=0.4, seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 784), np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch)]
    t = time.perf_counter()
    ctrl.train_step(x, y)
    first = time.perf_counter() - t
    steps = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ctrl.train_step(x, y)
        steps.append(time.perf_counter() - t)
    top = sorted(log.seconds.items(), key=lambda kv: -kv[1])[:6]
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "batch": args.batch,
                "noise": args.noise,
                "first_step_s": round(first, 2),
                "step_ms": round(1e3 * float(np.median(steps)), 2),
                "compile_s_total": round(sum(log.seconds.values()), 2),
                "compile_s_top": {k: round(v, 2) for k, v in top},
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
