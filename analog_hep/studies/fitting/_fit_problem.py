"""One least-squares fit of a device model's step to measured steps (``fit-device``).

The model is the registry's fitting model (:class:`~analog_hep.spec.device_models.FitModel`:
named parameters, bounds, the model's own step equation evaluated with NumPy); conductances
are in internal units ``(G - offset) / unit``. Standard errors from the Jacobian,
``cov = s² (JᵀJ)⁺`` with ``s² = Σ r² / (m - p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ...spec.device_models import FitModel

__all__ = ["Fit", "Problem", "best_fit", "initial", "least_squares_fit", "make_problem"]


@dataclass(frozen=True)
class Problem:
    """A model's least-squares problem on a range ``[lo, hi]`` (internal units)."""

    fit: FitModel
    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    lo: float
    hi: float

    def predict(self, theta: np.ndarray, g: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Expected steps (internal units) at states ``g`` in directions ``d``."""
        theta_by_name = dict(zip(self.names, theta, strict=True))
        return self.fit.predict(np, theta_by_name, g, d, self.lo, self.hi)


def make_problem(fit: FitModel, lo: float, hi: float, nodes: int) -> Problem:
    lower, upper = fit.bounds(nodes)
    return Problem(fit, fit.names(nodes), np.array(lower), np.array(upper), lo, hi)


@dataclass(frozen=True)
class Fit:
    theta: np.ndarray
    stderr: np.ndarray
    residual: np.ndarray
    predicted: np.ndarray


def least_squares_fit(
    problem: Problem, theta0: np.ndarray, g: np.ndarray, d: np.ndarray, dg: np.ndarray
) -> Fit:
    """Bounded least squares from ``theta0``, standard errors ``sqrt(diag(s² (JᵀJ)⁺))``."""
    theta0 = np.clip(theta0, problem.lower + 1e-9, problem.upper - 1e-9)

    def resid(th: np.ndarray) -> np.ndarray:
        return problem.predict(th, g, d) - dg

    res = least_squares(resid, theta0, bounds=(problem.lower, problem.upper), x_scale="jac")
    m, p = dg.shape[0], theta0.shape[0]
    r = res.fun
    s2 = float(r @ r) / max(m - p, 1)
    jtj = res.jac.T @ res.jac
    cov = np.linalg.pinv(jtj) * s2
    stderr = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return Fit(res.x, stderr, r, problem.predict(res.x, g, d))


def _regression_line(g: np.ndarray, dg: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of ``ΔG = s G + i`` over the masked steps (internal units)."""
    if mask.sum() >= 2 and np.ptp(g[mask]) > 0:
        slope, icpt = np.polyfit(g[mask], dg[mask], 1)
        return float(slope), float(icpt)
    return 0.0, float(np.mean(dg[mask])) if mask.any() else 0.0


def initial(
    problem: Problem, g: np.ndarray, d: np.ndarray, dg: np.ndarray, nodes: int
) -> dict[str, float]:
    """The model's starting point from per-direction regression lines and mean steps."""
    up, dn = d > 0, d < 0
    lines = (_regression_line(g, dg, up), _regression_line(g, dg, dn))
    mean_up = float(np.mean(np.abs(dg[up])))
    mean_dn = float(np.mean(np.abs(dg[dn])))
    return problem.fit.initial(lines, g, mean_up, mean_dn, nodes)


def best_fit(
    problem: Problem, theta0: dict[str, float], g: np.ndarray, d: np.ndarray, dg: np.ndarray
) -> Fit:
    """Least squares from each of the model's starting points; the smallest residual wins."""
    starts = [np.array([t[k] for k in problem.names]) for t in problem.fit.starts(theta0)]
    fits = [least_squares_fit(problem, t, g, d, dg) for t in starts]
    return min(fits, key=lambda f: float(f.residual @ f.residual))
