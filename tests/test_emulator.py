"""Fabrication, settling and nudge schedules of the emulated chip."""

from __future__ import annotations

import dataclasses

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from analog_hep.emulator import (
    dac,
    fabricate,
    free_phase,
    measure,
    nudge_phases,
    nudge_schedule,
    settle,
)
from analog_hep.hep import circle_betas
from analog_hep.spec import load_circuit, load_device


def _with(spec, **updates):
    """Copy of a circuit spec with nested fields replaced: ``neuron={"noise_std": 0.1}``."""
    up = {k: getattr(spec, k).model_copy(update=v) for k, v in updates.items()}
    return spec.model_copy(update=up)


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def test_same_seed_bitwise_same_chip(toy):
    a, _ = fabricate(toy.spec, dict(toy.devices), 3)
    b, _ = fabricate(toy.spec, dict(toy.devices), 3)
    c, _ = fabricate(toy.spec, dict(toy.devices), 4)
    assert _leaves_equal(a, b)
    assert not _leaves_equal(a, c)


def test_ideal_chip_holds_its_initial_weights(toy):
    chip, clipped = fabricate(toy.spec, dict(toy.devices), 0)
    assert set(chip.crossbars) == {"W0", "W1", "readout"}
    w, b = chip.crossbars["W0"].weights()
    assert w.shape == (4, 6) and b.shape == (4,)
    # init std 0.5: a 4x6 draw has a sample std well within (0.25, 0.8)
    assert 0.25 < float(jnp.std(w)) < 0.8
    assert clipped == {"W0": 0, "W1": 0, "readout": 0}


def test_mismatch_statistics_follow_the_spec_across_seeds(toy):
    """Per-neuron gain/offset and read-direction gain mismatch have the asked std.

    100 seeds x 8 neurons = 800 draws: the sample std of a N(0, s^2) draw is within
    5 % of s with probability > 0.99 (std error s / sqrt(2 n) = 2.5 %).
    """
    spec = _with(
        toy.spec,
        neuron={"gain_mismatch_rel": 0.1, "offset_mismatch": 0.05},
        periphery={"forward_gain_mismatch_rel": 0.02, "transpose_gain_mismatch_rel": 0.03},
    )
    gains, offs, fwd, bwd = [], [], [], []
    for seed in range(100):
        chip, _ = fabricate(spec, dict(toy.devices), seed)
        gains += [np.asarray(g) for g in chip.neuron_gain]
        offs += [np.asarray(o) for o in chip.neuron_offset]
        fwd.append(np.asarray(chip.crossbars["W1"].forward_gain))
        bwd.append(np.asarray(chip.crossbars["W1"].transpose_gain))
    for draws, mean, std in (
        (gains, 1.0, 0.1),
        (offs, 0.0, 0.05),
        (fwd, 1.0, 0.02),
        (bwd, 1.0, 0.03),
    ):
        d = np.concatenate(draws)
        assert abs(d.std() / std - 1) < 0.05 * 2, (std, d.std())
        assert abs(d.mean() - mean) < 4 * std / np.sqrt(d.size)


def test_stuck_faults_and_device_spread_follow_the_card(toy, tmp_path):
    """A card with 10 % stuck devices and 20 % bound spread, over a 1000-device sample."""
    import yaml

    card = load_device("ideal").model_dump()
    card.update(
        name="faulty",
        response={
            "model": "soft_bounds",
            "dw_min": 0.01,
            "w_min": -1.0,
            "w_max": 1.0,
            "w_max_dtod": 0.2,
            "w_min_dtod": 0.2,
        },
        faults={"stuck_off_prob": 0.05, "stuck_on_prob": 0.05},
    )
    path = tmp_path / "faulty.yaml"
    path.write_text(yaml.safe_dump(card))
    faulty = load_device(path)
    from analog_hep.physics._device_array import draw_devices

    dev = draw_devices(faulty, (2, 100, 50), key=jax.random.PRNGKey(0))
    n = dev.stuck.size
    frac = float(jnp.mean(dev.stuck))
    assert abs(frac - 0.10) < 4 * np.sqrt(0.1 * 0.9 / n)
    ok = ~np.asarray(dev.stuck)
    span = faulty.conductance.g_max_S - faulty.conductance.g_min_S
    # b_max = g_min + (1 + 0.2 xi + 1) span / 2: relative spread of (b_max - mid) is 0.2
    rel = (np.asarray(dev.b_max_S)[ok] - (faulty.conductance.g_min_S + span / 2)) / (span / 2)
    assert abs(rel.std() - 0.2) < 0.01 and abs(rel.mean() - 1.0) < 0.01
    stuck_vals = np.asarray(dev.b_min_S)[~ok]
    assert set(np.unique(stuck_vals)) <= {
        faulty.conductance.g_min_S,
        np.float32(faulty.conductance.g_max_S),
    }


def test_settle_state_layout_is_stable_through_scan(toy):
    chip, _ = fabricate(toy.spec, dict(toy.devices), 0)
    x = jnp.full((3, 6), 0.5)
    y = jnp.eye(4)[:3]
    init = tuple(jnp.zeros((3, n)) for n in (4, 4))
    out = settle(chip, x, y, jnp.zeros(3), init, steps=5, key=None)
    assert [s.shape for s in out.states] == [(3, 6), (3, 4), (3, 4)]
    assert all(s.dtype == jnp.float32 for s in out.states)
    out_c = settle(chip, x, y, jnp.full(3, 0.1 + 0.1j), init, steps=5, key=None)
    assert all(s.dtype == jnp.complex64 for s in out_c.states[1:])
    assert out.residual.shape == (3,) and out.logits.shape == (3, 4)


def test_noisy_chip_requires_a_key(toy):
    spec = _with(toy.spec, neuron={"noise_std": 0.01})
    chip, _ = fabricate(spec, dict(toy.devices), 0)
    with pytest.raises(ValueError, match="PRNG key"):
        free_phase(chip, jnp.zeros((2, 6)), steps=3, key=None)


def test_conjugate_symmetry_matches_full_solve(toy):
    """Noise off: settling only N/2+1 points equals settling all N (the mirror points are
    conjugates): each point checked against settling it on its own."""
    chip, _ = fabricate(toy.spec, dict(toy.devices), 0)
    x = dac(chip, jnp.linspace(0, 1, 12).reshape(2, 6))
    y = jnp.eye(4)[:2]
    free = free_phase(chip, x, steps=200, key=None)
    betas = circle_betas(0.3, 6)
    pts = nudge_phases(
        chip, free, y, *nudge_schedule(betas, noisy=False, start="free"), steps=200, key=None
    )
    assert pts.betas.shape == (6,)
    for k, bt in enumerate(betas):
        pair = nudge_schedule((bt, 0.05), noisy=False, start="free")
        one = nudge_phases(chip, free, y, *pair, steps=200, key=None)
        np.testing.assert_allclose(pts.states[-1][k], one.states[-1][0], atol=2e-6)
    np.testing.assert_allclose(pts.states[1][1], jnp.conj(pts.states[1][5]), atol=1e-7)


def test_dac_and_adc_quantise(toy):
    spec = _with(toy.spec, periphery={"dac_bits": 2, "adc_bits": 3})
    chip, _ = fabricate(spec, dict(toy.devices), 0)
    x = dac(chip, jnp.array([[0.0, 0.1, 0.4, 0.6, 0.9, 1.3]]))
    np.testing.assert_allclose(x, [[0.0, 0.0, 1 / 3, 2 / 3, 1.0, 1.0]], atol=1e-6)
    free = measure(chip, free_phase(chip, x, steps=50, key=None))
    levels = np.asarray(free.states[1]) * 7
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_clipped_weights_are_reported(toy):
    spec = _with(toy.spec)
    xb = spec.crossbars.model_copy(
        update={
            "default": spec.crossbars.default.model_copy(
                update={"mapping": spec.crossbars.default.mapping.model_copy(update={"w_max": 0.5})}
            )
        }
    )
    chip, clipped = fabricate(spec.model_copy(update={"crossbars": xb}), dict(toy.devices), 0)
    assert clipped["W0"] > 0
    w, _ = chip.crossbars["W0"].weights()
    assert float(jnp.max(jnp.abs(w))) <= 0.5 + 1e-5


def test_one_sided_and_balanced_mappings_agree_on_an_ideal_chip(toy):
    one = _with(toy.spec)
    xb = one.crossbars.model_copy(
        update={
            "default": one.crossbars.default.model_copy(
                update={
                    "mapping": one.crossbars.default.mapping.model_copy(
                        update={"scheme": "one_sided"}
                    )
                }
            )
        }
    )
    a, _ = fabricate(one.model_copy(update={"crossbars": xb}), dict(toy.devices), 0)
    b, _ = fabricate(toy.spec, dict(toy.devices), 0)
    np.testing.assert_allclose(
        a.crossbars["W1"].weights()[0], b.crossbars["W1"].weights()[0], atol=1e-5
    )
    assert float(jnp.min(a.crossbars["W1"].g_minus_S)) == 0.0


def test_loaded_circuits_fabricate(toy):
    for name in ("toy", "mnist_mlp"):
        c = load_circuit(name)
        chip, _ = fabricate(c.spec, dict(c.devices), c.spec.seed)
        assert chip.config.layers == c.spec.layers


def _settle_drawing(monkeypatch, ahead: bool, chip, x, y, beta, *, steps: int, key, nudged=True):
    """``settle`` from rest in a freshly compiled program, its neuron noise drawn ahead of the
    loop (``ahead``) or step by step inside it."""
    import equinox as eqx

    import analog_hep.emulator._settle as settle_mod

    monkeypatch.setattr(settle_mod, "NOISE_AHEAD_PER_STEP", 10**9 if ahead else 0)
    dtype = beta.dtype
    init = tuple(jnp.zeros((x.shape[0], n), dtype) for n in chip.config.layers[1:])

    def run(chip, key):  # a new function: a new compile, under the patched threshold
        return settle(chip, x, y, beta, init, steps=steps, key=key, nudged=nudged)

    return eqx.filter_jit(run)(chip, key)


def test_noise_is_the_same_drawn_ahead_or_step_by_step(toy, monkeypatch):
    """Issue 13 item 8: the noise of a settle depends on the key, the step and the shape only,
    not on the size threshold that picks where it is drawn (ahead of the loop or in it)."""
    from analog_hep.emulator._settle import neuron_noise

    spec = _with(toy.spec, neuron={"noise_std": 0.05})
    chip, _ = fabricate(spec, dict(toy.devices), 0)
    key = jax.random.PRNGKey(11)
    for shape in ((9, 3, 8), (7, 3, 9), (4, 50, 333)):  # even and odd totals of draws
        ahead = jax.jit(lambda k, shape=shape: neuron_noise(chip, k, shape))(key)
        each = jax.jit(lambda k, t, shape=shape: neuron_noise(chip, k, shape, t))
        for t in range(shape[0]):
            np.testing.assert_array_equal(np.asarray(ahead[t]), np.asarray(each(key, t)))

    x = dac(chip, jnp.linspace(0, 1, 18).reshape(3, 6))
    y = jnp.eye(4)[:3]
    cases = {
        "free": (jnp.zeros(3), False),
        "real nudge": (jnp.full(3, 0.2), True),
        "complex nudge": (jnp.asarray([0.2j, -0.1 + 0.1j, 0.3], jnp.complex64), True),
    }
    for name, (beta, nudged) in cases.items():
        a, b = (
            _settle_drawing(monkeypatch, ahead, chip, x, y, beta, steps=9, key=key, nudged=nudged)
            for ahead in (True, False)
        )
        for sa, sb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            if name == "complex nudge":
                # Same noise, but the two loop bodies are different programs: XLA:CPU may
                # contract a * b + c into an FMA in one and not the other (1-2 ulp; bitwise
                # with XLA_FLAGS=--xla_cpu_max_isa=SSE4_2).
                np.testing.assert_allclose(np.asarray(sa), np.asarray(sb), rtol=1e-6, atol=1e-9)
            else:
                np.testing.assert_array_equal(np.asarray(sa), np.asarray(sb), err_msg=name)
    other = _settle_drawing(
        monkeypatch, True, chip, x, y, beta, steps=9, key=jax.random.PRNGKey(12)
    )
    assert not np.array_equal(np.asarray(other.states[1]), np.asarray(a.states[1]))  # noisy


@pytest.mark.parametrize("ahead", [True, False], ids=["drawn-ahead", "per-step"])
def test_neuron_noise_has_the_spec_std_whichever_way_it_is_drawn(toy, monkeypatch, ahead):
    """With zero weights, zero offsets and tanh neurons, a discrete step makes every state
    ``tanh(noise) ~ noise``: its spread is the spec's std, fresh at every step."""
    tanh = type(toy.spec.neuron.activation)(name="tanh")
    spec = _with(toy.spec, neuron={"noise_std": 0.01, "activation": tanh})
    chip, _ = fabricate(spec, dict(toy.devices), 0)
    zero = {
        n: dataclasses.replace(xb, g_plus_S=xb.g_minus_S, hidden_S=jnp.stack([xb.g_minus_S] * 2))
        for n, xb in chip.crossbars.items()
    }
    offsets = tuple(jnp.zeros_like(o) for o in chip.neuron_offset)
    chip = dataclasses.replace(chip, crossbars=zero, neuron_offset=offsets)
    x, y, beta = jnp.zeros((500, 6)), jnp.zeros((500, 4)), jnp.zeros(500)
    a, b = (
        _settle_drawing(
            monkeypatch, ahead, chip, x, y, beta, steps=t, key=jax.random.PRNGKey(0), nudged=False
        ).states[1]
        for t in (7, 8)
    )
    for s in (a, b):
        assert abs(float(jnp.std(s)) / 0.01 - 1) < 0.05  # 2,000 draws: SE of the std ~1.6 %
    assert abs(float(jnp.corrcoef(a.ravel(), b.ravel())[0, 1])) < 0.1  # a fresh draw per step


def test_products_run_at_full_float32_precision(toy):
    """Every matrix product of a training step asks for HIGHEST precision (GPUs would use
    TF32 otherwise: relative gradient error 2.7e-2 instead of 8.9e-6 on an H100)."""
    from analog_hep.emulator._driver import _settle_schedule
    from analog_hep.emulator._ground_truth import ground_truth
    from analog_hep.hep import dense, outer_factors
    from analog_hep.physics import outer_product_update

    chip, _ = fabricate(toy.spec, dict(toy.devices), 0)
    x, y = jnp.full((2, 6), 0.5), jnp.eye(4)[:2]
    betas, plan = nudge_schedule(circle_betas(0.2, 4), noisy=False, start="free")

    def dots(jaxpr) -> list:
        found = []
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.append(eqn.params["precision"])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                found += dots(sub)
        return found

    def settle_all(chip):
        return _settle_schedule(
            chip,
            x,
            y,
            jax.random.PRNGKey(0),
            np.int32(1),
            betas,
            plan,
            free_steps=5,
            nudge_steps=5,
        )

    pts = settle_all(chip)
    xb = chip.crossbars["W0"]
    traced = [
        jax.make_jaxpr(settle_all)(chip),
        jax.make_jaxpr(lambda c: ground_truth(c, x, y, steps=5, max_adjoint_iterations=5))(chip),
        jax.make_jaxpr(
            lambda s: dense(
                outer_factors(
                    s.states,
                    s.logits,
                    s.betas,
                    jnp.ones(4, jnp.complex64),
                    y,
                    jnp.ones(2),
                    crossbars=("W0", "W1", "readout"),
                    has_bias=(True, True, True),
                )
            )
        )(pts),
        jax.make_jaxpr(
            lambda g: outer_product_update(
                toy.devices["W0"],
                xb.devices,
                g,
                jnp.ones((3, 7)),
                jnp.ones((3, 4)),
                lr=0.1,
                g_unit_S=xb.g_unit_S,
                mode="expected",
                key=None,
            )
        )(xb.hidden_S),
    ]
    for jp in traced:
        found = dots(jp.jaxpr)
        assert found, "no matrix product traced"
        highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
        assert all(p == highest for p in found), found


def test_unroll_is_a_speed_setting_only(toy):
    """``--driver emulator:unroll=K`` changes how the loop is compiled, not what it settles
    (noise included: the per-step keys are the same)."""
    from analog_hep.drivers import NudgeSchedule
    from analog_hep.emulator import EmulatorDriver
    from analog_hep.errors import SpecError

    spec = _with(toy.spec, neuron={"noise_std": 0.01})
    circuit = dataclasses.replace(toy, spec=spec)
    x, y = np.linspace(0, 1, 18, dtype=np.float32).reshape(3, 6), np.eye(4, dtype=np.float32)[:3]
    schedule = NudgeSchedule(betas=tuple(circle_betas(0.2, 4)), free_steps=37, nudge_steps=11)
    settled = []
    for unroll in ("1", "4"):
        drv = EmulatorDriver(circuit, seed=3, options={"unroll": unroll})
        drv.load_inputs(x, y)
        settled.append(drv.run_schedule(schedule))
    leaves = [jax.tree_util.tree_leaves(s) for s in settled]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    for bad in ("0", "four"):
        with pytest.raises(SpecError, match="option unroll: expected an integer >= 1"):
            EmulatorDriver(circuit, seed=3, options={"unroll": bad})
