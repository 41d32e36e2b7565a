"""Every ``--json`` output is strict JSON: no ``NaN`` or ``Infinity`` tokens, which other
JSON readers reject; what was not measured is ``null``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.cli._json import strict


def _strict_loads(text: str) -> object:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_values_become_null() -> None:
    obj = {
        "loss": math.nan,
        "inf": -math.inf,
        "ok": 1.5,
        "arr": np.array([1.0, np.nan], np.float32),
        "scalar": np.float64(np.inf),
        "nested": [(math.nan, 2)],
    }
    assert strict(obj) == {
        "loss": None,
        "inf": None,
        "ok": 1.5,
        "arr": [1.0, None],
        "scalar": None,
        "nested": [[None, 2]],
    }


def test_gradcheck_json_is_strict_where_a_figure_does_not_apply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Symmetric EP has no circle statistic (NaN inside): ``null`` in the output."""
    argv = ["gradcheck", "toy", "--method", "symmetric", "--beta", "0.05", "--batch", "4"]
    assert main([*argv, "--json"]) == 0
    out = _strict_loads(capsys.readouterr().out)
    assert isinstance(out, dict) and out["circle_batch_ratio"] is None


def test_check_json_of_a_conv_chip_is_strict(capsys: pytest.CaptureFixture[str]) -> None:
    """The conv fields extend the same objects: one entry per crossbar, null where a field
    does not apply (a dense crossbar's geometry, an MLP's input_shape)."""
    cnn = str(Path(__file__).parent / "data" / "cnn_two_blocks.yaml")
    assert main(["check", cnn, "--json"]) == 0
    out = _strict_loads(capsys.readouterr().out)
    assert isinstance(out, dict) and out["input_shape"] == [1, 8, 8]
    kinds = [(c["name"], c["kind"], c["geometry"] is None) for c in out["crossbars"]]
    assert kinds == [
        ("W0", "conv", False),
        ("W1", "conv", False),
        ("W2", "dense", True),
        ("readout", "dense", True),
    ]
    assert out["crossbars"][0]["geometry"]["in_shape"] == [1, 8, 8]
    assert main(["check", "toy", "--json"]) == 0
    mlp = _strict_loads(capsys.readouterr().out)
    assert isinstance(mlp, dict) and mlp["input_shape"] is None
    assert set(mlp["crossbars"][0]) == set(out["crossbars"][0])
    assert all(c["kind"] == "dense" and c["conv_shape"] is None for c in mlp["crossbars"])
