"""The device-model registry: one module per model, and everything built from it agrees.

The card schema, the emulator's pulse response, ``fit-device`` and the docs' table all come
from :data:`analog_hep.spec.device_models.MODELS`; these tests check that they agree with
each other and with docs/devices.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from analog_hep.physics import draw_devices, expected_step_S, normalised_scale_S
from analog_hep.spec import DeviceCard
from analog_hep.spec.device_models import (
    FIT_MODELS,
    MODELS,
    PulsedResponse,
    device_model,
    docs_table,
)

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "analog_hep" / "spec" / "device_models"
DOCS = (REPO / "docs" / "devices.md").read_text(encoding="utf-8")
G_MIN, G_MAX = 2.0e-6, 1.2e-5


def test_every_module_is_a_registered_model():
    """Each public module of the package is one model, registered under its file name, with
    a schema whose ``model`` key is that name."""
    files = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_"))
    assert sorted(MODELS) == files
    for name, model in MODELS.items():
        assert model.name == name
        assert model.response.model_fields["model"].annotation.__args__ == (name,)
        assert model.pulsed == issubclass(model.response, PulsedResponse)
        assert device_model(name) is model


def test_docs_table_is_the_registry():
    """docs/devices.md section 3 holds the generated table verbatim: every model, with its
    own keys, in registry order."""
    assert docs_table() in DOCS
    rows = [r for r in docs_table().splitlines()[2:]]
    assert [re.match(r"\| `(\w+)` ", r).group(1) for r in rows] == list(MODELS)
    for row, model in zip(rows, MODELS.values(), strict=True):
        keys = re.findall(r"`(\w+)`", row.rsplit("|", 2)[1])
        assert tuple(keys) == model.own_fields


def test_docs_fit_table_lists_the_fit_models():
    """The fitting table of docs/devices.md section 10 lists exactly the models with a fit."""
    section = DOCS[DOCS.index("## 10. Fitting") :]
    table = section[section.index("| model | fitted step |") :].split("\n\n")[0]
    listed = re.findall(r"^\| `(\w+)` \|", table, flags=re.M)
    assert sorted(listed) == sorted(FIT_MODELS)


def test_schema_error_lists_models_in_registry_order():
    with pytest.raises(ValueError) as err:
        DeviceCard.model_validate(_card({"model": "nope"}))
    assert ", ".join(f"'{m}'" for m in MODELS) in str(err.value)


def test_registry_imports_no_jax():
    """The spec layer builds the card schema from the registry without importing JAX."""
    code = (
        "import sys, analog_hep.spec.device_models as m; "
        "assert len(m.MODELS) == 7; "
        "assert not any(k == 'jax' or k.startswith('jax.') for k in sys.modules), 'jax'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _card(response: dict) -> dict:
    return {
        "name": "t",
        "source": {"paper": "p", "simulator": "s"},
        "conductance": {"g_min_S": G_MIN, "g_max_S": G_MAX},
        "response": response,
    }


# Fit parameters (internal units: G itself, range [G_MIN, G_MAX]) and the noise-free card
# with the same response (one device, no d2d): the card's normalised step Δw^d is the fit's
# amplitude over scale_S.
_SCALE = (G_MAX - G_MIN) / 2.0
FIT_CASES = {
    "linear_step": (
        {"c_up": 0.02 * _SCALE, "gamma_up": 0.3, "c_down": 0.015 * _SCALE, "gamma_down": 0.6},
        {"model": "linear_step", "dw_min": 0.02, "w_min": -1.0, "w_max": 1.0,
         "up_down": 0.25, "gamma_up": 0.3, "gamma_down": 0.6},
    ),
    "exp_step": (
        {"c_up": 0.02 * _SCALE, "A_up": 0.2, "gamma_up": 1.5, "c_down": 0.02 * _SCALE,
         "A_down": -0.3, "gamma_down": 2.0},
        {"model": "exp_step", "dw_min": 0.02, "w_min": -1.0, "w_max": 1.0, "A_up": 0.2,
         "gamma_up": 1.5, "A_down": -0.3, "gamma_down": 2.0, "a": 1.0, "b": 0.0},
    ),
    "piecewise": (
        {**{f"up_{k}": v * 0.02 * _SCALE for k, v in enumerate([1.5, 1.0, 0.5])},
         **{f"down_{k}": v * 0.02 * _SCALE for k, v in enumerate([0.4, 1.0, 1.3])}},
        {"model": "piecewise", "dw_min": 0.02, "w_min": -1.0, "w_max": 1.0,
         "piecewise_up": [1.5, 1.0, 0.5], "piecewise_down": [0.4, 1.0, 1.3]},
    ),
    "soft_bounds": (
        {"k_up": 0.02 * _SCALE / (G_MAX - (G_MIN + G_MAX) / 2), "k_down": 0.02 * _SCALE
         / ((G_MIN + G_MAX) / 2 - G_MIN), "g_hi": G_MAX, "g_lo": G_MIN},
        {"model": "soft_bounds", "dw_min": 0.02, "w_min": -1.0, "w_max": 1.0},
    ),
}  # fmt: skip


def test_fit_cases_cover_the_fit_models():
    assert sorted(FIT_CASES) == sorted(FIT_MODELS)


@pytest.mark.parametrize("name", sorted(FIT_CASES))
def test_fit_model_is_the_emulator_equation(name):
    """A fitting model's step (NumPy, named parameters) equals the emulator's noise-free step
    (JAX, float32) of the card with the same parameters, at 41 states in both directions
    (within float32 rounding: 1e-5 of the step)."""
    theta, response = FIT_CASES[name]
    fit = MODELS[name].fit
    assert fit is not None
    assert set(fit.names(3)) == set(theta)
    card = DeviceCard.model_validate(_card(response))
    dev = draw_devices(card, (41,), key=jr.PRNGKey(0))
    g = np.linspace(G_MIN, G_MAX, 43)[1:-1]
    step_S = 0.02 * normalised_scale_S(card)
    for direction in (1, -1):
        d = np.full(g.shape, direction)
        emulator = expected_step_S(card, dev, jnp.asarray(g, jnp.float32), jnp.asarray(d))
        fitted = fit.predict(np, theta, g, d, G_MIN, G_MAX)
        np.testing.assert_allclose(fitted, np.asarray(emulator), rtol=0, atol=1e-5 * step_S)
