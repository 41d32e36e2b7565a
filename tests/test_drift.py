"""`analog-hep drift`: a trained chip evaluated after conductance drift (issue 15, item 2)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.spec import load_circuit
from analog_hep.studies import TrainOptions, train
from analog_hep.studies.training._drift import evaluate_drift, human_time

REPO = Path(__file__).resolve().parents[1]
YEAR_S = 3.15e7


def _digits_on(tmp, device: str, *, noise: float | None = None, epochs=1, max_train=200):
    """A record of the digits chip on ``device`` (pulse-count updates), by default one
    epoch on 200 samples."""
    text = (REPO / "circuits" / "digits.yaml").read_text()
    text = text.replace("device: ideal", f"device: {device}")
    text = text.replace(
        "    bias: true\n", "    bias: true\nperiphery:\n  update_mode: pulse_count\n"
    )
    circuit_file = tmp / "digits_drift.yaml"
    circuit_file.write_text(text)
    circuit = load_circuit(circuit_file)
    opts = TrainOptions.from_circuit(circuit, epochs=epochs, max_train=max_train, noise=noise)
    out = tmp / "run.h5"
    res = train(circuit, opts, out=out, progress=False, log=lambda s: None)
    return out, res


@pytest.fixture(scope="module")
def pcm_run(tmp_path_factory):
    return _digits_on(tmp_path_factory.mktemp("pcm"), "pcm_pair")


@pytest.fixture(scope="module")
def uniform_run(tmp_path_factory):
    """pcm_pair with every device's drift exponent equal (no device-to-device spread), two
    epochs on all the training samples (well above chance, about 60 %)."""
    tmp = tmp_path_factory.mktemp("uniform")
    card = (REPO / "devices" / "pcm_pair.yaml").read_text()
    card = card.replace("name: pcm_pair", "name: pcm_uniform").replace(
        "nu_dtod: 0.16", "nu_dtod: 0.0"
    )
    (tmp / "pcm_uniform.yaml").write_text(card)
    return _digits_on(tmp, "pcm_uniform.yaml", epochs=2, max_train=None)


@pytest.fixture(scope="module")
def ideal_noisy_run(tmp_path_factory):
    """Ideal devices (no drift model) and neuron noise: evaluation draws noise."""
    return _digits_on(tmp_path_factory.mktemp("ideal"), "ideal", noise=0.02)


def test_human_times():
    times = [1, 60, 3600, 86400, 2.6e6, 3.15e7, 0.5, 7200, 1.5e5]
    words = ["1 s", "1 min", "1 h", "1 day", "1 month", "1 year", "0.5 s", "2 h", "1.74 days"]
    assert [human_time(t) for t in times] == words


def test_at_t0_the_chip_is_the_recorded_one_and_conductances_shrink(pcm_run):
    out, res = pcm_run
    times = [1.0, 20.0, 3600.0, YEAR_S]
    r = evaluate_drift(out, times)
    assert r.has_drift and r.note is None and r.epoch == 1
    assert r.recorded_test_accuracy == res.test_accuracy
    for p in r.points[:2]:  # no drift before the card's t0_s = 20 s
        assert p.accuracy == p.accuracy_compensated == res.test_accuracy
        assert p.g_ratio == 1.0 and set(p.alpha.values()) == {1.0}
    ratios = [p.g_ratio for p in r.points]
    assert ratios[1] > ratios[2] > ratios[3] > 0
    # mean nu 0.05: about (t / t0)^-0.05 on average
    assert ratios[3] == pytest.approx((YEAR_S / 20.0) ** -0.05, rel=0.05)
    assert all(a != 1 for a in r.points[3].alpha.values())


def test_uniform_drift_is_compensated_exactly(uniform_run):
    """Without device-to-device spread every conductance scales by (t/t0)^-nu: alpha undoes it."""
    out, res = uniform_run
    r = evaluate_drift(out, [1.0, YEAR_S])
    t0, year = r.points
    factor = (YEAR_S / 20.0) ** -0.05
    assert year.g_ratio == pytest.approx(factor, rel=1e-4)
    for a in year.alpha.values():
        assert a == pytest.approx(1 / factor, rel=1e-4)
    assert t0.accuracy == res.test_accuracy > 0.4
    assert year.loss > t0.loss + 0.1  # the drifted chip's outputs shrink: its loss rises
    assert year.accuracy_compensated == pytest.approx(t0.accuracy, abs=1 / 360)
    assert year.loss_compensated == pytest.approx(t0.loss, rel=1e-3)
    assert abs(year.loss - t0.loss) > 10 * abs(year.loss_compensated - t0.loss)


def test_a_card_without_drift_says_so_and_is_constant(ideal_noisy_run, capsys):
    out, res = ideal_noisy_run
    assert main(["drift", str(out), "--times", "1,3.15e7", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["has_drift"] is False and "no drift model" in doc["note"]
    assert set(doc["drift"].values()) == {None}
    accs = {(p["accuracy"], p["accuracy_compensated"]) for p in doc["points"]}
    # a noisy chip: the evaluation's noise restarts where the run's last test started
    assert accs == {(res.test_accuracy, res.test_accuracy)}
    assert [p["time"] for p in doc["points"]] == ["1 s", "1 year"]
    assert main(["drift", str(out), "--times", "60"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("note: no drift model") and len(text) == 4


def test_same_seed_same_output(ideal_noisy_run, capsys):
    out, _ = ideal_noisy_run
    runs = []
    for _ in range(2):
        assert main(["drift", str(out), "--times", "100", "--seed", "7", "--json"]) == 0
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] and json.loads(runs[0])["seed"] == 7


def test_table_and_plot(pcm_run, tmp_path, capsys):
    out, _ = pcm_run
    png = tmp_path / "drift.png"
    pytest.importorskip("matplotlib")
    assert main(["drift", str(out), "--times", "1,86400", "--plot", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("drift: pcm_pair (W0, readout)")
    assert lines[3].split()[:2] == ["1", "1"] and lines[4].split()[1:3] == ["1", "day"]
    assert png.stat().st_size > 1000


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_bad_input_is_one_line_exit_2(pcm_run, tmp_path, capsys):
    out, _ = pcm_run
    missing = tmp_path / "nope.h5"
    _one_line_error(capsys, ["drift", str(missing)], str(missing))
    text = tmp_path / "text.h5"
    text.write_text("not hdf5\n")
    _one_line_error(capsys, ["drift", str(text)], str(text))
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.attrs["format"] = "something-else"
    _one_line_error(capsys, ["drift", str(other)], str(other), "not an analog-hep run record")
    no_driver = tmp_path / "no_driver.h5"
    shutil.copy(out, no_driver)
    with h5py.File(no_driver, "a") as h5:
        for name in h5["checkpoints"]:
            del h5["checkpoints"][name]["driver"]
    _one_line_error(capsys, ["drift", str(no_driver)], str(no_driver), "'driver'")
    for bad in ("0", "1,abc", "1,inf", "--times=-5", ""):
        argv = (
            ["drift", str(out), bad]
            if bad.startswith("--")
            else ["drift", str(out), "--times", bad]
        )
        _one_line_error(capsys, argv, "--times")


def test_json_is_strict_and_complete(pcm_run, capsys):
    out, res = pcm_run
    assert main(["drift", str(out), "--times", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (p,) = doc["points"]
    assert set(p) == {
        "t_s",
        "time",
        "accuracy",
        "loss",
        "accuracy_compensated",
        "loss_compensated",
        "g_ratio",
        "alpha",
    }
    assert doc["drift"]["W0"] == {"card": "pcm_pair", "nu": 0.05, "nu_dtod": 0.16, "t0_s": 20.0}
    assert doc["recorded_test_accuracy"] == res.test_accuracy
    assert math.isfinite(p["loss"]) and np.isclose(p["g_ratio"], 1.0)


@pytest.fixture(scope="module")
def pcm_mixed_precision_run(tmp_path_factory):
    """circuits/digits_pcm_pair.yaml (mixed-precision updates) for 3 epochs."""
    circuit = load_circuit(REPO / "circuits" / "digits_pcm_pair.yaml")
    opts = TrainOptions.from_circuit(circuit, epochs=3)
    out = tmp_path_factory.mktemp("pcm_mp") / "run.h5"
    res = train(circuit, opts, out=out, progress=False, log=lambda s: None)
    return out, res


def test_compensation_keeps_a_well_trained_pcm_chip_within_2_points_after_a_year(
    pcm_mixed_precision_run,
):
    """Issue 15: accuracy at 1 s and after one year, with global drift compensation, as
    trained and after programming the weights into one-sided pairs."""
    out, res = pcm_mixed_precision_run
    assert res.test_accuracy > 0.9
    for program in (None, "one_sided"):
        r = evaluate_drift(out, [1.0, YEAR_S], program=program)
        first, year = r.points
        assert r.programmed == program
        assert first.accuracy_compensated - year.accuracy_compensated <= 0.02, (program, r)
        assert year.g_ratio < 0.6  # the devices did drift: about (1.6e6)^-0.05


def test_programming_one_sided_pairs_keeps_the_weights(pcm_mixed_precision_run):
    """pcm_pair has no programming noise: the one-sided pairs hold the trained weights (to
    the card's bounds), with one device of each pair at g_min."""
    import jax.random as jr

    from analog_hep.emulator import EmulatorDriver, program_weights
    from analog_hep.studies.training._drift import _circuit, _driver_state
    from analog_hep.studies.training._record_read import read_run

    out, _ = pcm_mixed_precision_run
    run = read_run(out)
    _, _, state = _driver_state(run)
    circuit = _circuit(run)
    d = EmulatorDriver(circuit, seed=0)
    try:
        d.load_state_dict(state)
        chip = d.emulated_chip
        new = program_weights(chip, dict(circuit.devices), scheme="one_sided", key=jr.PRNGKey(0))
    finally:
        d.close()
    for name, xb in chip.crossbars.items():
        nx = new.crossbars[name]
        live = ~np.asarray(xb.devices.stuck).any(axis=0)
        w0 = np.asarray(xb.g_plus_S - xb.g_minus_S)[live]
        w1 = np.asarray(nx.g_plus_S - nx.g_minus_S)[live]
        np.testing.assert_allclose(w1, w0, atol=1e-3 * float(np.abs(w0).max()))
        low = np.minimum(np.asarray(nx.g_plus_S), np.asarray(nx.g_minus_S))[live]
        assert np.median(low) <= 1e-3 * float(np.asarray(nx.g_plus_S).max())
