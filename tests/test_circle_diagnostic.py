"""The circle diagnostic: does the nudge circle enclose a singularity of ``s*(beta)``?

The statistic ``rho_b = |c_{-1}| / |c_1|`` of the hidden states over the N settled points
(``analog_hep.hep._circle``) is ``(r/R)^{N-2}`` for a function holomorphic on a disk of
radius ``R > r`` and ``O(1)`` once a singularity is inside the circle. These tests check
the theory on a known function, and the verdict against the exact gradient on the toy,
digits and deep_small circuits, and the controller's reactions.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _hep_helpers import hep_config

from analog_hep.emulator import EmulatorDriver
from analog_hep.hep import Controller, HepConfig, circle_betas
from analog_hep.hep._circle import circle_check, circle_flags, circle_threshold
from analog_hep.spec import load_circuit
from analog_hep.studies import gradcheck, random_batch

DEEP = Path(__file__).parent / "data" / "deep_small.yaml"


def _pole_states(radius: float, n: int, pole: float) -> tuple[jax.Array, jax.Array]:
    """States ``f(beta) = 1 / (1 - beta / pole)`` ``(N, 1, 1)`` on the circle, and the betas."""
    betas = jnp.asarray(circle_betas(radius, n), jnp.complex64)
    return (1.0 / (1.0 - betas / pole))[:, None, None], betas


@pytest.mark.parametrize("n", [4, 8])
def test_ratio_is_r_over_r_to_the_n_minus_2(n):
    """For a pole at R: ``rho = (r/R)^{N-2}`` exactly, inside the circle or out."""
    for r in (0.2, 0.5, 0.8, 1.5):
        s, betas = _pole_states(r, n, pole=1.0)
        chk = circle_check([s], betas, per_period=n)
        np.testing.assert_allclose(chk.ratio, [r ** (n - 2)], rtol=1e-3, atol=1e-6)
    # a pole inside the circle is flagged, a far one is not
    for r, flagged in ((0.3, False), (1.2, True)):
        s, betas = _pole_states(r, 8, pole=1.0)
        assert bool(circle_flags(circle_check([s], betas, per_period=8).ratio, 8)[0]) is flagged
    # the threshold is the rho whose implied bias rho^{N/(N-2)} is 0.1
    assert abs(circle_threshold(8) ** (8 / 6) - 0.1) < 1e-12 and np.isnan(circle_threshold(2))


def test_no_statistic_for_two_points_and_unsettled_samples():
    s, betas = _pole_states(0.5, 2, pole=1.0)
    chk = circle_check([s], betas, per_period=2)
    assert np.isnan(chk.ratio).all() and np.isnan(chk.batch_ratio)
    s, betas = _pole_states(0.5, 8, pole=1.0)
    s2 = jnp.concatenate([s, s.at[3].set(jnp.nan)], axis=1)  # second sample diverged
    chk = circle_check([s2], betas, jnp.ones(2), per_period=8)
    assert np.isnan(chk.ratio[1]) and not circle_flags(chk.ratio, 8)[1]
    np.testing.assert_allclose(chk.batch_ratio, chk.ratio[0], rtol=1e-5)


def test_settled_toy_at_beta_0_1_not_flagged(toy):
    res = gradcheck(toy, method="hep", points=8, beta=0.1, batch=10, seed=0)
    assert res.cosine_total > 0.9999
    assert not res.circle_alarm and res.circle_flagged == 0 and max(res.circle_ratio) < 1e-3
    assert res.to_json()["circle_alarm"] is False


def test_digits_at_training_beta_not_flagged():
    from analog_hep.data import load_dataset

    ds = load_dataset("digits")
    x, y = next(ds.batches("train", 10, seed=0, epoch=0))
    res = gradcheck(
        load_circuit("digits"),
        method="hep",
        points=6,
        beta=0.4,
        batch=10,
        seed=0,
        inputs=(x, ds.one_hot(y)),
    )
    assert res.cosine_total > 0.999
    assert not res.circle_alarm and res.circle_flagged == 0


def test_deep_circuit_flagged_beyond_its_radius():
    """The held-out-style case: every point settles at both radii; exact and not flagged at
    |beta| = 0.05, wrong and flagged at 0.2 (the circle encloses a singularity)."""
    c = load_circuit(str(DEEP))
    small = gradcheck(c, method="hep", points=8, beta=0.05, batch=10, seed=12)
    big = gradcheck(c, method="hep", points=8, beta=0.2, batch=10, seed=12)
    for r in (small, big):
        assert r.free_residual < 1e-5 and r.nudge_residual < 1e-5
    assert small.cosine_total > 0.9999 and not small.circle_alarm
    assert big.cosine_total < 0.95 and big.circle_alarm and big.circle_flagged >= 1
    assert big.circle_batch_ratio > 10 * small.circle_batch_ratio


def _cfg(**kw) -> HepConfig:
    return hep_config(**({"points": 8, "beta": 0.4, "lr": 0.0} | kw))


def _deep_batch():
    return random_batch(20, 12, 10, key=jax.random.PRNGKey(12))


def test_controller_warns_once_and_counts():
    drv = EmulatorDriver(load_circuit(str(DEEP)), seed=0)
    ctrl = Controller(drv, _cfg(circle_check="warn"))
    x, y = _deep_batch()
    reports = [ctrl.train_step(x, y) for _ in range(2)]
    assert all(r.circle_alarm and r.circle_flagged >= 2 for r in reports)
    assert len(reports[0].notes) == 1 and "singularity" in reports[0].notes[0]
    assert reports[1].notes == []
    assert ctrl.beta == 0.4 and reports[1].beta == 0.4


def test_controller_shrinks_beta_to_the_floor_and_checkpoints_it():
    drv = EmulatorDriver(load_circuit(str(DEEP)), seed=0)
    cfg = _cfg(beta=0.8, circle_check="shrink", circle_beta_floor=0.3)
    ctrl = Controller(drv, cfg)
    x, y = _deep_batch()
    r0 = ctrl.train_step(x, y)
    assert r0.beta == 0.8 and r0.circle_alarm and ctrl.beta == 0.4
    assert "|beta| -> 0.4" in r0.notes[0]
    assert abs(abs(ctrl.plan.schedule.betas[1]) - 0.4) < 1e-9
    r1 = ctrl.train_step(x, y)
    assert r1.beta == 0.4 and r1.circle_alarm and ctrl.beta == 0.3  # halving stops at the floor
    state = ctrl.state_dict()
    fresh = Controller(drv, cfg)
    fresh.load_state_dict(state)
    assert fresh.beta == 0.3 and abs(abs(fresh.plan.schedule.betas[1]) - 0.3) < 1e-9


@pytest.mark.slow
def test_mnist_at_beta_0_1_not_flagged(mnist_batch):
    c = load_circuit("mnist_mlp")
    kw = dict(batch=10, seed=0, free_steps=1000, nudge_steps=500, inputs=mnist_batch)
    res = gradcheck(c, method="hep", points=10, beta=0.1, **kw)
    assert res.cosine_total > 0.9999 and not res.circle_alarm and res.circle_flagged == 0


def test_record_keeps_the_diagnostic_per_step(tmp_path):
    import h5py

    from analog_hep.cli import main

    out = tmp_path / "run.h5"
    args = ["train", "digits", "--epochs", "1", "--max-train", "40", "--out", str(out)]
    assert main(args) == 0
    with h5py.File(out) as f:
        steps = f["steps/loss"].shape[0]
        ratio = f["steps/circle_ratio"][:]
        assert ratio.shape == (steps,) and np.isfinite(ratio).all() and (ratio < 0.05).all()
        assert f["steps/circle_alarm"][:].sum() == 0 and (f["steps/beta"][:] == 0.4).all()


def test_training_section_sets_the_reaction():
    from analog_hep.studies import TrainOptions

    c = load_circuit("digits")
    training = c.spec.training.model_copy(update={"circle_check": "shrink"})
    c = c.__class__(
        spec=c.spec.model_copy(update={"training": training}),
        devices=c.devices,
        path=None,
        text="",
        device_texts={},
    )
    assert TrainOptions.from_circuit(c).hep_config(10).circle_check == "shrink"
