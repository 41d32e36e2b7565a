"""The controller drives any chip through the driver contract, and only through it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _hep_helpers import hep_config

import analog_hep
from analog_hep.drivers import NudgeSchedule, available_drivers, open_driver
from analog_hep.emulator import EmulatorDriver, ground_truth
from analog_hep.errors import UnsupportedCapability
from analog_hep.hep import Controller, dense, hep_estimate
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
    drv = Unsettling(toy, seed=0)
    ctrl = Controller(drv, _cfg(points=6, beta=0.2))
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
    ctrl = Controller(drv, _cfg(points=6, beta=0.2))
    rep = ctrl.train_step(*random_batch(6, 4, 4, key=jax.random.PRNGKey(5)))
    assert not rep.fallback and rep.dropped == 1 and rep.used == 3 and not rep.refused
