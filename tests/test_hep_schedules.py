"""hEP nudge schedules (parallel, sequential with a ramp) and the guard's options: which
schedule a chip gets, what the driver is asked for, and that no non-finite state ever
reaches an update whatever the guard."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _hep_helpers import hep_config

from analog_hep.drivers import NudgeSchedule
from analog_hep.emulator import EmulatorDriver
from analog_hep.hep import Controller, dense
from analog_hep.hep._controller import _merge
from analog_hep.studies import random_batch
from analog_hep.studies.sweeps._overrides import with_overrides


def _noisy(circuit, noise: float = 0.02):
    return dataclasses.replace(circuit, spec=with_overrides(circuit.spec, noise=noise))


class Recording(EmulatorDriver):
    """The emulator, keeping every schedule it was asked to settle."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[NudgeSchedule] = []

    def run_schedule(self, schedule: NudgeSchedule):
        self.asked.append(schedule)
        return super().run_schedule(schedule)


class NoPreviousStart(EmulatorDriver):
    def describe(self):
        d = super().describe()
        caps = dataclasses.replace(d.capabilities, previous_start=False)
        return dataclasses.replace(d, capabilities=caps)


class Silent(EmulatorDriver):
    """A chip that does not say whether it is noisy (as a real chip's driver may not)."""

    def describe(self):
        d = super().describe()
        return dataclasses.replace(d, extra={k: v for k, v in d.extra.items() if k != "noisy"})


def test_auto_is_sequential_on_a_noisy_chip_and_parallel_without_noise(toy):
    quiet = Controller(EmulatorDriver(toy, seed=0), hep_config(points=6))
    assert not quiet.plan.sequential and quiet.plan.schedule.start == "free"
    noisy = Controller(EmulatorDriver(_noisy(toy), seed=0), hep_config(points=6))
    assert noisy.plan.sequential and noisy.plan.schedule.start == "previous"
    # a chip that does not say is taken as noisy, as every real chip is
    assert Controller(Silent(toy, seed=0), hep_config(points=6)).plan.sequential
    # asked for explicitly, either schedule is used on either chip
    forced = Controller(EmulatorDriver(toy, seed=0), hep_config(hep_schedule="sequential"))
    assert forced.plan.sequential
    par = Controller(EmulatorDriver(_noisy(toy), seed=0), hep_config(hep_schedule="parallel"))
    assert not par.plan.sequential
    # other methods keep their schedules
    sym = Controller(EmulatorDriver(_noisy(toy), seed=0), hep_config(method="symmetric"))
    assert not sym.plan.sequential and sym.plan.schedule.start == "free"


def test_the_default_guard_keeps_finite_samples_and_rescues_only_when_asked(toy):
    for circuit in (toy, _noisy(toy)):
        plan = Controller(EmulatorDriver(circuit, seed=0), hep_config()).plan
        assert plan.guard == "keep_finite" and plan.rescue is None
    chosen = Controller(EmulatorDriver(_noisy(toy), seed=0), hep_config(guard="symmetric"))
    assert chosen.plan.guard == "symmetric" and len(chosen.plan.rescue.betas) == 2


def test_sequential_needs_previous_start_and_says_why(toy):
    ctrl = Controller(NoPreviousStart(_noisy(toy), seed=0), hep_config(hep_schedule="sequential"))
    assert not ctrl.plan.sequential
    assert any("previous point" in m for m in ctrl.messages)
    # auto on such a chip is parallel without a message: nothing asked was refused
    auto = Controller(NoPreviousStart(_noisy(toy), seed=0), hep_config())
    assert not auto.plan.sequential and not auto.messages


def test_sequential_walks_the_circle_after_a_real_ramp(toy):
    drv = Recording(_noisy(toy), seed=0)
    ctrl = Controller(drv, hep_config(points=4, beta=0.3, ramp_points=2, residual_tol=0.5))
    rep = ctrl.train_step(*random_batch(6, 4, 5, key=jax.random.PRNGKey(1)))
    assert not rep.refused and rep.used == 5
    sched = drv.asked[0]
    assert sched.start == "previous" and len(sched.betas) == 6
    # the ramp: real points between 0 and the first point of the circle (+|beta|)
    assert sched.betas[:2] == pytest.approx([0.1, 0.2]) and sched.betas[2] == 0.3
    assert all(b.imag == 0 for b in sched.betas[:3])
    assert sched.betas[3] == pytest.approx(0.3j)
    # the estimate sees the circle only
    settled = ctrl._run(sched, ctrl.plan)
    assert settled.residual.shape[0] == 4 and settled.states[1].shape[0] == 4


def test_sequential_equals_parallel_on_a_noiseless_settled_chip(toy):
    """Without noise both schedules reach the same fixed points: the same update."""
    deltas = []
    for schedule in ("parallel", "sequential"):
        drv = EmulatorDriver(toy, seed=0)
        ctrl = Controller(drv, hep_config(points=6, beta=0.2, hep_schedule=schedule))
        before = drv.read_weights()
        rep = ctrl.train_step(*random_batch(6, 4, 8, key=jax.random.PRNGKey(2)))
        assert not rep.refused and rep.used == 8
        after = drv.read_weights()
        deltas.append(np.concatenate([(after[n][0] - before[n][0]).ravel() for n in after]))
    a, b = deltas
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.9999, cos
    np.testing.assert_allclose(a, b, atol=1e-4 * np.abs(a).max())


class Faulty(EmulatorDriver):
    """Complex points of sample 0 do not settle (finite, residual 1); sample 1's complex
    points are NaN. Real schedules settle normally."""

    def run_schedule(self, schedule: NudgeSchedule):
        s = super().run_schedule(schedule)
        if not schedule.is_complex:
            return s
        res = s.residual.at[:, 0].set(1.0).at[:, 1].set(jnp.nan)
        states = tuple(st if i == 0 else st.at[:, 1].set(jnp.nan) for i, st in enumerate(s.states))
        return s._replace(residual=res, states=states)


class Spy(Faulty):
    """Keeps the factors of every update it applies."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.factors: list[tuple[np.ndarray, np.ndarray]] = []

    def apply_outer_product(self, name, rows, cols, *, lr):
        self.factors.append((np.asarray(rows), np.asarray(cols)))
        return super().apply_outer_product(name, rows, cols, lr=lr)


@pytest.mark.parametrize(
    ("guard", "used", "rescued"),
    [("drop", 4, 0), ("keep_finite", 5, 0), ("symmetric", 6, 2), ("half_beta", 4, 0)],
)
@pytest.mark.parametrize("schedule", ["parallel", "sequential"])
def test_no_non_finite_state_reaches_an_update_whatever_the_guard(
    toy, guard, used, rescued, schedule
):
    drv = Spy(toy, seed=0)
    cfg = hep_config(points=4, beta=0.2, guard=guard, hep_schedule=schedule, residual_tol=1e-2)
    ctrl = Controller(drv, cfg)
    rep = ctrl.train_step(*random_batch(6, 4, 6, key=jax.random.PRNGKey(3)))
    assert not rep.refused and not rep.fallback
    assert (rep.used, rep.rescued, rep.dropped) == (used, rescued, 6 - used)
    assert drv.factors and all(
        np.isfinite(u).all() and np.isfinite(v).all() for u, v in drv.factors
    )
    w = drv.read_weights()
    assert all(np.isfinite(w[n][0]).all() for n in w)


def test_merged_factors_are_the_mean_over_both_parts():
    rng = np.random.default_rng(0)
    a = {"W": (jnp.asarray(rng.normal(size=(3, 4))), jnp.asarray(rng.normal(size=(3, 5))))}
    b = {"W": (jnp.asarray(rng.normal(size=(2, 4))), jnp.asarray(rng.normal(size=(2, 5))))}
    got = dense(_merge(a, 7, b, 3))["W"]
    want = (7 * dense(a)["W"] + 3 * dense(b)["W"]) / 10
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert dense(_merge({}, 0, b, 3))["W"] == pytest.approx(dense(b)["W"])
