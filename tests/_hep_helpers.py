"""Shared helpers of the controller tests: a complete ``HepConfig`` with test defaults."""

from __future__ import annotations

from typing import Any

from analog_hep.hep import HepConfig


def hep_config(**overrides: Any) -> HepConfig:
    """hEP N = 4 at ``|beta| = 0.1``, plain SGD at lr 0.05 over 10 steps, residual tolerance
    1e-3; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "method": "hep",
        "points": 4,
        "beta": 0.1,
        "lr": 0.05,
        "momentum": 0.0,
        "schedule": "constant",
        "total_steps": 10,
        "residual_tol": 1e-3,
        "update": "auto",
    }
    return HepConfig(**(fields | overrides))
