"""Run records that lose nothing and never lie (issue 12, item 3).

``--resume`` refuses a damaged or inconsistent record with one line naming the file and the
group, attribute or array, and writes nothing to it; a checkpoint is checked against the
freshly opened chip and controller before it is restored; the chip's ``describe().extra``
is recorded and reported; a loss is never reported for nothing evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.drivers import Settled
from analog_hep.emulator import EmulatorDriver
from analog_hep.hep import free_metrics
from analog_hep.spec import load_circuit
from analog_hep.studies import TrainOptions, report, train

# 2 epochs of 10 steps (batch 20) on the first 200 digits: a few seconds.
ARGS = ["train", "digits", "--epochs", "2", "--max-train", "200", "--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 2-epoch record, trained once for the whole module."""
    out = tmp_path_factory.mktemp("finished") / "run.h5"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


@pytest.fixture
def record(finished: Path, tmp_path: Path) -> Path:
    """A copy of the finished record to damage."""
    path = tmp_path / "run.h5"
    shutil.copy(finished, path)
    return path


def _rows(path: Path) -> dict[str, list[int]]:
    """Row counts of every metrics and steps dataset (what a refused resume must not touch)."""
    with h5py.File(path, "r") as f:
        groups = [g for g in ("metrics", "steps") if isinstance(f.get(g), h5py.Group)]
        return {f"{g}/{k}": [f[g][k].shape[0]] for g in groups for k in f[g]}


def _refused(path: Path, capsys: pytest.CaptureFixture[str], *expected: str) -> None:
    """``--resume`` exits 2 with one line naming the file and each of ``expected``, and
    leaves the record's rows as they were."""
    before = _rows(path)
    code = main([*ARGS, "--out", str(path), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and "\n" not in err, err
    assert str(path) in err, err
    for text in expected:
        assert text in err, err
    assert _rows(path) == before


def _final_weights(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: np.asarray(f[f"final/weights/{k}/W"]) for k in f["final/weights"]}


# -- rows and checkpoints that disagree ----------------------------------------------------------


def _no_checkpoints(f: h5py.File) -> None:
    del f["checkpoints"]


def _steps_lost(f: h5py.File) -> None:
    for d in f["steps"].values():
        d.resize((15,))


def _epochs_renumbered(f: h5py.File) -> None:
    f["metrics/epoch"][:] = [1, 1]


def _ragged_metrics(f: h5py.File) -> None:
    f["metrics/test_loss"].resize((1,))


def _stray_checkpoint(f: h5py.File) -> None:
    f.create_group("checkpoints/latest")


def _metrics_not_a_group(f: h5py.File) -> None:
    del f["metrics"]
    f["metrics"] = np.zeros(2)


def _no_controller_part(f: h5py.File) -> None:
    del f["checkpoints/epoch_00001/controller"]


def _not_a_training_record(f: h5py.File) -> None:
    f.attrs["kind"] = "sweep"


def _no_circuit_text(f: h5py.File) -> None:
    del f.attrs["circuit_text"]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_no_checkpoints, "metrics/epoch: expected 0 to 1 rows (there is no checkpoint)"),
        (_steps_lost, "steps/"),
        (_epochs_renumbered, "metrics/epoch: expected 1..2"),
        (_ragged_metrics, "metrics/test_loss: expected 2 to 3 rows"),
        (_stray_checkpoint, "checkpoints/latest"),
        (_metrics_not_a_group, "metrics: expected a group, found a dataset"),
        (_no_controller_part, "checkpoints/epoch_00001: no 'controller' part"),
        (_not_a_training_record, "attribute 'format'/'kind'"),
        (_no_circuit_text, "attribute 'circuit_text' is missing"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:] or None,
)
def test_an_inconsistent_record_is_refused_not_appended_to(record, capsys, damage, expected):
    with h5py.File(record, "r+") as f:
        damage(f)
    _refused(record, capsys, expected)


@pytest.mark.parametrize("attr", ["config", "device_texts", "extra"])
def test_an_attribute_that_is_not_json_is_one_line(record, capsys, attr):
    with h5py.File(record, "r+") as f:
        f.attrs[attr] = '{"method": hep'
    _refused(record, capsys, f"attribute {attr!r} is not valid JSON")


def test_an_attribute_of_the_wrong_json_type_is_one_line(record, capsys):
    with h5py.File(record, "r+") as f:
        f.attrs["config"] = "[1, 2]"
    _refused(record, capsys, "attribute 'config': expected a JSON dict, found list")


@pytest.mark.parametrize("cut", ["garbage", "truncated"])
def test_a_file_that_is_not_a_readable_record_is_one_line(record, capsys, cut):
    data = record.read_bytes()
    record.write_bytes(b"not HDF5 at all" if cut == "garbage" else data[: len(data) // 2])
    code = main([*ARGS, "--out", str(record), "--resume"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err, err
    assert f"{record}: cannot open run record" in err


def test_report_names_a_damaged_extra(record):
    pytest.importorskip("matplotlib")
    from analog_hep.errors import SpecError

    with h5py.File(record, "r+") as f:
        f["checkpoints/epoch_00001"].attrs["extra"] = "{oops"
    with pytest.raises(SpecError, match="checkpoints/epoch_00001: attribute 'extra' is not valid"):
        report([record], record.parent / "report")


# -- checkpoints that do not fit the chip ------------------------------------------------------

CK = "checkpoints/epoch_00001"


def _replace(f: h5py.File, key: str, value: np.ndarray) -> None:
    del f[key]
    f[key] = value


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            lambda f: _replace(f, f"{CK}/driver/W0/g_plus_S", np.zeros((3, 3), np.float32)),
            "driver/W0/g_plus_S: expected float32 (128, 65), found float32 (3, 3)",
        ),
        (
            lambda f: _replace(
                f, f"{CK}/driver/W0/g_minus_S", np.asarray(f[f"{CK}/driver/W0/g_minus_S"], float)
            ),
            "driver/W0/g_minus_S: expected float32 (128, 65), found float64 (128, 65)",
        ),
        (
            lambda f: f[f"{CK}/driver/readout/hidden_S"].__setitem__((0, 0, 0), np.nan),
            "driver/readout/hidden_S: 1 of 2580 values are NaN or inf",
        ),
        (
            lambda f: f[f"{CK}/driver/W0/g_plus_S"].__setitem__((1, 2), np.inf),
            "values are NaN or inf",
        ),
        (lambda f: f.__delitem__(f"{CK}/driver/calls"), "missing ['calls']"),
        (lambda f: f.__setitem__(f"{CK}/driver/bogus", np.zeros(2)), "unknown ['bogus']"),
        (
            lambda f: _replace(f, f"{CK}/controller/step_count", np.asarray(10**6)),
            "controller/step_count: expected 0 to 20",
        ),
        (
            lambda f: _replace(f, f"{CK}/controller/step_count", np.asarray(3.0)),
            "controller/step_count: expected int64 (), found float64 ()",
        ),
        (
            lambda f: _replace(f, f"{CK}/controller/refused", np.asarray(-1)),
            "controller/refused: expected 0 to 20",
        ),
        (
            lambda f: _replace(f, f"{CK}/controller/dropped", np.asarray(401)),
            "controller/dropped: expected 0 to 400",
        ),
    ],
    ids=[
        "shape",
        "dtype",
        "nan",
        "inf",
        "missing",
        "unknown",
        "step-count",
        "step-dtype",
        "refused",
        "dropped",
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused_before_restoring(
    record, capsys, damage, expected
):
    with h5py.File(record, "r+") as f:
        damage(f)
    _refused(record, capsys, "checkpoint after epoch 2", expected)


def test_a_kill_while_checkpointing_resumes_to_the_same_weights(finished, record, capsys):
    """A kill while the checkpoint of epoch 2 was written leaves ``epoch_00001.partial``;
    the rerun of epoch 2 replaces it. Columns a record lacks (written before they existed)
    are NaN for its earlier rows, so every column keeps one row per epoch or step."""
    with h5py.File(record, "r+") as f:
        f.move(f"{CK}", f"{CK}.partial")
        for key in ("metrics/train_nonfinite", "metrics/test_nonfinite", "steps/nonfinite"):
            if key in f:
                del f[key]
    assert main([*ARGS, "--out", str(record), "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    with h5py.File(record, "r") as f:
        assert sorted(f["checkpoints"]) == ["epoch_00000", "epoch_00001"]
        assert list(f["metrics/epoch"]) == [1, 2]
        assert {d.shape for d in f["metrics"].values()} == {(2,)}
        assert {d.shape for d in f["steps"].values()} == {(20,)}
        test_nonfinite = f["metrics/test_nonfinite"][:]
        assert math.isnan(test_nonfinite[0]) and test_nonfinite[1] == 0
    for k, w in _final_weights(finished).items():
        np.testing.assert_array_equal(_final_weights(record)[k], w)


def test_a_record_from_before_the_circle_diagnostic_resumes(finished, record, capsys):
    """A record written before ``circle_check`` and the controller's ``beta`` existed (its
    options lack the key, its checkpoints the array) resumes with their defaults and ends
    on the same weights."""
    with h5py.File(record, "r+") as f:
        config = json.loads(f.attrs["config"])
        del config["circle_check"]
        f.attrs["config"] = json.dumps(config)
        for name in f["checkpoints"]:
            del f[f"checkpoints/{name}/controller/beta"]
        f.move(CK, f"{CK}.partial")
    assert main([*ARGS, "--out", str(record), "--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    for k, w in _final_weights(finished).items():
        np.testing.assert_array_equal(_final_weights(record)[k], w)


class DropsOne(EmulatorDriver):
    """Sample 0's complex points never settle: one dropped sample per step (guard drop)."""

    def run_schedule(self, schedule):
        s = super().run_schedule(schedule)
        if schedule.is_complex:
            s = s._replace(residual=s.residual.at[:, 0].set(1.0))
        return s


@pytest.mark.parametrize("old_style", [False, True], ids=["state", "before-totals"])
def test_the_runs_totals_come_back_from_the_checkpoint(tmp_path, old_style):
    """The controller's state, the run's totals included, is checkpointed as it is and read
    back on resume; a checkpoint from before the state held them (``before-totals``) gets
    them from its epochs' step rows. Either way the resumed run reports the totals and the
    weights of the uninterrupted one."""
    c = load_circuit("digits")
    opts = TrainOptions.from_circuit(c, epochs=2, max_train=40, guard="drop")
    ref = tmp_path / "ref.h5"
    quiet = {"progress": False, "log": lambda s: None}
    full = train(c, opts, out=ref, driver=DropsOne(c, seed=0), **quiet)
    assert (full.dropped_samples, full.dropped_updates, full.fallback_steps) == (4, 0, 0)
    with h5py.File(ref, "r") as f:
        assert [int(f[f"checkpoints/epoch_0000{e}/controller/dropped"][()]) for e in (0, 1)] == [
            2,
            4,
        ]
    run = tmp_path / "run.h5"
    shutil.copy(ref, run)
    with h5py.File(run, "r+") as f:
        if old_style:
            for name in f["checkpoints"]:
                for key in ("refused", "dropped", "fallback", "circle_warned"):
                    del f[f"checkpoints/{name}/controller/{key}"]
        f.move(CK, f"{CK}.partial")
    res = train(c, opts, out=run, resume=True, driver=DropsOne(c, seed=0), **quiet)
    assert (res.dropped_samples, res.dropped_updates, res.fallback_steps) == (4, 0, 0)
    for k, w in _final_weights(ref).items():
        np.testing.assert_array_equal(_final_weights(run)[k], w)


# -- describe().extra in the record and the report ---------------------------------------------


class CalibratedChip(EmulatorDriver):
    """An emulated chip whose driver reports bench calibration in ``describe().extra``,
    with a temperature that drifts with every settle call."""

    def describe(self):
        d = super().describe()
        extra = d.extra | {
            "g_unit_S": 1.0e-6,
            "volts_per_unit": np.float32(0.5),
            "temperature_K": 300.0 + self._calls,
        }
        return dataclasses.replace(d, extra=extra)


def test_describe_extra_is_recorded_per_checkpoint_and_reported(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    c = load_circuit("digits")
    out = tmp_path / "run.h5"
    opts = TrainOptions.from_circuit(c, epochs=2, max_train=40, guard="drop")
    train(c, opts, out=out, progress=False, log=lambda s: None, driver=CalibratedChip(c, seed=0))
    with h5py.File(out, "r") as f:
        created = json.loads(f.attrs["extra"])
        at = [json.loads(f[f"checkpoints/epoch_0000{e}"].attrs["extra"]) for e in (0, 1)]
    assert created == {
        "chip_seed": 0,
        "noisy": False,
        "dw_min": {},  # ideal devices: no pulse step
        "pulse_cap": 31,
        "g_unit_S": 1e-6,
        "volts_per_unit": 0.5,
        "temperature_K": 300.0,
    }
    assert 300.0 < at[0]["temperature_K"] < at[1]["temperature_K"]
    rep = report([out], tmp_path / "report")
    md = rep.markdown.read_text()
    assert "| g_unit_S | 1e-06 |" in md and "| volts_per_unit | 0.5 |" in md
    assert f"after epoch 2: `temperature_K` = {at[1]['temperature_K']}" in md
    assert main(["report", str(out), "--out", str(tmp_path / "r2"), "--json"]) == 0
    extras = json.loads(capsys.readouterr().out)["extras"][str(out)]
    assert extras["created"]["g_unit_S"] == 1e-6
    assert extras["changed"]["2"] == {"temperature_K": at[1]["temperature_K"]}


# -- losses: never for nothing, never 0 for an overflow -----------------------------------------


def _settled(logits: np.ndarray) -> Settled:
    """A free phase with these logits (the states do not enter a cross-entropy loss)."""
    b = logits.shape[0]
    return Settled(
        free_states=(jnp.zeros((b, 2)), jnp.zeros((b, 3))),
        free_logits=jnp.asarray(logits, jnp.float32),
        free_residual=jnp.zeros(b),
        betas=jnp.zeros(0, jnp.complex64),
        states=(),
        logits=None,
        residual=jnp.zeros((0, b)),
    )


def test_a_large_logit_spread_gives_its_loss_not_zero():
    """The root cause of "test loss 0.0000" for ``layers: [64, 60000]``: finite logits that
    spread by more than ~100 made float32 softmax underflow to 0, log(0) = -inf, and the
    non-finite losses were summed as 0."""
    logits = np.array([[0.0, 200.0], [150.0, 0.0]])
    loss, correct, nonfinite = free_metrics(_settled(logits), np.eye(2)[[0, 0]], "cross_entropy")
    assert loss == pytest.approx(200.0) and correct == 1 and nonfinite == 0


def test_padding_and_nonfinite_samples_are_never_counted_correct():
    """All-zero target rows are padding; a sample without a finite output has no prediction
    (NaN logits used to argmax to class 0, and padding rows matched ``argmax(0) = 0``)."""
    logits = np.array([[1.0, 0.0], [np.nan, np.nan], [1.0, 0.0]])
    y = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    loss, correct, nonfinite = free_metrics(_settled(logits), y, "cross_entropy")
    assert correct == 1 and nonfinite == 1
    assert loss == pytest.approx(math.log1p(math.exp(-1.0)), rel=1e-6)


class NanChip(EmulatorDriver):
    """Settles like the emulator, but its readout answers NaN (a chip whose output stage
    overflowed): no sample has a finite loss."""

    def run_schedule(self, schedule):
        s = super().run_schedule(schedule)
        nan = None if s.logits is None else jnp.full_like(s.logits, jnp.nan)
        return s._replace(free_logits=jnp.full_like(s.free_logits, jnp.nan), logits=nan)


def test_a_run_where_nothing_is_finite_says_so(tmp_path):
    c = load_circuit("digits")
    out = tmp_path / "run.h5"
    lines: list[str] = []
    opts = TrainOptions.from_circuit(c, epochs=1, max_train=40)
    res = train(c, opts, out=out, progress=False, log=lines.append, driver=NanChip(c, seed=0))
    assert "train loss n/a (40 of 40 samples non-finite)" in lines[-1], lines
    assert "test loss n/a (360 of 360 samples non-finite) acc 0.0000" in lines[-1], lines
    assert math.isnan(res.test_loss) and math.isnan(res.train_loss)
    assert (res.test_nonfinite, res.train_nonfinite, res.test_accuracy) == (360, 40, 0.0)
    with h5py.File(out, "r") as f:
        assert math.isnan(f["metrics/test_loss"][0]) and math.isnan(f["metrics/train_loss"][0])
        assert list(f["metrics/test_nonfinite"]) == [360]
        assert list(f["metrics/train_nonfinite"]) == [40]
        assert list(f["steps/nonfinite"]) == [20, 20]
        assert np.isnan(f["steps/loss"][:]).all()


class LoudChip(EmulatorDriver):
    """An emulated chip whose free-phase logits are 1000 times larger (as a 60,000-wide
    hidden layer made them after one epoch): finite, but spread by hundreds."""

    def run_schedule(self, schedule):
        s = super().run_schedule(schedule)
        return s._replace(free_logits=1000.0 * s.free_logits)


def test_an_overflowing_softmax_reports_its_loss_not_zero():
    c = load_circuit("digits")
    lines: list[str] = []
    opts = TrainOptions.from_circuit(c, epochs=1, max_train=40)
    res = train(c, opts, progress=False, log=lines.append, driver=LoudChip(c, seed=0))
    assert res.test_nonfinite == 0 and res.train_nonfinite == 0
    assert res.test_loss > 10.0, lines
    assert "test loss 0.0000" not in lines[-1]
