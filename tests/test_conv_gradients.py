"""Gradient studies on conv chips: hEP against the exact gradient through conv blocks.

The issue's promises for a small holomorphic conv chip (two conv blocks with softmax
pooling, one dense block, holotanh; ideal devices, no noise, settled): hEP N = 8 at
|beta| = 0.1 is exact to cosine 0.9999, and at a moderate |beta| the error falls with N as
for the MLP. Also: the ground truth agrees with finite differences of the settled loss, the
vectorised sweep core and stability maps take conv chips, `gradcheck` runs on
circuits/digits_cnn.yaml, and hEP N > 2 on a max-pooling chip is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.emulator import dac, fabricate, free_phase, ground_truth
from analog_hep.spec import load_circuit
from analog_hep.studies import gradcheck, random_batch, stability_map
from analog_hep.studies.gradients._gradcheck import flat_grads, nudged_estimate
from analog_hep.studies.sweeps._vectorised import GroupStatic, gradcheck_batch, with_noise_flags

REPO = Path(__file__).resolve().parents[1]

# 1x8x8 -> conv 4 (softmax pool) 4x4 -> conv 8 (softmax pool) 2x2 -> dense 16 -> 5 classes.
SMALL = """\
name: conv_small
seed: 0
input_shape: [1, 8, 8]
blocks:
  - {kind: conv, channels: 4, kernel: 3, padding: 1, pool: POOL}
  - {kind: conv, channels: 8, kernel: 3, padding: 1, pool: POOL}
  - {kind: dense, units: 16}
readout: {classes: 5, loss: cross_entropy}
neuron:
  activation: {name: holotanh, a: 1.0}
  gain_mismatch_rel: 0.0
  offset_mismatch: 0.0
  noise_std: 0.0
crossbars:
  default:
    device: ideal
    init: {scheme: fan_in_uniform, gain: 1.0, bias: same}
    mapping: {scheme: balanced, w_max: 2.0}
    bias: true
dynamics: {mode: discrete, free_steps: 150, nudge_steps: 150}
"""


def _circuit(tmp: Path, pool: str = "softmax"):
    path = tmp / f"conv_small_{pool}.yaml"
    path.write_text(SMALL.replace("POOL", pool))
    return load_circuit(str(path))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _circuit(tmp_path_factory.mktemp("conv"))


def test_hep_n8_small_beta_is_exact(small):
    res = gradcheck(small, method="hep", points=8, beta=0.1, batch=4, seed=0)
    assert res.free_residual < 1e-6 and res.nudge_residual < 1e-6
    assert res.cosine_total >= 0.9999
    assert min(res.cosine.values()) >= 0.999, res.cosine  # every crossbar, conv ones too
    assert set(res.cosine) == {"W0", "W1", "W2", "readout"}
    assert res.estimate["W0"].shape == (4 * 9 + 4,)  # (C_out, C_in k k) + bias column
    assert not res.circle_alarm


@pytest.mark.slow  # 30 s; docs/gradients.md has the table
def test_error_falls_with_n_at_moderate_beta(small):
    """|beta| = 0.5 in float64 (float32 puts a floor near 1e-6 under N = 8): measured
    4.8e-3, 5.8e-6, 7.1e-11 for N = 2, 4, 8."""
    with jax.enable_x64(True):
        chip, _ = fabricate(small.spec, dict(small.devices), small.spec.seed)
        k_data = jax.random.split(jax.random.PRNGKey(0), 3)[0]  # gradcheck's batch of seed 0
        x, y = random_batch(chip.config.layers[0], 5, 4, key=k_data)
        x, y = dac(chip, x.astype(jnp.float64)), y.astype(jnp.float64)
        truth = flat_grads(
            chip, ground_truth(chip, x, y, steps=150, max_adjoint_iterations=3000).grads
        )
        free = free_phase(chip, x, steps=150, key=None)
        t = np.concatenate(list(truth.values()))
        errors = []
        for n in (2, 4, 8):
            est = nudged_estimate(chip, free, y, method="hep", points=n, beta=0.5)
            assert float(jnp.max(est.points.residual)) < 1e-10
            e = np.concatenate(list(flat_grads(chip, est.grads).values()))
            errors.append(float(np.linalg.norm(e - t) / np.linalg.norm(t)))
    assert errors[0] > 10 * errors[1] > 100 * errors[2], errors
    assert errors[2] < 1e-8, errors


@pytest.mark.slow  # 12 s
def test_ground_truth_matches_finite_differences(small):
    """Central differences of the settled loss in float64, through both conv blocks (weights
    and a bias), the dense block and the readout."""
    with jax.enable_x64(True):
        chip, _ = fabricate(small.spec, dict(small.devices), small.spec.seed)
        x, y = random_batch(chip.config.layers[0], 5, 3, key=jax.random.PRNGKey(4))
        x, y = dac(chip, x.astype(jnp.float64)), y.astype(jnp.float64)
        gt = ground_truth(chip, x, y, steps=150, max_adjoint_iterations=3000)
        assert float(jnp.max(gt.free_residual)) < 1e-12

        def loss_with(name: str, idx: tuple[int, int], delta: float) -> float:
            xb = chip.crossbars[name]
            g = xb.g_plus_S.astype(jnp.float64).at[idx].add(delta * xb.g_unit_S)
            c2 = eqx.tree_at(lambda c: c.crossbars[name].g_plus_S, chip, g)
            return float(ground_truth(c2, x, y, steps=150, max_adjoint_iterations=10).loss)

        h = 1e-5
        # (crossbar, (row, column), weight or bias): W0 is (4, 9 + 1), W1 (8, 36 + 1).
        for name, idx, which in (
            ("W0", (1, 4), "w"),
            ("W0", (3, 9), "b"),
            ("W1", (5, 20), "w"),
            ("W1", (2, 36), "b"),
            ("W2", (7, 11), "w"),
            ("readout", (2, 3), "w"),
        ):
            fd = (loss_with(name, idx, h) - loss_with(name, idx, -h)) / (2 * h)
            w, b = gt.grads[name]
            exact = float(w[idx] if which == "w" else b[idx[0]])
            assert abs(fd - exact) < 1e-7 * max(1.0, abs(fd)) + 1e-9, (name, idx, fd, exact)


@pytest.mark.slow  # 38 s: four vmapped programs
def test_vectorised_core_matches_gradcheck(small):
    """The sweeps' vmapped core gives gradcheck's numbers on a conv chip (hEP and classic)."""
    chip, _ = fabricate(small.spec, dict(small.devices), small.spec.seed)
    chip = with_noise_flags(chip, neuron=True, read=False)
    for method, points, beta in (("hep", 4, 0.3), ("classic", 2, 0.1)):
        rows = gradcheck_batch(
            [chip, chip], [beta, beta], [0, 1], GroupStatic(method, points, 3, "free", True)
        )
        for row, seed in zip(rows, (0, 1), strict=True):
            ref = gradcheck(
                small, method=method, points=points, beta=beta, batch=3, seed=seed, noise=0.0
            )
            assert abs(row["loss"] - ref.loss) < 1e-6
            assert abs(row["cosine_total"] - ref.cosine_total) < 1e-5
            for n, c in ref.cosine.items():
                assert abs(row["cosine"][n] - c) < 1e-4, (method, n)


def test_stability_map_of_a_conv_chip(small):
    smap = stability_map(small, extent=1.0, resolution=4, steps=60, tol=1e-4, batch=2)
    centre = smap.residual[2, 2]  # beta = 0
    assert smap.residual.shape == (5, 5) and centre < 1e-6
    assert smap.stable_fraction > 0.5 and smap.stable_radius > 0.5


def test_max_pooling_refuses_hep_and_runs_symmetric(tmp_path, capsys):
    circuit = _circuit(tmp_path, "max")
    with pytest.raises(ValueError, match=r"not holomorphic \(max pooling\)"):
        gradcheck(circuit, method="hep", points=4, beta=0.1, batch=2, seed=0)
    code = main(
        ["gradcheck", str(tmp_path / "conv_small_max.yaml"), "--beta", "0.1", "--points", "4"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "symmetric" in err
    res = gradcheck(circuit, method="symmetric", points=2, beta=0.01, batch=2, seed=0)
    assert res.cosine_total > 0.99  # holotanh, max pooling, small real nudges


@pytest.mark.slow  # 11 s; the max-pooling test runs the CLI on a conv chip
def test_cli_on_digits_cnn(capsys):
    circuit = str(REPO / "circuits" / "digits_cnn.yaml")
    args = ["--beta", "0.1", "--points", "4", "--batch", "2", "--dataset", "digits", "--json"]
    code = main(["gradcheck", circuit, *args])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["circuit"] == "digits_cnn" and out["points"] == 4
    assert set(out["cosine"]) == {"W0", "W1", "readout"}
    assert out["cosine_total"] > 0.9999 and out["free_residual"] < 1e-4


def test_cli_dataset_of_another_image_shape(tmp_path, capsys):
    """digits are 1x8x8 (64 features); a conv chip reading 4x4x4 has 64 inputs too."""
    path = tmp_path / "c.yaml"
    text = SMALL.replace("POOL", "softmax").replace("classes: 5", "classes: 10")
    path.write_text(text.replace("[1, 8, 8]", "[4, 4, 4]"))
    code = main(["gradcheck", str(path), "--beta", "0.1", "--dataset", "digits"])
    err = capsys.readouterr().err
    assert code == 2 and "[1, 8, 8]" in err and "[4, 4, 4]" in err


@pytest.mark.slow
def test_fig4a_holomorphic_chip_beats_its_twin():
    """Fig. 4a analogue on 10 MNIST test images (benchmarks/fig4a_conv.py, docs/gradients.md):
    at |beta| = 0.5 hEP N = 4 on vgg7_holo is exact, and symmetric EP on the max-pooling,
    hard-tanh twin is far worse than symmetric EP on the holomorphic chip."""
    mnist = REPO.parent / "shared" / "data" / "mnist"
    if not (mnist / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip("shared MNIST test set not present")
    from analog_hep.data import load_dataset
    from analog_hep.studies import cosine

    ds = load_dataset(f"mnist-test:{mnist}")
    cos = {}
    for name, runs in (
        ("vgg7_holo", (("hep", 4), ("hep", 2))),
        ("vgg7_maxpool_relu", (("symmetric", 2),)),
    ):
        circuit = load_circuit(str(REPO / "circuits" / f"{name}.yaml"))
        chip, _ = fabricate(circuit.spec, dict(circuit.devices), circuit.spec.seed)
        t1 = chip.config.free_steps
        x, y = dac(chip, jnp.asarray(ds.x_test[:10])), jnp.asarray(ds.one_hot(ds.y_test[:10]))
        truth = flat_grads(
            chip, ground_truth(chip, x, y, steps=t1, max_adjoint_iterations=20 * t1).grads
        )
        free = free_phase(chip, x, steps=t1, key=None)
        assert float(jnp.max(free.residual)) < 1e-5
        t = np.concatenate(list(truth.values()))
        for method, n in runs:
            est = nudged_estimate(chip, free, y, method=method, points=n, beta=0.5)
            assert float(jnp.max(est.points.residual)) < 1e-5
            cos[name, n] = cosine(np.concatenate(list(flat_grads(chip, est.grads).values())), t)
    assert cos["vgg7_holo", 4] > 0.9999, cos
    assert cos["vgg7_holo", 2] > 0.999 > 0.95 > cos["vgg7_maxpool_relu", 2], cos
