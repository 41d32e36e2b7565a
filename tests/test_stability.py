"""Stability maps (paper Fig. 2b): where the nudged toy chip settles in the complex beta plane."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.errors import SpecError
from analog_hep.studies import (
    StabilityMap,
    gradcheck,
    load_stability_map,
    save_stability_map,
    stability_map,
)

# One grid for every test here: a single compiled chunk (41 x 41 points).
GRID = {"extent": 1.5, "resolution": 40, "steps": 200, "tol": 1e-4}


@pytest.fixture(scope="module")
def toy_map(toy) -> StabilityMap:
    return stability_map(toy, **GRID)


def test_settled_near_zero_unstable_far_out(toy_map):
    m = toy_map
    assert m.residual.shape == m.distance.shape == (41, 41)
    centre = m.residual[20, 20]
    assert m.beta_re[20] == 0.0 and m.beta_im[20] == 0.0
    assert centre <= 1e-6 and m.distance[20, 20] < 1e-5  # beta = 0 is the free state
    # the toy chip's singularity of beta -> s*_beta sits near |beta| ~ 0.85 (docs/gradients.md)
    assert 0.7 < m.stable_radius < 1.0, m.stable_radius
    assert 0.5 < m.stable_fraction < 0.98
    beta = m.beta_re[None, :] + 1j * m.beta_im[:, None]
    inside = np.abs(beta) < m.stable_radius
    assert np.all(m.residual[inside] <= m.tol)
    # distance from the free state grows with |beta| along the positive real axis
    row = m.distance[20, 20:25]
    assert np.all(np.diff(row) > 0)


def test_hep_is_exact_inside_and_breaks_outside(toy, toy_map):
    """The map predicts where hEP works (paper Fig. 2b vs 2d)."""
    inside = gradcheck(
        toy, method="hep", points=16, beta=0.5 * toy_map.stable_radius, batch=1, seed=0
    )
    outside = gradcheck(toy, method="hep", points=16, beta=1.5, batch=1, seed=0)
    assert inside.cosine_total > 0.9999
    assert outside.cosine_total < 0.99 or outside.nudge_residual > toy_map.tol


def test_save_load_round_trip(toy_map, tmp_path):
    path = tmp_path / "m.h5"
    save_stability_map(toy_map, path)
    back = load_stability_map(path)
    np.testing.assert_array_equal(back.residual, toy_map.residual)
    np.testing.assert_array_equal(back.beta_im, toy_map.beta_im)
    assert back.summary() == toy_map.summary()
    with pytest.raises(SpecError, match="not an analog-hep stability map"):
        import h5py

        with h5py.File(tmp_path / "other.h5", "w") as h5:
            h5.attrs["format"] = "something"
        load_stability_map(tmp_path / "other.h5")


def test_cli_writes_map_and_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "toy_map.h5"
    argv = [
        "stability-map",
        "toy",
        "--extent",
        "1.5",
        "--resolution",
        "40",
        "--steps",
        "200",
        "--circle",
        "0.5",
        "--out",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["out"] == str(out) and info["png"] == str(out.with_suffix(".png"))
    assert out.exists() and out.with_suffix(".png").stat().st_size > 10_000
    assert 0.7 < info["stable_radius"] < 1.0


@pytest.mark.parametrize(
    "args", [["--resolution", "0"], ["--extent", "-1"], ["--tol", "0"], ["--steps", "0"]]
)
def test_cli_bad_arguments(args, capsys, tmp_path):
    assert main(["stability-map", "toy", *args, "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected" in err[0]
