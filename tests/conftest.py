"""Shared fixtures: the repository's circuits, the shared MNIST test set, PRNG keys."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.random as jr
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture
def getkey():
    """A function returning a fresh, deterministic PRNG key at each call."""
    counter = iter(range(10**6))
    return lambda: jr.PRNGKey(next(counter))


@pytest.fixture(scope="session")
def toy():
    from analog_hep.spec import load_circuit

    return load_circuit("toy")


@pytest.fixture(scope="session")
def mnist_batch():
    """Ten MNIST test images (``mnist-test`` train split) as ``(x, one-hot y)``."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("shared MNIST test set not present")
    from analog_hep.data import load_dataset

    ds = load_dataset(f"mnist-test:{SHARED_MNIST}")
    x, y = next(ds.batches("train", 10, seed=0, epoch=0))
    return x, ds.one_hot(y)


def _kill_after_first_epoch(args: list[str], epochs: int) -> None:
    """Run ``python -m analog_hep ARGS`` and SIGKILL it right after its ``epoch 1/EPOCHS``
    line (written after epoch 1's checkpoint: epoch 2 has just begun)."""
    cmd = [sys.executable, "-m", "analog_hep", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    t0, seen = time.time(), ""
    while time.time() - t0 < 300:
        line = proc.stdout.readline()
        seen += line
        if line.startswith(f"epoch 1/{epochs}"):
            proc.send_signal(signal.SIGKILL)
            break
        if not line and proc.poll() is not None:
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, seen


@pytest.fixture
def kill_after_first_epoch():
    """A real training subprocess killed mid-run (see :func:`_kill_after_first_epoch`)."""
    return _kill_after_first_epoch


MAPS_BEFORE_CLEARING = 50_000
"""Memory mappings of this process above which the compiled programs are dropped."""


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after a test module once the process holds many memory
    mappings: each XLA:CPU executable maps a few regions, the whole suite in one process
    compiles thousands, and past the kernel's ``vm.max_map_count`` (65,530 here) a new
    mapping fails and the process crashed (a segfault near the end of two CI runs).
    Clearing after every module instead cost 4 minutes of recompiles."""
    yield
    try:
        with open("/proc/self/maps") as f:
            maps = sum(1 for _ in f)
    except OSError:  # not Linux: nothing to count
        return
    if maps > MAPS_BEFORE_CLEARING:
        import jax

        jax.clear_caches()
