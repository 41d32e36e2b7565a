"""One chip emulated across several devices: the batch axis is sharded, results agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json, sys
import jax, numpy as np
from analog_hep.spec import load_circuit
from analog_hep.emulator import EmulatorDriver
from analog_hep.hep import Controller, HepConfig
from analog_hep.studies import random_batch
drv = EmulatorDriver(load_circuit("toy"), seed=0, options={"devices": sys.argv[1]})
cfg = HepConfig(method="hep", points=6, beta=0.2, lr=0.1, momentum=0.0, schedule="constant",
                total_steps=10, residual_tol=1e-3, update="auto")
ctrl = Controller(drv, cfg)
x, y = random_batch(6, 4, 8, key=jax.random.PRNGKey(0))
for _ in range(3):
    ctrl.train_step(x, y)
drv.load_inputs(x, None)
shards = len(drv._x.sharding.device_set)
w = {k: v[0].tolist() for k, v in drv.read_weights().items()}
print(json.dumps({"devices": len(jax.devices()), "shards": shards, "weights": w}))
"""


def _run(devices: int, flag_devices: int) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={flag_devices}"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(devices)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_batch_sharded_over_two_cpu_devices_matches_one_device():
    one = _run(1, 1)
    two = _run(2, 2)
    assert one["shards"] == 1 and two["devices"] == 2 and two["shards"] == 2
    for k in one["weights"]:
        np.testing.assert_allclose(two["weights"][k], one["weights"][k], atol=1e-6)
