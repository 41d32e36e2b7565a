"""The ``exp_step`` model (aihwkit ExpStep): an exponential state dependence of the step.

Card: ``f^up = max(1 - A_up e^{γ_up z}, 0)``, ``f^down = max(1 - A_down e^{-γ_down z}, 0)``,
``z = 2 a w / (β_max - β_min) + b``; optional "complex noise" ``σ (|Δw^d f^d| + a_s + s_s |w|)``
(``a_s = dw_min_std_add``, ``s_s = dw_min_std_slope``, normalised units). Fit
(``fit-device``, card range ``[-1, 1]``, ``a = 1``, ``b = 0`` so ``z = w``): ``ΔG⁺ = c⁺ f^up``,
``ΔG⁻ = -c⁻ f^down`` with the same equation, parameters ``c_up, A_up, gamma_up, c_down,
A_down, gamma_down``; the fit bounds the exponent to ±60 to keep the optimiser finite.
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
    PulsedResponse,
    amplitude_steps,
    device_amplitude_steps,
    safe_div,
)

__all__ = ["FIT", "MODEL", "ExpStepResponse", "exp_factors", "factors"]

_INF = float("inf")


class ExpStepResponse(PulsedResponse):
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


def exp_factors(
    xp: Any,
    state: DeviceState,
    *,
    A_up: Any,
    A_down: Any,
    gamma_up: Any,
    gamma_down: Any,
    a: float,
    b: float,
    exp: Callable[[Any], Any] | None = None,
) -> Factors:
    """``f^d`` of the exponential step (dimensionless); zero for a device of zero range."""
    exp = xp.exp if exp is None else exp
    span = state.bw_max - state.bw_min
    z = safe_div(xp, 2.0 * a * state.w, span) + b
    f_up = xp.maximum(1.0 - A_up * exp(gamma_up * z), 0.0)
    f_down = xp.maximum(1.0 - A_down * exp(-gamma_down * z), 0.0)
    f_up = xp.where(span > 0.0, f_up, 0.0)
    f_down = xp.where(span > 0.0, f_down, 0.0)
    return Factors(f_up, f_down, None)


def factors(xp: Any, resp: ExpStepResponse, state: DeviceState) -> Factors:
    """The card's factors, with the complex-noise term ``a_s + s_s |w|`` when it is on."""
    f = exp_factors(
        xp,
        state,
        A_up=resp.A_up,
        A_down=resp.A_down,
        gamma_up=resp.gamma_up,
        gamma_down=resp.gamma_down,
        a=resp.a,
        b=resp.b,
    )
    extra = None
    if resp.dw_min_std_add > 0.0 or resp.dw_min_std_slope > 0.0:
        extra = resp.dw_min_std_add + resp.dw_min_std_slope * xp.abs(state.w)
    return Factors(f.up, f.down, extra)


# ----------------------------------------------------------------------------- fitting


def _predict(xp: Any, th: Mapping[str, Any], g: Any, d: Any, lo: float, hi: float) -> Any:
    w = -1.0 + 2.0 * (g - lo) / (hi - lo)
    f = exp_factors(
        xp,
        DeviceState(w, -1.0, 1.0, 0.0, 0.0),
        A_up=th["A_up"],
        A_down=th["A_down"],
        gamma_up=th["gamma_up"],
        gamma_down=th["gamma_down"],
        a=1.0,
        b=0.0,
        exp=lambda x: xp.exp(xp.clip(x, -60, 60)),
    )
    return xp.where(d > 0, th["c_up"] * f.up, -th["c_down"] * f.down)


def _initial(lines: Any, g: Any, mean_up: float, mean_down: float, nodes: int) -> dict:
    return {
        "c_up": mean_up * 1.2,
        "A_up": 0.1,
        "gamma_up": 1.0,
        "c_down": mean_down * 1.2,
        "A_down": 0.1,
        "gamma_down": 1.0,
    }


def _starts(th: dict[str, float]) -> list[dict[str, float]]:
    """The initial point and 12 more curvatures and amplitudes (the fit is non-convex)."""
    starts = [th]
    for gam in (0.5, 2.0, 4.0, 8.0):
        for amp in (0.05, 0.3, -0.3):
            starts.append({**th, "A_up": amp, "A_down": amp, "gamma_up": gam, "gamma_down": gam})
    return starts


def _card_fields(stats: FitStats, dw_min: float, scale: float, nodes: int, d2d: dict) -> tuple:
    names = ("A_up", "gamma_up", "A_down", "gamma_down")
    params = {k: float(stats.th[k]) for k in names}
    stderr = {k: float(stats.se[k]) for k in names}
    response = {k: params[k] for k in ("A_up", "A_down", "gamma_up", "gamma_down")}
    return params, stderr, {**response, "a": 1.0, "b": 0.0}


FIT = FitModel(
    names=lambda nodes: ("c_up", "A_up", "gamma_up", "c_down", "A_down", "gamma_down"),
    bounds=lambda nodes: ((0.0, -1e4, 0.0, 0.0, -1e4, 0.0), (_INF, 1e4, 50.0, _INF, 1e4, 50.0)),
    predict=_predict,
    initial=_initial,
    steps=amplitude_steps,
    device_steps=device_amplitude_steps,
    card_fields=_card_fields,
    min_params=3,
    starts=_starts,
)

MODEL = DeviceModel(
    name="exp_step",
    response=ExpStepResponse,
    doc=ModelDoc(
        up="`max(1 - A_up e^{γ_up z}, 0)`",
        down="`max(1 - A_down e^{-γ_down z}, 0)`",
        noise="`σ abs(Δw^d f^d)`, or "
        "`σ (abs(Δw^d f^d) + dw_min_std_add + dw_min_std_slope abs(w))`",
    ),
    factors=factors,
    fit=FIT,
    order=4,
)
