"""Fit a device card to measured pulse-response data (``analog-hep fit-device``).

**Input.** A CSV file with a header and one row per pulse::

    device,pulse,direction,conductance_S

``direction`` is +1 (potentiating) or -1 (depressing), or 0 for a read without a pulse (e.g.
the initial state); ``conductance_S`` is the conductance read after the pulse, in siemens;
``pulse`` numbers the pulses of one device (unique, need not start at 0). Extra columns are
ignored. Each pulse whose previous read (pulse number minus one) is present gives one
observed step ``ΔG_k = G_k - G_{k-1}`` at state ``G_{k-1}``.

**Model.** The expected step per direction as a function of the state, in the card's
normalised coordinate ``w = -1 + 2 (G - g_min_S) / (g_max_S - g_min_S)`` (``w_min = -1``,
``w_max = 1``, ``scale_S = (g_max_S - g_min_S) / 2``):

- ``soft_bounds``: ``ΔG⁺ = k⁺ (G_hi - G)``, ``ΔG⁻ = -k⁻ (G - G_lo)``; the bounds are fitted
  (``g_min_S = G_lo``, ``g_max_S = G_hi``) and ``dw_up, dw_down = k⁺, k⁻``.
- ``linear_step``: ``ΔG⁺ = c⁺ (1 - γ⁺ w)``, ``ΔG⁻ = -c⁻ (1 + γ⁻ w)`` (mean-bound reference).
- ``exp_step``: ``ΔG⁺ = c⁺ max(1 - A⁺ e^{γ⁺ w}, 0)``, ``ΔG⁻ = -c⁻ max(1 - A⁻ e^{-γ⁻ w}, 0)``
  (card ``a = 1``, ``b = 0`` so that ``z = w``).
- ``piecewise``: ``ΔG^d = d Σ_k u^d_k h_k(G)`` with hat functions ``h_k`` on ``nodes`` points
  spread evenly over ``[g_min_S, g_max_S]``, ``u ≥ 0``.

For the hard-bounded models (linear_step, exp_step, piecewise) ``[g_min_S, g_max_S]`` is the
mean over devices of each device's lowest and highest read, and steps that end exactly at a
device's extreme read (clipped steps) are left out. ``dw_min = max(dw_up, dw_down)`` and
``up_down`` follow aihwkit's convention (``dw_up = (1 + min(up_down, 0)) dw_min``,
``dw_down = (1 - max(up_down, 0)) dw_min``).

**Fit and uncertainties.** ``scipy.optimize.least_squares`` on all steps of all devices
(pooled: the mean device); standard errors from the Jacobian, ``cov = s² (JᵀJ)⁺`` with
``s² = Σ r² / (m - p)``. Cycle-to-cycle noise ``dw_min_std = sqrt(Σ r² / Σ ΔĜ²)``
(multiplicative, residuals relative to the model step; per-device residuals when there is
more than one device, since pooled residuals contain the device-to-device spread). With more
than one device each device is also fitted, and the device-to-device spreads are the
standard deviations over devices of the step gain, the up/down asymmetry, the bounds
(``w_max_dtod``, ``w_min_dtod``) and the slopes, minus the mean squared standard error of
the per-device estimates (their own fit noise), floored at 0. Read noise in the data is
counted as c2c noise (it enters each step twice).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import least_squares

from ..errors import SpecError
from ..spec import DeviceCard
from ..spec._yaml import decode_text

__all__ = [
    "FIT_MODELS",
    "FitResult",
    "PulseData",
    "fit_device",
    "read_measurements",
    "result_card_yaml",
]

FIT_MODELS = ("soft_bounds", "linear_step", "exp_step", "piecewise")
_REQUIRED = ("device", "pulse", "direction", "conductance_S")


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PulseData:
    """Observed steps of all devices (numpy, siemens).

    - ``device_names``: device labels in order of first appearance;
    - ``device``: int ``(m,)`` index into ``device_names`` of each step;
    - ``direction``: int ``(m,)`` +1 / -1;
    - ``g_before_S``, ``g_after_S``: float64 ``(m,)`` reads before and after the pulse;
    - ``g_lo_S``, ``g_hi_S``: float64 ``(n_devices,)`` lowest and highest read of each device;
    - ``n_rows``: data rows read; ``n_unpaired``: pulses without a previous read.
    """

    path: str
    device_names: tuple[str, ...]
    device: np.ndarray
    direction: np.ndarray
    g_before_S: np.ndarray
    g_after_S: np.ndarray
    g_lo_S: np.ndarray
    g_hi_S: np.ndarray
    n_rows: int
    n_unpaired: int

    @property
    def n_devices(self) -> int:
        return len(self.device_names)

    @property
    def step_S(self) -> np.ndarray:
        return self.g_after_S - self.g_before_S


def _row_error(path: str, line: int, column: str, expected: str, found: str) -> SpecError:
    return SpecError(f"{path}:{line}: {column}: expected {expected}, found {found!r} (row {line})")


MAX_CSV_BYTES = 256 * 1024 * 1024
"""Largest measurements file read (bytes): ~5 million pulse rows."""


def _read_csv_text(p: str) -> str:
    """The measurements file as text: UTF-8, at most :data:`MAX_CSV_BYTES`.

    **Raises:** :class:`SpecError` naming the file (and the line of a byte that is not UTF-8)
    for a file that cannot be read, is too large, or is binary / in another encoding.
    """
    try:
        with open(p, "rb") as raw_file:
            raw = raw_file.read(MAX_CSV_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{p}: cannot read the measurements file: {err.strerror}") from None
    if len(raw) > MAX_CSV_BYTES:
        raise SpecError(
            f"{p}: the measurements file is larger than the limit of {MAX_CSV_BYTES} bytes "
            "(256 MiB)"
        )
    return decode_text(
        raw, p, expected="expected a CSV of device,pulse,direction,conductance_S rows"
    )


def read_measurements(path: str | Path) -> PulseData:
    """Read and check a pulse-response CSV (see the module docstring).

    **Raises:** :class:`SpecError` naming the file, the line (row) and the column of the
    first problem: a missing header column, a short row, a non-integer pulse, a direction
    other than +1/-1/0, a conductance that is not a finite number >= 0 S, a repeated pulse
    number of one device, or too little data.
    """
    p = str(path)
    with io.StringIO(_read_csv_text(p), newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise SpecError(
                f"{p}:1: header: expected 'device,pulse,direction,conductance_S', found an "
                "empty file"
            ) from None
        except csv.Error as err:
            raise SpecError(f"{p}:1: header: not a CSV line ({err})") from None
        names = [h.strip() for h in header]
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            raise SpecError(
                f"{p}:1: header: expected columns {', '.join(_REQUIRED)} (extra columns are "
                f"ignored), found {','.join(names)!r}; missing {', '.join(missing)}"
            )
        col = {c: names.index(c) for c in _REQUIRED}
        need = max(col.values()) + 1
        records: dict[str, dict[int, tuple[int, float, int]]] = {}
        order: list[str] = []
        n_rows = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                raise SpecError(f"{p}:{reader.line_num}: not a CSV line ({err})") from None
            line = reader.line_num
            if not row or all(not f.strip() for f in row):
                continue
            n_rows += 1
            if len(row) < need:
                raise SpecError(
                    f"{p}:{line}: row {line}: expected at least {need} fields "
                    f"({','.join(names)}), found {len(row)}: {','.join(row)!r}"
                )
            dev = row[col["device"]].strip()
            if not dev:
                raise _row_error(p, line, "device", "a non-empty device label", dev)
            pulse_s = row[col["pulse"]].strip()
            try:
                pulse = int(pulse_s)
            except ValueError:
                raise _row_error(p, line, "pulse", "an integer pulse number", pulse_s) from None
            dir_s = row[col["direction"]].strip()
            try:
                direction = int(float(dir_s))
                if float(dir_s) != direction or direction not in (-1, 0, 1):
                    raise ValueError
            except ValueError:
                raise _row_error(
                    p, line, "direction", "+1 (potentiate), -1 (depress) or 0 (read only)", dir_s
                ) from None
            g_s = row[col["conductance_S"]].strip()
            try:
                g = float(g_s)
                if not math.isfinite(g) or g < 0.0:
                    raise ValueError
            except ValueError:
                raise _row_error(
                    p, line, "conductance_S", "a finite conductance >= 0 in siemens", g_s
                ) from None
            per = records.get(dev)
            if per is None:
                per = records[dev] = {}
                order.append(dev)
            if pulse in per:
                raise SpecError(
                    f"{p}:{line}: pulse: device {dev!r} pulse {pulse} appears twice (first at "
                    f"line {per[pulse][2]}, again at row {line}); pulse numbers must be unique "
                    "per device"
                )
            per[pulse] = (direction, g, line)
    if n_rows == 0:
        raise SpecError(f"{p}:2: expected at least one data row after the header, found none")

    dev_idx, dirs, g0, g1 = [], [], [], []
    g_lo, g_hi = [], []
    n_unpaired = 0
    for i, dev in enumerate(order):
        per = records[dev]
        pulses = sorted(per)
        reads = np.array([per[k][1] for k in pulses])
        g_lo.append(float(reads.min()))
        g_hi.append(float(reads.max()))
        prev: int | None = None
        for k in pulses:
            direction, g, _ = per[k]
            if direction != 0:
                if prev is not None and prev == k - 1:
                    dev_idx.append(i)
                    dirs.append(direction)
                    g0.append(per[prev][1])
                    g1.append(g)
                else:
                    n_unpaired += 1
            prev = k
    return PulseData(
        path=p,
        device_names=tuple(order),
        device=np.asarray(dev_idx, dtype=np.int64),
        direction=np.asarray(dirs, dtype=np.int64),
        g_before_S=np.asarray(g0, dtype=np.float64),
        g_after_S=np.asarray(g1, dtype=np.float64),
        g_lo_S=np.asarray(g_lo),
        g_hi_S=np.asarray(g_hi),
        n_rows=n_rows,
        n_unpaired=n_unpaired,
    )


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class _Model:
    """A step model on the internal unit scale (conductances as ``(G - offset) / unit``)."""

    names: tuple[str, ...]
    predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    lower: np.ndarray
    upper: np.ndarray


def _hats(g: np.ndarray, lo: float, hi: float, nodes: int) -> np.ndarray:
    """Hat-function basis ``(m, nodes)`` of linear interpolation on ``nodes`` even points."""
    t = np.clip((g - lo) / (hi - lo), 0.0, 1.0) * (nodes - 1)
    idx = np.minimum(np.floor(t).astype(np.int64), nodes - 2)
    frac = np.minimum(t - idx, 1.0)
    basis = np.zeros((g.shape[0], nodes))
    rows = np.arange(g.shape[0])
    basis[rows, idx] = 1.0 - frac
    basis[rows, idx + 1] += frac
    return basis


def _model(kind: str, lo: float, hi: float, nodes: int) -> _Model:
    """Model ``ΔG(θ, G, d)`` in internal units; ``lo``/``hi`` the hard bounds (internal)."""

    def w_of(g: np.ndarray) -> np.ndarray:
        return -1.0 + 2.0 * (g - lo) / (hi - lo)

    inf = np.inf
    if kind == "soft_bounds":

        def sb(th: np.ndarray, g: np.ndarray, d: np.ndarray) -> np.ndarray:
            k_up, k_dn, g_hi, g_lo = th
            return np.where(d > 0, k_up * (g_hi - g), -k_dn * (g - g_lo))

        return _Model(
            ("k_up", "k_down", "g_hi", "g_lo"),
            sb,
            np.array([0.0, 0.0, -inf, -inf]),
            np.array([inf, inf, inf, inf]),
        )
    if kind == "linear_step":

        def ls(th: np.ndarray, g: np.ndarray, d: np.ndarray) -> np.ndarray:
            c_up, gam_up, c_dn, gam_dn = th
            w = w_of(g)
            return np.where(d > 0, c_up * (1.0 - gam_up * w), -c_dn * (1.0 + gam_dn * w))

        return _Model(
            ("c_up", "gamma_up", "c_down", "gamma_down"),
            ls,
            np.array([0.0, 0.0, 0.0, 0.0]),
            np.array([inf, inf, inf, inf]),
        )
    if kind == "exp_step":

        def es(th: np.ndarray, g: np.ndarray, d: np.ndarray) -> np.ndarray:
            c_up, a_up, gam_up, c_dn, a_dn, gam_dn = th
            w = w_of(g)
            y_up = np.maximum(1.0 - a_up * np.exp(np.clip(gam_up * w, -60, 60)), 0.0)
            y_dn = np.maximum(1.0 - a_dn * np.exp(np.clip(-gam_dn * w, -60, 60)), 0.0)
            return np.where(d > 0, c_up * y_up, -c_dn * y_dn)

        return _Model(
            ("c_up", "A_up", "gamma_up", "c_down", "A_down", "gamma_down"),
            es,
            np.array([0.0, -1e4, 0.0, 0.0, -1e4, 0.0]),
            np.array([inf, 1e4, 50.0, inf, 1e4, 50.0]),
        )
    if kind == "piecewise":

        def pw(th: np.ndarray, g: np.ndarray, d: np.ndarray) -> np.ndarray:
            basis = _hats(g, lo, hi, nodes)
            up, dn = th[:nodes], th[nodes:]
            return np.where(d > 0, basis @ up, -(basis @ dn))

        names = tuple(f"up_{k}" for k in range(nodes)) + tuple(f"down_{k}" for k in range(nodes))
        return _Model(names, pw, np.zeros(2 * nodes), np.full(2 * nodes, inf))
    raise SpecError(f"--model: expected one of {', '.join(FIT_MODELS)}, found {kind!r}")


def _initial(kind: str, g: np.ndarray, d: np.ndarray, dg: np.ndarray, nodes: int) -> np.ndarray:
    """Initial parameters from per-direction linear regressions (internal units)."""
    up, dn = d > 0, d < 0

    def line(mask: np.ndarray) -> tuple[float, float]:
        if mask.sum() >= 2 and np.ptp(g[mask]) > 0:
            slope, icpt = np.polyfit(g[mask], dg[mask], 1)
            return float(slope), float(icpt)
        return 0.0, float(np.mean(dg[mask])) if mask.any() else 0.0

    s_up, i_up = line(up)
    s_dn, i_dn = line(dn)
    mean_up = float(np.mean(np.abs(dg[up])))
    mean_dn = float(np.mean(np.abs(dg[dn])))
    if kind == "soft_bounds":
        k_up = max(-s_up, 1e-3)
        k_dn = max(-s_dn, 1e-3)
        g_hi = i_up / k_up if s_up < 0 else float(g.max())
        g_lo = -i_dn / k_dn if s_dn < 0 else float(g.min())
        return np.array([k_up, k_dn, g_hi, g_lo])
    if kind == "linear_step":
        return np.array([mean_up, 0.1, mean_dn, 0.1])
    if kind == "exp_step":
        return np.array([mean_up * 1.2, 0.1, 1.0, mean_dn * 1.2, 0.1, 1.0])
    return np.concatenate([np.full(nodes, mean_up), np.full(nodes, mean_dn)])


@dataclass(frozen=True)
class _Fit:
    theta: np.ndarray
    stderr: np.ndarray
    residual: np.ndarray
    predicted: np.ndarray


def _least_squares(
    model: _Model, theta0: np.ndarray, g: np.ndarray, d: np.ndarray, dg: np.ndarray
) -> _Fit:
    theta0 = np.clip(theta0, model.lower + 1e-9, model.upper - 1e-9)

    def resid(th: np.ndarray) -> np.ndarray:
        return model.predict(th, g, d) - dg

    res = least_squares(resid, theta0, bounds=(model.lower, model.upper), x_scale="jac")
    m, p = dg.shape[0], theta0.shape[0]
    r = res.fun
    s2 = float(r @ r) / max(m - p, 1)
    jtj = res.jac.T @ res.jac
    cov = np.linalg.pinv(jtj) * s2
    stderr = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return _Fit(res.x, stderr, r, model.predict(res.x, g, d))


def _best_fit(
    model: _Model, theta0: np.ndarray, g: np.ndarray, d: np.ndarray, dg: np.ndarray, kind: str
) -> _Fit:
    """Least squares from ``theta0``; exp_step also from several curvatures (non-convex)."""
    starts = [theta0]
    if kind == "exp_step":
        for gam in (0.5, 2.0, 4.0, 8.0):
            for amp in (0.05, 0.3, -0.3):
                t = theta0.copy()
                t[[1, 4]] = amp
                t[[2, 5]] = gam
                starts.append(t)
    fits = [_least_squares(model, t, g, d, dg) for t in starts]
    return min(fits, key=lambda f: float(f.residual @ f.residual))


# ----------------------------------------------------------------------------- result


@dataclass
class FitResult:
    """A fitted card and the numbers behind it.

    ``params``/``stderr``: card parameters (normalised units as in the card, ``g_*_S`` in
    siemens) and their standard errors from the pooled fit (NaN where not defined);
    ``rms_residual_S``: rms of the pooled fit's step residuals (S); ``card``: the card as a
    plain dict (what :func:`result_card_yaml` writes).
    """

    model: str
    name: str
    g_min_S: float
    g_max_S: float
    rms_residual_S: float
    n_devices: int
    n_pulses: int
    n_skipped: int
    params: dict[str, float]
    stderr: dict[str, float]
    dw_min_std: float
    d2d: dict[str, float]
    card: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (``--json``)."""
        return {
            "model": self.model,
            "name": self.name,
            "g_min_S": self.g_min_S,
            "g_max_S": self.g_max_S,
            "rms_residual_S": self.rms_residual_S,
            "n_devices": self.n_devices,
            "n_pulses": self.n_pulses,
            "n_skipped": self.n_skipped,
            "params": self.params,
            "stderr": {k: (None if math.isnan(v) else v) for k, v in self.stderr.items()},
            "dw_min_std": self.dw_min_std,
            "d2d": self.d2d,
            "warnings": self.warnings,
        }


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
    if model not in FIT_MODELS:
        raise SpecError(f"--model: expected one of {', '.join(FIT_MODELS)}, found {model!r}")
    if model == "piecewise" and not 2 <= nodes <= 256:
        raise SpecError(f"--nodes: expected an integer in 2..256, found {nodes!r}")
    warnings: list[str] = []
    hard = model != "soft_bounds"
    g0, g1, d, dev = data.g_before_S, data.g_after_S, data.direction, data.device
    keep = np.ones(g0.shape[0], bool)
    if hard:  # steps clipped at a device's extreme read are not the model's step
        keep = (g1 != data.g_lo_S[dev]) & (g1 != data.g_hi_S[dev])
    n_skipped = int((~keep).sum()) + data.n_unpaired
    g0, g1, d, dev = g0[keep], g1[keep], d[keep], dev[keep]
    n_par = {"soft_bounds": 2, "linear_step": 2, "exp_step": 3, "piecewise": 2}[model]
    for sign, label in ((1, "potentiating (+1)"), (-1, "depressing (-1)")):
        n = int((d == sign).sum())
        if n < n_par + 2:
            raise SpecError(
                f"{data.path}: model {model} needs at least {n_par + 2} {label} steps (pulses "
                f"whose previous read is in the file), found {n}"
            )

    # Internal units: offset and unit of the observed range (conditioning only).
    off = float(min(g0.min(), g1.min()))
    unit = float(max(g0.max(), g1.max()) - off)
    if not unit > 0.0:
        raise SpecError(f"{data.path}: all conductances are equal; nothing to fit")
    gi, dgi = (g0 - off) / unit, (g1 - g0) / unit
    lo_dev, hi_dev = (data.g_lo_S - off) / unit, (data.g_hi_S - off) / unit
    lo, hi = (float(lo_dev.mean()), float(hi_dev.mean())) if hard else (0.0, 1.0)
    if not hi > lo:
        raise SpecError(f"{data.path}: degenerate conductance range [{lo}, {hi}]")
    mdl = _model(model, lo, hi, nodes)
    pooled = _best_fit(mdl, _initial(model, gi, d, dgi, nodes), gi, d, dgi, model)
    rms_S = float(np.sqrt(np.mean(pooled.residual**2))) * unit

    # Per-device fits (same model, from the pooled parameters). Piecewise tables span each
    # device's own bounds; the other models use the card's common normalisation.
    thetas_l, errs_l, res_l, pred_l, used_l = [], [], [], [], []
    if data.n_devices > 1:
        for i in range(data.n_devices):
            m = dev == i
            if min(int((d[m] == 1).sum()), int((d[m] == -1).sum())) < min_steps_per_device:
                continue
            mdl_i = (
                _model(model, float(lo_dev[i]), float(hi_dev[i]), nodes)
                if (model == "piecewise")
                else mdl
            )
            fi = _least_squares(mdl_i, pooled.theta, gi[m], d[m], dgi[m])
            thetas_l.append(fi.theta)
            errs_l.append(fi.stderr)
            res_l.append(fi.residual)
            pred_l.append(fi.predicted)
            used_l.append(i)
        if len(used_l) < 2:
            warnings.append(
                f"fewer than two devices have {min_steps_per_device} steps in each direction: "
                "no device-to-device spread estimated"
            )
    per_device = len(used_l) >= 2
    th, se = pooled.theta, pooled.stderr
    if per_device and model in ("soft_bounds", "linear_step"):
        # The mean device of the d2d model is the mean of the devices' parameters (a pooled
        # fit of heterogeneous devices is biased); its uncertainty is the spread over
        # devices / sqrt(n).
        thetas = np.stack(thetas_l)
        th = thetas.mean(axis=0)
        se = thetas.std(axis=0, ddof=1) / math.sqrt(thetas.shape[0])

    if model == "soft_bounds":
        lo, hi = float(th[3]), float(th[2])
        if not hi > lo:
            raise SpecError(
                f"{data.path}: soft_bounds fit gave an upper bound {hi * unit + off:.4g} S below "
                f"the lower bound {lo * unit + off:.4g} S; the data do not look like soft bounds"
            )
    g_min_S, g_max_S = lo * unit + off, hi * unit + off
    if g_min_S < 0.0:
        warnings.append(
            f"fitted lower bound {g_min_S:.4g} S is negative; the card clips it to g_min_S = 0, "
            "so its steps near the lower bound differ from the fit"
        )
        g_min_S = 0.0
    scale = (hi - lo) / 2.0  # internal units per normalised unit

    # Per-direction steps (normalised) and their standard errors.
    params: dict[str, float] = {}
    stderr: dict[str, float] = {}
    i_dn = {"soft_bounds": 1, "linear_step": 2, "exp_step": 3, "piecewise": 0}[model]
    sb_steps = None
    if model == "soft_bounds" and per_device:
        # A device's fitted slope is its step over its own bound: k+ = dw_up / β_max,
        # k- = dw_down / |β_min| (normalised), so dw_up,i = k+_i β_max,i.
        t_i = np.stack(thetas_l)
        e_i = np.stack(errs_l)
        w_hi_i = -1.0 + 2.0 * (t_i[:, 2] - lo) / (hi - lo)
        w_lo_i = -1.0 + 2.0 * (t_i[:, 3] - lo) / (hi - lo)
        up_sb, dn_sb = t_i[:, 0] * w_hi_i, t_i[:, 1] * np.abs(w_lo_i)
        sb_steps = (up_sb, dn_sb, e_i[:, 0] * w_hi_i, e_i[:, 1] * np.abs(w_lo_i))
        n_i = math.sqrt(t_i.shape[0])
        dw_up, dw_dn = float(up_sb.mean()), float(dn_sb.mean())
        se_up, se_dn = float(up_sb.std(ddof=1) / n_i), float(dn_sb.std(ddof=1) / n_i)
    elif model == "soft_bounds":
        dw_up, dw_dn, se_up, se_dn = th[0], th[1], se[0], se[1]
    elif model in ("linear_step", "exp_step"):
        dw_up, dw_dn = th[0] / scale, th[i_dn] / scale
        se_up, se_dn = se[0] / scale, se[i_dn] / scale
    else:
        dw_up = dw_dn = float(np.mean(th)) / scale
        se_up = se_dn = float(np.sqrt(np.mean(se**2)) / math.sqrt(th.shape[0])) / scale
    dw_min, up_down = _up_down(float(dw_up), float(dw_dn))
    params["dw_min"] = dw_min
    stderr["dw_min"] = float(se_up if dw_up >= dw_dn else se_dn)
    params["up_down"] = up_down
    rel = math.hypot(se_up / max(dw_up, 1e-300), se_dn / max(dw_dn, 1e-300))
    stderr["up_down"] = float(abs(1.0 - abs(up_down)) * rel)
    if per_device and model in ("soft_bounds", "linear_step"):
        # Per-device asymmetries: keeps the correlation of a device's up and down steps.
        if sb_steps is not None:
            pairs = list(zip(sb_steps[0], sb_steps[1], strict=True))
        else:
            pairs = [(t[0] / scale, t[i_dn] / scale) for t in thetas_l]
        ud_i = [_up_down(float(u), float(v))[1] for u, v in pairs]
        stderr["up_down"] = float(np.std(ud_i, ddof=1) / math.sqrt(len(ud_i)))
    params["g_min_S"], params["g_max_S"] = g_min_S, g_max_S
    if model == "soft_bounds":
        stderr["g_min_S"], stderr["g_max_S"] = float(se[3] * unit), float(se[2] * unit)
    else:
        n_dev = max(data.n_devices, 1)
        stderr["g_min_S"] = float(np.std(data.g_lo_S) / math.sqrt(n_dev))
        stderr["g_max_S"] = float(np.std(data.g_hi_S) / math.sqrt(n_dev))
    if model == "linear_step":
        for k, i in (("gamma_up", 1), ("gamma_down", 3)):
            params[k], stderr[k] = float(th[i]), float(se[i])
    if model == "exp_step":
        for k, i in (("A_up", 1), ("gamma_up", 2), ("A_down", 4), ("gamma_down", 5)):
            params[k], stderr[k] = float(th[i]), float(se[i])
    up_tab: list[float] = []
    dn_tab: list[float] = []
    if model == "piecewise":
        norm = dw_min * scale
        up_tab = [float(v / norm) for v in th[:nodes]]
        dn_tab = [float(v / norm) for v in th[nodes:]]
        for k in range(nodes):
            params[f"piecewise_up[{k}]"] = up_tab[k]
            stderr[f"piecewise_up[{k}]"] = float(se[k] / norm)
        for k in range(nodes):
            params[f"piecewise_down[{k}]"] = dn_tab[k]
            stderr[f"piecewise_down[{k}]"] = float(se[nodes + k] / norm)
        params["up_down"], stderr["up_down"] = 0.0, float("nan")

    # Device-to-device spreads and c2c noise.
    d2d = {"dw_min_dtod": 0.0, "up_down_dtod": 0.0, "w_min_dtod": 0.0, "w_max_dtod": 0.0}
    res_all, pred_all = pooled.residual, pooled.predicted
    if per_device:
        res_all, pred_all = np.concatenate(res_l), np.concatenate(pred_l)
        thetas = np.stack(thetas_l)
        errs = np.stack(errs_l)
        used = np.asarray(used_l, dtype=np.int64)
        if model == "soft_bounds":
            assert sb_steps is not None
            up_i, dn_i, eu, ed = sb_steps
            w_hi = -1.0 + 2.0 * (thetas[:, 2] - lo) / (hi - lo)
            w_lo = -1.0 + 2.0 * (thetas[:, 3] - lo) / (hi - lo)
            d2d["w_max_dtod"] = _corrected_std(w_hi, 2.0 * errs[:, 2] / (hi - lo))
            d2d["w_min_dtod"] = _corrected_std(w_lo, 2.0 * errs[:, 3] / (hi - lo))
        else:
            if model == "piecewise":
                # Each device's table spans its own bounds: its mean node is its step gain.
                sc_i = (hi_dev[used] - lo_dev[used]) / 2.0
                up_i = dn_i = thetas.mean(axis=1) / sc_i
                eu = ed = np.sqrt((errs**2).mean(axis=1) / thetas.shape[1]) / sc_i
            else:
                up_i, dn_i = thetas[:, 0] / scale, thetas[:, i_dn] / scale
                eu, ed = errs[:, 0] / scale, errs[:, i_dn] / scale
            # Hard bounds: each device's extreme reads (meaningful when it was saturated).
            d2d["w_max_dtod"] = float(np.std(-1.0 + 2.0 * (hi_dev[used] - lo) / (hi - lo), ddof=1))
            d2d["w_min_dtod"] = float(np.std(-1.0 + 2.0 * (lo_dev[used] - lo) / (hi - lo), ddof=1))
        up_bias, dn_bias = min(up_down, 0.0), -max(up_down, 0.0)
        gain = (up_i + dn_i) / (2.0 * dw_min) - (up_bias + dn_bias) / 2.0
        r_i = (up_i - dn_i) / (2.0 * dw_min) - (up_bias - dn_bias) / 2.0
        e_g = np.hypot(eu, ed) / (2.0 * dw_min)
        d2d["dw_min_dtod"] = _corrected_std(gain, e_g)
        if model != "piecewise":
            d2d["up_down_dtod"] = _corrected_std(r_i, e_g)
        if model == "linear_step":
            d2d["gamma_up_dtod"] = _corrected_std(thetas[:, 1], errs[:, 1])
            d2d["gamma_down_dtod"] = _corrected_std(thetas[:, 3], errs[:, 3])
    dw_min_std = _c2c(res_all, pred_all)

    response: dict[str, Any] = {
        "model": model,
        "dw_min": float(dw_min),
        "w_min": -1.0,
        "w_max": 1.0,
        "up_down": float(params["up_down"]),
        "dw_min_dtod": float(d2d["dw_min_dtod"]),
        "up_down_dtod": float(d2d["up_down_dtod"]),
        "w_min_dtod": float(d2d["w_min_dtod"]),
        "w_max_dtod": float(d2d["w_max_dtod"]),
        "dw_min_std": float(dw_min_std),
        "write_noise_std": 0.0,
    }
    if model == "soft_bounds":
        response["mult_noise"] = True
    elif model == "linear_step":
        response.update(
            gamma_up=params["gamma_up"],
            gamma_down=params["gamma_down"],
            gamma_up_dtod=float(d2d.get("gamma_up_dtod", 0.0)),
            gamma_down_dtod=float(d2d.get("gamma_down_dtod", 0.0)),
            mean_bound_reference=True,
            mult_noise=True,
        )
    elif model == "exp_step":
        response.update(
            A_up=params["A_up"],
            A_down=params["A_down"],
            gamma_up=params["gamma_up"],
            gamma_down=params["gamma_down"],
            a=1.0,
            b=0.0,
        )
    else:
        response.update(piecewise_up=up_tab, piecewise_down=dn_tab)
    notes = (
        f"Fitted by analog-hep fit-device to {Path(data.path).name}: {data.n_devices} device(s), "
        f"{int(g0.shape[0])} steps ({n_skipped} skipped), rms step residual {rms_S:.4g} S. "
        "dw_min_std is the residual spread relative to the model step (includes read noise); "
        "write noise, read noise and faults are not fitted."
    )
    if warnings:
        notes += " Warnings: " + " ".join(warnings)
    card = {
        "name": name,
        "description": f"{model} card fitted to measured pulse responses ({Path(data.path).name})",
        "source": {
            "paper": f"measured pulse-response data {Path(data.path).name}",
            "simulator": "analog-hep fit-device (analog_hep/studies/_fit_device.py), "
            f"model {model}",
            "notes": notes,
        },
        "conductance": {"g_min_S": float(g_min_S), "g_max_S": float(g_max_S), "levels": None},
        "response": response,
        "read_noise_rel": 0.0,
        "program_noise_rel": 0.0,
    }
    try:
        DeviceCard.model_validate(card)
    except ValueError as err:
        first = str(err).splitlines()
        raise SpecError(
            f"{data.path}: the fitted card is not valid ({' '.join(first[:3])}); the data do "
            f"not fit model {model}"
        ) from None
    return FitResult(
        model=model,
        name=name,
        g_min_S=float(g_min_S),
        g_max_S=float(g_max_S),
        rms_residual_S=rms_S,
        n_devices=data.n_devices,
        n_pulses=int(g0.shape[0]),
        n_skipped=n_skipped,
        params={k: float(v) for k, v in params.items()},
        stderr={k: float(v) for k, v in stderr.items()},
        dw_min_std=float(dw_min_std),
        d2d={k: float(v) for k, v in d2d.items()},
        card=card,
        warnings=warnings,
    )


def result_card_yaml(result: FitResult) -> str:
    """The fitted card as YAML text (``yaml.safe_dump``; loads as a :class:`DeviceCard`)."""
    head = (
        f"# Device card fitted by `analog-hep fit-device --model {result.model}`.\n"
        f"# rms step residual {result.rms_residual_S:.4g} S over {result.n_pulses} steps of "
        f"{result.n_devices} device(s).\n"
    )
    return head + yaml.safe_dump(result.card, sort_keys=False, width=100)
