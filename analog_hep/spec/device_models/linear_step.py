"""The ``linear_step`` model (aihwkit LinearStep): the step shrinks linearly with the state.

Card: ``f^up = 1 - γ⁺ w / w_ref⁺``, ``f^down = 1 - γ⁻ w / w_ref⁻`` with ``w_ref = w_max,
w_min`` (``mean_bound_reference``) or the device's own bounds; per-device slopes
``γ^d = |gamma_d + gamma_d_dtod ξ|``. Fit (``fit-device``, card range ``[-1, 1]``):
``ΔG⁺ = c⁺ f^up(w)``, ``ΔG⁻ = -c⁻ f^down(w)`` with the same equation, parameters
``c_up, gamma_up, c_down, gamma_down`` (steps in internal conductance units).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._common import (
    DeviceModel,
    DeviceState,
    Factors,
    FitModel,
    FitStats,
    ModelDoc,
    NonNeg,
    Normal,
    PulsedResponse,
    amplitude_steps,
    device_amplitude_steps,
    safe_div,
)

__all__ = ["FIT", "MODEL", "LinearStepResponse", "factors", "linear_factors"]

_INF = float("inf")


class LinearStepResponse(PulsedResponse):
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


def linear_factors(xp: Any, state: DeviceState, ref_up: Any, ref_down: Any) -> Factors:
    """``f^d = 1 - γ^d w / w_ref^d`` (dimensionless; 0 slope where ``w_ref`` is 0)."""
    f_up = 1.0 - safe_div(xp, state.gamma_up * state.w, ref_up)
    f_down = 1.0 - safe_div(xp, state.gamma_down * state.w, ref_down)
    return Factors(f_up, f_down, None)


def factors(xp: Any, resp: LinearStepResponse, state: DeviceState) -> Factors:
    """The card's factors: reference the card's bounds or the device's own."""
    if resp.mean_bound_reference:
        ref_up = xp.full_like(state.w, resp.w_max)
        ref_down = xp.full_like(state.w, resp.w_min)
    else:
        ref_up, ref_down = state.bw_max, state.bw_min
    return linear_factors(xp, state, ref_up, ref_down)


def gammas(
    xp: Any, resp: LinearStepResponse, normal_up: Normal, normal_down: Normal, zeros: Any
) -> tuple[Any, Any]:
    """Per-device slopes ``|gamma_d + gamma_d_dtod ξ|`` (dimensionless)."""
    up = xp.abs(resp.gamma_up + resp.gamma_up_dtod * normal_up())
    down = xp.abs(resp.gamma_down + resp.gamma_down_dtod * normal_down())
    return up, down


# ----------------------------------------------------------------------------- fitting


def _w(g: Any, lo: float, hi: float) -> Any:
    """The fit's normalised state ``w = -1 + 2 (g - lo) / (hi - lo)`` (card range [-1, 1])."""
    return -1.0 + 2.0 * (g - lo) / (hi - lo)


def _predict(xp: Any, th: Mapping[str, Any], g: Any, d: Any, lo: float, hi: float) -> Any:
    w = _w(g, lo, hi)
    state = DeviceState(w, -1.0, 1.0, th["gamma_up"], th["gamma_down"])
    f = linear_factors(xp, state, xp.full_like(w, 1.0), xp.full_like(w, -1.0))
    return xp.where(d > 0, th["c_up"] * f.up, -th["c_down"] * f.down)


def _initial(lines: Any, g: Any, mean_up: float, mean_down: float, nodes: int) -> dict:
    return {"c_up": mean_up, "gamma_up": 0.1, "c_down": mean_down, "gamma_down": 0.1}


def _card_fields(stats: FitStats, dw_min: float, scale: float, nodes: int, d2d: dict) -> tuple:
    params = {k: float(stats.th[k]) for k in ("gamma_up", "gamma_down")}
    stderr = {k: float(stats.se[k]) for k in ("gamma_up", "gamma_down")}
    response = {
        **params,
        "gamma_up_dtod": float(d2d.get("gamma_up_dtod", 0.0)),
        "gamma_down_dtod": float(d2d.get("gamma_down_dtod", 0.0)),
        "mean_bound_reference": True,
        "mult_noise": True,
    }
    return params, stderr, response


def _extra_d2d(stats: FitStats, spread: Callable[[Any, Any], float]) -> dict[str, float]:
    t, e = stats.thetas, stats.errs
    assert t is not None and e is not None
    return {
        "gamma_up_dtod": spread(t["gamma_up"], e["gamma_up"]),
        "gamma_down_dtod": spread(t["gamma_down"], e["gamma_down"]),
    }


FIT = FitModel(
    names=lambda nodes: ("c_up", "gamma_up", "c_down", "gamma_down"),
    bounds=lambda nodes: ((0.0, 0.0, 0.0, 0.0), (_INF, _INF, _INF, _INF)),
    predict=_predict,
    initial=_initial,
    steps=amplitude_steps,
    device_steps=device_amplitude_steps,
    card_fields=_card_fields,
    mean_of_devices=True,
    extra_d2d=_extra_d2d,
)

MODEL = DeviceModel(
    name="linear_step",
    response=LinearStepResponse,
    doc=ModelDoc(
        up="`1 - γ⁺ w / w_ref⁺`",
        down="`1 - γ⁻ w / w_ref⁻`",
        noise="`σ abs(Δw^d f^d)` (`mult_noise: true`) or `σ Δw^d` (additive)",
    ),
    factors=factors,
    gammas=gammas,
    fit=FIT,
    order=2,
)
