"""The controller drives any chip through the driver contract, and only through it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _hep_helpers import hep_config

import analog_hep
from analog_hep.drivers import NudgeSchedule, available_drivers, open_driver
from analog_hep.emulator import EmulatorDriver, ground_truth
from analog_hep.errors import UnsupportedCapability
from analog_hep.hep import (
    Controller,
    ControllerState,
    Coupling,
    couplings,
    dense,
    hep_estimate,
    state_arrays,
    state_from_arrays,
)
from analog_hep.studies import random_batch

PKG = Path(analog_hep.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def test_controller_never_imports_emulator_or_physics():
    for path in (PKG / "hep").glob("*.py"):
        bad = {
            m for m in _imports(path) if m.startswith(("analog_hep.emulator", "analog_hep.physics"))
        }
        assert not bad, f"{path.name} imports {bad}: the controller must run a real chip"


_cfg = hep_config


def test_emulator_is_registered_through_its_entry_point(toy):
    assert "emulator" in available_drivers()
    drv = open_driver("emulator:chip_seed=3", toy, seed=0)
    assert isinstance(drv, EmulatorDriver) and drv.chip_seed == 3


def test_outer_factors_equal_the_hep_estimate(toy):
    drv = EmulatorDriver(toy, seed=0)
    x, y = random_batch(6, 4, 5, key=jax.random.PRNGKey(0))
    ctrl = Controller(drv, _cfg(points=6, beta=0.3))
    drv.load_inputs(x, y)
    settled = drv.run_schedule(ctrl.plan.schedule)
    factors = ctrl.gradient(settled, y, np.ones(5, bool), "hep")
    # The input crossbar's pre is the clamped input at every point: one row per sample.
    assert factors["W0"][0].shape == (5, 4) and factors["W0"][1].shape == (5, 7)
    assert factors["W1"][0].shape[0] == 2 * 6 * 5
    g = dense(factors)
    ref = hep_estimate(settled.states, settled.logits, y, settled.betas, ctrl.names)
    for n in ctrl.names:
        np.testing.assert_allclose(g[n][:, :-1], ref[n][0], atol=1e-6)
        np.testing.assert_allclose(g[n][:, -1], ref[n][1], atol=1e-6)


@pytest.mark.parametrize("update", ["outer_product", "program"])
def test_update_is_an_sgd_step_on_the_true_gradient(toy, update):
    """Ideal noiseless chip: W_after - W_before = -lr * dL/dW within the estimator's error."""
    drv = EmulatorDriver(toy, seed=0)
    x, y = random_batch(6, 4, 8, key=jax.random.PRNGKey(1))
    gt = ground_truth(drv.chip, x, y, steps=300, max_adjoint_iterations=6000)
    before = drv.read_weights()
    ctrl = Controller(drv, _cfg(points=8, beta=0.1, lr=0.05, update=update))
    rep = ctrl.train_step(x, y)
    assert rep.used == 8 and not rep.refused and not rep.fallback
    after = drv.read_weights()
    for n in ctrl.names:
        dw = after[n][0] - before[n][0]
        np.testing.assert_allclose(dw, -0.05 * np.asarray(gt.grads[n][0]), atol=2e-6, rtol=1e-3)
        db = after[n][1] - before[n][1]
        np.testing.assert_allclose(db, -0.05 * np.asarray(gt.grads[n][1]), atol=2e-6, rtol=1e-3)
    assert all(u.realised_norm > 0 for u in rep.updates)


class RealNudgesOnly(EmulatorDriver):
    """A chip like a DC crossbar: no complex nudges."""

    def describe(self):
        d = super().describe()
        return dataclasses.replace(
            d, capabilities=dataclasses.replace(d.capabilities, complex_nudges=False)
        )

    def run_schedule(self, schedule: NudgeSchedule):
        if schedule.is_complex:
            raise UnsupportedCapability("this chip cannot hold complex states")
        return super().run_schedule(schedule)


def test_chip_without_complex_nudges_trains_with_symmetric_ep_and_says_why(toy):
    drv = RealNudgesOnly(toy, seed=0)
    ctrl = Controller(drv, _cfg(points=10, beta=0.2))
    assert ctrl.plan.method == "symmetric" and ctrl.plan.points == 2
    assert any("complex" in m and "symmetric" in m for m in ctrl.messages)
    x, y = random_batch(6, 4, 4, key=jax.random.PRNGKey(2))
    rep = ctrl.train_step(x, y)
    assert not rep.refused and rep.used == 4


class Unsettling(EmulatorDriver):
    """Returns unsettled complex points (and a NaN sample) to exercise the guard."""

    def run_schedule(self, schedule: NudgeSchedule):
        s = super().run_schedule(schedule)
        if schedule.is_complex:
            s = s._replace(residual=jnp.full_like(s.residual, 1.0))
        else:
            bad = s.free_states[1].at[0].set(jnp.nan)
            s = s._replace(free_states=(s.free_states[0], bad, *s.free_states[2:]))
        return s


def test_guard_falls_back_to_n2_and_drops_nan_samples(toy):
    """The drop guard: unsettled (finite) complex points count as failing, and a batch
    where most fail is redone with +-|beta|. (keep_finite keeps them:
    tests/test_hep_schedules.py.)"""
    drv = Unsettling(toy, seed=0)
    ctrl = Controller(drv, _cfg(points=6, beta=0.2, guard="drop"))
    x, y = random_batch(6, 4, 4, key=jax.random.PRNGKey(3))
    before = drv.read_weights()
    rep = ctrl.train_step(x, y)
    assert rep.fallback and rep.dropped == 1 and rep.used == 3 and not rep.refused
    after = drv.read_weights()
    assert all(np.isfinite(after[n][0]).all() for n in after)
    assert not np.array_equal(after["W0"][0], before["W0"][0])


def test_refuses_an_update_when_nothing_settled(toy):
    class NeverSettles(EmulatorDriver):
        def run_schedule(self, schedule):
            s = super().run_schedule(schedule)
            return s._replace(free_residual=jnp.full_like(s.free_residual, 1.0))

    drv = NeverSettles(toy, seed=0)
    ctrl = Controller(drv, _cfg())
    before = drv.read_weights()
    rep = ctrl.train_step(*random_batch(6, 4, 4, key=jax.random.PRNGKey(4)))
    assert rep.refused and rep.used == 0 and rep.dropped == 4
    assert all(np.array_equal(before[n][0], drv.read_weights()[n][0]) for n in before)


def test_momentum_cannot_use_outer_products(toy):
    drv = EmulatorDriver(toy, seed=0)
    with pytest.raises(UnsupportedCapability, match="momentum"):
        Controller(drv, _cfg(momentum=0.9, update="outer_product"))
    ctrl = Controller(drv, _cfg(momentum=0.9))
    assert not ctrl.plan.use_outer_product


class OneSampleUnsettled(EmulatorDriver):
    """Sample 0's complex points do not settle; the others do."""

    def run_schedule(self, schedule: NudgeSchedule):
        s = super().run_schedule(schedule)
        if schedule.is_complex:
            s = s._replace(residual=s.residual.at[:, 0].set(1.0))
        return s


def test_a_few_unsettled_samples_are_dropped_without_fallback(toy):
    drv = OneSampleUnsettled(toy, seed=0)
    ctrl = Controller(drv, _cfg(points=6, beta=0.2, guard="drop"))
    rep = ctrl.train_step(*random_batch(6, 4, 4, key=jax.random.PRNGKey(5)))
    assert not rep.fallback and rep.dropped == 1 and rep.used == 3 and not rep.refused


def test_the_controller_package_never_imports_spec():
    """The hEP settings' defaults live in ``analog_hep._hep_settings`` (no package
    imports), so that the spec can share them without the controller importing the spec."""
    for path in (PKG / "hep").glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith("analog_hep.spec")}
        assert not bad, f"{path.name} imports {bad}"
    assert not {m for m in _imports(PKG / "_hep_settings.py") if m.startswith("analog_hep")}


class Relabelled:
    """The toy chip behind a description whose crossbars have other names and come in
    reverse order (their ``pre``/``post`` unchanged): what a lab's driver may report."""

    NEW: ClassVar[dict[str, str]] = {
        "W0": "in_to_hidden",
        "W1": "hidden_to_out",
        "readout": "logits",
    }

    def __init__(self, inner: EmulatorDriver):
        self.inner = inner
        self.old = {v: k for k, v in self.NEW.items()}
        d = inner.describe()
        crossbars = tuple(dataclasses.replace(c, name=self.NEW[c.name]) for c in d.crossbars)
        self.desc = dataclasses.replace(d, crossbars=crossbars[::-1])

    def describe(self):
        return self.desc

    def load_inputs(self, x, y):
        self.inner.load_inputs(x, y)

    def run_schedule(self, schedule):
        return self.inner.run_schedule(schedule)

    def apply_outer_product(self, name, rows, cols, *, lr):
        return self.inner.apply_outer_product(self.old[name], rows, cols, lr=lr)

    def program_delta(self, name, delta_w):
        return self.inner.program_delta(self.old[name], delta_w)


@pytest.mark.parametrize("method", ["hep", "classic"])
def test_crossbars_are_paired_by_pre_post_not_by_name_or_position(toy, method):
    """Another order and other names give the same factors per crossbar, the same
    estimate, and bitwise the same weights after a step."""
    x, y = random_batch(6, 4, 5, key=jax.random.PRNGKey(7))
    points = 1 if method == "classic" else 6
    cfg = _cfg(method=method, points=points, beta=0.2)
    plain = Controller(EmulatorDriver(toy, seed=0), cfg)
    odd_drv = Relabelled(EmulatorDriver(toy, seed=0))
    odd = Controller(odd_drv, cfg)
    assert odd.names == ("logits", "hidden_to_out", "in_to_hidden")
    drv = plain.driver
    drv.load_inputs(x, y)
    settled = drv.run_schedule(plain.plan.schedule)
    mask = np.ones(5, bool)
    ref = plain.gradient(settled, y, mask, method)
    got = odd.gradient(settled, y, mask, method)
    for old, new in Relabelled.NEW.items():
        for a, b in zip(ref[old], got[new], strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if method == "hep":
        est = hep_estimate(settled.states, settled.logits, y, settled.betas, odd.desc.crossbars)
        by_name = hep_estimate(settled.states, settled.logits, y, settled.betas, plain.names)
        for old, new in Relabelled.NEW.items():
            np.testing.assert_array_equal(np.asarray(est[new][0]), np.asarray(by_name[old][0]))
    plain.train_step(x, y)
    odd.train_step(x, y)
    after, odd_after = drv.read_weights(), odd_drv.inner.read_weights()
    for n in after:
        np.testing.assert_array_equal(after[n][0], odd_after[n][0])
        np.testing.assert_array_equal(after[n][1], odd_after[n][1])


def test_a_name_outside_the_emulator_layout_needs_its_description():
    with pytest.raises(ValueError, match="pre/post"):
        couplings(("input", "readout"))
    assert couplings(("W0", "W1", "readout"))[2] == Coupling("readout", 2, -1, True)


def test_the_state_is_one_value_a_step_returns_the_next(toy):
    """``step`` leaves the state it is given as it was and returns the next one; the
    run's totals are in it; a checkpoint round trip gives the same value."""
    drv = Unsettling(toy, seed=0)
    ctrl = Controller(drv, _cfg(points=6, beta=0.2, momentum=0.9, guard="drop"))
    x, y = random_batch(6, 4, 4, key=jax.random.PRNGKey(3))
    s0 = ctrl.state
    assert isinstance(s0, ControllerState) and s0.step_count == 0 and s0.beta == 0.2
    before = jax.tree_util.tree_map(np.asarray, s0)
    rep, s1 = ctrl.step(s0, x, y)
    assert ctrl.state is s0  # step does not keep it: train_step does
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, s0)
    assert rep.fallback and rep.dropped == 1
    assert (s1.step_count, s1.refused, s1.dropped, s1.fallback) == (1, 0, 1, 1)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree_util.tree_leaves(s0.opt_state),
            jax.tree_util.tree_leaves(s1.opt_state),
            strict=True,
        )
    )
    back = state_from_arrays(state_arrays(s1), s0)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, s1)
    ctrl.load_state_dict(ctrl.state_dict())  # the controller's own round trip
    rep2 = ctrl.train_step(x, y)
    assert ctrl.state.step_count == 1 and ctrl.state.dropped == rep2.dropped


def test_refused_steps_are_counted_in_the_state(toy):
    class NeverSettles(EmulatorDriver):
        def run_schedule(self, schedule):
            s = super().run_schedule(schedule)
            return s._replace(free_residual=jnp.full_like(s.free_residual, 1.0))

    ctrl = Controller(NeverSettles(toy, seed=0), _cfg())
    batch = random_batch(6, 4, 4, key=jax.random.PRNGKey(4))
    for _ in range(2):
        ctrl.train_step(*batch)
    s = ctrl.state
    assert (s.step_count, s.refused, s.dropped, s.fallback) == (0, 2, 8, 0)
