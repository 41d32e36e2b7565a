"""Gradcheck: an EP estimate from the chip's settled states against the exact gradient.

The estimate is computed exactly as training computes it (settled states of a nudge
schedule -> local learning signal -> estimator); the reference is the implicit gradient of
the loss at the noiseless free fixed point (:func:`analog_hep.emulator.ground_truth`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...emulator import (
    dac,
    fabricate,
    free_phase,
    ground_truth,
    measure,
    nudge_phases,
    nudge_schedule,
)
from ...hep import circle_betas, classic_estimate, hep_estimate
from ...hep._circle import circle_check, circle_flags, circle_threshold
from ...spec import Circuit
from ..sweeps._overrides import with_overrides

__all__ = ["GradcheckResult", "cosine", "gradcheck", "random_batch"]

Method = Literal["hep", "classic", "symmetric"]


@dataclass(frozen=True)
class GradcheckResult:
    """Agreement of one estimate with the ground truth.

    ``cosine``/``rel_error`` are per crossbar (weights and, where the crossbar has one,
    bias, flattened together); ``*_total`` over all trainable parameters.
    ``rel_error = |g_est - g_true| / |g_true|``.

    The circle diagnostic (hEP with ``N >= 3`` only, else ``NaN``/0; ``analog_hep.hep._circle``):
    ``circle_ratio`` per sample ``rho_b = |c_{-1}| / |c_1|`` of the hidden states over the
    ``N`` points, ``circle_batch_ratio`` the signal-weighted batch value; ``circle_alarm``
    when that exceeds ``circle_threshold`` (the circle probably encloses a singularity of
    ``s*(beta)``: the estimate is not to be trusted), ``circle_flagged`` the samples whose
    own ``rho_b`` does.
    """

    circuit: str
    method: str
    points: int
    beta: float
    batch: int
    seed: int
    noise: float
    free_steps: int
    nudge_steps: int
    cosine_total: float
    rel_error_total: float
    cosine: dict[str, float]
    rel_error: dict[str, float]
    loss: float
    free_residual: float
    nudge_residual: float
    adjoint_residual: float
    seconds: float
    circle_ratio: list[float]
    circle_batch_ratio: float
    circle_alarm: bool
    circle_flagged: int
    circle_threshold: float
    estimate: dict[str, np.ndarray] = field(repr=False)
    truth: dict[str, np.ndarray] = field(repr=False)

    def to_json(self) -> dict[str, object]:
        """Everything but the gradient arrays (``cli.print_json`` writes a figure that does
        not apply, NaN here, as ``null``)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("estimate", "truth")}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two flattened arrays (0 if either is zero)."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def random_batch(
    n_in: int, classes: int, batch: int, *, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Uniform inputs in ``[0, 1)`` ``(batch, n_in)`` and one-hot random targets."""
    kx, ky = jr.split(key)
    x = jr.uniform(kx, (batch, n_in), dtype=jnp.float32)
    y = jax.nn.one_hot(jr.randint(ky, (batch,), 0, classes), classes)
    return x, y


def gradcheck(
    circuit: Circuit,
    *,
    method: Method,
    points: int,
    beta: float,
    batch: int,
    seed: int,
    noise: float | None = None,
    free_steps: int | None = None,
    nudge_steps: int | None = None,
    inputs: tuple[np.ndarray, np.ndarray] | None = None,
    start: Literal["free", "previous"] = "free",
) -> GradcheckResult:
    """Estimate the gradient on one batch with ``method`` and compare with the ground truth.

    **Arguments:**

    - ``circuit``: the loaded circuit; the chip is fabricated from ``circuit.spec.seed``.
    - ``method``: ``hep`` (``points`` >= 2 on a circle of radius ``beta``), ``symmetric``
      (hEP with 2 points) or ``classic`` (one real ``beta``, ``points`` repeated nudged
      settles averaged).
    - ``batch``, ``seed``: batch size and the seed of inputs and noise.
    - ``noise``, ``free_steps``, ``nudge_steps``: override the circuit's values.
    - ``inputs``: ``(x (B, n_0), y one-hot (B, classes))`` instead of random inputs.
    """
    t0 = time.perf_counter()
    spec = with_overrides(circuit.spec, noise=noise, free_steps=free_steps, nudge_steps=nudge_steps)
    chip, _ = fabricate(spec, dict(circuit.devices), spec.seed, fast_devices=circuit.fast_devices)
    cfg = chip.config
    key = jr.PRNGKey(seed)
    k_data, k_free, k_nudge = jr.split(key, 3)
    if inputs is None:
        x, y = random_batch(cfg.layers[0], cfg.classes, batch, key=k_data)
    else:
        x, y = jnp.asarray(inputs[0]), jnp.asarray(inputs[1])
        batch = x.shape[0]
    if jax.config.jax_enable_x64:
        x, y = x.astype(jnp.float64), y.astype(jnp.float64)
    x = dac(chip, x)
    k_free = k_free if chip.noisy else None
    k_nudge = k_nudge if chip.noisy else None

    truth = ground_truth(
        chip, x, y, steps=cfg.free_steps, max_adjoint_iterations=max(20 * cfg.free_steps, 2000)
    )
    free = free_phase(chip, x, steps=cfg.free_steps, key=k_free)
    names = cfg.crossbar_names
    if method == "classic":
        betas: tuple[complex, ...] = (complex(beta),) * points
        pts = nudge_phases(
            chip,
            free,
            y,
            *nudge_schedule(betas, noisy=chip.noisy, start=start, dtype=x.dtype),
            steps=cfg.nudge_steps,
            key=k_nudge,
        )
        f_read, p_read = measure(chip, free), measure(chip, pts)  # type: ignore[arg-type]
        est = classic_estimate(
            f_read.states, f_read.logits, p_read.states, p_read.logits, y, beta, names
        )
    else:
        n = 2 if method == "symmetric" else points
        if n < 2:
            raise ValueError(f"method {method!r} needs at least 2 points, got {n}")
        betas = circle_betas(beta, n)
        pts = nudge_phases(
            chip,
            free,
            y,
            *nudge_schedule(betas, noisy=chip.noisy, start=start, dtype=x.dtype),
            steps=cfg.nudge_steps,
            key=k_nudge,
        )
        p_read = measure(chip, pts)  # type: ignore[arg-type]
        est = hep_estimate(p_read.states, p_read.logits, y, pts.betas, names)
        check = circle_check(p_read.states[1:], pts.betas, per_period=n)

    if method == "classic":
        n = 1
        check = circle_check(p_read.states[1:], pts.betas, per_period=n)
    ratio = np.asarray(check.ratio, np.float64)
    has_bias = {n: chip.crossbars[n].has_bias for n in names}

    def flat(g: dict[str, tuple[jax.Array, jax.Array]], n: str) -> np.ndarray:
        w, b = g[n]
        parts = [np.asarray(w).ravel()] + ([np.asarray(b).ravel()] if has_bias[n] else [])
        return np.concatenate(parts)

    e = {n: flat(est, n) for n in names}
    t = {n: flat(truth.grads, n) for n in names}
    e_all = np.concatenate([e[n] for n in names])
    t_all = np.concatenate([t[n] for n in names])
    return GradcheckResult(
        circuit=spec.name,
        method=method,
        points=points if method != "symmetric" else 2,
        beta=float(beta),
        batch=int(batch),
        seed=int(seed),
        noise=float(spec.neuron.noise_std),
        free_steps=cfg.free_steps,
        nudge_steps=cfg.nudge_steps,
        cosine_total=cosine(e_all, t_all),
        rel_error_total=_rel(e_all, t_all),
        cosine={n: cosine(e[n], t[n]) for n in names},
        rel_error={n: _rel(e[n], t[n]) for n in names},
        loss=float(truth.loss),
        free_residual=float(jnp.max(free.residual)),
        nudge_residual=float(jnp.max(pts.residual)),
        adjoint_residual=float(truth.adjoint_residual),
        seconds=time.perf_counter() - t0,
        circle_ratio=[float(r) for r in ratio],
        circle_batch_ratio=float(check.batch_ratio),
        circle_alarm=bool(circle_flags(check.batch_ratio, n)),
        circle_flagged=int(np.sum(np.asarray(circle_flags(ratio, n)))),
        circle_threshold=circle_threshold(n),
        estimate=e,
        truth=t,
    )
