"""The hEP controller: one training step through any driver.

A step: clamp the batch, settle free and at the nudge schedule (one driver call), refuse
states that did not settle or are not finite, form the local learning signal, turn it into
weight changes on the digital side (optax), and send them to the chip, as parallel outer
products when the chip has them and plain SGD is used, else as programmed deltas.

This module never imports the emulator or the device physics: it drives a real chip the same
way. It asks only what ``describe().capabilities`` says the chip can do, and says why when it
has to fall back (no complex nudges -> symmetric EP; unsettled complex points -> N = 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..drivers import ChipDescription, Driver, NudgeSchedule, Settled, UpdateReport
from ..errors import UnsupportedCapability
from ._circle import CIRCLE_BIAS, circle_check, circle_threshold
from ._schedules import circle_betas
from ._signals import Factors, dense, outer_factors, point_weights

__all__ = ["Controller", "HepConfig", "StepReport", "plan"]

Method = Literal["hep", "classic", "symmetric", "online"]


@dataclass(frozen=True)
class HepConfig:
    """Learning settings (every number is a decision: no defaults).

    ``lr`` learning rate; ``momentum`` (0 for plain SGD); ``schedule`` ``constant`` or
    ``cosine`` over ``total_steps``; ``residual_tol`` largest settle residual (activity
    units) of a usable state; ``update``: ``auto`` (outer products when the chip has them and
    plain SGD is used, else programmed deltas), ``outer_product`` or ``program``;
    ``fallback_fraction``: when more than this fraction of the samples have complex points
    that did not settle, the step is redone with real nudges (N = 2); below it, those
    samples are dropped.

    The circle diagnostic (``analog_hep.hep._circle``; hEP and online with ``N >= 3``): a
    step is flagged when the batch ``rho = |c_{-1}| / |c_1|`` implies an aliasing bias
    ``rho^{N/(N-2)}`` above ``circle_bias`` (the circle probably encloses a singularity of
    ``s*(beta)``). ``circle_check``: ``warn`` (a note the first time; every step's figures
    go to the record), ``shrink`` (also halve ``|beta|`` for the next steps after a flagged
    step, down to ``circle_beta_floor``, default ``beta / 8``) or ``off`` (not computed).
    Warn is the default: shrinking trades the bias for noise (the reason for a finite
    ``|beta|``), and under neuron noise ``rho`` has a noise floor that would shrink
    ``|beta|`` for nothing.
    """

    method: Method
    points: int
    beta: float
    lr: float
    momentum: float
    schedule: Literal["constant", "cosine"]
    total_steps: int
    residual_tol: float
    update: Literal["auto", "outer_product", "program"]
    online_periods: int = 3
    online_steps: int = 10
    fallback_fraction: float = 0.5
    circle_check: Literal["warn", "shrink", "off"] = "warn"
    circle_bias: float = CIRCLE_BIAS
    circle_beta_floor: float | None = None


@dataclass(frozen=True)
class Plan:
    """What the controller will ask the chip for, and why it differs from the request."""

    method: Method
    points: int
    schedule: NudgeSchedule
    fallback: NudgeSchedule | None
    use_outer_product: bool
    messages: tuple[str, ...]


def _schedule(method: Method, points: int, beta: float, cfg: HepConfig) -> NudgeSchedule:
    if method == "classic":
        return NudgeSchedule(betas=(complex(beta),) * points)
    if method == "symmetric":
        return NudgeSchedule(betas=circle_betas(beta, 2))
    if method == "online":
        return NudgeSchedule(
            betas=circle_betas(beta, points) * cfg.online_periods,
            nudge_steps=cfg.online_steps,
            start="previous",
        )
    return NudgeSchedule(betas=circle_betas(beta, points))


def plan(desc: ChipDescription, cfg: HepConfig) -> Plan:
    """Choose schedules and the update path from the chip's capabilities."""
    caps = desc.capabilities
    messages: list[str] = []
    method, points = cfg.method, cfg.points
    if method in ("hep", "online") and points > 2 and not caps.complex_nudges:
        messages.append(
            f"chip {desc.name!r} cannot settle at complex beta (no complex_nudges capability): "
            f"training with symmetric EP (real nudges +-{cfg.beta}) instead of {method} N={points}"
        )
        method, points = "symmetric", 2
    if method == "online" and not caps.previous_start:
        messages.append(
            "chip cannot settle from the previous point: online hEP needs it; training with "
            "parallel hEP points instead"
        )
        method = "hep"
    if method == "hep" and points < 2:
        raise ValueError("hEP needs at least 2 points (use --method classic for N = 1)")
    if caps.beta_max is not None and cfg.beta > caps.beta_max:
        raise UnsupportedCapability(
            f"|beta| = {cfg.beta} exceeds what the chip can apply ({caps.beta_max})"
        )
    sched = _schedule(method, points, cfg.beta, cfg)
    fallback = None
    if method in ("hep", "online") and points > 2:
        fallback = _schedule("symmetric", 2, cfg.beta, cfg)
    plain_sgd = cfg.momentum == 0.0
    if cfg.update == "outer_product":
        if not caps.outer_product_update:
            raise UnsupportedCapability("the chip has no parallel outer-product update")
        if not plain_sgd:
            raise UnsupportedCapability(
                "momentum makes the update a dense matrix, not a sum of outer products: use "
                "--update program or momentum 0"
            )
        outer = True
    elif cfg.update == "program":
        if not caps.program_delta:
            raise UnsupportedCapability("the chip cannot program per-device deltas")
        outer = False
    else:
        outer = caps.outer_product_update and plain_sgd
        if not outer and not caps.program_delta:
            raise UnsupportedCapability(
                "the chip can neither apply outer products nor program deltas"
            )
    return Plan(method, points, sched, fallback, outer, tuple(messages))


def _with_beta(p: Plan, cfg: HepConfig, beta: float) -> Plan:
    """The same plan on a circle of radius ``beta`` (the shrink reaction)."""
    fallback = None if p.fallback is None else _schedule("symmetric", 2, beta, cfg)
    return replace(p, schedule=_schedule(p.method, p.points, beta, cfg), fallback=fallback)


@dataclass
class StepReport:
    """One training step: free-phase loss (sum over the samples whose loss is finite),
    correct count, ``nonfinite`` samples whose free-phase loss is NaN or inf, samples
    used, samples dropped (unsettled or not finite), whether the N = 2 fallback was used,
    whether the update was refused, and what the chip applied.

    Circle diagnostic: ``beta`` the ``|beta|`` of this step; ``circle_ratio`` the batch
    ``rho`` (``NaN`` when not computed: N <= 2, classic, fallback, off, refused);
    ``circle_alarm`` whether it is above the threshold (the step is flagged);
    ``circle_flagged`` used samples whose own ``rho_b`` is; ``notes`` what the controller
    wants logged (the first flagged step, a shrink of ``|beta|``)."""

    loss_sum: float
    correct: int
    batch: int
    used: int
    dropped: int
    fallback: bool
    refused: bool
    updates: list[UpdateReport] = field(default_factory=list)
    nonfinite: int = 0
    beta: float = math.nan
    circle_ratio: float = math.nan
    circle_alarm: bool = False
    circle_flagged: int = 0
    notes: list[str] = field(default_factory=list)


def _free_terms(
    settled: Settled, y: jax.Array, loss: str
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Free-phase loss sum over the samples whose loss is finite, correct count, and count
    of samples whose loss is not finite (traced). Rows of ``y`` that are all zero are padding
    and count in none of them; a sample without a finite loss has no prediction either."""
    if loss == "cross_entropy":
        logits = jnp.asarray(settled.free_logits).real
        # log_softmax, not log(softmax): in float32 softmax underflows to 0 once the logits
        # spread by more than ~100, and log(0) made finite logits give an infinite loss.
        losses = -jnp.sum(y * jax.nn.log_softmax(logits, axis=-1), axis=-1)
        pred = jnp.argmax(logits, axis=-1)
    else:
        out = jnp.asarray(settled.free_states[-1]).real
        losses = 0.5 * jnp.sum((out - y) ** 2, axis=-1)
        pred = jnp.argmax(out, axis=-1)
    real = jnp.any(y != 0, axis=-1)
    finite = jnp.isfinite(losses)
    loss_sum = jnp.sum(jnp.where(finite & real, losses, 0.0))
    correct = jnp.sum((pred == jnp.argmax(y, axis=-1)) & finite & real)
    return loss_sum, correct, jnp.sum(~finite & real)


_free_counts = jax.jit(_free_terms, static_argnames=("loss",))
"""Compiled :func:`_free_terms`: ``(loss_sum, correct, nonfinite)`` as device scalars (no
transfer, so a caller can count every step without waiting for it)."""


def free_metrics(settled: Settled, y: np.ndarray, loss: str) -> tuple[float, int, int]:
    """Free phase of a batch: loss sum over the samples whose loss is finite, number of
    correct predictions, and number of samples whose loss is not finite (NaN or inf)."""
    loss_sum, correct, nonfinite = jax.device_get(_free_counts(settled, jnp.asarray(y), loss=loss))
    return float(loss_sum), int(correct), int(nonfinite)


def _settled_ok(residual: Any, states: tuple[Any, ...], tol: jax.Array) -> jax.Array:
    """``(B,)`` bool: every point of the sample settled below ``tol`` with finite states
    (``tol = inf`` checks finiteness only)."""
    r = jnp.asarray(residual)
    ok = jnp.isfinite(r) & (r <= tol)
    ok = ok.reshape(-1, ok.shape[-1]).all(axis=0)
    for s in states[1:]:
        fin = jnp.isfinite(jnp.asarray(s)).all(axis=-1)
        ok &= fin.reshape(-1, fin.shape[-1]).all(axis=0)
    return ok


@partial(jax.jit, static_argnames=("loss",))
def _guard(
    settled: Settled, y: jax.Array, tol: jax.Array, pts_tol: jax.Array, *, loss: str
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Free-phase loss sum (finite samples), correct count, count of samples whose loss is
    not finite, and which samples settled (free, points): one compiled call and one transfer
    per step, whatever the driver returned."""
    loss_sum, correct, nonfinite = _free_terms(settled, y, loss)
    free_ok = _settled_ok(settled.free_residual, settled.free_states, tol)
    pts_ok = _settled_ok(settled.residual, settled.states, pts_tol)
    return loss_sum, correct, nonfinite, free_ok, pts_ok


def _points(settled: Settled, method: str) -> tuple[tuple[Any, ...], Any, Any, Any]:
    """States, logits, betas and weights of all points entering the estimate (traced)."""
    betas = jnp.asarray(settled.betas)
    if method == "classic":
        beta = betas[0].real
        states = tuple(
            jnp.concatenate([jnp.asarray(f)[None], jnp.asarray(s)])
            for f, s in zip(settled.free_states, settled.states, strict=True)
        )
        logits = None
        if settled.logits is not None:
            logits = jnp.concatenate(
                [jnp.asarray(settled.free_logits)[None], jnp.asarray(settled.logits)]
            )
        k = betas.shape[0]
        weights = jnp.concatenate([jnp.full(1, 1.0) / beta, jnp.full(k, -1.0 / k) / beta])
        all_betas = jnp.concatenate([jnp.zeros(1), betas.real])
        return states, logits, all_betas.astype(jnp.float32), weights.astype(jnp.float32)
    w = point_weights(betas, method, radius=jnp.abs(betas[0]))
    return tuple(jnp.asarray(s) for s in settled.states), settled.logits, betas, w


@partial(jax.jit, static_argnames=("method", "names", "has_bias", "per_period"))
def _signal(
    settled: Settled,
    y: jax.Array,
    mask: jax.Array,
    *,
    method: str,
    names: tuple[str, ...],
    has_bias: tuple[bool, ...],
    per_period: int = 0,
) -> tuple[Factors, jax.Array, jax.Array, jax.Array]:
    """Factors ``{name: (U, V)}`` of the estimate, whether all of them are finite, and the
    circle diagnostic of the same points: ``rho_b`` ``(B,)`` and the batch ``rho`` (``NaN``
    unless ``per_period`` >= 3; a weighted sum over the points, cheap next to the factors)."""
    states, logits, betas, w = _points(settled, method)
    factors = outer_factors(states, logits, betas, w, y, mask, names=names, has_bias=has_bias)
    finite = jnp.all(
        jnp.stack([jnp.isfinite(u).all() & jnp.isfinite(v).all() for u, v in factors.values()])
    )
    check = circle_check(states[1:], betas, mask, per_period=per_period)
    return factors, finite, check.ratio, check.batch_ratio


class Controller:
    """Trains a chip through its driver with hEP (or classic/symmetric/online EP).

    **Arguments:** ``driver`` any :class:`analog_hep.drivers.Driver`; ``cfg`` a
    :class:`HepConfig`. ``self.messages`` says what was changed from the request and why.
    The optimizer state (``opt_state``) and ``step_count`` are part of a checkpoint.
    """

    def __init__(self, driver: Driver, cfg: HepConfig):
        self.driver = driver
        self.cfg = cfg
        self.desc = driver.describe()
        self.plan = plan(self.desc, cfg)
        self.messages = self.plan.messages
        self.names = self.desc.crossbar_names
        self.has_bias = tuple(c.has_bias for c in self.desc.crossbars)
        if cfg.schedule == "cosine":
            self.lr_fn = optax.cosine_decay_schedule(cfg.lr, max(cfg.total_steps, 1))
        else:
            self.lr_fn = optax.constant_schedule(cfg.lr)
        self.optimizer = optax.sgd(self.lr_fn, momentum=cfg.momentum or None)
        shapes = {c.name: (c.n_out, c.n_in + 1) for c in self.desc.crossbars}
        self.opt_state = self.optimizer.init({n: jnp.zeros(s) for n, s in shapes.items()})
        self.step_count = 0
        # |beta| of the next step (the shrink reaction lowers it; part of a checkpoint).
        self.beta = cfg.beta
        self.circle_warned = False

    # -- the learning signal -----------------------------------------------------------------

    def gradient(self, settled: Settled, y: Any, mask: np.ndarray, method: str) -> Factors:
        """Factors ``{name: (U, V)}`` of the estimate of ``dL/dW`` (bias as last column)."""
        return self._signal(settled, y, mask, method)[0]

    def _signal(
        self, settled: Settled, y: Any, mask: np.ndarray, method: str
    ) -> tuple[Factors, jax.Array, jax.Array, jax.Array]:
        # Points per turn of the circle, for the diagnostic (< 3: none).
        per_period = self.plan.points if method in ("hep", "online") else 0
        return _signal(
            settled,
            jnp.asarray(y, jnp.float32),
            jnp.asarray(mask, jnp.float32),
            method=method,
            names=self.names,
            has_bias=self.has_bias,
            per_period=per_period if self.cfg.circle_check != "off" else 0,
        )

    def _react(self, report: StepReport, ratio: np.ndarray, keep: np.ndarray) -> None:
        """Count flagged samples; on a flagged batch warn once, or shrink ``|beta|``."""
        cfg = self.cfg
        threshold = circle_threshold(self.plan.points, cfg.circle_bias)
        report.circle_flagged = int(np.sum(keep & (ratio > threshold)))
        report.circle_alarm = report.circle_ratio > threshold
        if not report.circle_alarm:
            return
        what = (
            f"step {self.step_count}: the nudge circle |beta| = {self.beta:g} probably "
            f"encloses a singularity of the fixed point: |c_-1|/|c_1| = "
            f"{report.circle_ratio:.3g} > {threshold:.3g} ({report.circle_flagged} of "
            f"{int(keep.sum())} samples above), the hEP estimate is biased"
        )
        if cfg.circle_check == "shrink":
            floor = cfg.circle_beta_floor if cfg.circle_beta_floor is not None else cfg.beta / 8
            new = max(self.beta / 2, floor)
            if new < self.beta:
                report.notes.append(f"{what}; |beta| -> {new:g} for the next steps")
                self.set_beta(new)
                return
        if not self.circle_warned:
            more = "" if cfg.circle_check == "warn" else f" (|beta| at its floor {self.beta:g})"
            report.notes.append(
                f"{what}{more}; the record's steps/circle_alarm counts every flagged step"
            )
            self.circle_warned = True

    def set_beta(self, beta: float) -> None:
        """Train on a circle of radius ``beta`` from the next step on."""
        self.beta = float(beta)
        self.plan = _with_beta(self.plan, self.cfg, self.beta)

    # -- steps -------------------------------------------------------------------------------

    def train_step(self, x: Any, y: Any) -> StepReport:
        """One step on a batch ``x`` ``(B, n_0)``, one-hot ``y`` ``(B, classes)``."""
        self.driver.load_inputs(x, y)
        settled = self.driver.run_schedule(self.plan.schedule)
        y_dev = jnp.asarray(y, jnp.float32)
        b = int(np.shape(x)[0])
        tol = self.cfg.residual_tol
        method = self.plan.method
        # Online points follow a rotating nudge and are never at a fixed point by design
        # (T_dyn << T_osc keeps them close): only their finiteness is checked.
        pts_tol = np.inf if method == "online" else tol
        loss_sum, correct, nonfinite, free_ok, pts_ok = jax.device_get(
            _guard(settled, y_dev, np.float32(tol), np.float32(pts_tol), loss=self.desc.loss)
        )
        fallback = False
        failing = free_ok & ~pts_ok
        if self.plan.fallback is not None and failing.mean() > self.cfg.fallback_fraction:
            # Complex points that do not settle for many samples usually mean the circle
            # crosses an unstable region of the beta plane: the real pair +-|beta| is safer
            # (paper Fig. 2b). A few failing samples are dropped instead (below).
            settled = self.driver.run_schedule(self.plan.fallback)
            _, _, _, free_ok, pts_ok = jax.device_get(
                _guard(settled, y_dev, np.float32(tol), np.float32(tol), loss=self.desc.loss)
            )
            method, fallback = "symmetric", True
        keep = free_ok & pts_ok
        report = StepReport(
            float(loss_sum), int(correct), b, int(keep.sum()), int(b - keep.sum()), fallback, False
        )
        report.beta = self.beta
        report.nonfinite = int(nonfinite)
        if not keep.any():
            report.refused = True
            return report
        factors, finite, ratio, batch_ratio = self._signal(settled, y_dev, keep, method)
        finite, ratio, batch_ratio = jax.device_get((finite, ratio, batch_ratio))
        report.circle_ratio = float(batch_ratio)
        if not bool(finite):
            report.refused = True
            return report
        if not math.isnan(report.circle_ratio):
            self._react(report, np.asarray(ratio), keep)
        if self.plan.use_outer_product:
            # Plain SGD: the chip applies the factors themselves; the dense gradient is never
            # formed on the digital side.
            lr = float(self.lr_fn(self.step_count))
            for name in self.names:
                u, v = factors[name]
                report.updates.append(self.driver.apply_outer_product(name, u, v, lr=-lr))
        else:
            updates, self.opt_state = self.optimizer.update(dense(factors), self.opt_state)
            for name in self.names:
                report.updates.append(self.driver.program_delta(name, updates[name]))
        self.step_count += 1
        return report

    def evaluate(self, x: Any, y: Any) -> tuple[float, int, int]:
        """Free phase only, on a batch: ``(loss sum over finite samples, correct count,
        samples with a non-finite loss)``; all-zero rows of ``y`` are padding."""
        self.driver.load_inputs(x, None)
        settled = self.driver.run_schedule(NudgeSchedule(betas=()))
        return free_metrics(settled, y, self.desc.loss)

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        leaves = jax.tree_util.tree_leaves(self.opt_state)
        out = {f"opt/{i}": np.asarray(a) for i, a in enumerate(leaves)}
        out["step_count"] = np.asarray(self.step_count, np.int64)
        out["beta"] = np.asarray(self.beta, np.float64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        leaves, treedef = jax.tree_util.tree_flatten(self.opt_state)
        new = [jnp.asarray(state[f"opt/{i}"]).astype(a.dtype) for i, a in enumerate(leaves)]
        self.opt_state = jax.tree_util.tree_unflatten(treedef, new)
        self.step_count = int(state["step_count"])
        if "beta" in state:  # checkpoints written before the circle diagnostic have none
            self.set_beta(float(state["beta"]))


def epochs_to_steps(epochs: int, n_train: int, batch: int) -> int:
    """Total optimizer steps of a run (drop-last batching)."""
    return epochs * math.floor(n_train / batch)
