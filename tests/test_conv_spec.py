"""Conv chips in YAML (issue 14): every bad block is one ``FILE:LINE: FIELD.PATH`` line through
``analog-hep check`` with exit code 2; ``check`` summarises each block (shapes, array, reads
per settle step, parameters, devices, holomorphy); the memory estimate counts a conv crossbar
as one ``C_out x C_in k k`` array read at every position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _text_helpers import line_with, replace_once

from analog_hep.cli import main
from analog_hep.spec import estimate_memory, load_circuit
from analog_hep.spec._memory import (
    CHIP_BYTES_PER_CELL,
    STEP_BYTES_PER_ACTIVITY,
    STEP_BYTES_PER_CELL,
)

CNN_PATH = Path(__file__).parent / "data" / "cnn_two_blocks.yaml"
CNN = CNN_PATH.read_text(encoding="utf-8")
B0 = "{kind: conv, channels: 16, kernel: 3, padding: 1, pool: softmax}"
B1 = "{kind: conv, channels: 32, kernel: 3, padding: 1, pool: softmax}"
DENSE = "{kind: dense, units: 64}"


_replace = replace_once
_line = line_with


def _fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[Path, str]:
    """``analog-hep check`` on ``text``: exit 2, nothing on stdout, one clean stderr line."""
    path = tmp_path / "cnn.yaml"
    path.write_text(text, encoding="utf-8")
    code = main(["check", str(path)])
    out, err = capsys.readouterr()
    assert code == 2, out
    assert out == "" and "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith(f"analog-hep check: error: {path}:")
    return path, lines[0]


def _summary(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> tuple[str, dict]:
    """``check`` text and ``check --json`` of a valid circuit."""
    path = tmp_path / "cnn.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert main(["check", str(path), "--json"]) == 0
    return out, json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------
# Bad blocks: one line at the offending field.


def test_kernel_larger_than_its_input(tmp_path, capsys):
    text = _replace(CNN, B0, "{kind: conv, channels: 16, kernel: 11, padding: 1, pool: softmax}")
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "kernel: 11")
    assert (
        f"{path}:{line}: blocks[0].kernel: kernel 11 is larger than its padded input 10x10" in msg
    )
    assert "(input 8x8, padding 1)" in msg and "no output position" in msg


def test_kernel_on_its_own_line_is_named_at_that_line(tmp_path, capsys):
    block = "  - kind: conv\n    channels: 16\n    kernel: 5\n    pool: none\n"
    text = _replace(CNN, "input_shape: [1, 8, 8]", "input_shape: [1, 3, 3]")
    text = _replace(text, f"  - {B0}\n", block)
    path, msg = _fails(tmp_path, capsys, text)
    assert f"{path}:{_line(text, 'kernel: 5')}: blocks[0].kernel: kernel 5 is larger" in msg
    assert "padded input 3x3 (input 3x3, padding 0)" in msg


def test_stride_that_leaves_an_empty_output(tmp_path, capsys):
    # 8x8, kernel 3, stride 8: one position; no 2x2 pooling window fits (stride 1 would).
    text = _replace(CNN, B0, "{kind: conv, channels: 16, kernel: 3, stride: 8, pool: softmax}")
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "stride: 8")
    assert f"{path}:{line}: blocks[0].stride: stride 8 is too large: pool_size 2 is larger" in msg
    assert "output 1x1 (input 8x8, kernel 3, stride 8, padding 0)" in msg and "empty" in msg


def test_pool_larger_than_the_output_of_a_later_block(tmp_path, capsys):
    # The second block reads the first's 16x4x4 output: kernel 3, no padding -> 2x2 < 4x4.
    text = _replace(CNN, B1, "{kind: conv, channels: 32, kernel: 3, pool: average, pool_size: 4}")
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "pool_size: 4")
    assert f"{path}:{line}: blocks[1].pool_size: pool_size 4 is larger than" in msg
    assert "output 2x2 (input 4x4" in msg and "(blocks[0]'s output is [16, 4, 4])" in msg


def test_pooling_on_an_odd_size(tmp_path, capsys):
    text = _replace(CNN, "input_shape: [1, 8, 8]", "input_shape: [1, 7, 7]")
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, B0)
    assert f"{path}:{line}: blocks[0].pool_size: pool_size 2 does not divide" in msg
    assert "output 7x7 (input 7x7, kernel 3, stride 1, padding 1)" in msg


def test_in_channels_that_do_not_match(tmp_path, capsys):
    text = _replace(CNN, B1, B1.replace("channels: 32,", "channels: 32, in_channels: 8,"))
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "in_channels: 8")
    assert f"{path}:{line}: blocks[1].in_channels: in_channels 8 does not match the 16" in msg
    assert "blocks[0]'s output, shape [16, 4, 4]" in msg
    # The first block's are the input's.
    text = _replace(CNN, B0, B0.replace("channels: 16,", "channels: 16, in_channels: 3,"))
    path, msg = _fails(tmp_path, capsys, text)
    assert f"{path}:{_line(text, 'in_channels: 3')}: blocks[0].in_channels:" in msg
    assert "the 1 channels of the layer before (input_shape, shape [1, 8, 8])" in msg


def test_matching_in_channels_are_accepted(tmp_path, capsys):
    text = _replace(CNN, B1, B1.replace("channels: 32,", "channels: 32, in_channels: 16,"))
    _, summary = _summary(tmp_path, capsys, text)
    assert summary["layers"] == [64, 256, 128, 64]


def test_a_conv_block_after_a_dense_block(tmp_path, capsys):
    text = _replace(
        CNN, f"  - {DENSE}\n", f"  - {DENSE}\n  - {{kind: conv, channels: 4, kernel: 1}}\n"
    )
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "channels: 4, kernel: 1")
    assert f"{path}:{line}: blocks[3].kind: a conv block after the dense block blocks[2]" in msg
    assert "conv blocks come first" in msg


def test_blocks_together_with_layers(tmp_path, capsys):
    text = _replace(CNN, "input_shape: [1, 8, 8]\n", "input_shape: [1, 8, 8]\nlayers: [64, 10]\n")
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "layers: [64, 10]")
    assert f"{path}:{line}: layers: give either layers (an MLP) or input_shape and blocks" in msg


def test_blocks_without_input_shape(tmp_path, capsys):
    text = _replace(CNN, "input_shape: [1, 8, 8]\n", "")
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "blocks:")
    assert f"{path}:{line}: blocks: blocks need a top-level input_shape: [channels, height," in msg


def test_input_shape_without_blocks(tmp_path, capsys):
    text = CNN.split("blocks:\n")[0] + "layers: [64, 10]\n" + CNN.split(f"  - {DENSE}\n")[1]
    path, msg = _fails(tmp_path, capsys, text)
    assert f"{path}:{_line(text, 'input_shape')}: input_shape: input_shape needs blocks" in msg


def test_a_pool_name_that_does_not_exist(tmp_path, capsys):
    text = _replace(CNN, B1, B1.replace("pool: softmax", "pool: mean"))
    path, msg = _fails(tmp_path, capsys, text)
    line = _line(text, "pool: mean")
    assert f"{path}:{line}: blocks[1].pool: expected one of 'none', 'softmax', 'average'" in msg
    assert "found 'mean' (str)" in msg


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "input_shape: [1, 8, 8]",
            "input_shape: [8, 8]",
            "input_shape",
            "input_shape: expected a list of 3 items, found [8, 8] (list)",
        ),
        (
            B0,
            "{channels: 16, kernel: 3}",
            "channels: 16, kernel: 3}",
            "blocks[0].kind: missing required key 'kind' (one of 'conv', 'dense')",
        ),
        (
            B0,
            "{kind: cnv, channels: 16, kernel: 3}",
            "kind: cnv",
            "blocks[0].kind: expected one of 'conv', 'dense', found 'cnv' (str)",
        ),
        (
            B0,
            B0.replace("channels", "chanels"),
            "chanels",
            "blocks[0].chanels: unknown key 'chanels'; did you mean 'channels'?",
        ),
        (
            B0,
            "{kind: conv, channels: 16, kernel: 3, padding: 1, pool: average, temperature: 2.0}",
            "temperature",
            "blocks[0].temperature: pool 'average' takes no temperature",
        ),
        (
            B0,
            "{kind: conv, channels: 16, kernel: 3, padding: 1, pool: softmax, pool_size: 1}",
            "pool_size: 1",
            "blocks[0].pool_size: pool 'softmax' with pool_size 1: a pooling needs pool_size >= 2",
        ),
        (
            B0,
            "{kind: conv, channels: 16, kernel: 0}",
            "kernel: 0",
            "blocks[0].kernel: expected a number >= 1, found 0 (int)",
        ),
        (
            "loss: cross_entropy",
            "loss: mse",
            DENSE,
            "blocks[2].units: loss 'mse' nudges the last layer towards one-hot targets, so the "
            "last block must give readout.classes (10) activities, found 64",
        ),
    ],
    ids=["input-shape-length", "no-kind", "bad-kind", "typo", "temperature", "pool-size-1",
         "kernel-0", "mse-last-block"],
)  # fmt: skip
def test_other_bad_blocks(tmp_path, capsys, old, new, needle, expected):
    text = _replace(CNN, old, new)
    path, msg = _fails(tmp_path, capsys, text)
    assert f"{path}:{_line(text, needle)}: {expected}" in msg


# ---------------------------------------------------------------------------------------------
# The check summary.


def test_check_summarises_every_block(tmp_path, capsys):
    out, s = _summary(tmp_path, capsys, CNN)
    # Arrays: a conv crossbar is C_out x (C_in k k) plus a bias column.
    params = {"W0": 16 * 9 + 16, "W1": 32 * 16 * 9 + 32, "W2": 64 * 128 + 64, "readout": 650}
    assert {c["name"]: (c["n_out"], c["n_in"]) for c in s["crossbars"]} == {
        "W0": (16, 9),
        "W1": (32, 144),
        "W2": (64, 128),
        "readout": (10, 64),
    }
    assert {c["name"]: c["parameters"] for c in s["crossbars"]} == params
    assert {c["name"]: c["devices"] for c in s["crossbars"]} == {
        n: 2 * p for n, p in params.items()
    }
    assert s["parameter_count"] == sum(params.values()) == 13706
    assert s["device_count"] == 2 * 13706
    assert s["input_shape"] == [1, 8, 8]
    assert s["layer_shapes"] == [[1, 8, 8], [16, 4, 4], [32, 2, 2], [64]]
    w0, w1, w2, ro = s["crossbars"]
    assert (w0["kind"], w2["kind"], ro["kind"]) == ("conv", "dense", "dense")
    assert w0["conv_shape"] == [16, 8, 8] and w1["conv_shape"] == [32, 4, 4]
    assert w1["in_shape"] == [16, 4, 4] and w1["out_shape"] == [32, 2, 2]
    assert w1["geometry"]["pool"] == "softmax" and w1["geometry"]["pool_size"] == 2
    assert w2["geometry"] is None and ro["out_shape"] == [10]
    # Reads per settle step: every output position; the first block is never read back.
    reads = {c["name"]: c["reads_per_step"] for c in s["crossbars"]}
    assert reads["W0"] == {"forward": 64, "transposed": 0, "nudged_only": False}
    assert reads["W1"] == {"forward": 16, "transposed": 16, "nudged_only": False}
    assert reads["W2"] == {"forward": 1, "transposed": 1, "nudged_only": False}
    assert reads["readout"] == {"forward": 1, "transposed": 1, "nudged_only": True}
    assert s["holomorphic"] is True and s["max_hep_points"] is None
    assert "layers:      1x8x8 (64) -> 16x4x4 (256) -> 32x2x2 (128) -> 64" in out
    assert (
        "conv 3x3, stride 1, padding 1, softmax pooling 2x2 (T=1): 1x8x8 -> 16x8x8 -> 16x4x4"
    ) in out
    assert (
        "array 32 x 144 + bias; 16 forward + 16 transposed reads per step; "
        "4640 parameters (9280 devices)"
    ) in out
    assert "1 forward + 1 transposed reads per nudged step; 650 parameters" in out
    assert "13706 (13584 weights, 122 biases; 27412 devices in differential pairs)" in out
    assert out.rstrip().endswith("holomorphic: yes")


def test_max_pooling_is_flagged_and_limits_hep_to_two_points(tmp_path, capsys):
    text = _replace(CNN, B1, B1.replace("pool: softmax", "pool: max"))
    out, s = _summary(tmp_path, capsys, text)
    assert s["holomorphic"] is False and s["activation"]["holomorphic"] is True
    assert s["non_holomorphic_parts"] == ["W1 max pooling"]
    assert s["max_hep_points"] == 2
    assert "max pooling 2x2: 16x4x4 -> 32x4x4 -> 32x2x2" in out
    assert (
        "holomorphic: no (W1 max pooling): hEP with N > 2 is refused on this chip; N = 2 "
        "(real nudges) is allowed"
    ) in out


def test_the_check_counts_agree_with_the_fabricated_chip():
    from analog_hep.emulator import EmulatorDriver

    circuit = load_circuit(str(CNN_PATH))
    desc = EmulatorDriver(circuit, seed=0).describe()
    cells = sum(x.n_out * (x.n_in + x.has_bias) for x in desc.crossbars)
    assert cells == estimate_memory(circuit.spec, batch=1, points=1).cells == 13706
    assert {x.name: (x.n_out, x.n_in) for x in desc.crossbars} == circuit.spec.crossbar_shapes


# ---------------------------------------------------------------------------------------------
# Memory.


def _image_chip(side: int) -> str:
    """One conv block (4 channels, 3x3, padding 1, average pooling 2) on a side x side image,
    then the readout."""
    text = _replace(CNN, "input_shape: [1, 8, 8]", f"input_shape: [1, {side}, {side}]")
    text = _replace(text, f"  - {B1}\n", "")
    text = _replace(text, f"  - {DENSE}\n", "")
    return _replace(text, B0, "{kind: conv, channels: 4, kernel: 3, padding: 1, pool: average}")


def test_memory_counts_a_conv_crossbar_as_one_array_read_at_every_position(tmp_path):
    (tmp_path / "a.yaml").write_text(_image_chip(32), encoding="utf-8")
    spec = load_circuit(tmp_path / "a.yaml").spec
    est = estimate_memory(spec, batch=5, points=3)
    cells = 4 * (9 + 1) + 10 * (4 * 16 * 16 + 1)  # conv array, then readout
    assert est.cells == cells
    neurons = 4 * 16 * 16 + 10
    assert est.chip_bytes == cells * CHIP_BYTES_PER_CELL + neurons * 8
    states = 5 * 4
    activity = states * (32 * 32 + 4 * 16 * 16 + 10) * STEP_BYTES_PER_ACTIVITY
    # Before pooling: 4 x 32 x 32 values (3 complex64 buffers); patches 1024 x 9 (complex64).
    conv = states * (4 * 32 * 32 * 3 * 8 + 32 * 32 * 9 * 8)
    assert est.step_bytes == cells * STEP_BYTES_PER_CELL + activity + conv


def test_a_conv_chip_that_cannot_fit_is_refused_at_its_blocks_line(tmp_path, capsys):
    text = _replace(_image_chip(8), "input_shape: [1, 8, 8]", "input_shape: [3, 65536, 65536]")
    text = _replace(text, "channels: 4,", "channels: 4096,")
    path, msg = _fails(tmp_path, capsys, text)
    assert f"{path}:{_line(text, 'blocks:')}: blocks: this chip cannot fit" in msg
    assert "use smaller blocks or a smaller --batch" in msg


def test_mlp_memory_is_unchanged():
    est = estimate_memory(load_circuit("toy").spec, batch=20, points=6)
    assert est.cells == 68 and est.chip_bytes == 68 * 74 + 12 * 8
    assert est.step_bytes == 68 * 24 + 20 * 7 * (6 + 4 + 4 + 4) * 48
