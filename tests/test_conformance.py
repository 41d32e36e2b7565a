"""The driver conformance kit: the emulator, the remote driver and an installed third-party
driver package (examples/toy_chip_driver) pass it; a driver that breaks the contract fails."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.conformance import CHECKS, run_check, run_conformance
from analog_hep.conformance.plugin import conformance_tests
from analog_hep.drivers import (
    Capabilities,
    ChipDescription,
    CrossbarInfo,
    DriverServer,
    NudgeSchedule,
    Settled,
    UpdateReport,
    available_drivers,
    open_driver,
)
from analog_hep.emulator import EmulatorDriver
from analog_hep.errors import OutOfRange, UnsupportedCapability
from analog_hep.spec import load_circuit
from analog_hep.studies import TrainOptions, train

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "toy_chip_driver"

pytest_plugins = ["pytester"]


# -- the kit against the three drivers -------------------------------------------------------

test_emulator_conformance = conformance_tests("emulator")


@pytest.fixture(scope="module")
def remote_toy():
    """``tcp://...`` of an in-process server of the emulator on the toy circuit."""
    srv = DriverServer(load_circuit("toy"), log=lambda s: None).start()
    host, port = srv.address
    try:
        yield f"tcp://{host}:{port}"
    finally:
        srv.shutdown()


test_remote_conformance = conformance_tests(driver_fixture="remote_toy")


@pytest.fixture(scope="module")
def toychip(tmp_path_factory):
    """The example driver package, built and installed into a temporary folder on
    ``sys.path`` (not into this environment) and found through its entry point, not imported
    by path. The build backend (hatchling) comes with the ``dev`` extra, so this works in a
    fresh virtual environment with nothing else installed."""
    target = tmp_path_factory.mktemp("toychip_site")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    res = subprocess.run(
        [*cmd, "--target", str(target), str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        assert "toychip" in available_drivers()
        yield "toychip"
    finally:
        sys.path.remove(str(target))
        for mod in [m for m in sys.modules if m.split(".")[0] == "toy_chip_driver"]:
            del sys.modules[mod]
        importlib.invalidate_caches()


test_toychip_conformance = conformance_tests(driver_fixture="toychip")


# -- what the example driver shows -----------------------------------------------------------


def test_toychip_validates_before_any_io(toychip):
    c = load_circuit("toy")
    d = open_driver(toychip, c, seed=0)
    try:
        writes = d.inst.writes
        with pytest.raises(OutOfRange):
            d.load_inputs(np.zeros((3, 5)), None)
        with pytest.raises(OutOfRange):
            d.program_delta("W0", np.full((4, 7), np.nan))
        with pytest.raises(UnsupportedCapability):
            d.run_schedule(dataclasses.replace(_sym(), betas=(0.1j, -0.1j)))
        with pytest.raises(UnsupportedCapability):
            d.apply_outer_product("W0", np.zeros((1, 4)), np.zeros((1, 7)), lr=0.1)
        assert d.inst.writes == writes  # nothing reached the chip
    finally:
        d.close()


def _sym():
    from analog_hep.drivers import NudgeSchedule

    return NudgeSchedule(betas=(0.1, -0.1))


def test_toychip_trains_with_the_controllers_fallbacks(toychip):
    """hEP N=6 is asked for: the chip has no complex nudges and no outer products, so the
    controller trains with symmetric EP and programmed deltas, and says so."""
    c = load_circuit("digits")
    opts = TrainOptions.from_circuit(c, epochs=2, max_train=200, driver=toychip)
    notes: list[str] = []
    res = train(c, opts, progress=False, log=notes.append)
    assert res.method == "symmetric" and res.epochs == 2
    assert any("complex" in n and "symmetric" in n for n in notes), notes
    assert res.dropped_updates == 0 and np.isfinite(res.test_loss)
    losses = res.history["train_loss"]
    assert losses[1] < losses[0]


# -- the kit catches a driver that breaks the contract ---------------------------------------


class LeakyDriver(EmulatorDriver):
    """Writes a bad delta before it checks it, and misreports what it applied."""

    def program_delta(self, name, delta_w):
        delta_w = np.asarray(delta_w, np.float32)
        n_out = self.chip.crossbars[name].g_plus_S.shape[0] if name in self.chip.crossbars else 0
        if n_out and delta_w.shape[0] == n_out:
            fixed = np.zeros(self.chip.crossbars[name].g_plus_S.shape, np.float32)
            fixed[:, : delta_w.shape[1]] = delta_w[:, : fixed.shape[1]] + 1e-3
            rep = super().program_delta(name, fixed)  # programs first ...
            if delta_w.shape != fixed.shape:
                raise OutOfRange("delta of the wrong shape")  # ... refuses after
            return rep._replace(realised_norm=2 * rep.realised_norm)
        return super().program_delta(name, delta_w)


def test_the_kit_fails_a_driver_that_breaks_the_contract():
    c = load_circuit("toy")
    report = run_conformance(lambda: LeakyDriver(c, seed=0), c, checks=["validation", "update"])
    status = {r.name: r for r in report.results}
    assert not report.passed
    assert status["validation"].status == "failed"
    assert "changed the chip" in status["validation"].message
    assert status["update"].status == "failed" and "realised_norm" in status["update"].message


class NumpyOnlyDriver(EmulatorDriver):
    """Takes only NumPy update arguments, although the controller sends jax.Arrays."""

    def apply_outer_product(self, name, rows, cols, *, lr):
        assert type(rows) is np.ndarray and type(cols) is np.ndarray, "NumPy only"
        return super().apply_outer_product(name, rows, cols, lr=lr)

    def program_delta(self, name, delta_w):
        assert type(delta_w) is np.ndarray, "NumPy only"
        return super().program_delta(name, delta_w)


def test_the_kit_sends_updates_as_the_controller_does():
    """The controller's factors and deltas are jax.Arrays (and lr is negative): a driver
    that takes only NumPy must fail the kit, not the first training step."""
    c = load_circuit("toy")
    report = run_conformance(lambda: NumpyOnlyDriver(c, seed=0), c, checks=["update"])
    (res,) = report.results
    assert res.status == "failed" and "AssertionError" in res.message, res.message


class MisscaledNudgeDriver(EmulatorDriver):
    """Settles at ``scale * beta`` but reports the requested betas as applied."""

    scale = 0.9

    def run_schedule(self, schedule):
        applied = tuple(self.scale * complex(b) for b in schedule.betas)
        settled = super().run_schedule(dataclasses.replace(schedule, betas=applied))
        return settled._replace(betas=np.asarray(schedule.betas, np.complex64))


@pytest.mark.parametrize(
    ("scale", "check"),
    [(0.9, "gradient_symmetric"), (0.99, "gradient_hep")],
)
def test_the_gradient_checks_catch_a_wrong_nudge_scale(scale, check):
    """Before the relative-error check, symmetric EP passed at 0.9 beta (cosine 0.9993) and
    hEP at 0.99 beta (cosine 0.99999): the direction is right, the scale is not."""
    c = load_circuit("toy")
    driver = type("Misscaled", (MisscaledNudgeDriver,), {"scale": scale})
    res = run_check(check, lambda: driver(c, seed=0), c)
    assert res.status == "failed" and "relative error" in res.message, res.message
    assert res.metrics["cosine"] > 0.999


_RENAME = {"W0": "in", "W1": "hidden", "readout": "out"}


class RenamedDriver(EmulatorDriver):
    """Names its crossbars its own way: the controller finds the readout by name and pairs
    the others with layers by position, so it would train the wrong weights."""

    def describe(self):
        desc = super().describe()
        xbs = tuple(dataclasses.replace(c, name=_RENAME[c.name]) for c in desc.crossbars)
        return dataclasses.replace(desc, crossbars=xbs)

    def read_weights(self):
        return {_RENAME[n]: wb for n, wb in super().read_weights().items()}


def test_the_kit_requires_the_circuits_crossbar_names():
    c = load_circuit("toy")
    (res,) = run_conformance(lambda: RenamedDriver(c, seed=0), c, checks=["structure"]).results
    assert res.status == "failed" and "crossbar names" in res.message, res.message


def test_an_unexpected_exception_is_a_failure_not_a_crash():
    def broken():
        raise RuntimeError("no such instrument")

    res = run_check("structure", broken, "toy")
    assert res.status == "failed" and "RuntimeError" in res.message


# -- command line and pytest plugin ----------------------------------------------------------


def test_conformance_command_json(capsys):
    code = main(
        [
            "conformance",
            "--driver",
            "emulator",
            "--check",
            "structure",
            "--check",
            "failures",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["passed"] and out["circuit"] == "toy"
    assert [c["name"] for c in out["checks"]] == ["structure", "failures"]


def test_conformance_command_exit_code_on_failure(capsys, monkeypatch):
    eps = dict(available_drivers())
    c = load_circuit("toy")
    leaky = types.SimpleNamespace(load=lambda: lambda circuit, **kw: LeakyDriver(c, seed=0))
    monkeypatch.setattr("analog_hep.drivers._registry.available_drivers", lambda: eps)
    eps["leaky"] = leaky
    code = main(["conformance", "--driver", "leaky", "--check", "validation"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out and "does NOT conform" in out


@pytest.mark.parametrize("arg", ["nosuch", "emulator:bogus=1", "emulator:unroll"])
def test_conformance_command_says_once_that_a_driver_cannot_be_opened(capsys, arg):
    code = main(["conformance", "--driver", arg])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out
    assert len(err.strip().splitlines()) == 1 and "cannot open driver" in err, err


def test_conformance_command_reports_an_untyped_factory_error_once(capsys, monkeypatch):
    def factory(circuit, **kw):
        raise RuntimeError("no such instrument")

    eps = {**available_drivers(), "broken": types.SimpleNamespace(load=lambda: factory)}
    monkeypatch.setattr("analog_hep.drivers._registry.available_drivers", lambda: eps)
    code = main(["conformance", "--driver", "broken"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "", out
    assert len(err.strip().splitlines()) == 1 and "RuntimeError" in err, err


@pytest.mark.parametrize(
    "plugin", ["analog_hep.conformance.plugin", "analog_hep.drivers.conformance_plugin"]
)
def test_pytest_plugin_runs_the_kit_on_a_named_driver(pytester, plugin):
    """The plugin, and its deprecated alias under ``analog_hep.drivers``."""
    pytester.makepyfile(
        test_kit=f"""
        from {plugin} import conformance_tests

        test_chip = conformance_tests(checks=["structure", "failures"])
        """
    )
    res = pytester.runpytest_inprocess("-p", plugin, "--driver-under-test", "emulator", "-q")
    res.assert_outcomes(passed=2)


def test_the_old_import_paths_are_aliases_of_the_kit():
    """``analog_hep.drivers`` (the kit's names), ``drivers._conformance`` and
    ``drivers.conformance_plugin`` still give the kit, for driver packages and docs written
    against them."""
    import analog_hep.conformance as kit
    import analog_hep.conformance.plugin as plugin
    import analog_hep.drivers as drivers
    import analog_hep.drivers._conformance as old_kit
    import analog_hep.drivers.conformance_plugin as old_plugin

    for name in ("CHECKS", "CheckResult", "ConformanceReport", "run_check", "run_conformance"):
        assert getattr(drivers, name) is getattr(kit, name), name
        assert getattr(old_kit, name) is getattr(kit, name), name
    assert old_kit.CheckFailed is kit._base.CheckFailed
    for name in ("conformance_tests", "pytest_addoption", "pytest_generate_tests"):
        assert getattr(old_plugin, name) is getattr(plugin, name), name
    with pytest.raises(AttributeError):
        _ = drivers.no_such_name
    with pytest.raises(AttributeError):
        _ = old_kit.no_such_name


@pytest.mark.parametrize(
    "statement",
    [
        "from analog_hep.drivers import CHECKS, run_conformance",
        "from analog_hep.drivers._conformance import CHECKS, run_check, run_conformance",
        "from analog_hep.drivers.conformance_plugin import conformance_tests",
        "import analog_hep.conformance.plugin",
    ],
)
def test_each_import_path_of_the_kit_works_in_a_fresh_interpreter(statement):
    """First thing in a fresh interpreter, so that no import order hides a cycle."""
    res = subprocess.run(
        [sys.executable, "-c", statement], capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr


def test_every_check_is_documented():
    text = (REPO / "docs" / "drivers.md").read_text()
    for name in CHECKS:
        assert f"`{name}`" in text, name


def test_every_field_of_the_contract_is_documented():
    """docs/drivers.md is enough to write a driver: every field of every type it exchanges."""
    text = (REPO / "docs" / "drivers.md").read_text()
    for cls in (ChipDescription, CrossbarInfo, Capabilities, NudgeSchedule):
        for field in dataclasses.fields(cls):
            assert f"`{field.name}`" in text, f"{cls.__name__}.{field.name}"
    for cls in (Settled, UpdateReport):
        for name in cls._fields:
            assert f"`{name}`" in text, f"{cls.__name__}.{name}"


def test_the_example_driver_trains_with_mixed_precision(toychip):
    """Issue 15: the example driver (write-verify deltas, no outer products), unchanged,
    trains with the controller's mixed-precision accumulator: its whole steps go out as
    programmed deltas (``dw_min`` from the settings: the driver does not describe one)."""
    c = load_circuit("digits")
    opts = TrainOptions.from_circuit(
        c,
        epochs=2,
        max_train=200,
        driver=toychip,
        update_scheme="mixed_precision",
        mp_dw_min=0.02,
    )
    res = train(c, opts, progress=False, log=lambda s: None)
    assert res.dropped_updates == 0 and np.isfinite(res.test_loss)
    losses = res.history["train_loss"]
    assert losses[1] < losses[0]


@pytest.mark.parametrize("card", ["idealized_rpu", "capacitor", "gokmen_vlasov"])
def test_the_update_check_passes_for_cards_with_many_small_steps(card):
    """The emulator on pulsed cards passes the update check (issue 15 review: it used to
    fail its own kit). A card with thousands of states does not reach its bounds within one
    write-verify's default pulse budget: a huge request then moves the weights by a sliver of
    it, which is bounded too; and the outer-product request is sized to about 10 pulse steps
    when the chip describes its step, so a coarse card's stochastic pulses point the right
    way."""
    from analog_hep.spec import circuit_from_text

    text = (REPO / "circuits" / "toy.yaml").read_text()
    assert "device: ideal" in text
    c = circuit_from_text(text.replace("device: ideal", f"device: {card}"), name="toy.yaml")
    res = run_check("update", lambda: EmulatorDriver(c, seed=0), c)
    assert res.status == "passed", res.message
