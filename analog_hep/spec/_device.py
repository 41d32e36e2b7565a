"""Device cards: how one cross-point device responds to pulses, and its published source.

A card describes a *single* device. Pulse-response parameters use aihwkit's normalised
vocabulary (``dw_min``, ``up_down``, ``w_min``/``w_max``, ``*_dtod``, ``dw_min_std``,
``write_noise_std``, ``gamma_*``) so that presets carry over by renaming nothing; the
normalised device range ``[w_min, w_max]`` maps linearly onto ``[g_min_S, g_max_S]``.
Everything dimensional carries its SI unit in its name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ._base import FieldError, SpecModel

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

NonNeg = Annotated[float, Field(ge=0.0)]
Pos = Annotated[float, Field(gt=0.0)]


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


class _PulsedBase(SpecModel):
    """Parameters every pulsed model shares (aihwkit ``PulsedDevice`` names, normalised units)."""

    dw_min: Pos = Field(description="mean step per pulse at w = 0 (normalised units)")
    w_min: float = Field(le=0.0, description="lower bound of the device range (normalised)")
    w_max: float = Field(ge=0.0, description="upper bound of the device range (normalised)")
    up_down: float = Field(default=0.0, gt=-1.0, lt=1.0, description="up/down step asymmetry")
    dw_min_dtod: NonNeg = 0.0
    dw_min_dtod_log_normal: bool = False
    up_down_dtod: NonNeg = 0.0
    w_min_dtod: NonNeg = 0.0
    w_max_dtod: NonNeg = 0.0
    dw_min_std: NonNeg = Field(default=0.0, description="cycle-to-cycle noise, relative to step")
    write_noise_std: NonNeg = Field(
        default=0.0, description="visible-weight write noise, in units of dw_min"
    )

    @model_validator(mode="after")
    def _bounds(self) -> _PulsedBase:
        if not self.w_min < self.w_max:
            raise FieldError(
                ("w_min",), f"w_min must be below w_max, found {self.w_min!r} >= {self.w_max!r}"
            )
        return self


class IdealResponse(SpecModel):
    """Floating-point updates: the requested change happens exactly (no pulses)."""

    model: Literal["ideal"]


class ConstantStepResponse(_PulsedBase):
    """Every pulse moves the device by a fixed step ``d * dw^d * (1 + dw_min_std * xi)``."""

    model: Literal["constant_step"]


class LinearStepResponse(_PulsedBase):
    """Step shrinks linearly with the state: ``dw^+ (1 - gamma_up * w / w_max)``.

    (aihwkit LinearStep.)
    """

    model: Literal["linear_step"]
    gamma_up: NonNeg = 0.0
    gamma_down: NonNeg = 0.0
    gamma_up_dtod: NonNeg = 0.0
    gamma_down_dtod: NonNeg = 0.0
    mean_bound_reference: bool = True
    mult_noise: bool = True


class SoftBoundsResponse(_PulsedBase):
    """Step falls to zero at the device's own bounds: ``dw^+ (1 - w / b_max)``."""

    model: Literal["soft_bounds"]
    mult_noise: bool = True


class ExpStepResponse(_PulsedBase):
    """Exponential step (aihwkit ExpStep): ``y^+ = max(1 - A_up exp(gamma_up z), 0)``."""

    model: Literal["exp_step"]
    A_up: float = 0.00081
    A_down: float = 0.36833
    gamma_up: float = 12.44625
    gamma_down: float = 12.78785
    a: float = 0.244
    b: float = 0.2425
    dw_min_std_add: NonNeg = 0.0
    dw_min_std_slope: NonNeg = 0.0


class PowStepResponse(_PulsedBase):
    """Power-law step (Fusi & Abbott 2007): ``dw^+ omega^gamma``.

    ``omega = (b_max - w) / (b_max - b_min)``.
    """

    model: Literal["pow_step"]
    pow_gamma: Pos = 1.0
    pow_gamma_dtod: NonNeg = 0.1
    pow_up_down: float = 0.0
    pow_up_down_dtod: NonNeg = 0.0


class PiecewiseResponse(_PulsedBase):
    """Measured response: step scaled by a table of nodes spread evenly over ``[b_min, b_max]``."""

    model: Literal["piecewise"]
    piecewise_up: tuple[NonNeg, ...] = Field(min_length=2, strict=False)
    piecewise_down: tuple[NonNeg, ...] = Field(min_length=2, strict=False)

    @model_validator(mode="after")
    def _same_length(self) -> PiecewiseResponse:
        if len(self.piecewise_up) != len(self.piecewise_down):
            raise FieldError(
                ("piecewise_down",),
                "piecewise_up and piecewise_down must have the same number of nodes, found "
                f"{len(self.piecewise_up)} and {len(self.piecewise_down)}",
            )
        return self


ResponseSpec = Annotated[
    IdealResponse
    | ConstantStepResponse
    | LinearStepResponse
    | SoftBoundsResponse
    | ExpStepResponse
    | PowStepResponse
    | PiecewiseResponse,
    Field(discriminator="model"),
]


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
