"""What ``fit-device`` returns: the fitted card and the numbers behind it, and its YAML."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["FitResult", "result_card_yaml"]


@dataclass
class FitResult:
    """A fitted card and the numbers behind it.

    ``params``/``stderr``: card parameters (normalised units as in the card, ``g_*_S`` in
    siemens) and their standard errors from the pooled fit (NaN where not defined);
    ``rms_residual_S``: rms of the pooled fit's step residuals (S); ``card``: the card as a
    plain dict (what :func:`result_card_yaml` writes).
    """

    model: str
    name: str
    g_min_S: float
    g_max_S: float
    rms_residual_S: float
    n_devices: int
    n_pulses: int
    n_skipped: int
    params: dict[str, float]
    stderr: dict[str, float]
    dw_min_std: float
    d2d: dict[str, float]
    card: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (``--json``)."""
        return {
            "model": self.model,
            "name": self.name,
            "g_min_S": self.g_min_S,
            "g_max_S": self.g_max_S,
            "rms_residual_S": self.rms_residual_S,
            "n_devices": self.n_devices,
            "n_pulses": self.n_pulses,
            "n_skipped": self.n_skipped,
            "params": self.params,
            "stderr": {k: (None if math.isnan(v) else v) for k, v in self.stderr.items()},
            "dw_min_std": self.dw_min_std,
            "d2d": self.d2d,
            "warnings": self.warnings,
        }


def result_card_yaml(result: FitResult) -> str:
    """The fitted card as YAML text (``yaml.safe_dump``; loads as a :class:`DeviceCard`)."""
    head = (
        f"# Device card fitted by `analog-hep fit-device --model {result.model}`.\n"
        f"# rms step residual {result.rms_residual_S:.4g} S over {result.n_pulses} steps of "
        f"{result.n_devices} device(s).\n"
    )
    return head + yaml.safe_dump(result.card, sort_keys=False, width=100)
