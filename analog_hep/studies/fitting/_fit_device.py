"""Fit a device card to measured pulse-response data (``analog-hep fit-device``).

**Input.** :func:`read_measurements` (``_measurements.py``): one observed step
``ΔG_k = G_k - G_{k-1}`` at state ``G_{k-1}`` per pulse whose previous read is present.

**Model.** The expected step per direction is the model's own equation from the device-model
registry (:mod:`analog_hep.spec.device_models`: each model module's ``FIT`` names its
parameters and evaluates the same response the emulator pulses with), in the card's
normalised coordinate ``w = -1 + 2 (G - g_min_S) / (g_max_S - g_min_S)`` (``w_min = -1``,
``w_max = 1``, ``scale_S = (g_max_S - g_min_S) / 2``). For the hard-bounded models
``[g_min_S, g_max_S]`` is the mean over devices of each device's lowest and highest read, and
steps that end exactly at a device's extreme read (clipped steps) are left out; soft bounds
fits the bounds. ``dw_min = max(dw_up, dw_down)`` and ``up_down`` follow aihwkit's convention
(``dw_up = (1 + min(up_down, 0)) dw_min``, ``dw_down = (1 - max(up_down, 0)) dw_min``).

**Fit and uncertainties.** ``scipy.optimize.least_squares`` on all steps of all devices
(pooled: the mean device); standard errors from the Jacobian, ``cov = s² (JᵀJ)⁺`` with
``s² = Σ r² / (m - p)``. Cycle-to-cycle noise ``dw_min_std = sqrt(Σ r² / Σ ΔĜ²)``
(multiplicative, residuals relative to the model step; per-device residuals when there is
more than one device, since pooled residuals contain the device-to-device spread). With more
than one device each device is also fitted, and the device-to-device spreads are the
standard deviations over devices of the step gain, the up/down asymmetry, the bounds
(``w_max_dtod``, ``w_min_dtod``) and the model's own parameters, minus the mean squared
standard error of the per-device estimates (their own fit noise), floored at 0. Read noise in
the data is counted as c2c noise (it enters each step twice).

Conductances are fitted in internal units ``(G - offset) / unit`` (the observed range, for
conditioning only) and reported in siemens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SpecError
from ...spec import DeviceCard
from ...spec.device_models import FIT_MODELS, MODELS, FitModel, FitStats
from ._fit_problem import Fit, Problem, best_fit, initial, least_squares_fit, make_problem
from ._fit_result import FitResult, result_card_yaml
from ._measurements import MAX_CSV_BYTES, PulseData, read_measurements

__all__ = [
    "FIT_MODELS",
    "MAX_CSV_BYTES",
    "FitResult",
    "PulseData",
    "fit_device",
    "read_measurements",
    "result_card_yaml",
]


# ----------------------------------------------------------------------------- the steps


@dataclass(frozen=True)
class _Steps:
    """The steps fitted (internal units), and the range and scale they are read on."""

    path: str
    model: str
    g: np.ndarray
    d: np.ndarray
    dg: np.ndarray
    dev: np.ndarray
    n_skipped: int
    offset: float
    unit: float
    lo_dev: np.ndarray
    hi_dev: np.ndarray
    lo: float
    hi: float


def _fit_model(model: str, nodes: int) -> FitModel:
    """The registry's fitting model, or a one-line error."""
    if model not in FIT_MODELS:
        raise SpecError(f"--model: expected one of {', '.join(FIT_MODELS)}, found {model!r}")
    fit = MODELS[model].fit
    assert fit is not None
    if fit.tabulated and not 2 <= nodes <= 256:
        raise SpecError(f"--nodes: expected an integer in 2..256, found {nodes!r}")
    return fit


def _steps(data: PulseData, model: str, fit: FitModel) -> _Steps:
    """The usable steps in internal units; clipped steps dropped for hard-bounded models."""
    g0, g1, d, dev = data.g_before_S, data.g_after_S, data.direction, data.device
    keep = np.ones(g0.shape[0], bool)
    if fit.hard_bounds:  # steps clipped at a device's extreme read are not the model's step
        keep = (g1 != data.g_lo_S[dev]) & (g1 != data.g_hi_S[dev])
    n_skipped = int((~keep).sum()) + data.n_unpaired
    g0, g1, d, dev = g0[keep], g1[keep], d[keep], dev[keep]
    for sign, label in ((1, "potentiating (+1)"), (-1, "depressing (-1)")):
        n = int((d == sign).sum())
        if n < fit.min_params + 2:
            raise SpecError(
                f"{data.path}: model {model} needs at least {fit.min_params + 2} {label} steps "
                f"(pulses whose previous read is in the file), found {n}"
            )
    off = float(min(g0.min(), g1.min()))
    unit = float(max(g0.max(), g1.max()) - off)
    if not unit > 0.0:
        raise SpecError(f"{data.path}: all conductances are equal; nothing to fit")
    lo_dev, hi_dev = (data.g_lo_S - off) / unit, (data.g_hi_S - off) / unit
    lo, hi = (float(lo_dev.mean()), float(hi_dev.mean())) if fit.hard_bounds else (0.0, 1.0)
    if not hi > lo:
        raise SpecError(f"{data.path}: degenerate conductance range [{lo}, {hi}]")
    return _Steps(
        data.path, model, (g0 - off) / unit, d, (g1 - g0) / unit, dev, n_skipped, off, unit,
        lo_dev, hi_dev, lo, hi,
    )  # fmt: skip


@dataclass(frozen=True)
class _DeviceFits:
    """The devices with a fit of their own (enough steps both ways)."""

    used: np.ndarray
    fits: list[Fit]

    @property
    def thetas(self) -> np.ndarray:
        return np.stack([f.theta for f in self.fits])

    @property
    def errs(self) -> np.ndarray:
        return np.stack([f.stderr for f in self.fits])


def _device_fits(
    steps: _Steps, problem: Problem, pooled: Fit, n_devices: int, nodes: int, min_steps: int
) -> _DeviceFits:
    """Each device fitted from the pooled parameters (on its own range where the model says)."""
    used, fits = [], []
    if n_devices > 1:
        d = steps.d
        for i in range(n_devices):
            m = steps.dev == i
            if min(int((d[m] == 1).sum()), int((d[m] == -1).sum())) < min_steps:
                continue
            own = problem
            if problem.fit.own_bounds_per_device:
                lo_i, hi_i = float(steps.lo_dev[i]), float(steps.hi_dev[i])
                own = make_problem(problem.fit, lo_i, hi_i, nodes)
            fits.append(least_squares_fit(own, pooled.theta, steps.g[m], d[m], steps.dg[m]))
            used.append(i)
    return _DeviceFits(np.asarray(used, dtype=np.int64), fits)


def _stats(steps: _Steps, problem: Problem, pooled: Fit, devices: _DeviceFits) -> FitStats:
    """Parameters by name: the mean device (mean of the devices' fits where the model says,
    with standard error spread / sqrt(n); else the pooled fit) and the devices' own."""
    names = problem.names
    th, se = pooled.theta, pooled.stderr
    thetas = errs = None
    if len(devices.fits) >= 2:
        t, e = devices.thetas, devices.errs
        if problem.fit.mean_of_devices:
            th = t.mean(axis=0)
            se = t.std(axis=0, ddof=1) / math.sqrt(t.shape[0])
        thetas = {k: t[:, i] for i, k in enumerate(names)}
        errs = {k: e[:, i] for i, k in enumerate(names)}
    return FitStats(
        xp=np,
        th=dict(zip(names, th, strict=True)),
        se=dict(zip(names, se, strict=True)),
        thetas=thetas,
        errs=errs,
        lo=steps.lo,
        hi=steps.hi,
        lo_dev=steps.lo_dev[devices.used],
        hi_dev=steps.hi_dev[devices.used],
    )


def _up_down(dw_up: float, dw_down: float) -> tuple[float, float]:
    """``(dw_min, up_down)`` from normalised up/down steps (aihwkit's bias convention)."""
    if dw_up <= 0.0 and dw_down <= 0.0:
        raise SpecError("the fit found no step in either direction; is the data pulsed?")
    if dw_up >= dw_down:
        return dw_up, 1.0 - dw_down / dw_up
    return dw_down, dw_up / dw_down - 1.0


def _corrected_std(values: np.ndarray, errors: np.ndarray) -> float:
    """Std over devices minus the mean squared per-device standard error, floored at 0."""
    if values.shape[0] < 2:
        return 0.0
    var = float(np.var(values, ddof=1)) - float(np.mean(errors**2))
    return math.sqrt(max(var, 0.0))


def _c2c(residual: np.ndarray, predicted: np.ndarray) -> float:
    den = float(predicted @ predicted)
    return math.sqrt(float(residual @ residual) / den) if den > 0 else 0.0


# ----------------------------------------------------------------------------- the card


@dataclass(frozen=True)
class _Range:
    """The card's conductance range (S) and its internal-unit scale per normalised unit."""

    g_min_S: float
    g_max_S: float
    scale: float
    stats: FitStats
    """The fitted parameters, read on this range."""


def _card_range(steps: _Steps, stats: FitStats, warnings: list[str]) -> _Range:
    """The devices' mean extreme reads, or the fitted bounds (soft bounds)."""
    fit = MODELS[steps.model].fit
    assert fit is not None
    lo, hi = steps.lo, steps.hi
    if fit.fitted_range is not None:
        lo, hi = fit.fitted_range(stats)
        if not hi > lo:
            unit, off = steps.unit, steps.offset
            raise SpecError(
                f"{steps.path}: {steps.model} fit gave an upper bound {hi * unit + off:.4g} S "
                f"below the lower bound {lo * unit + off:.4g} S; the data do not look like "
                f"{steps.model.replace('_', ' ')}"
            )
        stats = replace(stats, lo=lo, hi=hi)
    g_min_S, g_max_S = lo * steps.unit + steps.offset, hi * steps.unit + steps.offset
    if g_min_S < 0.0:
        warnings.append(
            f"fitted lower bound {g_min_S:.4g} S is negative; the card clips it to g_min_S = 0, "
            "so its steps near the lower bound differ from the fit"
        )
        g_min_S = 0.0
    return _Range(g_min_S, g_max_S, (hi - lo) / 2.0, stats)


def _step_params(fit: FitModel, rng: _Range) -> tuple[dict[str, float], dict[str, float]]:
    """``dw_min`` and ``up_down`` with their standard errors (normalised units)."""
    stats, scale = rng.stats, rng.scale
    dw_up, dw_dn, se_up, se_dn = fit.steps(stats, scale)
    dw_min, up_down = _up_down(float(dw_up), float(dw_dn))
    rel = math.hypot(se_up / max(dw_up, 1e-300), se_dn / max(dw_dn, 1e-300))
    params = {"dw_min": dw_min, "up_down": up_down}
    stderr = {
        "dw_min": float(se_up if dw_up >= dw_dn else se_dn),
        "up_down": float(abs(1.0 - abs(up_down)) * rel),
    }
    if stats.thetas is not None and fit.mean_of_devices:
        # Per-device asymmetries: keeps the correlation of a device's up and down steps.
        up_i, dn_i, _, _ = fit.device_steps(stats, scale)
        ud_i = [_up_down(float(u), float(v))[1] for u, v in zip(up_i, dn_i, strict=True)]
        stderr["up_down"] = float(np.std(ud_i, ddof=1) / math.sqrt(len(ud_i)))
    return params, stderr


def _range_stderr(fit: FitModel, rng: _Range, unit: float, data: PulseData) -> tuple[float, float]:
    """Standard errors (S) of ``g_min_S``, ``g_max_S``: fitted, or of the devices' reads."""
    if fit.range_stderr is not None:
        return fit.range_stderr(rng.stats, unit)
    n_dev = max(data.n_devices, 1)
    return (
        float(np.std(data.g_lo_S) / math.sqrt(n_dev)),
        float(np.std(data.g_hi_S) / math.sqrt(n_dev)),
    )


def _d2d(fit: FitModel, rng: _Range, dw_min: float, up_down: float) -> dict[str, float]:
    """Device-to-device spreads from the per-device fits (zeros without them)."""
    d2d = {"dw_min_dtod": 0.0, "up_down_dtod": 0.0, "w_min_dtod": 0.0, "w_max_dtod": 0.0}
    stats = rng.stats
    if stats.thetas is None:
        return d2d
    lo, hi = stats.lo, stats.hi
    up_i, dn_i, eu, ed = fit.device_steps(stats, rng.scale)
    if fit.range_spreads is not None:
        d2d["w_min_dtod"], d2d["w_max_dtod"] = fit.range_spreads(stats, _corrected_std)
    else:  # hard bounds: each device's extreme reads (meaningful when it was saturated)
        d2d["w_max_dtod"] = float(np.std(-1.0 + 2.0 * (stats.hi_dev - lo) / (hi - lo), ddof=1))
        d2d["w_min_dtod"] = float(np.std(-1.0 + 2.0 * (stats.lo_dev - lo) / (hi - lo), ddof=1))
    up_bias, dn_bias = min(up_down, 0.0), -max(up_down, 0.0)
    gain = (up_i + dn_i) / (2.0 * dw_min) - (up_bias + dn_bias) / 2.0
    r_i = (up_i - dn_i) / (2.0 * dw_min) - (up_bias - dn_bias) / 2.0
    e_g = np.hypot(eu, ed) / (2.0 * dw_min)
    d2d["dw_min_dtod"] = _corrected_std(gain, e_g)
    if fit.has_up_down:
        d2d["up_down_dtod"] = _corrected_std(r_i, e_g)
    d2d.update(fit.extra_d2d(stats, _corrected_std))
    return d2d


def _card(
    steps: _Steps, data: PulseData, name: str, response: dict[str, Any], rng: _Range,
    rms_S: float, warnings: list[str],
) -> dict[str, Any]:  # fmt: skip
    """The card as a plain dict; a one-line error if it does not validate."""
    csv_name = Path(data.path).name
    model = steps.model
    notes = (
        f"Fitted by analog-hep fit-device to {csv_name}: {data.n_devices} device(s), "
        f"{int(steps.g.shape[0])} steps ({steps.n_skipped} skipped), rms step residual "
        f"{rms_S:.4g} S. dw_min_std is the residual spread relative to the model step "
        "(includes read noise); write noise, read noise and faults are not fitted."
    )
    if warnings:
        notes += " Warnings: " + " ".join(warnings)
    card = {
        "name": name,
        "description": f"{model} card fitted to measured pulse responses ({csv_name})",
        "source": {
            "paper": f"measured pulse-response data {csv_name}",
            "simulator": "analog-hep fit-device (analog_hep/studies/fitting/_fit_device.py), "
            f"model {model}",
            "notes": notes,
        },
        "conductance": {"g_min_S": float(rng.g_min_S), "g_max_S": float(rng.g_max_S),
                        "levels": None},
        "response": response,
        "read_noise_rel": 0.0,
        "program_noise_rel": 0.0,
    }  # fmt: skip
    try:
        DeviceCard.model_validate(card)
    except ValueError as err:
        first = str(err).splitlines()
        raise SpecError(
            f"{data.path}: the fitted card is not valid ({' '.join(first[:3])}); the data do "
            f"not fit model {model}"
        ) from None
    return card


def fit_device(
    data: PulseData, model: str, *, name: str, nodes: int = 11, min_steps_per_device: int = 20
) -> FitResult:
    """Fit a card of ``model`` to ``data`` (see the module docstring for the method).

    **Arguments:** ``data`` from :func:`read_measurements`; ``model`` one of
    :data:`FIT_MODELS`; ``name`` the card name; ``nodes`` piecewise table length (>= 2);
    ``min_steps_per_device`` fewest steps per direction for a device's own fit (d2d).

    **Returns:** a :class:`FitResult` whose ``card`` validates as a :class:`DeviceCard`.

    **Raises:** :class:`SpecError` when the data cannot determine the model (one direction
    missing, too few steps, degenerate range) or the fit is unphysical.
    """
    fit = _fit_model(model, nodes)
    steps = _steps(data, model, fit)
    problem = make_problem(fit, steps.lo, steps.hi, nodes)
    pooled = best_fit(problem, initial(problem, steps.g, steps.d, steps.dg, nodes), steps.g,
                       steps.d, steps.dg)  # fmt: skip
    rms_S = float(np.sqrt(np.mean(pooled.residual**2))) * steps.unit
    devices = _device_fits(steps, problem, pooled, data.n_devices, nodes, min_steps_per_device)
    warnings: list[str] = []
    if data.n_devices > 1 and len(devices.fits) < 2:
        warnings.append(
            f"fewer than two devices have {min_steps_per_device} steps in each direction: "
            "no device-to-device spread estimated"
        )
    if len(devices.fits) < 2:
        devices = _DeviceFits(np.asarray([], dtype=np.int64), [])
    rng = _card_range(steps, _stats(steps, problem, pooled, devices), warnings)
    params, stderr = _step_params(fit, rng)
    params["g_min_S"], params["g_max_S"] = rng.g_min_S, rng.g_max_S
    stderr["g_min_S"], stderr["g_max_S"] = _range_stderr(fit, rng, steps.unit, data)
    d2d = _d2d(fit, rng, params["dw_min"], params["up_down"])
    own_params, own_stderr, own_response = fit.card_fields(
        rng.stats, params["dw_min"], rng.scale, nodes, d2d
    )
    params.update(own_params)
    stderr.update(own_stderr)
    if devices.fits:
        residual = np.concatenate([f.residual for f in devices.fits])
        predicted = np.concatenate([f.predicted for f in devices.fits])
    else:
        residual, predicted = pooled.residual, pooled.predicted
    dw_min_std = _c2c(residual, predicted)
    response: dict[str, Any] = {
        "model": model,
        "dw_min": float(params["dw_min"]),
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": float(params["up_down"]),
        "dw_min_dtod": float(d2d["dw_min_dtod"]),
        "up_down_dtod": float(d2d["up_down_dtod"]),
        "w_min_dtod": float(d2d["w_min_dtod"]),
        "w_max_dtod": float(d2d["w_max_dtod"]),
        "dw_min_std": float(dw_min_std),
        "write_noise_std": 0.0,
        **own_response,
    }
    card = _card(steps, data, name, response, rng, rms_S, warnings)
    return FitResult(
        model=model,
        name=name,
        g_min_S=float(rng.g_min_S),
        g_max_S=float(rng.g_max_S),
        rms_residual_S=rms_S,
        n_devices=data.n_devices,
        n_pulses=int(steps.g.shape[0]),
        n_skipped=steps.n_skipped,
        params={k: float(v) for k, v in params.items()},
        stderr={k: float(v) for k, v in stderr.items()},
        dw_min_std=float(dw_min_std),
        d2d={k: float(v) for k, v in d2d.items()},
        card=card,
        warnings=warnings,
    )
