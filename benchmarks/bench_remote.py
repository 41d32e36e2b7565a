"""Time per training step: the emulator in process vs the same emulator behind ``serve``.

Usage::

    python benchmarks/bench_remote.py [--circuit digits] [--steps 200] [--batch 20] [--json]

The remote server is a separate process (``python -m analog_hep serve CIRCUIT --port 0``)
on this machine, reached through loopback TCP: the numbers are the cost of the wire
protocol (framing, JSON headers, array copies, four round trips per step), not of a network.
Both sides run the same controller on the same data; steps after a warm-up (compilation)
are timed, and the two are interleaved in rounds so machine load affects both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time

import numpy as np


def _start_server(circuit: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "analog_hep", "serve", circuit, "--port", "0"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def _time_steps(ctrl, batches, n: int) -> float:
    """Seconds per step over ``n`` steps (each step waits for the chip's reply)."""
    t0 = time.perf_counter()
    for i in range(n):
        x, y = batches[i % len(batches)]
        ctrl.train_step(x, y)
    return (time.perf_counter() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--circuit", default="digits")
    p.add_argument("--steps", type=int, default=200, help="timed steps per side")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    from analog_hep.data import load_dataset
    from analog_hep.drivers import open_driver
    from analog_hep.hep import Controller
    from analog_hep.spec import load_circuit
    from analog_hep.studies import TrainOptions

    circuit = load_circuit(args.circuit)
    opts = TrainOptions.from_circuit(circuit, batch=args.batch, seed=args.seed)
    ds = load_dataset(opts.dataset)
    batches = [
        (x, ds.one_hot(y)) for x, y in ds.batches("train", args.batch, seed=args.seed, epoch=0)
    ]
    server, port = _start_server(args.circuit)
    try:
        drivers = {
            "in_process": open_driver("emulator", circuit, seed=args.seed),
            "tcp": open_driver(f"tcp://127.0.0.1:{port}", circuit, seed=args.seed),
        }
        ctrls = {k: Controller(d, opts.hep_config(10**6)) for k, d in drivers.items()}
        for c in ctrls.values():
            _time_steps(c, batches, 5)  # compile, on both sides of the wire
        per_round = max(args.steps // args.rounds, 1)
        times: dict[str, list[float]] = {k: [] for k in ctrls}
        for _ in range(args.rounds):
            for k, c in ctrls.items():
                times[k].append(_time_steps(c, batches, per_round))
        rtt_s = float(np.median([drivers["tcp"].ping() for _ in range(200)]))
        for d in drivers.values():
            d.close()
    finally:
        server.terminate()
        server.wait(30)
        if server.stdout is not None:
            server.stdout.close()
    ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    result = {
        "circuit": circuit.spec.name,
        "batch": args.batch,
        "method": f"{opts.method} N={opts.points}",
        "steps": per_round * args.rounds,
        "in_process_ms_per_step": ms["in_process"],
        "tcp_ms_per_step": ms["tcp"],
        "ratio": ms["tcp"] / ms["in_process"],
        "ping_rtt_ms": 1e3 * rtt_s,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['circuit']} (batch {args.batch}, {result['method']}), "
            f"{result['steps']} steps each, median of {args.rounds} interleaved rounds:\n"
            f"  in process : {ms['in_process']:8.2f} ms/step\n"
            f"  tcp        : {ms['tcp']:8.2f} ms/step "
            f"(loopback; ping {result['ping_rtt_ms']:.3f} ms)\n"
            f"  ratio      : {result['ratio']:8.3f}"
        )


if __name__ == "__main__":
    main()
