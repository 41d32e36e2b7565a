"""The crossbar outer-product update: pulse coincidences, update management, modes, reports."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from _device_helpers import G_MAX, G_MIN, _strict, make_card  # noqa: F401  (autouse fixture)

from analog_hep.physics import (
    UpdateReport,
    draw_devices,
    normalised_scale_S,
    outer_product_update,
    pair_weights,
)

# Ideal-like pulsed device: constant step, no noise, no spread, 2000 states.
IDEAL_LIKE = {"model": "constant_step", "dw_min": 0.001, "w_min": -1.0, "w_max": 1.0}
G_UNIT = (G_MAX - G_MIN) / 2.0  # one weight unit = half the range


def crossbar(card, shape, key):
    dev = draw_devices(card, (2, *shape), key=key)
    g = jnp.full((2, *shape), 0.5 * (G_MIN + G_MAX), jnp.float32)
    return dev, g


@functools.cache
def update_fn(card, **static):
    """One jitted update per (card, static options), shared by the tests (compile once)."""
    return jax.jit(functools.partial(outer_product_update, card, **static))


def test_mean_stochastic_update_equals_request(getkey):
    """Stochastic pulse trains (BL 31) on an ideal-like device: the mean realised ΔW over
    K = 400 independent updates equals lr Σ_b d_b x_bᵀ in every entry within 4.5 standard
    errors (SE = sample std / sqrt(K); 42 entries, so a 4.5-sigma bound is exceeded by chance
    with probability < 3e-4), and the mean of the 42 z-scores is within 4/sqrt(42) of 0."""
    card = make_card(IDEAL_LIKE)
    dev, g = crossbar(card, (6, 7), getkey())
    x = jr.uniform(getkey(), (3, 7), jnp.float32, -1.0, 1.0)
    d = jr.uniform(getkey(), (3, 6), jnp.float32, -1.0, 1.0)
    lr = 0.01  # per-sample max request 0.01 / Δw₁ (0.002) = 5 coincidences < 31
    upd = update_fn(card, mode="stochastic", bit_length=31)

    def realised(key):
        g_new, rep = upd(dev, g, x, d, lr=lr, g_unit_S=G_UNIT, key=key)
        return pair_weights(g_new, G_UNIT) - pair_weights(g, G_UNIT), rep

    k = 400
    dw, rep = jax.vmap(realised)(jr.split(getkey(), k))
    requested = np.asarray(lr * jnp.einsum("bi,bj->ij", d, x))
    mean = np.asarray(jnp.mean(dw, axis=0))
    se = np.asarray(jnp.std(dw, axis=0)) / np.sqrt(k)
    z = (mean - requested) / se
    assert np.all(np.abs(z) < 4.5), z
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert int(jnp.max(rep.n_clipped_request)) == 0
    assert int(jnp.max(rep.n_clipped_bound)) == 0
    assert float(jnp.mean(rep.realised_over_requested)) == pytest.approx(1.0, abs=0.02)
    # Granularity: every realised entry is a whole number of coincidence steps (2 dw_min).
    steps = np.asarray(dw[:20]) / 0.002
    np.testing.assert_allclose(steps, np.round(steps), atol=2e-3)


def test_large_request_is_clipped_and_reported(getkey):
    """With bit length 31, a request of 100 coincidence steps per sample cannot be met:
    the probabilities hit 1, every entry of that sample is counted as clipped, and the
    realised update is BL steps (31 %) of the request; a small request is not clipped."""
    card = make_card(IDEAL_LIKE)
    dev, g = crossbar(card, (6, 7), getkey())
    x = jnp.ones((3, 7), jnp.float32).at[1:].set(0.0)  # one non-zero sample of three
    d = jnp.ones((3, 6), jnp.float32)
    upd = update_fn(card, mode="stochastic", bit_length=31)
    big, rep = upd(dev, g, x, d, lr=0.2, g_unit_S=G_UNIT, key=getkey())  # 0.2 / 0.002 = 100
    assert int(rep.n_clipped_request) == 42
    assert float(rep.realised_over_requested) == pytest.approx(0.31, abs=1e-4)
    dw = pair_weights(big, G_UNIT) - pair_weights(g, G_UNIT)
    np.testing.assert_allclose(np.asarray(dw), 31 * 0.002, rtol=1e-3)
    assert int(rep.pulses_applied) == 2 * 42 * 31  # both devices of each pair, 31 each
    _, small = upd(dev, g, x, d, lr=0.02, g_unit_S=G_UNIT, key=getkey())
    assert int(small.n_clipped_request) == 0


def test_expected_and_pulse_count_modes(getkey):
    """Expected mode applies the expected (fractional) counts: exact for a constant step;
    pulse_count applies round(|ΔW| / Δw₁) pulses, capped at BL and reported."""
    card = make_card(IDEAL_LIKE)
    dev, g = crossbar(card, (6, 7), getkey())
    x = jr.uniform(getkey(), (3, 7), jnp.float32, -1.0, 1.0)
    d = jr.uniform(getkey(), (3, 6), jnp.float32, -1.0, 1.0)
    lr = 0.01
    req = np.asarray(lr * jnp.einsum("bi,bj->ij", d, x))
    g_e, rep_e = update_fn(card, mode="expected")(dev, g, x, d, lr=lr, g_unit_S=G_UNIT, key=None)
    dw_e = np.asarray(pair_weights(g_e, G_UNIT) - pair_weights(g, G_UNIT))
    np.testing.assert_allclose(dw_e, req, atol=2e-5)  # float32 conductance rounding
    assert float(rep_e.realised_over_requested) == pytest.approx(1.0, abs=1e-3)
    g_p, rep_p = update_fn(card, mode="pulse_count", bit_length=31)(
        dev, g, x, d, lr=lr, g_unit_S=G_UNIT, key=None
    )
    dw_p = np.asarray(pair_weights(g_p, G_UNIT) - pair_weights(g, G_UNIT))
    expect = np.sign(req) * np.minimum(np.round(np.abs(req) / 0.002), 31) * 0.002
    np.testing.assert_allclose(dw_p, expect, atol=2e-5)
    assert int(rep_p.pulses_applied) == int(
        2 * np.sum(np.minimum(np.round(np.abs(req) / 0.002), 31))
    )
    _, rep_big = update_fn(card, mode="pulse_count", bit_length=31)(
        dev, g, x, d, lr=1.0, g_unit_S=G_UNIT, key=None
    )
    assert int(rep_big.n_clipped_request) == int(np.sum(np.round(np.abs(req) * 100 / 0.002) > 31))


def test_sign_convention_and_one_sided_pairs(getkey):
    """ΔW_req = +lr Σ d xᵀ (no minus sign). One-sided pairs only potentiate: a positive
    request raises G+, a negative one raises G-, neither device ever decreases."""
    card = make_card(IDEAL_LIKE, refresh={"every_updates": 1})
    dev, g = crossbar(card, (2, 3), getkey())
    g = jnp.full_like(g, G_MIN + 1e-6)
    x = jnp.asarray([[1.0, -1.0, 0.0]], jnp.float32)
    d = jnp.asarray([[1.0, 0.5]], jnp.float32)
    g_new, _ = update_fn(card, mode="expected")(dev, g, x, d, lr=0.01, g_unit_S=G_UNIT, key=None)
    delta = np.asarray(g_new - g)
    assert np.all(delta >= 0.0)
    assert delta[0, 0, 0] > 0 and delta[1, 0, 0] == 0  # +: G+ up
    assert delta[1, 0, 1] > 0 and delta[0, 0, 1] == 0  # -: G- up
    assert np.all(delta[:, :, 2] == 0)  # x = 0: no pulse
    dw = np.asarray(pair_weights(g_new, G_UNIT) - pair_weights(g, G_UNIT))
    np.testing.assert_allclose(dw, 0.01 * np.outer([1.0, 0.5], [1.0, -1.0, 0.0]), atol=2e-5)
    # Balanced: both devices move, in opposite directions.
    bal = make_card(IDEAL_LIKE)
    g_b, _ = update_fn(bal, mode="expected")(dev, g + 3e-6, x, d, lr=0.01, g_unit_S=G_UNIT,
                                             key=None)  # fmt: skip
    db = np.asarray(g_b - (g + 3e-6))
    assert db[0, 0, 0] > 0 and db[1, 0, 0] < 0


def test_ideal_card_is_exact_and_reports_bound_clipping(getkey):
    card = make_card({"model": "ideal"})
    dev, g = crossbar(card, (3, 4), getkey())
    x = jr.normal(getkey(), (2, 4), jnp.float32)
    d = jr.normal(getkey(), (2, 3), jnp.float32)
    g_new, rep = update_fn(card)(dev, g, x, d, lr=0.01, g_unit_S=G_UNIT, key=None)
    req = 0.01 * jnp.einsum("bi,bj->ij", d, x)
    np.testing.assert_allclose(
        np.asarray(pair_weights(g_new, G_UNIT) - pair_weights(g, G_UNIT)), np.asarray(req),
        atol=1e-6,
    )  # fmt: skip
    assert int(rep.pulses_applied) == 0 and int(rep.n_clipped_bound) == 0
    _, rep_big = update_fn(card)(dev, g, x, d, lr=100.0, g_unit_S=G_UNIT, key=None)
    assert int(rep_big.n_clipped_bound) > 0


def test_bound_clipping_is_counted(getkey):
    card = make_card(IDEAL_LIKE)
    dev, g = crossbar(card, (3, 4), getkey())
    g = jnp.stack([jnp.full((3, 4), G_MAX - 1e-9), jnp.full((3, 4), G_MIN + 1e-9)])
    x = jnp.ones((1, 4), jnp.float32)
    d = jnp.ones((1, 3), jnp.float32)
    g_new, rep = update_fn(card, mode="pulse_count")(dev, g, x, d, lr=0.01, g_unit_S=G_UNIT,
                                                     key=None)  # fmt: skip
    assert int(rep.n_clipped_bound) == 24  # all 12 G+ at the top, all 12 G- at the bottom
    assert bool(jnp.all((g_new <= dev.b_max_S) & (g_new >= dev.b_min_S)))


def test_noisy_device_update_mean(getkey):
    """Realistic device (soft bounds, c2c 0.3, d2d 0.3, asymmetric): the realised update of
    a 32x33 crossbar is, on average, proportional to the request (ratio within 0.15 of 1 at
    the symmetric point, where soft-bounds steps equal dw_min)."""
    card = make_card(
        {"model": "soft_bounds", "dw_min": 0.01, "w_min": -1.0, "w_max": 1.0, "up_down": 0.05,
         "dw_min_dtod": 0.3, "up_down_dtod": 0.05, "dw_min_std": 0.3}
    )  # fmt: skip
    dev, g = crossbar(card, (32, 33), getkey())
    x = jr.uniform(getkey(), (4, 33), jnp.float32, -1.0, 1.0)
    d = jr.uniform(getkey(), (4, 32), jnp.float32, -1.0, 1.0)
    _, rep = update_fn(card)(dev, g, x, d, lr=0.05, g_unit_S=G_UNIT, key=getkey())
    assert float(rep.realised_over_requested) == pytest.approx(1.0, abs=0.15)


@pytest.mark.slow
def test_lumped_c2c_update_mean(getkey):
    """As above with lumped c2c noise on a 64x65 crossbar, batch 8 (slow: a second compile)."""
    card = make_card(
        {"model": "soft_bounds", "dw_min": 0.01, "w_min": -1.0, "w_max": 1.0, "up_down": 0.05,
         "dw_min_dtod": 0.3, "up_down_dtod": 0.05, "dw_min_std": 0.3}
    )  # fmt: skip
    dev, g = crossbar(card, (64, 65), getkey())
    x = jr.uniform(getkey(), (8, 65), jnp.float32, -1.0, 1.0)
    d = jr.uniform(getkey(), (8, 64), jnp.float32, -1.0, 1.0)
    for c2c in ("per_pulse", "lumped"):
        _, rep = update_fn(card, c2c=c2c)(dev, g, x, d, lr=0.05, g_unit_S=G_UNIT, key=getkey())
        assert float(rep.realised_over_requested) == pytest.approx(1.0, abs=0.15), c2c


def test_report_layout_is_fixed_through_scan(getkey):
    """The update carries through lax.scan: state and report keep shapes and dtypes."""
    card = make_card(IDEAL_LIKE)
    dev, g = crossbar(card, (4, 5), getkey())
    xs = jr.uniform(getkey(), (3, 2, 5), jnp.float32, -1.0, 1.0)
    ds = jr.uniform(getkey(), (3, 2, 4), jnp.float32, -1.0, 1.0)

    def step(g, inp):
        x, d, k = inp
        return outer_product_update(card, dev, g, x, d, lr=0.01, g_unit_S=G_UNIT, key=k)

    g_end, reps = jax.jit(lambda g: jax.lax.scan(step, g, (xs, ds, jr.split(getkey(), 3))))(g)
    assert g_end.shape == g.shape and g_end.dtype == jnp.float32
    assert isinstance(reps, UpdateReport)
    for field in reps:
        assert field.shape == (3,)
    assert reps.pulses_applied.dtype == jnp.int32
    assert reps.realised_norm.dtype == jnp.float32


def test_bad_arguments_fail_at_trace_time(getkey):
    card = make_card(IDEAL_LIKE)
    dev, g = crossbar(card, (3, 4), getkey())
    x, d = jnp.ones((1, 4), jnp.float32), jnp.ones((1, 3), jnp.float32)
    with pytest.raises(ValueError, match="mode"):
        outer_product_update(card, dev, g, x, d, lr=0.1, g_unit_S=G_UNIT, mode="x", key=None)
    with pytest.raises(ValueError, match="x must be"):
        outer_product_update(card, dev, g, d, d, lr=0.1, g_unit_S=G_UNIT, key=getkey())
    with pytest.raises(ValueError, match="key"):
        outer_product_update(card, dev, g, x, d, lr=0.1, g_unit_S=G_UNIT, key=None)


def test_update_512x512_under_jit(getkey):
    """The whole stochastic update path runs inside jit on a 512x512 crossbar
    (2 x 512 x 513 devices with the bias column), batch 4, BL 31 (noise-free device to keep
    the default run fast; the benchmark times a noisy one)."""
    card = make_card(IDEAL_LIKE)
    n = 512
    dev, g = crossbar(card, (n, n + 1), getkey())
    x = jr.uniform(getkey(), (4, n + 1), jnp.float32, -1.0, 1.0)
    d = jr.uniform(getkey(), (4, n), jnp.float32, -1.0, 1.0)
    upd = update_fn(card, mode="stochastic", bit_length=31)
    g_new, rep = upd(dev, g, x, d, lr=0.01, g_unit_S=G_UNIT, key=getkey())
    t = time.perf_counter()
    g_new, rep = upd(dev, g, x, d, lr=0.01, g_unit_S=G_UNIT, key=getkey())
    g_new.block_until_ready()
    assert time.perf_counter() - t < 30.0
    assert g_new.shape == (2, n, n + 1)
    assert float(rep.realised_over_requested) == pytest.approx(1.0, abs=0.05)
    assert int(rep.pulses_applied) > 0


def test_scale_helper_matches_card():
    card = make_card(IDEAL_LIKE)
    assert normalised_scale_S(card) == pytest.approx((G_MAX - G_MIN) / 2.0)
