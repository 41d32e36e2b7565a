"""Hostile inputs (issue 12, items 2 and 7): every one ends in one stderr line and exit code 2,
never a traceback, unbounded memory or a hang; every circuit can be trained from the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analog_hep.cli import build_parser, main
from analog_hep.errors import (
    ConnectionLost,
    DriverTimeout,
    NotSettled,
    OutOfRange,
    SpecError,
    UnsupportedCapability,
)

ROOT = Path(__file__).resolve().parents[1]
TOY = (ROOT / "circuits" / "toy.yaml").read_text(encoding="utf-8")

BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]"
            for p, k in zip("abcdefgh", "bcdefghi", strict=True)
        ),
        "",
    ]
)


def _one_error_line(err: str, *, names: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and names in lines[0], err
    return lines[0]


def _check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _digits_shaped(layers: str = "[64, 8]") -> str:
    """The toy circuit reshaped to fit the digits data, short settles, no training section."""
    return (
        TOY.replace("layers: [6, 4, 4]", f"layers: {layers}")
        .replace("  classes: 4", "  classes: 10")
        .replace("free_steps: 300", "free_steps: 30")
        .replace("nudge_steps: 300", "nudge_steps: 15")
    )


# ---------------------------------------------------------------------------------------------
# YAML: size, aliases, depth, bytes, encodings, tags


def test_alias_bomb_is_refused_quickly_in_bounded_memory(tmp_path: Path) -> None:
    # 1.3 KB that expands to 9**9 strings: the real CLI, under a 3 GB address-space limit.
    path = _write(tmp_path, "bomb.yaml", BOMB)
    # The child limits its own address space to 3 GB (old code wanted 11 GB) before it runs
    # the command: no preexec_fn, whose fork would warn in this multithreaded (JAX) process.
    limited = (
        "import resource, runpy, sys; "
        "resource.setrlimit(resource.RLIMIT_AS, (3_000_000_000, 3_000_000_000)); "
        "sys.argv = ['analog-hep', *sys.argv[1:]]; "
        "runpy.run_module('analog_hep', run_name='__main__')"
    )
    cmd = [sys.executable, "-c", limited, "check", str(path)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert time.perf_counter() - t0 < 60
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr, names="bomb.yaml:")
    assert "alias" in line and "20000 values" in line


def test_alias_expansion_is_counted_below_the_bomb_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = "\n".join(BOMB.splitlines()[:6])  # 9**6 = 531441 values: old code read it all
    code, _, err = _check(_write(tmp_path, "small_bomb.yaml", small + "\n"), capsys)
    assert code == 2
    assert "more than 20000 values" in _one_error_line(err, names="small_bomb.yaml:")


def test_deep_nesting_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in {
        "flow.yaml": "a: " + "[" * 500 + "]" * 500 + "\n",
        "block.yaml": "".join(" " * i + "k:\n" for i in range(500)) + " " * 500 + "k: 1\n",
        "alias.yaml": f"a: &a {'[' * 40}1{']' * 40}\nb: {'[' * 40}*a{']' * 40}\n",
    }.items():
        code, _, err = _check(_write(tmp_path, name, text), capsys)
        assert code == 2, err
        assert "nesting deeper than 64 levels" in _one_error_line(err, names=f"{name}:")


def test_recursive_alias_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _check(_write(tmp_path, "rec.yaml", "a: &a [1, *a]\nlayers: *a\n"), capsys)
    assert code == 2
    assert "recursive alias" in _one_error_line(err, names="rec.yaml:1:")


def test_oversized_document_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = TOY + "# " + "x" * 300_000 + "\n"
    code, _, err = _check(_write(tmp_path, "big.yaml", text), capsys)
    assert code == 2
    assert "262144 bytes" in _one_error_line(err, names="big.yaml:")


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        (TOY.encode() + b"junk: \x00\x01\x02\n", ":28:", "unacceptable character #x0000"),
        (TOY.encode() + b"junk: \xff\xfe\n", ":28:", "not a UTF-8 text file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), ":1:", "not a UTF-8 text file"),
        (b"seed: !!int abc\n", ":1:", "cannot convert the value 'abc'"),
        (b"seed: " + b"9" * 5000 + b"\n", ":1:", "cannot convert"),
        (b"a: 1\nb: 2001-13-45\n", ":2:", "month must be in 1..12"),
        (b"a: !!float x\n", ":1:", "cannot convert"),
    ],
    ids=["nul", "non-utf8", "png", "bad-int-tag", "5000-digits", "bad-date", "bad-float-tag"],
)
def test_binary_encodings_and_bad_tags_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, where: str, what: str
) -> None:
    code, _, err = _check(_write(tmp_path, "x.yaml", data), capsys)
    assert code == 2
    line = _one_error_line(err, names=f"x.yaml{where}")
    assert what in line


# ---------------------------------------------------------------------------------------------
# Sizes and seeds


def test_check_prints_the_memory_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "toy"]) == 0
    out = capsys.readouterr().out
    assert "memory:      chip ~5.0 KiB, training step" in out and "free" in out
    assert main(["check", "toy", "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert memory["chip_bytes"] == 68 * 74 + 12 * 8  # 68 device pairs, 12 neurons
    assert memory["batch"] == 20 and memory["points"] == 6  # the documented defaults


def test_a_chip_that_cannot_fit_is_refused_by_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "huge.yaml", TOY.replace("[6, 4, 4]", "[64, 2000000000]"))
    code, _, err = _check(path, capsys)
    assert code == 2
    line = _one_error_line(err, names="huge.yaml:7: layers:")
    assert "cannot fit" in line and "TiB" in line and "available" in line


@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_train_and_gradcheck_refuse_before_fabricating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = _write(tmp_path, "huge.yaml", _digits_shaped("[64, 2000000000]"))
    argv = [command, str(path), "--beta", "0.1"]
    t0 = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t0 < 20  # refused before any chip or XLA buffer
    err = capsys.readouterr().err
    assert "cannot fit" in _one_error_line(err, names="huge.yaml:7: layers:")


@pytest.mark.parametrize("command", ["train", "gradcheck"])
def test_a_conv_chip_that_cannot_fit_is_refused_before_fabricating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """2**24 channels in the first conv block: its reads (2**24 x 64 positions per sample and
    state) and the next block's array (32 x 2**24 x 9) need TiB, refused at the blocks line."""
    cnn = (ROOT / "tests" / "data" / "cnn_two_blocks.yaml").read_text(encoding="utf-8")
    text = cnn.replace("channels: 16,", f"channels: {2**24},").replace("epochs: 20", "epochs: 1")
    path = _write(tmp_path, "huge_cnn.yaml", text)
    t0 = time.perf_counter()
    assert main([command, str(path), "--beta", "0.1"]) == 2
    assert time.perf_counter() - t0 < 20  # refused before any chip or XLA buffer
    line = _one_error_line(capsys.readouterr().err, names="huge_cnn.yaml:8: blocks:")
    assert "cannot fit" in line and "use smaller blocks" in line


def test_every_emulated_chip_is_checked_before_fabrication(tmp_path: Path) -> None:
    """serve, sweeps, stability maps and the kit open the emulator driver directly: the
    driver itself refuses a chip that cannot fit, before allocating it."""
    from analog_hep.emulator import EmulatorDriver
    from analog_hep.errors import SpecError
    from analog_hep.spec import load_circuit

    path = _write(tmp_path, "huge.yaml", _digits_shaped("[64, 2000000000]"))
    with pytest.raises(SpecError, match=r"huge\.yaml:7: layers: this chip cannot fit"):
        EmulatorDriver(load_circuit(str(path)), seed=0)


def test_sweep_seeds_and_the_chip_seed_option_are_range_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = _write(
        tmp_path,
        "sweep.yaml",
        "kind: gradcheck\ncircuit: toy\n"
        "base: {method: hep, points: 8, beta: 0.1, batch: 10, seed: 100000000000000000000}\n",
    )
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "s.h5")]) == 2
    assert "seed: expected a seed in 0 ... 4294967295" in _one_error_line(
        capsys.readouterr().err, names="sweep.yaml:3:"
    )
    argv = ["train", "digits", "--epochs", "1", "--driver", "emulator:chip_seed=4294967296"]
    assert main(argv) == 2
    assert "chip_seed: expected an integer >= 0 and <= 4294967295" in _one_error_line(
        capsys.readouterr().err, names="--driver emulator"
    )


class _FakeAccelerator:
    platform = "gpu"
    device_kind = "H200"

    def __init__(self, stats: dict[str, int] | None) -> None:
        self.stats = stats

    def memory_stats(self) -> dict[str, int] | None:
        return self.stats


def test_the_accelerator_memory_counts_where_there_is_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import jax

    from analog_hep.spec import available_memory, check_fits, load_circuit

    stats = {"bytes_limit": 1 << 20, "bytes_in_use": 1 << 19}
    monkeypatch.setattr(jax, "devices", lambda *a: [_FakeAccelerator(stats)])
    assert available_memory() == (1 << 19, "on gpu device H200")
    mnist = load_circuit("mnist_mlp")
    with pytest.raises(SpecError, match=r"cannot fit on gpu device H200: .* 512.0 KiB available"):
        check_fits(mnist.spec, batch=20, points=10, path=mnist.path, text=mnist.text)
    # A backend without memory statistics: this machine's memory counts instead.
    monkeypatch.setattr(jax, "devices", lambda *a: [_FakeAccelerator(None)])
    assert available_memory()[1] == "in this machine's memory"


def test_seed_out_of_range_in_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in ("100000000000000000000000000000", "4294967296", "-1"):
        path = _write(tmp_path, "seed.yaml", TOY.replace("seed: 0", f"seed: {seed}"))
        code, _, err = _check(path, capsys)
        assert code == 2, seed
        line = _one_error_line(err, names="seed.yaml:6: seed:")
        assert "0 ... 4294967295" in line and seed in line
    path = _write(tmp_path, "seed.yaml", TOY.replace("seed: 0", "seed: 1e29"))
    code, _, err = _check(path, capsys)
    assert code == 2 and "expected an integer" in _one_error_line(err, names="seed.yaml:6:")
    path = _write(tmp_path, "seed.yaml", TOY.replace("seed: 0", "seed: 4294967295"))
    assert _check(path, capsys)[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["gradcheck", "toy", "--beta", "0.1"],
        ["train", "toy"],
        ["stability-map", "toy"],
        ["conformance", "--driver", "emulator"],
    ],
    ids=lambda a: a[0],
)
def test_seed_option_out_of_range(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--seed", "100000000000000000000000"]) == 2
    line = _one_error_line(capsys.readouterr().err, names="argument --seed:")
    assert "0 ... 4294967295" in line


# ---------------------------------------------------------------------------------------------
# fit-device


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (bytes(range(256)) * 4, "m.csv:2:"),  # byte 10 ends line 1
        (b"device,pulse,direction,conductance_S\nd0,1,1,1e-6\n\xe9,2,1,1e-6\n", "m.csv:3:"),
    ],
    ids=["binary", "latin-1"],
)
def test_fit_device_binary_or_non_utf8_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, where: str
) -> None:
    path = _write(tmp_path, "m.csv", data)
    argv = ["fit-device", str(path), "--model", "soft_bounds", "--out", str(tmp_path / "c.yaml")]
    assert main(argv) == 2
    assert "not a UTF-8 text file" in _one_error_line(capsys.readouterr().err, names=where)


# ---------------------------------------------------------------------------------------------
# Exit codes, pipes, negative numbers


def test_exit_codes_of_the_error_types() -> None:
    from analog_hep.errors import exit_code

    for err in (SpecError("x"), UnsupportedCapability("x"), OutOfRange("x")):
        assert exit_code(err) == 2
    for err in (NotSettled("x"), ConnectionLost("x"), DriverTimeout("x")):
        assert exit_code(err) == 1


def test_beta_above_beta_max_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from analog_hep.emulator import _driver

    describe = _driver.EmulatorDriver.describe

    def capped(self: _driver.EmulatorDriver):  # type: ignore[no-untyped-def]
        desc = describe(self)
        caps = dataclasses.replace(desc.capabilities, beta_max=0.2)
        return dataclasses.replace(desc, capabilities=caps)

    monkeypatch.setattr(_driver.EmulatorDriver, "describe", capped)
    path = _write(tmp_path, "small.yaml", _digits_shaped())
    argv = ["train", str(path), "--beta", "0.5", "--epochs", "1", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    line = _one_error_line(err, names="analog-hep train: error: UnsupportedCapability:")
    assert "0.2" in line


def test_closed_pipe_is_quiet() -> None:
    # `| true` closes the pipe before anything is written: the write must not print a traceback.
    script = f"{sys.executable} -m analog_hep check toy --json | true; echo rc=${{PIPESTATUS[0]}}"
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "BrokenPipe" not in proc.stdout + proc.stderr
    assert proc.stderr == "" and proc.stdout.strip() == "rc=0", proc


# Required arguments of each subcommand, so that one numeric option can be parsed at a time.
_BASE = {
    "check": ["x.yaml"],
    "gradcheck": ["toy", "--beta", "0.1"],
    "train": ["toy"],
    "fit-device": ["m.csv", "--model", "soft_bounds", "--out", "o.yaml"],
    "serve": ["toy", "--port", "0"],
    "conformance": ["--driver", "emulator"],
    "sweep": ["s.yaml", "--out", "o.h5"],
    "stability-map": ["toy"],
    "report": ["r.h5", "--out", "d"],
    "bench": [],
    "drift": ["r.h5"],
}


def _numeric_options() -> list[tuple[str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for name, subparser in sub.choices.items():
        for action in subparser._actions:
            numeric = action.type in (int, float) or (
                getattr(action.type, "__module__", "") == "analog_hep.cli._args"
            )
            if action.option_strings and numeric and action.choices is None:
                found.append((name, action.option_strings[-1]))
    return found


NUMERIC = _numeric_options()


def test_every_numeric_option_is_found() -> None:
    names = {f"{c} {o}" for c, o in NUMERIC}
    assert {"train --beta", "gradcheck --beta", "train --lr", "stability-map --extent"} <= names
    assert len(NUMERIC) >= 25 and {c for c, _ in NUMERIC} <= set(_BASE)


@pytest.mark.parametrize(("command", "option"), NUMERIC, ids=[f"{c}{o}" for c, o in NUMERIC])
@pytest.mark.parametrize("value", ["-0.2", "-1e-3", "-2"])
def test_negative_numbers_are_values(
    command: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args([command, *_BASE[command], option, value])
    except SystemExit as done:
        assert done.code == 2
        err = capsys.readouterr().err
        assert "expected one argument" not in err  # read as an option: the defect
        line = _one_error_line(err, names=f"argument {option}:")
        assert value in line or repr(value) in line  # says what it found
        return
    parsed = getattr(args, option.lstrip("-").replace("-", "_"))
    parsed = parsed[-1] if isinstance(parsed, list) else parsed
    assert parsed == float(value) or parsed == int(float(value))


@pytest.mark.parametrize(
    "option", ["--beta", "--lr", "--residual-tol", "--noise", "--momentum", "--epochs"]
)
def test_train_negative_values_are_refused_with_one_line(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "toy", option, "-0.2"]) == 2
    line = _one_error_line(capsys.readouterr().err, names=f"argument {option}: expected")
    assert line.split(f"argument {option}: ")[1].startswith(
        ("expected a positive number, found -0.2", "expected a number", "expected an integer")
    )


# ---------------------------------------------------------------------------------------------
# Training from the command line (issue item 7)


def test_every_option_a_training_message_names_exists() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "toy",
            "--schedule",
            "cosine",
            "--residual-tol",
            "0.1",
            "--online-periods",
            "2",
            "--online-steps",
            "5",
            "--fallback-fraction",
            "0.3",
        ]
    )
    assert (args.schedule, args.residual_tol, args.online_periods) == ("cosine", 0.1, 2)
    assert (args.online_steps, args.fallback_fraction) == (5, 0.3)


def test_toy_trains_on_a_synthetic_task_of_its_shape(capsys: pytest.CaptureFixture[str]) -> None:
    """No shipped dataset has the toy's 6 inputs and 4 classes: `train` says so and trains it
    on ``synthetic:6x4``; an MNIST-shaped circuit is told to name its files instead."""
    argv = ["train", "circuits/toy.yaml", "--epochs", "1", "--max-train", "200", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "training circuit 'toy' on synthetic:6x4" in err
    res = json.loads(out)
    assert res["epochs"] == 1 and res["test_accuracy"] > 0.25  # above chance (4 classes)
    assert main(["train", "mnist_mlp", "--epochs", "1"]) == 2
    line = _one_error_line(capsys.readouterr().err, names="mnist_mlp.yaml:")
    assert "pass --dataset mnist:DIR" in line


def test_synthetic_datasets_are_deterministic_and_checked() -> None:
    from analog_hep.data import load_dataset
    from analog_hep.errors import SpecError

    a, b = load_dataset("synthetic:6x4"), load_dataset("synthetic:6x4")
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.x_train.shape == (2000, 6) and a.n_classes == 4
    assert set(np.unique(a.y_train)) == {0, 1, 2, 3}
    for bad in ("synthetic", "synthetic:6", "synthetic:0x4", "synthetic:6x1", "synthetic:6x4x2"):
        with pytest.raises(SpecError, match="expected"):
            load_dataset(bad)


def test_a_circuit_without_training_section_trains_with_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "small.yaml", _digits_shaped())
    argv = ["train", str(path), "--epochs", "1", "--max-train", "40", "--json"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads(capsys.readouterr().out)
    assert res["epochs"] == 1 and res["method"] == "hep"


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("ANALOG_HEP_COMPILE_CACHE", raising=False)
