"""The ``piecewise`` model: a measured table of step factors over the device's range.

``K + 1`` nodes spread evenly over ``[β_min, β_max]``; with ``s = K (w - β_min) / (β_max -
β_min)``, ``k = floor(s)``, ``q = s - k``, the factor is ``(1 - q) v(k) + q v(k + 1)``. Fit
(``fit-device``, ``nodes`` nodes over the range, each device's own range for its own fit):
``ΔG^d = d f^d(G)`` with the same interpolation of the node values ``up_k``, ``down_k``
(steps in internal conductance units, ``>= 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from .._base import FieldError
from ._common import (
    DeviceModel,
    DeviceState,
    Factors,
    FitModel,
    FitStats,
    ModelDoc,
    NonNeg,
    PulsedResponse,
    safe_div,
)

__all__ = ["FIT", "MODEL", "PiecewiseResponse", "factors", "table_factors"]


class PiecewiseResponse(PulsedResponse):
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


def table_factors(xp: Any, state: DeviceState, up: Any, down: Any) -> Factors:
    """Linear interpolation of the node tables ``up``, ``down`` (``K + 1`` values each) over
    the device's own range (dimensionless where the nodes are)."""
    n_sec = up.shape[0] - 1
    span = state.bw_max - state.bw_min
    w_scaled = xp.maximum(safe_div(xp, state.w - state.bw_min, span) * n_sec, 0.0)
    idx = xp.minimum(xp.floor(w_scaled), n_sec - 1).astype(xp.int32)
    t = xp.minimum(w_scaled - idx.astype(w_scaled.dtype), 1.0)
    f_up = (1.0 - t) * up[idx] + t * up[idx + 1]
    f_down = (1.0 - t) * down[idx] + t * down[idx + 1]
    return Factors(f_up, f_down, None)


def factors(xp: Any, resp: PiecewiseResponse, state: DeviceState) -> Factors:
    """The card's tables as float32 arrays."""
    up = xp.asarray(resp.piecewise_up, xp.float32)
    down = xp.asarray(resp.piecewise_down, xp.float32)
    return table_factors(xp, state, up, down)


# ----------------------------------------------------------------------------- fitting


def _names(nodes: int) -> tuple[str, ...]:
    return tuple(f"up_{k}" for k in range(nodes)) + tuple(f"down_{k}" for k in range(nodes))


def _tables(xp: Any, th: Mapping[str, Any]) -> tuple[Any, Any]:
    nodes = len(th) // 2
    up = xp.asarray([th[f"up_{k}"] for k in range(nodes)])
    down = xp.asarray([th[f"down_{k}"] for k in range(nodes)])
    return up, down


def _predict(xp: Any, th: Mapping[str, Any], g: Any, d: Any, lo: float, hi: float) -> Any:
    up, down = _tables(xp, th)
    f = table_factors(xp, DeviceState(g, lo, hi, 0.0, 0.0), up, down)
    return xp.where(d > 0, f.up, -f.down)


def _initial(lines: Any, g: Any, mean_up: float, mean_down: float, nodes: int) -> dict:
    up = {f"up_{k}": mean_up for k in range(nodes)}
    return {**up, **{f"down_{k}": mean_down for k in range(nodes)}}


def _vector(stats: FitStats, values: Mapping[str, Any]) -> Any:
    """The parameters in the order of their names (``up_*`` then ``down_*``), as one array
    (``(n_params,)``, or ``(n_devices, n_params)`` for per-device values)."""
    xp = stats.xp
    return xp.stack([xp.asarray(values[k]) for k in values], axis=-1)


def _steps(stats: FitStats, scale: float) -> tuple[Any, Any, Any, Any]:
    """The mean node value is the step in both directions (``up_down = 0``)."""
    xp = stats.xp
    th, se = _vector(stats, stats.th), _vector(stats, stats.se)
    dw = float(xp.mean(th)) / scale
    se_dw = float(xp.sqrt(xp.mean(se**2)) / math.sqrt(th.shape[0])) / scale
    return dw, dw, se_dw, se_dw


def _device_steps(stats: FitStats, scale: float) -> tuple[Any, Any, Any, Any]:
    """Each device's table spans its own bounds: its mean node is its step gain."""
    assert stats.thetas is not None and stats.errs is not None
    xp = stats.xp
    thetas, errs = _vector(stats, stats.thetas), _vector(stats, stats.errs)
    sc_i = (stats.hi_dev - stats.lo_dev) / 2.0
    up = thetas.mean(axis=1) / sc_i
    err = xp.sqrt((errs**2).mean(axis=1) / thetas.shape[1]) / sc_i
    return up, up, err, err


def _card_fields(stats: FitStats, dw_min: float, scale: float, nodes: int, d2d: dict) -> tuple:
    """The node tables relative to the mean step ``dw_min`` (normalised)."""
    norm = dw_min * scale
    params: dict[str, float] = {}
    stderr: dict[str, float] = {}
    tables: dict[str, list[float]] = {}
    for side in ("up", "down"):
        keys = [f"{side}_{k}" for k in range(nodes)]
        tables[f"piecewise_{side}"] = [float(stats.th[k] / norm) for k in keys]
        for k, key in enumerate(keys):
            params[f"piecewise_{side}[{k}]"] = tables[f"piecewise_{side}"][k]
            stderr[f"piecewise_{side}[{k}]"] = float(stats.se[key] / norm)
    params["up_down"], stderr["up_down"] = 0.0, float("nan")
    return params, stderr, tables


FIT = FitModel(
    names=_names,
    bounds=lambda nodes: ((0.0,) * (2 * nodes), (float("inf"),) * (2 * nodes)),
    predict=_predict,
    initial=_initial,
    steps=_steps,
    device_steps=_device_steps,
    card_fields=_card_fields,
    own_bounds_per_device=True,
    has_up_down=False,
    tabulated=True,
)

MODEL = DeviceModel(
    name="piecewise",
    response=PiecewiseResponse,
    doc=ModelDoc(
        up="interpolated `piecewise_up`",
        down="interpolated `piecewise_down`",
        noise="`σ abs(Δw^d f^d)`",
    ),
    factors=factors,
    fit=FIT,
    order=6,
)
