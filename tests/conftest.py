"""Shared fixtures: the repository's circuits, the shared MNIST test set, PRNG keys."""

from __future__ import annotations

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
