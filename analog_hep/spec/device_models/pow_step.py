"""The ``pow_step`` model (Fusi & Abbott 2007): a power law of the distance to the bounds.

``f^up = ω^{γ⁺}``, ``f^down = (1 - ω)^{γ⁻}``, ``ω = (β_max - w) / (β_max - β_min)``; per-device
exponents ``γ^d = |pow_gamma (1 + d β + pow_gamma_dtod ξ)|``, ``β = pow_up_down +
pow_up_down_dtod ξ``. With ``γ = 1`` it is soft bounds. Not fitted by ``fit-device``.
"""

from __future__ import annotations

from typing import Any, Literal

from ._common import (
    DeviceModel,
    DeviceState,
    Factors,
    ModelDoc,
    NonNeg,
    Normal,
    Pos,
    PulsedResponse,
    safe_div,
)

__all__ = ["MODEL", "PowStepResponse", "factors", "gammas"]


class PowStepResponse(PulsedResponse):
    """Power-law step (Fusi & Abbott 2007): ``dw^+ omega^gamma``.

    ``omega = (b_max - w) / (b_max - b_min)``.
    """

    model: Literal["pow_step"]
    pow_gamma: Pos = 1.0
    pow_gamma_dtod: NonNeg = 0.1
    pow_up_down: float = 0.0
    pow_up_down_dtod: NonNeg = 0.0


def factors(xp: Any, resp: PowStepResponse, state: DeviceState) -> Factors:
    """``ω^{γ⁺}`` / ``(1 - ω)^{γ⁻}`` (dimensionless); zero for a device of zero range."""
    span = state.bw_max - state.bw_min
    omega = xp.clip(safe_div(xp, state.bw_max - state.w, span), 0.0, 1.0)
    f_up = xp.where(span > 0.0, omega**state.gamma_up, 0.0)
    f_down = xp.where(span > 0.0, (1.0 - omega) ** state.gamma_down, 0.0)
    return Factors(f_up, f_down, None)


def gammas(
    xp: Any, resp: PowStepResponse, normal_up: Normal, normal_down: Normal, zeros: Any
) -> tuple[Any, Any]:
    """``γ^d = |pow_gamma (1 + d β + pow_gamma_dtod ξ)|`` (aihwkit takes ``|.|``: an exponent
    drawn negative would make the step grow at the bound)."""
    beta = resp.pow_up_down + resp.pow_up_down_dtod * normal_up()
    xi = resp.pow_gamma_dtod * normal_down()
    return (
        xp.abs(resp.pow_gamma * (1.0 + beta + xi)),
        xp.abs(resp.pow_gamma * (1.0 - beta + xi)),
    )


MODEL = DeviceModel(
    name="pow_step",
    response=PowStepResponse,
    doc=ModelDoc(up="`ω^{γ⁺}`", down="`(1 - ω)^{γ⁻}`", noise="`σ abs(Δw^d f^d)`"),
    factors=factors,
    gammas=gammas,
    order=5,
)
