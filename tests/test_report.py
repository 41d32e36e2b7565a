"""Reports: figures and Markdown from sweep files, run records and stability maps.

The inputs are written here with the same writers the studies use (no chip is settled), so
the tests check the report's logic: which figures a file supports, replicate averaging, the
tables and the hEP-vs-classic line.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.errors import SpecError
from analog_hep.studies import (
    Record,
    StabilityMap,
    SweepFile,
    read_header,
    read_run,
    read_sweep,
    report,
    save_stability_map,
)

pytest.importorskip("matplotlib")


def _cos(method: str, points: int, beta: float, noise: float, seed: int) -> float:
    """A made-up but paper-shaped cosine: classic loses to bias and noise, hEP to noise only."""
    noise_term = (noise / beta) ** 2 * (0.3 if method == "hep" else 3.0)
    bias = 0.0 if method == "hep" and beta < 0.8 * (points / 16) ** 0.2 else 0.3 * beta
    return float(1.0 - bias - noise_term - 0.001 * seed)


def _gradcheck_sweep(
    path, *, devices=("ideal",), points=(15,), seeds=(0, 1), text="description: made up\n"
):
    rows = []
    i = 0
    for dev in devices:
        for noise in (0.0, 0.01):
            for beta in (0.05, 0.1, 0.2, 0.4, 0.8):
                for method, ns in (("hep", points), ("classic", (8,))):
                    for n in ns:
                        for seed in seeds:
                            rows.append(
                                {
                                    "key": f"k{i}",
                                    "index": i,
                                    "kind": "gradcheck",
                                    "circuit": "toy",
                                    "devices": dev,
                                    "method": method,
                                    "points": n,
                                    "beta": beta,
                                    "batch": 10,
                                    "seed": seed,
                                    "noise": noise,
                                    "free_steps": 300,
                                    "nudge_steps": 300,
                                    "start": "free",
                                    "dataset": "",
                                    "update_lr": float("nan"),
                                    "cosine_total": _cos(method, n, beta, noise, seed),
                                    "cosine.W0": 0.9,
                                    "free_residual": 1e-7,
                                    "nudge_residual": 1e-6,
                                }
                            )
                            i += 1
    meta = {"kind": "gradcheck", "sweep_text": text, "sweep_path": "x"}
    with SweepFile(path, meta=meta) as f:
        f.append(rows)
    return rows


def test_gradcheck_sweep_figures_and_tables(tmp_path):
    _gradcheck_sweep(tmp_path / "g.h5", points=(4, 15))
    rep = report([tmp_path / "g.h5"], tmp_path / "out")
    names = {f.name for f in rep.figures}
    assert names == {"g_cosine_vs_beta.png", "g_cosine_vs_n.png"}
    assert all(f.stat().st_size > 10_000 for f in rep.figures)
    md = rep.markdown.read_text()
    assert "![g_cosine_vs_beta](g_cosine_vs_beta.png)" in md and "made up" in md
    assert "hEP's best cosine with the true gradient exceeds classic EP's best in 2 of 2" in md
    rows = {(r["noise"], r["series"]): r for r in rep.tables[str(tmp_path / "g.h5")]}
    best = rows[(0.01, "hEP N=15")]
    # mean over the two seeds (0 and 0.001 lower) at the best |beta|
    assert best["best"] == pytest.approx(_cos("hep", 15, 0.4, 0.01, 0) - 0.0005)
    assert best["beta_best"] == 0.4 and best["rows"] == 2


def test_condition_sweep_draws_best_by_condition(tmp_path):
    _gradcheck_sweep(tmp_path / "d.h5", devices=("ideal", "pcm_pair", "rram_exp"), seeds=(0,))
    rep = report([tmp_path / "d.h5"], tmp_path / "out")
    names = {f.name for f in rep.figures}
    assert "d_best_cosine_total_by_condition.png" in names
    assert {"d_cosine_vs_beta_devices=pcm_pair.png", "d_cosine_vs_beta_devices=ideal.png"} <= names
    md = rep.markdown.read_text()
    assert "| devices | noise | series |" in md
    assert "exceeds classic EP's best in 6 of 6" in md


CIRCUIT_TEXT = "name: toy\nlayers: [2, 3]  # a comment\n"


def _run_record(path, *, meta=None):
    """A made-up run record of three epochs with driver state in every checkpoint."""
    rng = np.random.default_rng(0)
    meta = {"kind": "train", "config": {"method": "hep"}} if meta is None else meta
    with Record.create(path, meta=meta) as rec:
        for epoch in range(3):
            rec.extend(
                "steps",
                [
                    {"loss": 2.0 - 0.1 * s - epoch, "pulses": int(100 + s), "used": 20}
                    for s in range(10)
                ],
            )
            rec.append(
                "metrics",
                {
                    "epoch": epoch + 1,
                    "train_loss": 2.0 - epoch,
                    "train_accuracy": 0.3 * epoch,
                    "test_loss": 2.1 - epoch,
                    "test_accuracy": 0.3 * epoch + 0.1,
                    "seconds": 1.0,
                },
            )
            g = rng.uniform(1e-6, 1e-5, (2, 4, 7))
            rec.save_checkpoint(
                epoch,
                {
                    "driver": {"W0/g_plus_S": g[0], "W0/g_minus_S": g[1], "calls": np.asarray(3)},
                    "controller": {"step_count": np.asarray(10 * (epoch + 1))},
                },
                extra={"temperature_K": 300.0 + epoch},
            )


def test_run_record_curves_pulses_and_conductances(tmp_path):
    path = tmp_path / "run.h5"
    _run_record(path)
    rep = report([path], tmp_path / "out")
    assert {f.name for f in rep.figures} == {
        "run_training.png",
        "run_steps.png",
        "run_conductances.png",
    }
    md = rep.markdown.read_text()
    assert "Method hep; 3 epochs recorded." in md and "| epoch |" in md
    assert "Pulses per step: mean 104.5" in md


def test_stability_map_and_cli_json(tmp_path, capsys):
    axis = np.linspace(-1.0, 1.0, 21)
    beta = axis[None, :] + 1j * axis[:, None]
    residual = np.where(np.abs(beta) < 0.7, 1e-8, 1.0)
    smap = StabilityMap(
        beta_re=axis,
        beta_im=axis.copy(),
        residual=residual,
        distance=np.abs(beta),
        circuit="toy",
        circuit_text="",
        steps=200,
        free_steps=300,
        batch=1,
        seed=0,
        tol=1e-4,
        stable_radius=0.7,
        stable_fraction=float(np.mean(residual <= 1e-4)),
        free_residual=0.0,
        seconds=0.1,
    )
    save_stability_map(smap, tmp_path / "map.h5")
    _gradcheck_sweep(tmp_path / "g.h5", seeds=(0,))
    argv = [
        "report",
        str(tmp_path / "map.h5"),
        str(tmp_path / "g.h5"),
        "--out",
        str(tmp_path / "out"),
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert str(tmp_path / "out" / "map_stability.png") in out["figures"]
    assert out["tables"][str(tmp_path / "map.h5")][0]["stable_radius"] == 0.7
    assert "Every |beta| below 0.7 settles" in (tmp_path / "out" / "report.md").read_text()


def test_unknown_file_is_refused(tmp_path, capsys):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5.attrs["format"] = "nope"
    with pytest.raises(SpecError, match="not a sweep file, run record or stability map"):
        report([tmp_path / "x.h5"], tmp_path / "out")
    (tmp_path / "y.h5").write_text("not hdf5")
    assert main(["report", str(tmp_path / "y.h5"), "--out", str(tmp_path / "o")]) == 2
    assert "cannot read as HDF5" in capsys.readouterr().err


# -- the read API the report goes through -------------------------------------------------------


def test_read_run_gives_metadata_tables_and_checkpoints(tmp_path):
    path = tmp_path / "run.h5"
    meta = {
        "kind": "train",
        "config": {"method": "classic", "points": 1},
        "circuit_text": CIRCUIT_TEXT,
        "driver": "emulator",
        "extra": {"temperature_K": 300.0, "chip_seed": 0},
    }
    _run_record(path, meta=meta)
    assert read_header(path).format == "analog-hep-run/1" and read_header(path).kind == "train"
    run = read_run(path)
    assert run.method == "classic" and run.driver == "emulator" and run.device_texts == {}
    assert run.config == {"method": "classic", "points": 1}
    assert run.circuit == {"name": "toy", "layers": [2, 3]}  # YAML, comment and all
    assert run.metrics["epoch"].tolist() == [1, 2, 3] and len(run.steps["loss"]) == 30
    assert [(c.name, c.epoch) for c in run.checkpoints] == [
        ("epoch_00000", 1),
        ("epoch_00001", 2),
        ("epoch_00002", 3),
    ]
    assert [c.extra for c in run.checkpoints][1] == {"temperature_K": 301.0}
    state = run.checkpoint_state("epoch_00002")
    assert state["driver"]["W0/g_plus_S"].shape == (4, 7)
    assert int(state["controller"]["step_count"]) == 30
    md = report([path], tmp_path / "out").markdown.read_text()
    assert "Method classic; 3 epochs recorded." in md
    assert "Changed at the checkpoint after epoch 2: `temperature_K` = 301.0." in md


def test_a_record_without_method_or_extra_still_reports(tmp_path):
    path = tmp_path / "run.h5"
    _run_record(path, meta={"kind": "train"})
    run = read_run(path)
    assert run.method is None and run.extra == {} and run.circuit == {} and run.driver == "?"
    md = report([path], tmp_path / "out").markdown.read_text()
    assert "Method" not in md and "Driver `?`" in md


@pytest.mark.parametrize(
    ("attr", "raw", "says"),
    [
        ("config", '{"method": hep', "attribute 'config' is not valid JSON"),
        ("extra", "[1, 2]", "attribute 'extra': expected a JSON object, found list"),
    ],
)
def test_a_damaged_json_attribute_is_one_line(tmp_path, attr, raw, says):
    import h5py

    path = tmp_path / "run.h5"
    _run_record(path)
    with h5py.File(path, "r+") as h5:
        h5.attrs[attr] = raw
    with pytest.raises(SpecError, match=f"{path}: {says}"):
        read_run(path)


def test_sweep_description_is_read_as_yaml(tmp_path):
    text = "kind: gradcheck\ndescription: 'made up: quoted'  # not part of it\ngrid: {}\n"
    _gradcheck_sweep(tmp_path / "g.h5", seeds=(0,), text=text)
    sweep = read_sweep(tmp_path / "g.h5")
    assert sweep.kind == "gradcheck" and sweep.n_points == len(sweep.columns["key"]) == 20
    assert sweep.description == "made up: quoted" and sweep.spec["grid"] == {}
    md = report([tmp_path / "g.h5"], tmp_path / "out").markdown.read_text()
    assert "\nmade up: quoted\n" in md and "not part of it" not in md
    _gradcheck_sweep(tmp_path / "bad.h5", seeds=(0,), text="description: [unclosed\n")
    assert read_sweep(tmp_path / "bad.h5").description is None  # the report still reads it
    assert (
        "gradcheck sweep, 20 points"
        in report([tmp_path / "bad.h5"], tmp_path / "o").markdown.read_text()
    )


def test_report_reads_files_only_through_the_record_modules():
    """No HDF5 access and no regular-expression parsing of JSON or YAML in the report."""
    from pathlib import Path

    import analog_hep.studies.reports._report as mod

    for f in Path(mod.__file__).parent.glob("_report*.py"):
        src = f.read_text()
        assert "h5py" not in src and "json.loads" not in src, f
        assert "re.search" not in src and "re.fullmatch" not in src and "re.M" not in src, f
        assert '"analog-hep-' not in src, f  # the format strings live with the writers


def test_a_record_a_run_is_writing_can_be_read(tmp_path):
    """Records are read without HDF5 file locking: a snapshot of a running record."""
    import subprocess
    import sys

    path = tmp_path / "run.h5"
    _run_record(path)
    hold = "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); print('open', flush=True); input()"
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "open"
        assert read_run(path).metrics["epoch"].tolist() == [1, 2, 3]
        assert read_header(path).kind == "train"
    finally:
        proc.communicate("\n", timeout=30)


def test_training_sweep_with_seeds_gives_mean_and_std_per_configuration(tmp_path):
    rows = []
    acc = {("hep", "sequential"): 0.96, ("hep", "parallel"): 0.93, ("classic", "–"): 0.89}
    for i, ((method, sched), a) in enumerate(acc.items()):
        for seed in (0, 1, 2):
            rows.append(
                {
                    "key": f"k{i}{seed}",
                    "index": 3 * i + seed,
                    "kind": "train",
                    "circuit": "mnist_mlp",
                    "method": method,
                    "points": 10 if method == "hep" else 1,
                    "beta": 0.4,
                    "hep_schedule": sched if method == "hep" else "auto",
                    "noise": 0.04,
                    "seed": seed,
                    "train_accuracy": a + 0.02,
                    "test_accuracy": a + 0.01 * (seed - 1),
                    "dropped_samples": 10 * seed,
                    "seconds": 100.0,
                }
            )
    meta = {"kind": "train", "sweep_text": "kind: train\n", "sweep_path": "x"}
    with SweepFile(tmp_path / "t.h5", meta=meta) as f:
        f.append(rows)
    rep = report([tmp_path / "t.h5"], tmp_path / "out")
    reps = rep.tables[f"{tmp_path / 't.h5'}#replicates"]
    assert [r["n"] for r in reps] == [3, 3, 3]
    seq = next(r for r in reps if r["hep_schedule"] == "sequential")
    assert seq["test_accuracy_mean"] == pytest.approx(0.96)
    assert seq["test_accuracy_std"] == pytest.approx(0.01)
    assert seq["dropped_samples_mean"] == pytest.approx(10.0)
    text = rep.markdown.read_text()
    assert "Mean ± std over seeds" in text and "96.00 ± 1.00" in text
    assert any(f.name == "t_seeds.png" for f in rep.figures)


def test_a_setting_of_another_update_scheme_is_a_dash():
    """Issue 15: a sweep over update schemes shows mp_* only on mixed-precision rows and
    tiki_taka fields only on Tiki-Taka rows (the others' stored defaults did not act)."""
    from analog_hep.studies.reports._report_tables import _setting

    cols = {
        "update_scheme": np.array(["direct", "mixed_precision", "tiki_taka"]),
        "mp_threshold": np.array([1.0, 16.0, 1.0]),
        "set.crossbars.default.tiki_taka.transfer_lr": np.array([np.nan, np.nan, 0.1]),
        "lr": np.array([0.2, 0.2, 0.2]),
    }
    assert [_setting(cols, "mp_threshold", i) for i in range(3)] == ["–", "16", "–"]
    name = "set.crossbars.default.tiki_taka.transfer_lr"
    assert [_setting(cols, name, i) for i in range(3)] == ["–", "–", "0.1"]
    assert [_setting(cols, "lr", i) for i in range(3)] == ["0.2"] * 3


def test_rows_written_before_a_setting_existed_read_as_its_value_then():
    """A sweep file continued after the update schemes were added holds rows without
    ``update_scheme`` (stored as ""): they group with the new rows' ``direct``, and a
    count column they lack (-1) is left out of the mean instead of averaged in."""
    from analog_hep.studies.reports._report_tables import _replicate_rows, _setting

    cols = {
        "key": np.array(["a", "b"]),
        "update_scheme": np.array(["", "direct"]),
        "seed": np.array([0, 1]),
        "test_accuracy": np.array([0.9, 0.8]),
        "clipped_bound_total": np.array([-1, 4]),
    }
    assert _setting(cols, "update_scheme", 0) == _setting(cols, "update_scheme", 1) == "direct"
    (row,) = _replicate_rows(cols, ["update_scheme", "seed"])
    assert row["n"] == 2 and row["test_accuracy_mean"] == pytest.approx(0.85)
    assert row["clipped_bound_total_mean"] == 4
