"""The ``ideal`` model: floating-point devices, updated exactly (no pulses)."""

from __future__ import annotations

from typing import Literal

from .._base import SpecModel
from ._common import DeviceModel, ModelDoc

__all__ = ["MODEL", "IdealResponse"]


class IdealResponse(SpecModel):
    """Floating-point updates: the requested change happens exactly (no pulses)."""

    model: Literal["ideal"]


MODEL = DeviceModel(
    name="ideal",
    response=IdealResponse,
    doc=ModelDoc(up="no pulses: exact updates (`apply_delta_exact`)", down="", noise=""),
    order=0,
)
