"""Device cards: how one cross-point device responds to pulses, and its published source.

A card describes a *single* device. Pulse-response parameters use aihwkit's normalised
vocabulary (``dw_min``, ``up_down``, ``w_min``/``w_max``, ``*_dtod``, ``dw_min_std``,
``write_noise_std``, ``gamma_*``) so that presets carry over by renaming nothing; the
normalised device range ``[w_min, w_max]`` maps linearly onto ``[g_min_S, g_max_S]``.
Everything dimensional carries its SI unit in its name. The ``response`` schemas are the
device-model registry's (:mod:`analog_hep.spec.device_models`, one module per model); the
per-model classes are re-exported here under their old names.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from ._base import FieldError, SpecModel
from .device_models import ResponseSpec
from .device_models._common import NonNeg, Pos
from .device_models.constant_step import ConstantStepResponse
from .device_models.exp_step import ExpStepResponse
from .device_models.ideal import IdealResponse
from .device_models.linear_step import LinearStepResponse
from .device_models.piecewise import PiecewiseResponse
from .device_models.pow_step import PowStepResponse
from .device_models.soft_bounds import SoftBoundsResponse

__all__ = [
    "ConductanceSpec",
    "ConstantStepResponse",
    "DeviceCard",
    "DriftSpec",
    "ExpStepResponse",
    "FaultSpec",
    "IdealResponse",
    "LinearStepResponse",
    "PiecewiseResponse",
    "PowStepResponse",
    "RefreshSpec",
    "ResponseSpec",
    "SoftBoundsResponse",
    "SourceSpec",
]


class SourceSpec(SpecModel):
    """Where the card's numbers come from."""

    paper: str = Field(min_length=1)
    simulator: str = Field(min_length=1, description="public simulator file carrying the numbers")
    notes: str = ""


class ConductanceSpec(SpecModel):
    """Conductance range of one device, in siemens."""

    g_min_S: NonNeg
    g_max_S: Pos
    levels: Annotated[int, Field(ge=2)] | None = Field(
        default=None, description="number of distinct programmable levels; null = continuous"
    )

    @model_validator(mode="after")
    def _range(self) -> ConductanceSpec:
        if not self.g_min_S < self.g_max_S:
            raise FieldError(
                ("g_min_S",),
                f"g_min_S must be below g_max_S, found g_min_S={self.g_min_S!r} >= "
                f"g_max_S={self.g_max_S!r}",
            )
        return self


class FaultSpec(SpecModel):
    """Stuck-at faults, drawn once at fabrication (probabilities per device)."""

    stuck_off_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # stuck at g_min_S
    stuck_on_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # stuck at g_max_S
    stuck_random_prob: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # stuck anywhere in range

    @model_validator(mode="after")
    def _total(self) -> FaultSpec:
        total = self.stuck_off_prob + self.stuck_on_prob + self.stuck_random_prob
        if total > 1.0:
            raise ValueError(f"stuck probabilities must add up to at most 1, found {total!r}")
        return self


class DriftSpec(SpecModel):
    """Power-law conductance drift ``G(t) = G(t0) * (t / t0_s) ** -nu`` (PCM-like)."""

    nu: NonNeg
    nu_dtod: NonNeg = 0.0
    t0_s: Pos


class RefreshSpec(SpecModel):
    """One-sided pair refresh (aihwkit OneSidedUnitCell): rewrite when both devices saturate."""

    every_updates: Annotated[int, Field(ge=1)]
    upper_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.75
    lower_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25


class DeviceCard(SpecModel):
    """One device technology: range, pulse response, variation, noise, faults, source."""

    name: str = Field(min_length=1)
    description: str = ""
    source: SourceSpec
    conductance: ConductanceSpec
    response: ResponseSpec
    read_noise_rel: NonNeg = Field(
        default=0.0, description="per-read relative conductance noise (std of dG/G per read)"
    )
    program_noise_rel: NonNeg = Field(
        default=0.0,
        description="write-verify/initial programming error, std relative to g_max_S - g_min_S",
    )
    drift: DriftSpec | None = None
    faults: FaultSpec = FaultSpec()
    refresh: RefreshSpec | None = None
