"""Gradcheck: an EP estimate from the chip's settled states against the exact gradient.

The estimate is computed exactly as training computes it (settled states of a nudge
schedule -> local learning signal -> estimator); the reference is the implicit gradient of
the loss at the noiseless free fixed point (:func:`analog_hep.emulator.ground_truth`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ...emulator import (
    POST_KEY,
    Chip,
    Points,
    SettleOut,
    dac,
    fabricate,
    free_phase,
    ground_truth,
    measure,
    nudge_phases,
    nudge_schedule,
    post_signals,
)
from ...hep import Coupling, circle_betas, classic_estimate, hep_estimate
from ...hep._circle import CircleCheck, circle_check, circle_flags, circle_threshold
from ...spec import Circuit
from ..sweeps._overrides import with_overrides

__all__ = [
    "GradcheckResult",
    "Nudged",
    "chip_couplings",
    "conv_post",
    "cosine",
    "flat_grads",
    "gradcheck",
    "nudged_estimate",
    "random_batch",
]

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


def chip_couplings(chip: Chip) -> tuple[Coupling, ...]:
    """The estimators' description of every crossbar of a fabricated chip: the emulator's
    layout (``Wi`` couples layers ``i`` and ``i + 1``, ``readout`` the last layer onto the
    logits), its bias column and its conv geometry (``None``: dense). A conv crossbar's
    learning signal needs the geometry, so the estimators take these, not bare names."""
    cfg = chip.config
    last = len(cfg.layers) - 1
    return tuple(
        Coupling(
            name,
            last if name == "readout" else i,
            -1 if name == "readout" else i + 1,
            bool(chip.crossbars[name].has_bias),
            cfg.geometry(name),
        )
        for i, name in enumerate(cfg.crossbar_names)
    )


def refuse_non_holomorphic(chip: Chip, method: str, points: int) -> None:
    """**Raises** ``ValueError`` for hEP with ``N > 2`` (complex nudges) on a chip whose
    dynamics are not holomorphic (its activation, or max pooling), as training's plan
    refuses it (the bias of eq. 9 falls with N only for holomorphic dynamics)."""
    cfg = chip.config
    if method != "hep" or points <= 2:
        return
    if cfg.holomorphic:
        return
    pools = dict.fromkeys(g.pool for g in cfg.geometries if g and not g.holomorphic)
    why = [f"{p} pooling" for p in pools] or [f"activation {cfg.activation!r}"]
    if why:
        raise ValueError(
            f"chip {cfg.name!r} is not holomorphic ({', '.join(why)}): hEP with N = {points} "
            "needs holomorphic dynamics; use the symmetric method (N = 2, real nudges)"
        )


def conv_post(
    chip: Chip, states: tuple[jax.Array, ...], key: jax.Array | None
) -> dict[str, jax.Array] | None:
    """The conv crossbars' post-synaptic signals at settled ``states`` (``(B, n_l)`` or
    ``(K, B, n_l)`` each), as the emulator driver returns them in ``Settled``:
    ``{name: (..., C_out H_conv W_conv)}``; ``None`` for a chip without conv crossbars (the
    estimators then take the MLP path unchanged). ``key``: the phase's key (the reads' noise
    is drawn from ``fold_in(key, POST_KEY)`` as in the driver), ``None`` on a noiseless chip.
    """
    if not any(g is not None for g in chip.config.geometries):
        return None
    return post_signals(chip, states, key=None if key is None else jr.fold_in(key, POST_KEY))


def random_batch(
    n_in: int, classes: int, batch: int, *, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Uniform inputs in ``[0, 1)`` ``(batch, n_in)`` and one-hot random targets."""
    kx, ky = jr.split(key)
    x = jr.uniform(kx, (batch, n_in), dtype=jnp.float32)
    y = jax.nn.one_hot(jr.randint(ky, (batch,), 0, classes), classes)
    return x, y


class Nudged(NamedTuple):
    """An estimate from settled nudges: ``grads`` ``{name: (dW, db)}``, the settled
    ``points`` (before the ADC), their circle ``check`` and the points per period it used
    (1 for classic EP: no circle)."""

    grads: dict[str, tuple[jax.Array, jax.Array]]
    points: Points
    check: CircleCheck
    per_period: int


def points_estimate(
    chip: Chip,
    free: SettleOut,
    pts: Points,
    y: jax.Array,
    *,
    method: Method,
    beta: jax.Array | float,
    free_key: jax.Array | None,
    nudge_key: jax.Array | None,
) -> tuple[dict[str, tuple[jax.Array, jax.Array]], Points]:
    """The estimate of ``method`` from settled points, as the ADC reads them (traceable:
    the vectorised sweep core vmaps it). **Returns** ``(estimate, points as read)``."""
    xbars = chip_couplings(chip)  # with each conv crossbar's geometry
    p_read = measure(chip, pts)  # type: ignore[arg-type]
    post = conv_post(chip, pts.states, nudge_key)  # None without conv crossbars
    if method == "classic":
        f_read = measure(chip, free)
        est = classic_estimate(
            f_read.states,
            f_read.logits,
            p_read.states,
            p_read.logits,
            y,
            beta,  # type: ignore[arg-type]
            xbars,
            free_post=conv_post(chip, free.states, free_key),
            post=post,
        )
    else:
        est = hep_estimate(p_read.states, p_read.logits, y, pts.betas, xbars, post)
    return est, p_read  # type: ignore[return-value]


def nudged_estimate(
    chip: Chip,
    free: SettleOut,
    y: jax.Array,
    *,
    method: Method,
    points: int,
    beta: float,
    start: Literal["free", "previous"] = "free",
    free_key: jax.Array | None = None,
    nudge_key: jax.Array | None = None,
) -> Nudged:
    """Settle ``method``'s nudge schedule from the free state and form its estimate, exactly
    as :func:`gradcheck` does (one free phase can serve many ``(method, points, beta)``).

    ``free``: the free phase of ``chip`` on the DAC'd inputs; ``y`` ``(B, classes)`` one-hot;
    ``free_key``/``nudge_key``: the phases' noise keys (``None`` on a noiseless chip).
    **Raises** ``ValueError`` for hEP with fewer than 2 points.
    """
    cfg = chip.config
    dtype = free.states[0].dtype
    if method == "classic":
        betas: tuple[complex, ...] = (complex(beta),) * points
        n = 1
    else:
        n = 2 if method == "symmetric" else points
        if n < 2:
            raise ValueError(f"method {method!r} needs at least 2 points, got {n}")
        betas = circle_betas(beta, n)
    pts = nudge_phases(
        chip,
        free,
        y,
        *nudge_schedule(betas, noisy=chip.noisy, start=start, dtype=dtype),
        steps=cfg.nudge_steps,
        key=nudge_key,
    )
    est, p_read = points_estimate(
        chip, free, pts, y, method=method, beta=beta, free_key=free_key, nudge_key=nudge_key
    )
    check = circle_check(p_read.states[1:], pts.betas, per_period=n)
    return Nudged(est, pts, check, n)


def flat_grads(chip: Chip, g: dict[str, tuple[jax.Array, jax.Array]]) -> dict[str, np.ndarray]:
    """Per crossbar, its weights and (where it has one) bias gradient flattened together."""
    out = {}
    for n in chip.config.crossbar_names:
        w, b = g[n]
        parts = [np.asarray(w).ravel()]
        if chip.crossbars[n].has_bias:
            parts.append(np.asarray(b).ravel())
        out[n] = np.concatenate(parts)
    return out


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
    refuse_non_holomorphic(chip, method, points)
    x = dac(chip, x)
    k_free = k_free if chip.noisy else None
    k_nudge = k_nudge if chip.noisy else None

    truth = ground_truth(
        chip, x, y, steps=cfg.free_steps, max_adjoint_iterations=max(20 * cfg.free_steps, 2000)
    )
    free = free_phase(chip, x, steps=cfg.free_steps, key=k_free)
    names = cfg.crossbar_names
    est, pts, check, per_period = nudged_estimate(
        chip,
        free,
        y,
        method=method,
        points=points,
        beta=beta,
        start=start,
        free_key=k_free,
        nudge_key=k_nudge,
    )
    ratio = np.asarray(check.ratio, np.float64)
    e, t = flat_grads(chip, est), flat_grads(chip, truth.grads)
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
        circle_alarm=bool(circle_flags(check.batch_ratio, per_period)),
        circle_flagged=int(np.sum(np.asarray(circle_flags(ratio, per_period)))),
        circle_threshold=circle_threshold(per_period),
        estimate=e,
        truth=t,
    )
