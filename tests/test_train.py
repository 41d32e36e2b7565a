"""Training end to end through the driver: accuracy, records, resume after a kill."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.spec import load_circuit
from analog_hep.studies import TrainOptions, train


def test_digits_hep_reaches_96_percent():
    c = load_circuit("digits")
    res = train(c, TrainOptions.from_circuit(c), progress=False, log=lambda s: None)
    assert res.epochs == 20
    assert res.test_accuracy >= 0.96, res.history["test_accuracy"]
    assert res.dropped_updates == 0


def test_digits_online_hep_reaches_90_percent():
    c = load_circuit("digits")
    opts = TrainOptions.from_circuit(c, method="online", epochs=8)
    res = train(c, opts, progress=False, log=lambda s: None)
    assert res.method == "online"
    assert res.test_accuracy >= 0.90, res.history["test_accuracy"]
    assert res.fallback_steps == 0


def test_train_json_and_record(tmp_path, capsys):
    out = tmp_path / "run.h5"
    code = main(
        ["train", "digits", "--epochs", "2", "--max-train", "200", "--out", str(out), "--json"]
    )
    assert code == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "test_accuracy",
        "train_accuracy",
        "test_loss",
        "epochs",
        "seconds",
        "dropped_updates",
    ):
        assert key in res
    assert res["epochs"] == 2
    with h5py.File(out) as f:
        assert "layers" in f.attrs["circuit_text"]
        assert json.loads(f.attrs["config"])["method"] == "hep"
        assert f["metrics/test_accuracy"].shape == (2,)
        assert f["steps/loss"].shape == (20,)
        assert "checkpoints/epoch_00001/driver/W0/g_plus_S" in f
        assert f["final/weights/W0/W"].shape == (128, 64)
    # an existing record is not overwritten
    assert main(["train", "digits", "--epochs", "2", "--max-train", "200", "--out", str(out)]) == 2


def test_resume_needs_the_same_options(tmp_path, capsys):
    out = tmp_path / "run.h5"
    assert (
        main(
            [
                "train",
                "digits",
                "--epochs",
                "1",
                "--max-train",
                "100",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    code = main(
        [
            "train",
            "digits",
            "--epochs",
            "1",
            "--max-train",
            "100",
            "--lr",
            "0.5",
            "--out",
            str(out),
            "--resume",
        ]
    )
    assert code == 2
    assert "different options" in capsys.readouterr().err


def test_a_record_from_before_the_hep_schedule_resumes_with_the_parallel_schedule(tmp_path, capsys):
    """A run recorded before ``hep_schedule`` and ``guard`` existed settled its points in
    parallel and dropped unsettled samples: its record is resumed with those settings, and
    today's ``auto`` is refused by name."""
    out = tmp_path / "run.h5"
    base = ["train", "digits", "--max-train", "100", "--out", str(out), "--no-progress"]
    assert main([*base, "--epochs", "1", "--hep-schedule", "parallel", "--guard", "drop"]) == 0
    with h5py.File(out, "a") as f:
        config = json.loads(f.attrs["config"])
        for k in ("hep_schedule", "ramp_points", "guard"):
            del config[k]
        f.attrs["config"] = json.dumps(config)
    capsys.readouterr()
    assert main([*base, "--epochs", "1", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "hep_schedule" in err and "'parallel'" in err and "'auto'" in err
    old = ["--hep-schedule", "parallel", "--guard", "drop"]
    assert main([*base, "--epochs", "1", "--resume", *old]) == 0


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "digits", "--dataset", f"mnist:{tmp_path}", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path) in err and "Traceback" not in err


def _final_weights(path):
    with h5py.File(path) as f:
        return {k: np.asarray(f[f"final/weights/{k}/W"]) for k in f["final/weights"]}


def test_killed_run_resumes_to_the_same_weights(tmp_path, kill_after_first_epoch, capsys):
    """A real subprocess is killed (SIGKILL) mid-epoch; --resume ends where an
    uninterrupted run with the same seed ends, bitwise."""
    args = ["train", "digits", "--epochs", "3", "--max-train", "1000", "--no-progress"]
    ref = tmp_path / "ref.h5"
    assert main([*args, "--out", str(ref)]) == 0

    run = tmp_path / "run.h5"
    kill_after_first_epoch([*args, "--out", str(run)], 3)
    with h5py.File(run) as f:
        assert "final" not in f  # it really stopped before the end
        epochs_done = f["metrics/epoch"].shape[0]
    assert epochs_done == 1, f"killed after {epochs_done} epochs"
    capsys.readouterr()
    assert main([*args, "--out", str(run), "--resume", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with h5py.File(run) as f:
        per_epoch = f["metrics/seconds"][()]
    # every epoch's time, the killed leg's included
    assert len(per_epoch) == 3 and res["epoch_seconds"] == pytest.approx(per_epoch.sum())
    a, b = _final_weights(ref), _final_weights(run)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_realistic_ecram_chip_reaches_92_percent():
    """Li-ECRAM devices (spreads, c2c noise, asymmetric steps), read noise, mismatch, 8-bit
    DAC/ADC, neuron noise: circuits/digits_ecram.yaml (20 epochs gave 97.5 %)."""
    c = load_circuit("digits_ecram")
    res = train(c, TrainOptions.from_circuit(c, epochs=10), progress=False, log=lambda s: None)
    assert res.test_accuracy >= 0.92, res.history["test_accuracy"]


# -- one record of hEP settings ------------------------------------------------------------------


def test_the_hep_settings_have_one_record_of_defaults():
    """``HepSettings`` holds the defaults; the YAML spec validates the same fields (the
    optimizer's grouped), takes its defaults from it; the command line has one option per
    field; ``HepConfig`` and ``TrainOptions`` extend it."""
    from dataclasses import fields

    from analog_hep._hep_settings import MIXED_PRECISION_FIELDS, OPTIMIZER_FIELDS, HepSettings
    from analog_hep.cli import build_parser
    from analog_hep.hep import HepConfig
    from analog_hep.spec import DEFAULT_TRAINING, MixedPrecisionSpec, OptimizerSpec, TrainingSpec

    names = {f.name for f in fields(HepSettings)}
    groups = {"optimizer", "mixed_precision", "batch", "epochs"}
    spec_fields = set(TrainingSpec.model_fields) - groups
    assert spec_fields | set(OPTIMIZER_FIELDS) | set(MIXED_PRECISION_FIELDS) == names
    assert set(OptimizerSpec.model_fields) - {"name"} == set(OPTIMIZER_FIELDS)
    assert set(MixedPrecisionSpec.model_fields) == set(MIXED_PRECISION_FIELDS.values())
    defaults = HepSettings()
    for name, info in TrainingSpec.model_fields.items():
        if not info.is_required() and name in names:
            assert info.default == getattr(defaults, name), name
    for flat, name in MIXED_PRECISION_FIELDS.items():
        assert MixedPrecisionSpec.model_fields[name].default == getattr(defaults, flat), name
    assert DEFAULT_TRAINING.hep_settings() == defaults
    assert issubclass(HepConfig, HepSettings) and issubclass(TrainOptions, HepSettings)
    shared = {f.name: getattr(HepConfig(), f.name) for f in fields(HepSettings)}
    assert shared == {f.name: getattr(defaults, f.name) for f in fields(HepSettings)}
    args = build_parser().parse_args(["train", "digits"])
    assert all(getattr(args, n) is None for n in names)  # None: the circuit's section wins


def test_a_circuit_without_a_training_section_trains_with_the_defaults():
    import dataclasses

    from analog_hep._hep_settings import HepSettings
    from analog_hep.spec import DEFAULT_TRAINING

    c = load_circuit("toy")
    assert c.spec.training is None
    opts = TrainOptions.from_circuit(c, lr=0.01)
    want = dataclasses.replace(HepSettings(), lr=0.01)
    assert {f.name: getattr(opts, f.name) for f in dataclasses.fields(HepSettings)} == (
        dataclasses.asdict(want)
    )
    assert (opts.batch, opts.epochs) == (DEFAULT_TRAINING.batch, DEFAULT_TRAINING.epochs)
    cfg = opts.hep_config(7)
    assert cfg.total_steps == 7 and cfg.lr == 0.01 and cfg.points == HepSettings().points


# -- the driver train opened is closed on every way out ----------------------------------------


@pytest.mark.parametrize("error", [None, RuntimeError, "ConnectionLost", KeyboardInterrupt])
def test_train_closes_the_driver_it_opened_on_every_exit_path(tmp_path, monkeypatch, error):
    from analog_hep.emulator import EmulatorDriver
    from analog_hep.errors import ConnectionLost
    from analog_hep.studies.training import _train

    if error == "ConnectionLost":
        error = ConnectionLost
    opened: list[EmulatorDriver] = []

    class Failing(EmulatorDriver):
        """Raises ``error`` at its second settle (mid-epoch); records ``close()``."""

        closed = 0

        def run_schedule(self, schedule):
            if error is not None and self._calls >= 1:
                raise error("the chip went away")
            return super().run_schedule(schedule)

        def close(self):
            self.closed += 1
            super().close()

    def fake_open(arg, circuit, *, seed):
        opened.append(Failing(circuit, seed=seed))
        return opened[-1]

    monkeypatch.setattr(_train, "open_driver", fake_open)
    records: list[_train.Record] = []
    create = _train.Record.create
    monkeypatch.setattr(
        _train.Record, "create", lambda *a, **k: records.append(create(*a, **k)) or records[-1]
    )
    c = load_circuit("digits")
    out = tmp_path / "run.h5"
    opts = TrainOptions.from_circuit(c, epochs=1, max_train=40)
    if error is None:
        train(c, opts, out=out, progress=False, log=lambda s: None)
    else:
        with pytest.raises(error) as info:
            train(c, opts, out=out, progress=False, log=lambda s: None)
        if error is ConnectionLost:
            assert "--resume" in str(info.value)
    assert len(opened) == 1 and opened[0].closed == 1
    assert len(records) == 1 and not records[0].h5.id.valid  # the record was closed too
    with h5py.File(out, "r") as f:
        assert ("final" in f) == (error is None)


def test_an_epoch_that_learns_from_almost_no_sample_says_so():
    """digits.yaml's residual_tol (0.01) is below the settle noise floor at neuron noise
    0.04: every sample is left out, and the run says why instead of training on nothing."""
    c = load_circuit("digits")
    opts = TrainOptions.from_circuit(c, epochs=1, max_train=40, noise=0.04)
    lines: list[str] = []
    res = train(c, opts, progress=False, log=lines.append)
    assert res.dropped_samples == 40
    warning = [s for s in lines if s.startswith("warning: epoch 1: 40 of 40")]
    assert len(warning) == 1 and "--residual-tol" in warning[0], lines
