"""``analog-hep fit-device``: recover known cards from synthetic pulse data; reject bad CSVs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import yaml

from analog_hep.cli import main
from analog_hep.errors import SpecError
from analog_hep.physics import draw_devices, expected_step_S, pulse_step
from analog_hep.spec._device import DeviceCard
from analog_hep.studies.fitting._fit_device import fit_device, read_measurements

G_MIN, G_MAX = 2.0e-6, 1.2e-5
N_DEV = 16
# Two full cycles of 150 potentiating then 150 depressing pulses: enough to reach both
# bounds for the cards below, as a measured characterisation would.
SEQUENCE = ([1] * 150 + [-1] * 150) * 2


def make_card(response: dict) -> DeviceCard:
    return DeviceCard.model_validate(
        {
            "name": "truth",
            "source": {"paper": "synthetic", "simulator": "analog-hep"},
            "conductance": {"g_min_S": G_MIN, "g_max_S": G_MAX},
            "response": response,
        }
    )


def synthesise(card: DeviceCard, path: Path, key) -> Path:
    """Simulate N_DEV devices of ``card`` through SEQUENCE and write the CSV (+ an extra
    column, which must be ignored)."""
    dev = draw_devices(card, (N_DEV,), key=jr.fold_in(key, 0))
    mid = 0.5 * (G_MIN + G_MAX)
    g0 = jnp.clip(jnp.full((N_DEV,), mid, jnp.float32), dev.b_min_S, dev.b_max_S)

    @jax.jit
    def run(g0, keys):
        def body(g, inp):
            d, k = inp
            g = pulse_step(card, dev, g, jnp.full((N_DEV,), d, jnp.int32), key=k)
            return g, g

        return jax.lax.scan(body, g0, (jnp.asarray(SEQUENCE, jnp.int32), keys))[1]

    reads = np.asarray(run(g0, jr.split(jr.fold_in(key, 1), len(SEQUENCE))))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "pulse", "direction", "conductance_S", "temperature_K"])
        for i in range(N_DEV):
            w.writerow([f"dev{i}", 0, 0, repr(float(g0[i])), 300])
            for k, d in enumerate(SEQUENCE):
                w.writerow([f"dev{i}", k + 1, d, repr(float(reads[k, i])), 300])
    return path


def mean_curve(card: DeviceCard, g: np.ndarray, direction: int) -> np.ndarray:
    """The card's mean-device step (S) at conductances ``g`` (d2d switched off)."""
    doc = card.model_dump()
    for k in ("dw_min_dtod", "up_down_dtod", "w_min_dtod", "w_max_dtod"):
        doc["response"][k] = 0.0
    mean_card = DeviceCard.model_validate(doc)
    dev = draw_devices(mean_card, g.shape, key=jr.PRNGKey(0))
    d = jnp.full(g.shape, direction, jnp.int32)
    return np.asarray(expected_step_S(mean_card, dev, jnp.asarray(g, jnp.float32), d))


def fitted_card(result) -> DeviceCard:
    return DeviceCard.model_validate(result.card)


def test_soft_bounds_recovered(tmp_path, getkey):
    """Known soft-bounds card, 16 devices x 600 pulses. The mean-device parameters are
    limited by the device-to-device spread of 16 devices (the reported standard error is
    spread / 4): dw_min and up_down within 3 reported standard errors (and 8 %, 0.05); the
    bounds within 2 % of the range; c2c within 10 %. Spreads estimated from 16 devices have
    a relative standard error of about 18 %: dw_min_dtod within 0.05 of 0.1, up_down_dtod
    within 0.02 of 0.03, bound spreads within 0.03 of 0.05 (about 3 standard errors)."""
    truth = make_card(
        {"model": "soft_bounds", "dw_min": 0.05, "w_min": -1.0, "w_max": 1.0, "up_down": 0.2,
         "dw_min_dtod": 0.1, "up_down_dtod": 0.03, "w_min_dtod": 0.05, "w_max_dtod": 0.05,
         "dw_min_std": 0.1}
    )  # fmt: skip
    data = read_measurements(synthesise(truth, tmp_path / "sb.csv", getkey()))
    assert data.n_devices == N_DEV
    res = fit_device(data, "soft_bounds", name="sb")
    p = res.params
    assert abs(p["dw_min"] - 0.05) < 3 * res.stderr["dw_min"]
    assert p["dw_min"] == pytest.approx(0.05, rel=0.08)
    assert abs(p["up_down"] - 0.2) < 3 * res.stderr["up_down"]
    assert p["up_down"] == pytest.approx(0.2, abs=0.05)
    span = G_MAX - G_MIN
    assert p["g_min_S"] == pytest.approx(G_MIN, abs=0.02 * span)
    assert p["g_max_S"] == pytest.approx(G_MAX, abs=0.02 * span)
    assert res.dw_min_std == pytest.approx(0.1, rel=0.10)
    assert res.d2d["dw_min_dtod"] == pytest.approx(0.1, abs=0.05)
    assert res.d2d["up_down_dtod"] == pytest.approx(0.03, abs=0.02)
    assert res.d2d["w_max_dtod"] == pytest.approx(0.05, abs=0.03)
    assert res.d2d["w_min_dtod"] == pytest.approx(0.05, abs=0.03)
    assert res.rms_residual_S > 0 and res.n_devices == N_DEV
    fitted_card(res)  # loads


def test_linear_step_recovered(tmp_path, getkey):
    """Known linear-step card (16 devices x 600 pulses): dw_min within 8 % and 3.5 reported
    standard errors (the spread of 16 devices' gains, 0.1 / 4), up_down within 0.03, slopes
    within 0.05, bounds within 1 % of the range, c2c within 10 %."""
    truth = make_card(
        {"model": "linear_step", "dw_min": 0.02, "w_min": -1.0, "w_max": 1.0, "up_down": -0.1,
         "gamma_up": 0.3, "gamma_down": 0.6, "dw_min_dtod": 0.1, "dw_min_std": 0.1}
    )  # fmt: skip
    res = fit_device(
        read_measurements(synthesise(truth, tmp_path / "ls.csv", getkey())), "linear_step",
        name="ls",
    )  # fmt: skip
    p = res.params
    assert p["dw_min"] == pytest.approx(0.02, rel=0.08)
    assert abs(p["dw_min"] - 0.02) < 3.5 * res.stderr["dw_min"]
    assert p["up_down"] == pytest.approx(-0.1, abs=0.03)
    assert p["gamma_up"] == pytest.approx(0.3, abs=0.05)
    assert p["gamma_down"] == pytest.approx(0.6, abs=0.05)
    span = G_MAX - G_MIN
    assert p["g_min_S"] == pytest.approx(G_MIN, abs=0.01 * span)
    assert p["g_max_S"] == pytest.approx(G_MAX, abs=0.01 * span)
    assert res.dw_min_std == pytest.approx(0.1, rel=0.10)
    assert res.d2d["dw_min_dtod"] == pytest.approx(0.1, abs=0.05)


@pytest.mark.parametrize(
    "response",
    [
        {"model": "exp_step", "dw_min": 0.02, "w_min": -1.0, "w_max": 1.0, "up_down": 0.1,
         "A_up": 0.2, "gamma_up": 1.5, "A_down": 0.2, "gamma_down": 1.0, "a": 1.0, "b": 0.0,
         "dw_min_dtod": 0.05, "dw_min_std": 0.1},
        {"model": "piecewise", "dw_min": 0.02, "w_min": -1.0, "w_max": 1.0,
         "piecewise_up": [1.5, 1.2, 1.0, 0.8, 0.5], "piecewise_down": [0.4, 0.8, 1.0, 1.2, 1.4],
         "dw_min_dtod": 0.05, "dw_min_std": 0.1},
    ],
    ids=["exp_step", "piecewise"],
)  # fmt: skip
def test_nonlinear_response_recovered(response, tmp_path, getkey):
    """exp_step and piecewise parameters trade off against each other (A, gamma, dw_min), so
    the recovered quantity is the mean response: the fitted card's mean step agrees with the
    true card's at 41 states across the range within 6 % of the nominal step dw_min scale_S,
    in both directions; c2c within 15 %."""
    truth = make_card(response)
    model = response["model"]
    res = fit_device(
        read_measurements(synthesise(truth, tmp_path / f"{model}.csv", getkey())), model,
        name=model, nodes=5,
    )  # fmt: skip
    fit = fitted_card(res)
    g = np.linspace(G_MIN, G_MAX, 43)[1:-1]
    step_S = 0.02 * (G_MAX - G_MIN) / 2.0
    for direction in (1, -1):
        err = mean_curve(fit, g, direction) - mean_curve(truth, g, direction)
        assert np.max(np.abs(err)) < 0.06 * step_S, (direction, np.max(np.abs(err)) / step_S)
    assert res.dw_min_std == pytest.approx(0.1, rel=0.15)


def test_cli_writes_loadable_card_and_json(tmp_path, getkey, capsys):
    truth = make_card(
        {"model": "soft_bounds", "dw_min": 0.05, "w_min": -1.0, "w_max": 1.0,
         "dw_min_std": 0.05, "dw_min_dtod": 0.1}
    )  # fmt: skip
    csv_path = synthesise(truth, tmp_path / "m.csv", getkey())
    out = tmp_path / "cards" / "my_rram.yaml"
    rc = main(["fit-device", str(csv_path), "--model", "soft_bounds", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    for k in ("model", "g_min_S", "g_max_S", "rms_residual_S", "n_devices"):
        assert k in summary
    assert summary["model"] == "soft_bounds" and summary["n_devices"] == N_DEV
    card = DeviceCard.model_validate(yaml.safe_load(out.read_text()))
    assert card.name == "my_rram"
    assert card.response.model == "soft_bounds"
    assert summary["g_min_S"] == pytest.approx(card.conductance.g_min_S)
    # Text output: parameters with standard errors and the residual.
    rc = main(["fit-device", str(csv_path), "--model", "linear_step", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "dw_min" in text and "std error" in text and "rms step residual" in text
    # The written card also works in the emulator's physics.
    card = DeviceCard.model_validate(yaml.safe_load(out.read_text()))
    dev = draw_devices(card, (4,), key=getkey())
    pulse_step(card, dev, dev.b_min_S, jnp.ones((4,), jnp.int32), key=getkey())


GOOD_HEADER = "device,pulse,direction,conductance_S\n"
GOOD_ROWS = "a,0,0,1.0e-6\na,1,1,1.1e-6\na,2,1,1.2e-6\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r":1: header: .*empty file"),
        ("device,pulse,conductance_S\na,0,1e-6\n", r":1: header: .*missing direction"),
        (GOOD_HEADER + GOOD_ROWS + "a,3,2,1.3e-6\n", r":5: direction: expected \+1.*found '2'"),
        (GOOD_HEADER + GOOD_ROWS + "a,3,-1,abc\n", r":5: conductance_S: .*found 'abc' \(row 5\)"),
        (GOOD_HEADER + GOOD_ROWS + "a,3,-1,-1e-6\n", r":5: conductance_S: .*>= 0"),
        (GOOD_HEADER + GOOD_ROWS + "a,x,-1,1e-6\n", r":5: pulse: expected an integer"),
        (GOOD_HEADER + GOOD_ROWS + "a,2,-1,1e-6\n", r":5: pulse: device 'a' pulse 2 appears twice"),
        (GOOD_HEADER + GOOD_ROWS + "a,3\n", r":5: row 5: expected at least 4 fields"),
        (GOOD_HEADER, r"at least one data row"),
    ],
    ids=["empty", "missing-column", "direction", "nan-conductance", "negative", "pulse",
         "duplicate", "short-row", "no-rows"],
)  # fmt: skip
def test_malformed_csv_is_rejected_naming_the_row(text, match, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SpecError, match=match):
        read_measurements(path)
    rc = main(
        ["fit-device", str(path), "--model", "soft_bounds", "--out", str(tmp_path / "x.yaml")]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("analog-hep fit-device: error: ") and str(path) in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.yaml").exists()


def test_too_little_data_is_rejected(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(GOOD_HEADER + GOOD_ROWS)
    with pytest.raises(SpecError, match=r"needs at least 4 potentiating \(\+1\) steps.*found 2"):
        fit_device(read_measurements(path), "soft_bounds", name="x")


def test_cli_models_are_the_registry_fit_models(tmp_path, capsys):
    """``--model`` offers exactly the registry's models with a fitting model; a model without
    one (pow_step) is refused with exit code 2."""
    from analog_hep.spec.device_models import FIT_MODELS, MODELS

    assert set(FIT_MODELS) == {n for n, m in MODELS.items() if m.fit is not None}
    assert {"soft_bounds", "linear_step", "exp_step", "piecewise"} == set(FIT_MODELS)
    path = tmp_path / "m.csv"
    path.write_text(GOOD_HEADER + GOOD_ROWS)
    rc = main(["fit-device", str(path), "--model", "pow_step", "--out", str(tmp_path / "x.yaml")])
    assert rc == 2
    assert "pow_step" in capsys.readouterr().err
    with pytest.raises(SpecError, match="--model: expected one of"):
        fit_device(read_measurements(path), "pow_step", name="x")
