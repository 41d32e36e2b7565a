"""The ``constant_step`` model: every pulse moves the device by the same step."""

from __future__ import annotations

from typing import Any, Literal

from ._common import DeviceModel, DeviceState, Factors, ModelDoc, PulsedResponse

__all__ = ["MODEL", "ConstantStepResponse", "factors"]


class ConstantStepResponse(PulsedResponse):
    """Every pulse moves the device by a fixed step ``d * dw^d * (1 + dw_min_std * xi)``."""

    model: Literal["constant_step"]


def factors(xp: Any, resp: ConstantStepResponse, state: DeviceState) -> Factors:
    """``f^up = f^down = 1`` (dimensionless) at every state."""
    one = xp.ones_like(state.w)
    return Factors(one, one, None)


MODEL = DeviceModel(
    name="constant_step",
    response=ConstantStepResponse,
    doc=ModelDoc(up="1", down="1", noise="`σ Δw^d`"),
    factors=factors,
    order=1,
)
