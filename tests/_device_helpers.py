"""Shared helpers of the device-physics tests: a card from a response dict, strict dtypes."""

from __future__ import annotations

import jax
import pytest

from analog_hep.spec import DeviceCard

G_MIN, G_MAX = 1.0e-6, 1.0e-5


@pytest.fixture(autouse=True)
def _strict():
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        yield


def make_card(response: dict, **extra) -> DeviceCard:
    """A card with range 1-10 uS and the given response section (and other sections)."""
    doc = {
        "name": "test",
        "source": {"paper": "test", "simulator": "test"},
        "conductance": {"g_min_S": G_MIN, "g_max_S": G_MAX},
        "response": response,
    }
    doc.update(extra)
    return DeviceCard.model_validate(doc)
