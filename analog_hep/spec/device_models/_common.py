"""What every device model shares: the pulsed card fields, the state a response sees, the
model record the registry holds, and the fitting-model interface.

The response equations are written once per model with an array namespace ``xp`` (``jax.numpy``
in the emulator, ``numpy`` in ``fit-device``), so this package imports neither JAX nor NumPy
and the spec layer can build the card schema from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

from pydantic import Field, model_validator

from .._base import FieldError, SpecModel

__all__ = [
    "DeviceModel",
    "DeviceState",
    "Factors",
    "FitModel",
    "FitStats",
    "ModelDoc",
    "NonNeg",
    "Normal",
    "Pos",
    "PulsedResponse",
    "amplitude_steps",
    "device_amplitude_steps",
    "safe_div",
]

NonNeg = Annotated[float, Field(ge=0.0)]
Pos = Annotated[float, Field(gt=0.0)]


class PulsedResponse(SpecModel):
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
    def _bounds(self) -> PulsedResponse:
        if not self.w_min < self.w_max:
            raise FieldError(
                ("w_min",), f"w_min must be below w_max, found {self.w_min!r} >= {self.w_max!r}"
            )
        return self


PULSED_FIELDS: tuple[str, ...] = tuple(PulsedResponse.model_fields)
"""The card fields every pulsed model has (the docs list only each model's own fields)."""


class DeviceState(NamedTuple):
    """What a response sees of a device, all in normalised units (dimensionless).

    ``w``: the state; ``bw_min``, ``bw_max``: the device's own bounds (``β_min``, ``β_max``);
    ``gamma_up``, ``gamma_down``: its drawn slopes or exponents (:attr:`DeviceModel.gammas`).
    Arrays of one shape, or floats that broadcast.
    """

    w: Any
    bw_min: Any
    bw_max: Any
    gamma_up: Any
    gamma_down: Any


class Factors(NamedTuple):
    """State factors ``f^up(w)``, ``f^down(w)`` of one pulse (dimensionless) and the
    state-dependent additive c2c noise in normalised units (``None`` when the model has none)."""

    up: Any
    down: Any
    extra_noise: Any = None


def safe_div(xp: Any, num: Any, den: Any) -> Any:
    """``num / den`` where ``den != 0``, else 0 (aihwkit sets a slope to 0 at a zero bound)."""
    ok = den != 0.0
    return xp.where(ok, num / xp.where(ok, den, 1.0), 0.0)


@dataclass(frozen=True)
class ModelDoc:
    """The model's row of the docs' table (docs/devices.md, section 3), as Markdown."""

    up: str
    down: str
    noise: str


ResponseFactors = Callable[[Any, Any, DeviceState], Factors]
"""``factors(xp, response, state) -> Factors``: the card's pulse response."""
Normal = Callable[[], Any]
"""Draws standard normals of the device array's shape (float32) when called."""
GammaDraw = Callable[[Any, Any, Normal, Normal, Any], tuple[Any, Any]]
"""``gammas(xp, response, normal_up, normal_down, zeros) -> (gamma_up, gamma_down)``:
per-device slopes/exponents (dimensionless) from standard normals of the array's shape, drawn
only when called (``zeros``: float32 zeros of that shape)."""


@dataclass(frozen=True)
class FitStats:
    """Fitted parameters by name, as the card-building hooks of a :class:`FitModel` see them.

    ``xp``: the array namespace (NumPy); ``th``/``se``: mean-device parameters and standard
    errors (internal units, floats); ``thetas``/``errs``: per-device parameters and standard
    errors (arrays over the devices with a fit of their own) or ``None`` without a
    device-to-device fit; ``lo``/``hi``: the card's range; ``lo_dev``/``hi_dev``: the fitted
    devices' lowest and highest reads; all
    conductances in internal units (``(G - offset) / unit``, see ``fit-device``).
    """

    xp: Any
    th: Mapping[str, Any]
    se: Mapping[str, Any]
    thetas: Mapping[str, Any] | None
    errs: Mapping[str, Any] | None
    lo: float
    hi: float
    lo_dev: Any
    hi_dev: Any


@dataclass(frozen=True)
class FitModel:
    """How ``analog-hep fit-device`` fits one model (conductances in internal units).

    The hooks receive and return parameters by name (:class:`FitStats`); ``fit-device``
    turns them into a card. ``xp`` is NumPy.
    """

    names: Callable[[int], tuple[str, ...]]
    """Parameter names for a piecewise table of ``nodes`` nodes (others ignore it)."""
    bounds: Callable[[int], tuple[tuple[float, ...], tuple[float, ...]]]
    """Lower and upper bounds of the parameters, in the order of :attr:`names`."""
    predict: Callable[[Any, Mapping[str, Any], Any, Any, float, float], Any]
    """``predict(xp, theta, g, d, lo, hi)``: the expected step at ``g`` in direction ``d``."""
    initial: Callable[..., dict[str, float]]
    """``initial(lines, g, mean_up, mean_down, nodes)``: the start of the fit."""
    steps: Callable[[FitStats, float], tuple[Any, Any, Any, Any]]
    """``steps(stats, scale) -> (dw_up, dw_down, se_up, se_down)`` normalised, mean device."""
    device_steps: Callable[[FitStats, float], tuple[Any, Any, Any, Any]]
    """Per-device ``(dw_up, dw_down, se_up, se_down)`` arrays (normalised)."""
    card_fields: Callable[[FitStats, float, float, int, dict], tuple[dict, dict, dict]]
    """``card_fields(stats, dw_min, scale, nodes, d2d) -> (params, stderr, response)``: the
    model's own card fields (normalised units) with their reported values and standard
    errors, given the mean step ``dw_min``, the scale (internal units per normalised unit)
    and the device-to-device spreads."""
    min_params: int = 2
    """Fewest parameters of one direction (at least this + 2 steps per direction)."""
    hard_bounds: bool = True
    """Range from the devices' extreme reads (clipped steps dropped), not fitted."""
    mean_of_devices: bool = False
    """The card's mean device is the mean of the per-device fits (else the pooled fit)."""
    own_bounds_per_device: bool = False
    """A device's own fit uses its own extreme reads as the range."""
    has_up_down: bool = True
    """The card's up/down asymmetry is fitted (else up_down = 0)."""
    tabulated: bool = False
    """A table of ``nodes`` nodes per direction (``fit-device --nodes``, 2 to 256)."""
    starts: Callable[[dict[str, float]], list[dict[str, float]]] = lambda th: [th]
    """Starting points of the fit (several for non-convex models)."""
    fitted_range: Callable[[FitStats], tuple[float, float]] | None = None
    """The card's range from the fit (soft bounds), or ``None``: the devices' reads."""
    range_stderr: Callable[[FitStats, float], tuple[float, float]] | None = None
    """Standard errors (S) of a fitted range, given the unit (S per internal unit)."""
    range_spreads: Callable[[FitStats, Callable[[Any, Any], float]], tuple[float, float]] | None = (
        None
    )
    """``(w_min_dtod, w_max_dtod)`` from the per-device fits (given the corrected-std
    function), or ``None``: from the devices' reads."""
    extra_d2d: Callable[[FitStats, Callable[[Any, Any], float]], dict[str, float]] = (
        lambda stats, spread: {}
    )
    """Model-specific spreads (given the corrected-std function)."""


def amplitude_steps(stats: FitStats, scale: float) -> tuple[Any, Any, Any, Any]:
    """Mean-device ``(dw_up, dw_down, se_up, se_down)`` of models whose step amplitudes are
    named ``c_up``/``c_down``: ``c^d / scale`` (normalised units)."""
    th, se = stats.th, stats.se
    return th["c_up"] / scale, th["c_down"] / scale, se["c_up"] / scale, se["c_down"] / scale


def device_amplitude_steps(stats: FitStats, scale: float) -> tuple[Any, Any, Any, Any]:
    """Per-device ``(dw_up, dw_down, se_up, se_down)`` arrays, ``c^d_i / scale``."""
    t, e = stats.thetas, stats.errs
    assert t is not None and e is not None
    return t["c_up"] / scale, t["c_down"] / scale, e["c_up"] / scale, e["c_down"] / scale


@dataclass(frozen=True)
class DeviceModel:
    """One device model: its card schema, its pulse response, its fit (if any), its docs row."""

    name: str
    response: type[SpecModel]
    """The card's ``response`` schema (a pydantic model with ``model: Literal[name]``)."""
    doc: ModelDoc
    factors: ResponseFactors | None = None
    """The pulse response; ``None``: no pulses (exact updates)."""
    gammas: GammaDraw | None = None
    """Per-device slopes/exponents; ``None``: zeros."""
    fit: FitModel | None = None
    """How ``fit-device`` fits it; ``None``: not fitted."""
    order: int = 100
    """Position in the registry (error messages, docs); new models keep the default."""

    @property
    def pulsed(self) -> bool:
        """Whether the model has a pulse response."""
        return self.factors is not None

    @property
    def own_fields(self) -> tuple[str, ...]:
        """The card fields of this model beyond ``model`` and the pulsed fields."""
        return tuple(
            k for k in self.response.model_fields if k != "model" and k not in PULSED_FIELDS
        )
