"""The hEP controller: one training step through any driver.

A step: clamp the batch, settle free and at the nudge schedule (one driver call), refuse
states that did not settle or are not finite, form the local learning signal, turn it into
weight changes on the digital side (optax), and send them to the chip, as parallel outer
products when the chip has them and plain SGD is used, else as programmed deltas.

The controller's state is one value (:class:`ControllerState`, ``hep/_state.py``): a step
takes it and returns the next, and a checkpoint stores it as it is. Its settings are
:class:`HepConfig` (``hep/_plan.py``; the defaults live in ``analog_hep/_hep_settings.py``).

This module never imports the emulator or the device physics: it drives a real chip the same
way. It asks only what ``describe().capabilities`` says the chip can do, and says why when it
has to fall back (no complex nudges -> symmetric EP; unsettled complex points -> N = 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..drivers import Driver, NudgeSchedule, Settled, UpdateReport
from ._circle import circle_check, circle_threshold
from ._estimators import Coupling, couplings
from ._mixed_precision import mixed_precision, pulse_factors
from ._plan import HepConfig, Plan, plan, with_beta
from ._signals import Factors, dense, outer_factors, point_weights
from ._state import ControllerState, init_state, state_arrays, state_from_arrays

__all__ = ["Controller", "ControllerState", "HepConfig", "StepReport", "plan"]


@dataclass
class StepReport:
    """One training step: free-phase loss (sum over the samples whose loss is finite),
    correct count, ``nonfinite`` samples whose free-phase loss is NaN or inf, samples
    used, samples dropped (unsettled or not finite), whether the N = 2 fallback was used,
    whether the update was refused, and what the chip applied; ``rescued`` samples whose
    points did not settle and whose estimate came from the guard's second settle (counted in
    ``used``).

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
    rescued: int = 0


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


def _points(settled: Settled, method: str) -> tuple[tuple[Any, ...], Any, Any, Any, Any]:
    """States, logits, betas, weights and conv post-synaptic signals of all points entering
    the estimate (traced)."""
    betas = jnp.asarray(settled.betas)
    post = settled.post
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
        if post is not None:
            post = {
                n: jnp.concatenate([jnp.asarray(settled.free_post[n])[None], jnp.asarray(v)])
                for n, v in post.items()
            }
        k = betas.shape[0]
        weights = jnp.concatenate([jnp.full(1, 1.0) / beta, jnp.full(k, -1.0 / k) / beta])
        all_betas = jnp.concatenate([jnp.zeros(1), betas.real])
        return states, logits, all_betas.astype(jnp.float32), weights.astype(jnp.float32), post
    w = point_weights(betas, method, radius=jnp.abs(betas[0]))
    return tuple(jnp.asarray(s) for s in settled.states), settled.logits, betas, w, post


@partial(jax.jit, static_argnames=("method", "crossbars", "per_period"))
def _signal(
    settled: Settled,
    y: jax.Array,
    mask: jax.Array,
    *,
    method: str,
    crossbars: tuple[Coupling, ...],
    per_period: int = 0,
) -> tuple[Factors, jax.Array, jax.Array, jax.Array]:
    """Factors ``{name: (U, V)}`` of the estimate, whether all of them are finite, and the
    circle diagnostic of the same points: ``rho_b`` ``(B,)`` and the batch ``rho`` (``NaN``
    unless ``per_period`` >= 3; a weighted sum over the points, cheap next to the factors)."""
    states, logits, betas, w, post = _points(settled, method)
    factors = outer_factors(states, logits, betas, w, y, mask, crossbars, post=post)
    finite = jnp.all(
        jnp.stack([jnp.isfinite(u).all() & jnp.isfinite(v).all() for u, v in factors.values()])
    )
    check = circle_check(states[1:], betas, mask, per_period=per_period)
    return factors, finite, check.ratio, check.batch_ratio


class Controller:
    """Trains a chip through its driver with hEP (or classic/symmetric/online EP).

    **Arguments:** ``driver`` any :class:`analog_hep.drivers.Driver`; ``cfg`` a
    :class:`HepConfig`. ``self.messages`` says what was changed from the request and why.

    A thin object around a value: what a step changes is one :class:`ControllerState`
    (``self.state``); :meth:`step` takes a state and returns the next one, :meth:`train_step`
    keeps it here. Crossbars are paired with the chip's layers by their description's
    ``pre``/``post`` (``describe().crossbars``), never by name or position.
    """

    def __init__(self, driver: Driver, cfg: HepConfig):
        if cfg.schedule == "cosine" and cfg.total_steps < 1:
            raise ValueError("a cosine schedule decays over the run: give total_steps >= 1")
        self.driver = driver
        self.cfg = cfg
        self.desc = driver.describe()
        self._plan = plan(self.desc, cfg)
        self.messages = self._plan.messages
        self.crossbars = couplings(self.desc.crossbars)
        self.names = tuple(c.name for c in self.crossbars)
        if cfg.schedule == "cosine":
            self.lr_fn = optax.cosine_decay_schedule(cfg.lr, max(cfg.total_steps, 1))
        else:
            self.lr_fn = optax.constant_schedule(cfg.lr)
        self.optimizer = optax.sgd(self.lr_fn, momentum=cfg.momentum or None)
        steps = self._plan.pulse_steps
        if steps is not None:
            # The accumulator's state is part of the optimizer's: checkpoints carry it.
            self.optimizer = optax.chain(
                self.optimizer,
                mixed_precision(
                    steps,
                    threshold=cfg.mp_threshold,
                    accumulator_bits=cfg.mp_accumulator_bits,
                    max_pulses=self._plan.max_pulses,
                ),
            )
        shapes = {c.name: (c.n_out, c.n_in + 1) for c in self.desc.crossbars}
        self.state: ControllerState = init_state(self.optimizer, shapes, cfg.beta)
        self._planned = cfg.beta  # the |beta| of self._plan

    # -- the state's fields, for reading ---------------------------------------------------

    @property
    def beta(self) -> float:
        """``|beta|`` of the next step."""
        return self.state.beta

    @property
    def step_count(self) -> int:
        """Updates applied so far."""
        return self.state.step_count

    @property
    def opt_state(self) -> optax.OptState:
        """The optimizer's state."""
        return self.state.opt_state

    @property
    def plan(self) -> Plan:
        """The plan of the next step (on the circle of the state's ``|beta|``)."""
        return self.plan_at(self.state.beta)

    def plan_at(self, beta: float) -> Plan:
        """The plan on a circle of radius ``beta`` (schedules change, nothing else)."""
        if beta != self._planned:
            self._plan = with_beta(self._plan, self.cfg, beta)
            self._planned = beta
        return self._plan

    def set_beta(self, beta: float) -> None:
        """Train on a circle of radius ``beta`` from the next step on."""
        self.state = self.state._replace(beta=float(beta))

    # -- the learning signal -----------------------------------------------------------------

    def gradient(self, settled: Settled, y: Any, mask: np.ndarray, method: str) -> Factors:
        """Factors ``{name: (U, V)}`` of the estimate of ``dL/dW`` (bias as last column)."""
        return self._signal(settled, y, mask, method)[0]

    def _signal(
        self, settled: Settled, y: Any, mask: np.ndarray, method: str
    ) -> tuple[Factors, jax.Array, jax.Array, jax.Array]:
        # Points per turn of the circle, for the diagnostic (< 3: none).
        per_period = self._plan.points if method in ("hep", "online") else 0
        return _signal(
            settled,
            jnp.asarray(y, jnp.float32),
            jnp.asarray(mask, jnp.float32),
            method=method,
            crossbars=self.crossbars,
            per_period=per_period if self.cfg.circle_check != "off" else 0,
        )

    def _react(
        self, state: ControllerState, report: StepReport, ratio: np.ndarray, keep: np.ndarray
    ) -> tuple[float, bool]:
        """Count flagged samples; on a flagged batch warn once, or shrink ``|beta|``.
        **Returns** the ``|beta|`` of the next step and whether the warning was given."""
        cfg = self.cfg
        threshold = circle_threshold(self._plan.points, cfg.circle_bias)
        report.circle_flagged = int(np.sum(keep & (ratio > threshold)))
        report.circle_alarm = report.circle_ratio > threshold
        if not report.circle_alarm:
            return state.beta, state.circle_warned
        what = (
            f"step {state.step_count}: the nudge circle |beta| = {state.beta:g} probably "
            f"encloses a singularity of the fixed point: |c_-1|/|c_1| = "
            f"{report.circle_ratio:.3g} > {threshold:.3g} ({report.circle_flagged} of "
            f"{int(keep.sum())} samples above), the hEP estimate is biased"
        )
        if cfg.circle_check == "shrink":
            floor = cfg.circle_beta_floor if cfg.circle_beta_floor is not None else cfg.beta / 8
            new = max(state.beta / 2, floor)
            if new < state.beta:
                report.notes.append(f"{what}; |beta| -> {new:g} for the next steps")
                return float(new), state.circle_warned
        if not state.circle_warned:
            more = "" if cfg.circle_check == "warn" else f" (|beta| at its floor {state.beta:g})"
            report.notes.append(
                f"{what}{more}; the record's steps/circle_alarm counts every flagged step"
            )
        return state.beta, True

    # -- steps -------------------------------------------------------------------------------

    def train_step(self, x: Any, y: Any) -> StepReport:
        """One step on a batch ``x`` ``(B, n_0)``, one-hot ``y`` ``(B, classes)``; the
        controller's state moves on (:meth:`step` on ``self.state``)."""
        report, self.state = self.step(self.state, x, y)
        return report

    def step(self, state: ControllerState, x: Any, y: Any) -> tuple[StepReport, ControllerState]:
        """One step from ``state`` on a batch ``x`` ``(B, n_0)``, one-hot ``y``
        ``(B, classes)``: what happened, and the state after it (the chip's weights change
        through the driver; ``state`` itself is not modified)."""
        report, new = self._step(state, x, y)
        return report, new._replace(
            refused=new.refused + int(report.refused),
            dropped=new.dropped + report.dropped,
            fallback=new.fallback + int(report.fallback),
        )

    def _step(self, state: ControllerState, x: Any, y: Any) -> tuple[StepReport, ControllerState]:
        """:meth:`step` without the totals."""
        p = self.plan_at(state.beta)
        self.driver.load_inputs(x, y)
        settled = self._run(p.schedule, p)
        y_dev = jnp.asarray(y, jnp.float32)
        b = int(np.shape(x)[0])
        tol = np.float32(self.cfg.residual_tol)
        method = p.method
        # Online points follow a rotating nudge and are never at a fixed point by design
        # (T_dyn << T_osc keeps them close): only their finiteness is checked, as for every
        # method with the keep_finite guard (the paper's code).
        loose = method == "online" or p.guard == "keep_finite"
        pts_tol = np.float32(np.inf) if loose else tol
        loss_sum, correct, nonfinite, free_ok, pts_ok = jax.device_get(
            _guard(settled, y_dev, tol, pts_tol, loss=self.desc.loss)
        )
        fallback = False
        failing = free_ok & ~pts_ok
        if p.fallback is not None and failing.mean() > self.cfg.fallback_fraction:
            # Complex points that do not settle for many samples usually mean the circle
            # crosses an unstable region of the beta plane: the real pair +-|beta| is safer
            # (paper Fig. 2b). A few failing samples are dropped or rescued instead (below).
            settled = self.driver.run_schedule(p.fallback)
            _, _, _, free_ok, pts_ok = jax.device_get(
                _guard(settled, y_dev, tol, tol, loss=self.desc.loss)
            )
            method, fallback = "symmetric", True
        keep = free_ok & pts_ok
        rescue: tuple[Settled, np.ndarray] | None = None
        if not fallback and p.rescue is not None and (free_ok & ~pts_ok).any():
            # The guard's second settle of the batch (the symmetric pair, or the circle at
            # |beta| / 2): it gives the estimate of the samples whose points did not settle.
            again = self._run(p.rescue, p)
            _, _, _, free2, pts2 = jax.device_get(
                _guard(again, y_dev, tol, tol, loss=self.desc.loss)
            )
            saved = free_ok & ~pts_ok & free2 & pts2
            if saved.any():
                rescue = (again, saved)
        rescued = 0 if rescue is None else int(rescue[1].sum())
        used = int(keep.sum()) + rescued
        report = StepReport(float(loss_sum), int(correct), b, used, b - used, fallback, False)
        report.beta = state.beta
        report.nonfinite = int(nonfinite)
        report.rescued = rescued
        if used == 0:
            report.refused = True
            return report, state
        if keep.any():
            factors, finite, ratio, batch_ratio = self._signal(settled, y_dev, keep, method)
            finite, ratio, batch_ratio = jax.device_get((finite, ratio, batch_ratio))
        else:
            factors, finite, ratio, batch_ratio = {}, True, np.zeros(b), np.nan
        if rescue is not None:
            more, finite2, _, _ = self._signal(rescue[0], y_dev, rescue[1], p.rescue_method)
            factors = _merge(factors, int(keep.sum()), more, rescued)
            finite = bool(finite) and bool(jax.device_get(finite2))
        report.circle_ratio = float(batch_ratio)
        if not bool(finite):
            report.refused = True
            return report, state
        beta, warned = state.beta, state.circle_warned
        if not math.isnan(report.circle_ratio):
            beta, warned = self._react(state, report, np.asarray(ratio), keep)
        opt_state = state.opt_state
        if p.pulse_steps is not None:
            # Mixed precision: whole pulses from the accumulator, one request per crossbar.
            updates, opt_state = self.optimizer.update(dense(factors), state.opt_state)
            for name in self.names:
                if p.use_outer_product:
                    rows, cols = pulse_factors(updates[name])
                    report.updates.append(self.driver.apply_outer_product(name, rows, cols, lr=1.0))
                else:
                    report.updates.append(self.driver.program_delta(name, updates[name]))
        elif p.use_outer_product:
            # Plain SGD: the chip applies the factors themselves; the dense gradient is never
            # formed on the digital side.
            lr = float(self.lr_fn(state.step_count))
            for name in self.names:
                u, v = factors[name]
                report.updates.append(self.driver.apply_outer_product(name, u, v, lr=-lr))
        else:
            updates, opt_state = self.optimizer.update(dense(factors), state.opt_state)
            for name in self.names:
                report.updates.append(self.driver.program_delta(name, updates[name]))
        return report, state._replace(
            opt_state=opt_state,
            step_count=state.step_count + 1,
            beta=beta,
            circle_warned=warned,
        )

    def _run(self, schedule: NudgeSchedule, p: Plan) -> Settled:
        """Settle ``schedule``; the ramp points of a sequential schedule (those before its
        circle) are left out of what is returned."""
        settled = self.driver.run_schedule(schedule)
        ramp = len(schedule.betas) - p.points if schedule.start == "previous" else 0
        if p.method != "hep" or ramp <= 0:
            return settled
        return settled._replace(
            betas=settled.betas[ramp:],
            states=tuple(s[ramp:] for s in settled.states),
            logits=None if settled.logits is None else settled.logits[ramp:],
            residual=settled.residual[ramp:],
            post=None if settled.post is None else {n: v[ramp:] for n, v in settled.post.items()},
        )

    def evaluate(self, x: Any, y: Any) -> tuple[float, int, int]:
        """Free phase only, on a batch: ``(loss sum over finite samples, correct count,
        samples with a non-finite loss)``; all-zero rows of ``y`` are padding."""
        self.driver.load_inputs(x, None)
        settled = self.driver.run_schedule(NudgeSchedule(betas=()))
        return free_metrics(settled, y, self.desc.loss)

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The state as named arrays, as a checkpoint stores it (:func:`state_arrays`)."""
        return state_arrays(self.state)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a checkpoint's arrays; keys an older record lacks keep this
        controller's values (:func:`state_from_arrays`)."""
        self.state = state_from_arrays(state, self.state)


def _merge(a: Factors, n_a: int, b: Factors, n_b: int) -> Factors:
    """Factors of the mean over ``n_a + n_b`` samples from those of two means over ``n_a``
    and ``n_b`` samples: ``U`` rows weighted by each part's share, rows stacked."""
    if not a:
        return b
    total = n_a + n_b
    out: Factors = {}
    for name, (u, v) in a.items():
        u2, v2 = b[name]
        out[name] = (
            jnp.concatenate([u * (n_a / total), u2 * (n_b / total)]),
            jnp.concatenate([v, v2]),
        )
    return out


def epochs_to_steps(epochs: int, n_train: int, batch: int) -> int:
    """Total optimizer steps of a run (drop-last batching)."""
    return epochs * math.floor(n_train / batch)
