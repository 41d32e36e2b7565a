"""Conv crossbars in the emulator and the controller: reads, pooling, post-synaptic signals,
the learning signal and the update path (docs/specs.md, "Conv chips")."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _hep_helpers import hep_config

from analog_hep import _conv as conv
from analog_hep._geometry import ConvGeometry, GeometryError
from analog_hep.emulator import EmulatorDriver, ground_truth
from analog_hep.errors import UnsupportedCapability
from analog_hep.hep import Controller, dense, hep_estimate
from analog_hep.spec import circuit_from_text, load_circuit
from analog_hep.studies import random_batch

SMALL = """
name: tiny_cnn
seed: 0
input_shape: [1, 6, 6]
blocks:
  - {kind: conv, channels: 3, kernel: 3, padding: 1, pool: POOL}
  - {kind: conv, channels: 4, kernel: 3, padding: 1, pool: POOL, pool_size: 3}
  - {kind: dense, units: 5}
readout: {classes: 4, loss: cross_entropy}
neuron:
  activation: ACT
  gain_mismatch_rel: 0.0
  offset_mismatch: 0.0
  noise_std: NOISE
crossbars:
  default:
    device: ideal
    init: {scheme: fan_in_uniform, gain: 3.0, bias: same}
    mapping: {scheme: balanced, w_max: 4.0}
    bias: true
periphery: {read_noise_std: READ}
dynamics: {mode: continuous, tau_s: 1.0, dt_s: 0.5, free_time_s: 150.0, nudge_time_s: 100.0}
"""


def tiny(
    pool: str = "softmax",
    act: str = "{name: holotanh, a: 1.0}",
    noise: float = 0.0,
    read: float = 0.0,
):
    text = (
        SMALL.replace("POOL", pool)
        .replace("ACT", act)
        .replace("NOISE", str(noise))
        .replace("READ", str(read))
    )
    return circuit_from_text(text, name="tiny_cnn.yaml")


def _geom(pool: str = "softmax") -> ConvGeometry:
    return ConvGeometry((2, 6, 6), 3, 3, 1, 1, pool, 1 if pool == "none" else 2)


def test_geometry_shapes_and_refusals():
    g = _geom()
    assert g.conv_hw == (6, 6) and g.out_shape == (3, 3, 3) and g.n_in == 18
    assert g.positions == 36 and g.conv_size == 108 and g.out_size == 27
    assert ConvGeometry.from_dict(g.to_dict()) == g
    with pytest.raises(GeometryError) as e:
        ConvGeometry((1, 4, 4), 2, 7)
    assert e.value.field == "kernel"
    with pytest.raises(GeometryError) as e:
        ConvGeometry((1, 5, 5), 2, 3, 1, 1, "softmax", 2)  # 5x5 output, window 2
    assert e.value.field == "pool_size"


def test_conv_read_patches_transpose_and_coverage_agree():
    g = _geom()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, g.in_size)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(g.channels, g.n_in)), jnp.float32)
    z = conv.conv_read(x, w, g)
    p = conv.patches(x, g)
    np.testing.assert_allclose(
        z, jnp.einsum("rpi,oi->rop", p, w).reshape(4, -1), rtol=1e-5, atol=1e-5
    )
    d = jnp.asarray(rng.normal(size=z.shape), jnp.float32)
    lhs, rhs = jnp.sum(d * z), jnp.sum(conv.conv_transpose(d, w, g) * x)
    assert abs(float(lhs - rhs)) < 1e-3 * float(jnp.abs(lhs))
    cover = np.asarray(conv.coverage(g)).reshape(2, 6, 6)
    assert cover[0, 0, 0] == 4 and cover[0, 2, 2] == 9  # corner, interior of a 3x3 kernel


@pytest.mark.parametrize("pool", ["softmax", "average"])
def test_pool_transpose_is_the_holomorphic_derivative(pool):
    g = _geom(pool)
    rng = np.random.default_rng(1)
    c = lambda *s: jnp.asarray(rng.normal(size=s) + 1j * rng.normal(size=s), jnp.complex64)  # noqa: E731
    z, s, v = c(3, g.conv_size), c(3, g.out_size), c(3, g.conv_size)
    h = 1e-2
    fd = (jnp.sum(s * conv.pool(z + h * v, g)) - jnp.sum(s * conv.pool(z - h * v, g))) / (2 * h)
    an = jnp.sum(conv.pool_transpose(z, s, g) * v)
    assert abs(complex(fd - an)) < 2e-2 * abs(complex(an))


def test_softmax_pooling_tends_to_max_pooling_at_low_temperature():
    g = dataclasses.replace(_geom(), temperature=1e-3)
    m = dataclasses.replace(_geom(), pool="max")
    z = jnp.asarray(np.random.default_rng(2).normal(size=(2, g.conv_size)), jnp.float32)
    np.testing.assert_allclose(conv.pool(z, g), conv.pool(z, m), atol=1e-4)


def test_a_conv_chip_describes_its_geometry_and_returns_post_signals():
    drv = EmulatorDriver(tiny(), seed=0)
    d = drv.describe()
    kinds = [c.kind for c in d.crossbars]
    assert kinds == ["conv", "conv", "dense", "dense"]
    w0 = d.crossbars[0]
    assert (w0.n_out, w0.n_in) == (3, 9) and w0.geometry.out_shape == (3, 3, 3)
    assert d.layers == (36, 27, 4, 5) and d.holomorphic
    x, y = random_batch(36, 4, 5, key=jax.random.PRNGKey(0))
    drv.load_inputs(x, y)
    s = drv.run_schedule(_schedule(drv, 4))
    assert set(s.post) == {"W0", "W1"} and set(s.free_post) == {"W0", "W1"}
    assert s.post["W0"].shape == (4, 5, 3 * 36) and s.free_post["W1"].shape == (5, 4 * 9)
    assert np.all(np.isfinite(np.asarray(s.post["W1"])))


def _schedule(drv, n):
    return Controller(drv, hep_config(points=n)).plan.schedule


def test_an_mlp_returns_no_post_signals(toy):
    drv = EmulatorDriver(toy, seed=0)
    x, y = random_batch(6, 4, 3, key=jax.random.PRNGKey(0))
    drv.load_inputs(x, y)
    s = drv.run_schedule(_schedule(drv, 2))
    assert s.post is None and s.free_post is None
    assert all(c.geometry is None and c.kind == "dense" for c in drv.describe().crossbars)


def test_conv_outer_factors_equal_the_hep_estimate():
    drv = EmulatorDriver(tiny(), seed=0)
    x, y = random_batch(36, 4, 5, key=jax.random.PRNGKey(3))
    ctrl = Controller(drv, hep_config(points=4, beta=0.2))
    drv.load_inputs(x, y)
    settled = drv.run_schedule(ctrl.plan.schedule)
    factors = ctrl.gradient(settled, y, np.ones(5, bool), "hep")
    # W0 reads the clamped input: one row per sample and position; W1 per point too.
    assert factors["W0"][0].shape == (5 * 36, 3) and factors["W0"][1].shape == (5 * 36, 10)
    assert factors["W1"][0].shape == (2 * 4 * 5 * 9, 4)
    g = dense(factors)
    ref = hep_estimate(
        settled.states, settled.logits, y, settled.betas, ctrl.desc.crossbars, settled.post
    )
    for n in ctrl.names:  # float32 sums in another order: 1e-5 of entries ~1e-2
        np.testing.assert_allclose(g[n][:, :-1], ref[n][0], atol=1e-5)
        np.testing.assert_allclose(g[n][:, -1], ref[n][1], atol=1e-5)


@pytest.mark.parametrize(
    "update", ["outer_product", pytest.param("program", marks=pytest.mark.slow)]
)
def test_conv_update_is_an_sgd_step_on_the_true_gradient(update):
    """Ideal noiseless conv chip: W_after - W_before = -lr dL/dW (hEP N = 8)."""
    drv = EmulatorDriver(tiny(), seed=0)
    x, y = random_batch(36, 4, 6, key=jax.random.PRNGKey(1))
    gt = ground_truth(drv.chip, x, y, steps=400, max_adjoint_iterations=4000)
    before = drv.read_weights()
    ctrl = Controller(drv, hep_config(points=8, beta=0.1, lr=0.05, update=update))
    rep = ctrl.train_step(x, y)
    assert rep.used == 6 and not rep.refused
    after = drv.read_weights()
    for n in ctrl.names:
        dw = after[n][0] - before[n][0]
        ref = -0.05 * np.asarray(gt.grads[n][0])
        assert np.linalg.norm(dw - ref) <= 1e-3 * np.linalg.norm(ref) + 1e-7, n


def test_conv_chips_default_to_programming_the_accumulated_update():
    ctrl = Controller(EmulatorDriver(tiny(), seed=0), hep_config())
    assert not ctrl.plan.use_outer_product


def test_max_pooling_chip_refuses_hep_beyond_two_points_and_allows_two():
    drv = EmulatorDriver(tiny(pool="max", act="{name: hardtanh}"), seed=0)
    assert not drv.describe().holomorphic
    with pytest.raises(UnsupportedCapability, match=r"not holomorphic.*N = 2"):
        Controller(drv, hep_config(points=4))
    ctrl = Controller(drv, hep_config(points=2))
    x, y = random_batch(36, 4, 4, key=jax.random.PRNGKey(0))
    rep = ctrl.train_step(x, y)
    assert not rep.refused


def test_noisy_conv_chip_is_reproducible_and_noise_matters():
    c = tiny(noise=0.02, read=0.02)
    x, y = random_batch(36, 4, 4, key=jax.random.PRNGKey(5))

    def run(seed):
        drv = EmulatorDriver(c, seed=seed)
        drv.load_inputs(x, y)
        return drv.run_schedule(_schedule(drv, 4))

    a, b, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(np.asarray(a.states[2]), np.asarray(b.states[2]))
    np.testing.assert_array_equal(np.asarray(a.post["W1"]), np.asarray(b.post["W1"]))
    assert not np.array_equal(np.asarray(a.states[2]), np.asarray(other.states[2]))


def test_conv_read_noise_has_the_stated_variance():
    """Forward read: periphery std per position; transposed read: std times sqrt(coverage)."""
    from analog_hep.emulator._settle import Read, conv_forward, conv_transposed

    g = _geom("none")
    w = jnp.zeros((g.channels, g.n_in))
    r = Read(w, jnp.zeros(3), jnp.ones(3), jnp.ones(g.n_in), None)
    p = jnp.zeros((1, 2000, g.in_size))
    std = jnp.asarray(0.1)
    y = conv_forward(r, g, p, std, jax.random.PRNGKey(0))
    assert abs(float(jnp.std(y)) - 0.1) < 0.005
    s = jnp.zeros((1, 2000, g.out_size))
    t = conv_transposed(r, g, jnp.zeros((1, 2000, g.conv_size)), s, std, jax.random.PRNGKey(1))
    expect = 0.1 * np.sqrt(np.asarray(conv.coverage(g)))
    np.testing.assert_allclose(np.std(np.asarray(t[0]), axis=0), expect, rtol=0.08)


def test_digits_cnn_loads_with_its_shapes():
    c = load_circuit("circuits/digits_cnn.yaml")
    assert c.spec.layer_shapes[0] == (1, 8, 8)
    assert [g is not None for g in c.spec.geometries] == [True, False, False]


@pytest.mark.parametrize("method", ["classic", "symmetric", "online"])
def test_every_estimator_trains_a_conv_chip(method):
    drv = EmulatorDriver(tiny(), seed=0)
    x, y = random_batch(36, 4, 4, key=jax.random.PRNGKey(7))
    before = drv.read_weights()
    ctrl = Controller(drv, hep_config(method=method, points=4, beta=0.2, residual_tol=0.05))
    rep = ctrl.train_step(x, y)
    assert not rep.refused and rep.used == 4
    after = drv.read_weights()
    assert all(np.any(after[n][0] != before[n][0]) for n in ("W0", "W1"))


@pytest.mark.slow  # 6 s
def test_classic_conv_factors_equal_the_classic_estimate():
    from analog_hep.hep import classic_estimate

    drv = EmulatorDriver(tiny(), seed=0)
    x, y = random_batch(36, 4, 5, key=jax.random.PRNGKey(4))
    ctrl = Controller(drv, hep_config(method="classic", points=1, beta=0.1))
    drv.load_inputs(x, y)
    s = drv.run_schedule(ctrl.plan.schedule)
    g = dense(ctrl.gradient(s, y, np.ones(5, bool), "classic"))
    ref = classic_estimate(
        s.free_states,
        s.free_logits,
        s.states,
        s.logits,
        y,
        0.1,
        ctrl.desc.crossbars,
        s.free_post,
        s.post,
    )
    for n in ctrl.names:
        np.testing.assert_allclose(g[n][:, :-1], ref[n][0], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    "geom",
    [
        ConvGeometry((2, 4, 4), 3, 3, 1, 0, "softmax", 2),  # 2x2 positions: matrix-product path
        ConvGeometry((2, 5, 5), 3, 3, 2, 1, "none", 1),  # stride 2, 3x3 positions
        ConvGeometry((2, 7, 7), 3, 3, 1, 1, "none", 1),  # 49 positions: XLA's transpose
    ],
)
def test_conv_transpose_is_the_adjoint_of_the_read(geom):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(3, geom.in_size)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(geom.channels, geom.n_in)), jnp.float32)
    d = jnp.asarray(rng.normal(size=(3, geom.conv_size)), jnp.float32)
    lhs = jnp.sum(d * conv.conv_read(x, w, geom))
    rhs = jnp.sum(conv.conv_transpose(d, w, geom) * x)
    assert abs(float(lhs - rhs)) <= 1e-4 * (1 + abs(float(lhs)))
