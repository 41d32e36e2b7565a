"""Device physics: pulse-response models, c2c/d2d statistics, write noise, drift, programming.

Every statistical check states its sample size N and tolerance. Sampling errors used below:
the standard error of a mean of N draws with std s is s/sqrt(N); of a standard deviation,
about s/sqrt(2N) (Gaussian data).
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import yaml
from _device_helpers import G_MAX, G_MIN, _strict, make_card  # noqa: F401  (autouse fixture)

from analog_hep.physics import (
    apply_delta_exact,
    draw_devices,
    drift_conductance,
    expected_step_S,
    maybe_refresh,
    n_pulses,
    normalised_scale_S,
    outer_product_update,
    pulse_step,
    read_conductance,
    resample_visible,
    visible_conductance,
    write_verify,
)
from analog_hep.spec import DeviceCard
from analog_hep.spec.device_models import MODELS

REPO = Path(__file__).resolve().parents[1]
CARDS = sorted((REPO / "devices").glob("*.yaml"))


def base(model: str, **kw) -> dict:
    r = {"model": model, "dw_min": 0.01, "w_min": -1.0, "w_max": 1.0}
    r.update(kw)
    return r


# One card per model (no c2c noise) for the equation checks, with d2d spread on.
D2D = {"dw_min_dtod": 0.2, "up_down_dtod": 0.05, "w_min_dtod": 0.1, "w_max_dtod": 0.1}
EQUATION_CARDS = {
    "constant_step": base("constant_step", up_down=0.2, **D2D),
    "linear_step": base(
        "linear_step", up_down=-0.1, gamma_up=0.3, gamma_down=0.6, gamma_up_dtod=0.05, **D2D
    ),
    "linear_step_own_bounds": base(
        "linear_step", gamma_up=0.5, gamma_down=0.2, mean_bound_reference=False, **D2D
    ),
    "soft_bounds": base("soft_bounds", up_down=0.1, **D2D),
    "exp_step": base("exp_step", up_down=0.26, A_up=-1.18, A_down=-0.08, gamma_up=5.0,
                     gamma_down=5.0, a=-0.5, b=-0.5, **D2D),
    "pow_step": base("pow_step", pow_gamma=2.0, pow_gamma_dtod=0.1, pow_up_down=0.2,
                     pow_up_down_dtod=0.05, **D2D),
    "piecewise": base("piecewise", piecewise_up=[1.5, 1.2, 1.0, 0.6, 0.2],
                      piecewise_down=[0.3, 0.7, 1.0, 1.1, 1.6], **D2D),
}  # fmt: skip


def test_equation_and_statistics_cards_cover_the_registry():
    """Every pulsed model of the device-model registry has an equation card and a statistics
    card here (a new model file needs its checks against the reference equation)."""
    pulsed = {name for name, m in MODELS.items() if m.pulsed}
    assert {r["model"] for r in EQUATION_CARDS.values()} == pulsed
    assert {r[0]["model"] for r in STAT_CARDS.values()} == pulsed


def reference_step(card: DeviceCard, dev, g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Noise-free step (S) written directly from aihwkit's ``update_once`` (C++) in numpy."""
    r = card.response
    s = normalised_scale_S(card)
    to_w = lambda G: r.w_min + (np.asarray(G, np.float64) - G_MIN) / s  # noqa: E731
    w, bmin, bmax = to_w(g), to_w(dev.b_min_S), to_w(dev.b_max_S)
    up_S, dn_S = np.asarray(dev.dw_up_S, np.float64), np.asarray(dev.dw_down_S, np.float64)
    gu, gd = np.asarray(dev.gamma_up, np.float64), np.asarray(dev.gamma_down, np.float64)
    if r.model == "constant_step":
        fu = fd = np.ones_like(w)
    elif r.model in ("linear_step", "soft_bounds"):
        mean_ref = r.model == "linear_step" and r.mean_bound_reference
        ref_u = r.w_max if mean_ref else bmax
        ref_d = r.w_min if mean_ref else bmin
        # aihwkit: slope_up = -gamma_up * scale_up / w_ref_up; w += slope_up * w + scale_up
        fu = 1.0 - gu * w / ref_u
        fd = 1.0 - gd * w / ref_d
    elif r.model == "exp_step":
        z = 2.0 * w / (bmax - bmin) * r.a + r.b
        fu = np.maximum(1.0 - r.A_up * np.exp(r.gamma_up * z), 0.0)
        fd = np.maximum(1.0 - r.A_down * np.exp(r.gamma_down * (-z)), 0.0)
    elif r.model == "pow_step":
        rng = bmax - bmin
        fu = ((bmax - w) / rng) ** gu
        fd = ((w - bmin) / rng) ** gd
    else:
        vu, vd = np.asarray(r.piecewise_up), np.asarray(r.piecewise_down)
        n = len(vu) - 1
        ws = np.maximum((w - bmin) / (bmax - bmin) * n, 0.0)
        k = np.minimum(np.floor(ws).astype(int), n - 1)
        t = np.minimum(ws - k, 1.0)
        fu = (1 - t) * vu[k] + t * vu[k + 1]
        fd = (1 - t) * vd[k] + t * vd[k + 1]
    return np.where(d > 0, up_S * fu, np.where(d < 0, -dn_S * fd, 0.0))


def uniform_states(dev, key, n):
    u = jr.uniform(key, (n,), jnp.float32, 0.02, 0.98)
    return dev.b_min_S + u * (dev.b_max_S - dev.b_min_S)


@pytest.mark.parametrize("name", sorted(EQUATION_CARDS))
def test_pulse_matches_model_equation(name, getkey):
    """Noise-free pulses equal the aihwkit equation per device (N = 2000 devices, states
    uniform inside each device's bounds, both directions, after clipping); rtol 1e-4 of the
    largest step, i.e. float32 rounding."""
    card = make_card(EQUATION_CARDS[name])
    n = 2000
    dev = draw_devices(card, (n,), key=getkey())
    g = uniform_states(dev, getkey(), n)
    step = jax.jit(functools.partial(pulse_step, card))
    scale = float(jnp.max(dev.dw_up_S))
    for direction in (1, -1):
        d = jnp.full((n,), direction, jnp.int32)
        g1 = np.asarray(step(dev, g, d, key=None), np.float64)
        ref = np.clip(np.asarray(g, np.float64) + reference_step(card, dev, g, np.asarray(d)),
                      np.asarray(dev.b_min_S), np.asarray(dev.b_max_S))  # fmt: skip
        np.testing.assert_allclose(g1, ref, rtol=0, atol=1e-4 * scale + 1e-12)
        np.testing.assert_allclose(
            np.asarray(expected_step_S(card, dev, g, d)),
            reference_step(card, dev, g, np.asarray(d)),
            rtol=0,
            atol=1e-4 * scale,
        )
    # direction 0: nothing moves
    g0 = step(dev, g, jnp.zeros((n,), jnp.int32), key=None)
    np.testing.assert_array_equal(np.asarray(g0), np.asarray(g))


# Statistics at w = 0, where every model's state factor f0 is known in closed form.
SIGMA = 0.3
STAT_D2D = {"dw_min_dtod": 0.1, "up_down_dtod": 0.04, "w_min_dtod": 0.0, "w_max_dtod": 0.0}
STAT_CARDS = {
    # name: (response, f0_up, f0_down, noise form)
    "constant_step": (base("constant_step", up_down=0.2, dw_min_std=SIGMA, **STAT_D2D),
                      1.0, 1.0, "mult"),
    "linear_step": (base("linear_step", gamma_up=0.4, gamma_down=0.7, dw_min_std=SIGMA,
                         **STAT_D2D), 1.0, 1.0, "mult"),
    "linear_step_add": (base("linear_step", gamma_up=0.4, gamma_down=0.7, mult_noise=False,
                             dw_min_std=SIGMA, **STAT_D2D), 1.0, 1.0, "add"),
    "soft_bounds": (base("soft_bounds", up_down=-0.15, dw_min_std=SIGMA, **STAT_D2D),
                    1.0, 1.0, "mult"),
    "exp_step": (base("exp_step", A_up=0.2, A_down=0.3, gamma_up=2.0, gamma_down=1.5, a=0.5,
                      b=0.1, dw_min_std=SIGMA, **STAT_D2D),
                 1.0 - 0.2 * np.exp(2.0 * 0.1), 1.0 - 0.3 * np.exp(-1.5 * 0.1), "mult"),
    "exp_step_complex": (base("exp_step", A_up=0.2, A_down=0.3, gamma_up=2.0, gamma_down=1.5,
                              a=0.5, b=0.1, dw_min_std=SIGMA, dw_min_std_add=0.005,
                              **STAT_D2D),
                         1.0 - 0.2 * np.exp(2.0 * 0.1), 1.0 - 0.3 * np.exp(-1.5 * 0.1),
                         "complex"),
    "pow_step": (base("pow_step", pow_gamma=2.0, pow_gamma_dtod=0.0, pow_up_down=0.25,
                      dw_min_std=SIGMA, **STAT_D2D), 0.5 ** 2.5, 0.5 ** 1.5, "mult"),
    "piecewise": (base("piecewise", piecewise_up=[1.4, 1.2, 0.8, 0.5, 0.3],
                       piecewise_down=[0.2, 0.5, 0.9, 1.3, 1.5], dw_min_std=SIGMA,
                       **STAT_D2D), 0.8, 0.9, "mult"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STAT_CARDS))
def test_pulse_statistics_match_card(name, getkey):
    """Mean and spread of the step per pulse over N = 20000 simulated devices at w = 0 match
    the equation with the card's c2c (dw_min_std) and d2d (dw_min_dtod, up_down_dtod)
    numbers: mean within 4 standard errors, std within 4 % (about 5 standard errors of a std
    at this N, allowing for the non-Gaussian product of d2d and c2c factors); the c2c noise
    alone, measured per device against the reference equation, has std dw_min_std within
    3 % (N = 20000: SE 0.5 %)."""
    resp, f0_up, f0_dn, form = STAT_CARDS[name]
    card = make_card(resp)
    n = 20000
    r = card.response
    s = normalised_scale_S(card)
    dev = draw_devices(card, (n,), key=getkey())
    g = jnp.full((n,), G_MIN + (0.0 - r.w_min) * s, jnp.float32)
    step = jax.jit(functools.partial(pulse_step, card))
    d2d2 = r.dw_min_dtod**2 + r.up_down_dtod**2
    for direction, f0, bias in (
        (1, f0_up, min(r.up_down, 0.0)),
        (-1, f0_dn, -max(r.up_down, 0.0)),
    ):
        d = jnp.full((n,), direction, jnp.int32)
        dg = np.asarray(step(dev, g, d, key=getkey()), np.float64) - float(g[0])
        unit = r.dw_min * s  # siemens per normalised dw_min
        m_d = (1.0 + bias) * unit  # E[Δw^d] over devices
        v_d = d2d2 * unit**2  # Var[Δw^d]
        e_d2 = m_d**2 + v_d  # E[(Δw^d)^2]
        mean_pred = direction * f0 * m_d
        if form == "mult":  # ΔG = D f0 (1 + σ ξ)
            var_pred = f0**2 * v_d + SIGMA**2 * f0**2 * e_d2
        elif form == "add":  # ΔG = D f0 + σ D ξ
            var_pred = f0**2 * v_d + SIGMA**2 * e_d2
        else:  # ΔG = D f0 + σ (D f0 + add) ξ  (w = 0: no slope term)
            a_S = r.dw_min_std_add * s
            var_pred = f0**2 * v_d + SIGMA**2 * (f0**2 * e_d2 + 2 * f0 * a_S * m_d + a_S**2)
        se = np.sqrt(var_pred / n)
        assert abs(dg.mean() - mean_pred) < 4 * se, (direction, dg.mean(), mean_pred, se)
        assert dg.std() == pytest.approx(np.sqrt(var_pred), rel=0.04)
        # c2c alone: residual against each device's own noise-free step (reference equation).
        ref = reference_step(card, dev, g, np.asarray(d))
        if form == "mult":
            z = (dg - ref) / np.abs(ref)
        elif form == "add":
            z = (dg - ref) / np.where(direction > 0, dev.dw_up_S, dev.dw_down_S)
        else:
            z = (dg - ref) / (np.abs(ref) + r.dw_min_std_add * s)
        assert abs(z.mean()) < 4 * SIGMA / np.sqrt(n)
        assert z.std() == pytest.approx(SIGMA, rel=0.03)


def test_d2d_draws_match_card(getkey):
    """Drawn step gains and bounds have the card's d2d spreads (N = 20000, std within 4 %;
    SE of a std at this N is 0.5 %), and log-normal gains have median 1."""
    n = 20000
    card = make_card(base("constant_step", dw_min_dtod=0.2, up_down_dtod=0.05,
                          w_min_dtod=0.1, w_max_dtod=0.15))  # fmt: skip
    dev = draw_devices(card, (n,), key=getkey())
    s = normalised_scale_S(card)
    gain_up = np.asarray(dev.dw_up_S) / (0.01 * s)
    assert gain_up.std() == pytest.approx(np.hypot(0.2, 0.05), rel=0.04)
    assert gain_up.mean() == pytest.approx(1.0, abs=4 * 0.21 / np.sqrt(n))
    b_max = -1.0 + (np.asarray(dev.b_max_S) - G_MIN) / s
    b_min = -1.0 + (np.asarray(dev.b_min_S) - G_MIN) / s
    assert b_max.std() == pytest.approx(0.15, rel=0.04)
    assert b_min.std() == pytest.approx(0.1, rel=0.04)
    logn = make_card(base("soft_bounds", dw_min_dtod=0.7, dw_min_dtod_log_normal=True))
    dl = draw_devices(logn, (n,), key=getkey())
    gains = np.asarray(dl.dw_up_S) / (0.01 * s)
    assert np.median(gains) == pytest.approx(1.0, rel=0.03)
    assert np.log(gains).std() == pytest.approx(0.7, rel=0.04)


def test_soft_bounds_saturates_at_bound(getkey):
    """A soft-bounds device pulsed up 3000 times (dw_min 0.01: (1 - 0.01)^3000 ~ 1e-13)
    ends at its own upper bound, within 0.2 % of the range, for all N = 500 devices (with
    multiplicative c2c 0.3 and d2d bounds); and 3000 down pulses reach the lower bound."""
    card = make_card(base("soft_bounds", dw_min_std=0.3, w_max_dtod=0.1, w_min_dtod=0.1,
                          dw_min_dtod=0.2))  # fmt: skip
    n = 500
    dev = draw_devices(card, (n,), key=getkey())
    g = jnp.full((n,), 0.5 * (G_MIN + G_MAX), jnp.float32)
    run = jax.jit(functools.partial(n_pulses, card), static_argnames=())
    up = run(dev, g, jnp.ones((n,), jnp.int32), 3000, key=getkey())
    np.testing.assert_allclose(np.asarray(up), np.asarray(dev.b_max_S), atol=2e-3 * (G_MAX - G_MIN))
    assert bool(jnp.all(up <= dev.b_max_S))
    down = run(dev, up, -jnp.ones((n,), jnp.int32), 3000, key=getkey())
    np.testing.assert_allclose(
        np.asarray(down), np.asarray(dev.b_min_S), atol=2e-3 * (G_MAX - G_MIN)
    )


def test_asymmetric_device_drifts_by_predicted_amount(getkey):
    """n = 50 up then 50 down pulses on a constant-step device with up_down = 0.2 (down
    steps 0.8 dw_min) move it up by n (Δw⁺ - Δw⁻) = 10 dw_min on average: checked over
    N = 4000 devices within 4 standard errors (c2c 0.3, SE from the summed pulse noise); and
    exactly (noise-free) for soft bounds against the closed form
    w_n = b - (b - w_0) (1 - Δ/|b|)^n of each leg."""
    n, n_dev = 50, 4000
    card = make_card(base("constant_step", up_down=0.2, dw_min_std=0.3))
    s = normalised_scale_S(card)
    dev = draw_devices(card, (n_dev,), key=getkey())
    g0 = jnp.full((n_dev,), 0.5 * (G_MIN + G_MAX), jnp.float32)
    ones = jnp.ones((n_dev,), jnp.int32)
    run = jax.jit(functools.partial(n_pulses, card))
    g1 = run(dev, g0, ones, jnp.int32(n), key=getkey())
    g2 = run(dev, g1, -ones, jnp.int32(n), key=getkey())
    net = np.asarray(g2 - g0, np.float64)
    up, dn = 0.01 * s, 0.8 * 0.01 * s
    pred = n * (up - dn)
    se = 0.3 * np.sqrt(n * (up**2 + dn**2)) / np.sqrt(n_dev)
    assert abs(net.mean() - pred) < 4 * se
    assert pred > 0  # drifts in the direction of the asymmetry (up_down > 0: up wins)

    sb = make_card(base("soft_bounds", dw_min=0.02, up_down=-0.3))  # up steps 0.7 dw_min
    s = normalised_scale_S(sb)
    dev = draw_devices(sb, (8,), key=getkey())
    g0 = jnp.full((8,), G_MIN + 1.0 * s, jnp.float32)  # w = 0
    ones = jnp.ones((8,), jnp.int32)
    run = jax.jit(functools.partial(n_pulses, sb))
    g2 = run(dev, run(dev, g0, ones, jnp.int32(n), key=None), -ones, jnp.int32(n), key=None)
    du, dd = 0.7 * 0.02, 0.02
    w1 = 1.0 - (1.0 - 0.0) * (1.0 - du / 1.0) ** n
    w2 = -1.0 + (w1 + 1.0) * (1.0 - dd / 1.0) ** n
    assert w2 < 0  # stronger down steps: drifts down
    np.testing.assert_allclose(np.asarray(g2), G_MIN + (w2 + 1.0) * s, rtol=1e-5)


def test_stuck_devices_never_move(getkey):
    card = make_card(base("constant_step", dw_min_std=0.3),
                     faults={"stuck_on_prob": 0.2, "stuck_random_prob": 0.2})  # fmt: skip
    n = 4000
    dev = draw_devices(card, (n,), key=getkey())
    stuck = np.asarray(dev.stuck)
    assert 0.35 < stuck.mean() < 0.45  # 0.4 expected, N = 4000: SE 0.008
    g = jnp.clip(jnp.full((n,), 5e-6, jnp.float32), dev.b_min_S, dev.b_max_S)
    g1 = n_pulses(card, dev, g, jnp.ones((n,), jnp.int32), 20, key=getkey())
    np.testing.assert_array_equal(np.asarray(g1)[stuck], np.asarray(g)[stuck])
    assert np.all(np.asarray(g1)[~stuck] > np.asarray(g)[~stuck])


def test_write_noise_and_levels(getkey):
    """Visible = hidden + write_noise_std dw_min scale_S ξ: std within 3 % (N = 20000);
    only touched devices are re-sampled; levels quantise the visible value."""
    card = make_card(base("soft_bounds", write_noise_std=2.0))
    n = 20000
    g = jnp.full((n,), 5e-6, jnp.float32)
    vis = visible_conductance(card, g, key=getkey())
    std_S = 2.0 * 0.01 * normalised_scale_S(card)
    assert float(jnp.std(vis - g)) == pytest.approx(std_S, rel=0.03)
    touched = jnp.arange(n) % 2 == 0
    vis2 = resample_visible(card, g, vis, touched, key=getkey())
    assert bool(jnp.all(jnp.where(touched, vis2 != vis, vis2 == vis)))
    with pytest.raises(ValueError, match="key"):
        visible_conductance(card, g, key=None)
    lv = make_card(base("constant_step"), conductance={"g_min_S": 0.0, "g_max_S": 1.0e-5,
                                                        "levels": 11})  # fmt: skip
    q = visible_conductance(lv, jnp.linspace(0.0, 1e-5, 101, dtype=jnp.float32), key=None)
    np.testing.assert_allclose(np.asarray(q) / 1e-6, np.round(np.asarray(q) / 1e-6), atol=1e-4)
    ideal = make_card({"model": "ideal"}, conductance={"g_min_S": 0.0, "g_max_S": 1.0e-5,
                                                       "levels": 11})  # fmt: skip
    dev = draw_devices(ideal, (5,), key=getkey())
    delta = jnp.asarray([0.4e-6, 0.6e-6, -3e-6, 1e-4, 0.0], jnp.float32)
    out = apply_delta_exact(ideal, dev, jnp.full((5,), 2e-6, jnp.float32), delta)
    np.testing.assert_allclose(np.asarray(out), [2e-6, 3e-6, 0.0, 1e-5, 2e-6], atol=1e-12)


def test_drift_and_read_noise(getkey):
    """Drift G(t) = G(t0) (t/t0)^-nu per device; read noise has std read_noise_rel G
    (N = 20000, within 3 %)."""
    card = make_card(base("constant_step"), drift={"nu": 0.05, "nu_dtod": 0.2, "t0_s": 20.0},
                     read_noise_rel=0.02)  # fmt: skip
    n = 20000
    dev = draw_devices(card, (n,), key=getkey())
    assert float(jnp.std(dev.nu)) == pytest.approx(0.05 * 0.2, rel=0.04)
    g = jnp.full((n,), 8e-6, jnp.float32)
    t = 86400.0
    gd = drift_conductance(card, dev, g, t)
    np.testing.assert_allclose(np.asarray(gd), 8e-6 * (t / 20.0) ** (-np.asarray(dev.nu)),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(drift_conductance(card, dev, g, 10.0)), np.asarray(g))
    r = read_conductance(card, g, key=getkey())
    assert float(jnp.std(r / g - 1.0)) == pytest.approx(0.02, rel=0.03)
    assert float(jnp.abs(jnp.mean(r / g - 1.0))) < 4 * 0.02 / np.sqrt(n)


def test_write_verify_reaches_targets(getkey):
    """Write-verify with tolerance one step and read noise: all devices that are not stuck
    and whose target lies inside their bounds end within tolerance (N = 2000); stuck devices
    with a far target are reported failed; the budget bounds the pulses."""
    card = make_card(base("soft_bounds", dw_min=0.02, dw_min_std=0.2, dw_min_dtod=0.2,
                          w_max_dtod=0.1, w_min_dtod=0.1),
                     read_noise_rel=0.002, faults={"stuck_random_prob": 0.05})  # fmt: skip
    n = 2000
    dev = draw_devices(card, (n,), key=getkey())
    s = normalised_scale_S(card)
    g0 = jnp.clip(jnp.full((n,), 5.5e-6, jnp.float32), dev.b_min_S, dev.b_max_S)
    target = jr.uniform(getkey(), (n,), jnp.float32, 3e-6, 8e-6)
    tol = 0.02 * s
    wv = jax.jit(
        functools.partial(write_verify, card), static_argnames=("tolerance_S", "max_pulses")
    )
    g, rep = wv(dev, g0, target, tolerance_S=tol, max_pulses=400, key=getkey())
    stuck = np.asarray(dev.stuck)
    far = np.abs(np.asarray(target) - np.asarray(g0)) > tol
    failed = np.asarray(rep.failed)
    assert np.all(failed[stuck & far])
    reachable = (
        ~stuck
        & (np.asarray(target) > np.asarray(dev.b_min_S))
        & (np.asarray(target) < np.asarray(dev.b_max_S))
    )
    assert failed[reachable].mean() < 0.01
    err = np.abs(np.asarray(g) - np.asarray(target))[reachable & ~failed]
    assert np.all(err < tol + 6 * 0.002 * 8e-6)  # verify read noise: 6 sigma
    assert int(rep.n_failed) == int(failed.sum())
    assert int(jnp.max(rep.pulses)) <= 400
    assert int(rep.total_pulses) == int(jnp.sum(rep.pulses))


def test_one_sided_refresh(getkey):
    """A one-sided pair (unidirectional soft-bounds devices, range [0, 2]) with both devices
    saturated is reset and the difference is rewritten onto one device within tolerance;
    pairs below the thresholds are untouched. (The PCM card's first SET step from reset is
    28 dw_min, so small differences cannot be rewritten within one step: write-verify
    reports those as failed.)"""
    card = make_card(
        {"model": "soft_bounds", "dw_min": 0.01, "w_min": 0.0, "w_max": 2.0,
         "dw_min_std": 0.1, "dw_min_dtod": 0.1},
        refresh={"every_updates": 2},
    )  # fmt: skip
    shape = (2, 4, 5)
    dev = draw_devices(card, shape, key=getkey())
    g_plus = jnp.full(shape[1:], 0.9e-5, jnp.float32).at[0].set(3e-6)
    g_minus = jnp.full(shape[1:], 0.8e-5, jnp.float32).at[0].set(1e-6)
    g = jnp.stack([g_plus, g_minus])
    refresh = jax.jit(functools.partial(maybe_refresh, card))
    g_new, rep = refresh(dev, g, 4, key=getkey())
    assert int(rep.n_refreshed) == 4 * 5 - 5
    assert int(rep.n_failed) == 0
    np.testing.assert_array_equal(np.asarray(g_new[:, 0]), np.asarray(g[:, 0]))
    w_old = np.asarray(g[0] - g[1])[1:]
    w_new = np.asarray(g_new[0] - g_new[1])[1:]
    tol = 0.01 * normalised_scale_S(card)
    assert np.all(np.abs(w_new - w_old) <= tol + 1e-12)
    assert np.allclose(np.asarray(g_new[1, 1:]), np.asarray(dev.b_min_S[1, 1:]))
    g_m, rep_m = refresh(dev, g, 3, key=getkey())  # not due: every_updates = 2
    assert int(rep_m.n_refreshed) == 0
    np.testing.assert_array_equal(np.asarray(g_m), np.asarray(g))


@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_every_card_loads_draws_and_pulses_under_jit(path, getkey):
    """Registry: each card in devices/ validates, cites a paper and a simulator, draws a
    crossbar of pairs, and pulses (or updates exactly) and updates under jit, staying
    inside each device's bounds."""
    card = DeviceCard.model_validate(yaml.safe_load(path.read_text()))
    assert card.name == path.stem
    assert card.source.paper and card.source.simulator
    shape = (2, 6, 7)
    dev = draw_devices(card, shape, key=getkey())
    g = 0.5 * (dev.b_min_S + dev.b_max_S)
    if card.response.model == "ideal":
        g1 = jax.jit(functools.partial(apply_delta_exact, card))(dev, g, jnp.full(shape, 1e-7))
    else:
        d = jnp.broadcast_to(jnp.where(jnp.arange(7) % 2 == 0, 1, -1), shape).astype(jnp.int32)
        g1 = jax.jit(functools.partial(n_pulses, card))(dev, g, d, 5, key=getkey())
    assert bool(jnp.all((g1 >= dev.b_min_S) & (g1 <= dev.b_max_S)))


@pytest.mark.slow
@pytest.mark.parametrize("path", CARDS, ids=lambda p: p.stem)
def test_every_card_stochastic_update_under_jit(path, getkey):
    """Registry (slow: one ~3 s compile per card): a stochastic outer-product update of a
    crossbar of each card's pairs runs under jit and stays inside the devices' bounds."""
    card = DeviceCard.model_validate(yaml.safe_load(path.read_text()))
    shape = (2, 6, 7)
    dev = draw_devices(card, shape, key=getkey())
    g = 0.5 * (dev.b_min_S + dev.b_max_S)
    upd = jax.jit(
        functools.partial(outer_product_update, card), static_argnames=("mode", "bit_length")
    )
    x = jr.uniform(getkey(), (3, 7), jnp.float32, -1.0, 1.0)
    dd = jr.uniform(getkey(), (3, 6), jnp.float32, -1.0, 1.0)
    g_unit = (card.conductance.g_max_S - card.conductance.g_min_S) / 2.0
    g2, rep = upd(dev, g, x, dd, lr=0.05, g_unit_S=g_unit, key=getkey())
    assert g2.shape == shape and g2.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(g2)))
    assert bool(jnp.all((g2 >= dev.b_min_S) & (g2 <= dev.b_max_S)))
    assert float(rep.requested_norm) > 0.0
