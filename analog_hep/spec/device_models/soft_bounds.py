"""The ``soft_bounds`` model: the step falls to zero at the device's own bounds.

Card: linear step with slope 1 and the device's own bounds, ``f^up = 1 - w / β_max``,
``f^down = 1 - w / β_min``. Fit (``fit-device``): the same law with the bounds fitted,
written in conductances, ``ΔG⁺ = k⁺ (G_hi - G)``, ``ΔG⁻ = -k⁻ (G - G_lo)`` (parameters
``k_up, k_down, g_hi, g_lo``; ``k^d = Δw^d / |β^d|`` in normalised units), so that the fitted
bounds are parameters of the least-squares problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._common import (
    DeviceModel,
    DeviceState,
    Factors,
    FitModel,
    FitStats,
    ModelDoc,
    Normal,
    PulsedResponse,
)
from .linear_step import linear_factors

__all__ = ["FIT", "MODEL", "SoftBoundsResponse", "factors"]

_INF = float("inf")


class SoftBoundsResponse(PulsedResponse):
    """Step falls to zero at the device's own bounds: ``dw^+ (1 - w / b_max)``."""

    model: Literal["soft_bounds"]
    mult_noise: bool = True


def factors(xp: Any, resp: SoftBoundsResponse, state: DeviceState) -> Factors:
    """``f^d = 1 - γ^d w / β^d`` with the device's own bounds (``γ = 1``, :func:`gammas`)."""
    return linear_factors(xp, state, state.bw_max, state.bw_min)


def gammas(
    xp: Any, resp: SoftBoundsResponse, normal_up: Normal, normal_down: Normal, zeros: Any
) -> tuple[Any, Any]:
    """Slope 1 for every device (no spread)."""
    return zeros + 1.0, zeros + 1.0


# ----------------------------------------------------------------------------- fitting


def _predict(xp: Any, th: Mapping[str, Any], g: Any, d: Any, lo: float, hi: float) -> Any:
    return xp.where(d > 0, th["k_up"] * (th["g_hi"] - g), -th["k_down"] * (g - th["g_lo"]))


def _initial(lines: Any, g: Any, mean_up: float, mean_down: float, nodes: int) -> dict:
    """Slopes and bounds from the per-direction regression lines ``ΔG = s G + i``."""
    (s_up, i_up), (s_dn, i_dn) = lines
    k_up = max(-s_up, 1e-3)
    k_dn = max(-s_dn, 1e-3)
    g_hi = i_up / k_up if s_up < 0 else float(g.max())
    g_lo = -i_dn / k_dn if s_dn < 0 else float(g.min())
    return {"k_up": k_up, "k_down": k_dn, "g_hi": g_hi, "g_lo": g_lo}


def _w(g: Any, lo: float, hi: float) -> Any:
    return -1.0 + 2.0 * (g - lo) / (hi - lo)


def _device_steps(stats: FitStats, scale: float) -> tuple[Any, Any, Any, Any]:
    """Per-device normalised steps ``Δw^d_i = k^d_i |β^d_i|`` and their standard errors."""
    t, e = stats.thetas, stats.errs
    assert t is not None and e is not None
    w_hi = _w(t["g_hi"], stats.lo, stats.hi)
    w_lo = _w(t["g_lo"], stats.lo, stats.hi)
    return (
        t["k_up"] * w_hi,
        t["k_down"] * abs(w_lo),
        e["k_up"] * w_hi,
        e["k_down"] * abs(w_lo),
    )


def _steps(stats: FitStats, scale: float) -> tuple[Any, Any, Any, Any]:
    """Mean-device steps: the mean over devices (spread / sqrt(n)), else the pooled slopes."""
    if stats.thetas is None:
        th, se = stats.th, stats.se
        return th["k_up"], th["k_down"], se["k_up"], se["k_down"]
    up, dn, _, _ = _device_steps(stats, scale)
    n = math.sqrt(up.shape[0])
    return float(up.mean()), float(dn.mean()), float(up.std(ddof=1) / n), float(dn.std(ddof=1) / n)


def _range_spreads(stats: FitStats, spread: Callable[[Any, Any], float]) -> tuple[float, float]:
    t, e = stats.thetas, stats.errs
    assert t is not None and e is not None
    lo, hi = stats.lo, stats.hi
    w_max_dtod = spread(_w(t["g_hi"], lo, hi), 2.0 * e["g_hi"] / (hi - lo))
    w_min_dtod = spread(_w(t["g_lo"], lo, hi), 2.0 * e["g_lo"] / (hi - lo))
    return w_min_dtod, w_max_dtod


FIT = FitModel(
    names=lambda nodes: ("k_up", "k_down", "g_hi", "g_lo"),
    bounds=lambda nodes: ((0.0, 0.0, -_INF, -_INF), (_INF, _INF, _INF, _INF)),
    predict=_predict,
    initial=_initial,
    steps=_steps,
    device_steps=_device_steps,
    card_fields=lambda stats, dw_min, scale, nodes, d2d: ({}, {}, {"mult_noise": True}),
    hard_bounds=False,
    mean_of_devices=True,
    fitted_range=lambda stats: (float(stats.th["g_lo"]), float(stats.th["g_hi"])),
    range_stderr=lambda stats, unit: (
        float(stats.se["g_lo"] * unit),
        float(stats.se["g_hi"] * unit),
    ),
    range_spreads=_range_spreads,
)

MODEL = DeviceModel(
    name="soft_bounds",
    response=SoftBoundsResponse,
    doc=ModelDoc(up="`1 - w / β_max`", down="`1 - w / β_min`", noise="as linear_step"),
    factors=factors,
    gammas=gammas,
    fit=FIT,
    order=3,
)
