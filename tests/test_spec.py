"""Tests for analog_hep.spec: YAML loading, one-line errors, resolution, and ``analog-hep check``.

Every bad-file test goes through the CLI and asserts exit code 2, exactly one line on stderr,
no traceback, and ``FILE:LINE: FIELD.PATH`` in the message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _text_helpers import line_with, replace_once

from analog_hep.cli import main
from analog_hep.errors import SpecError
from analog_hep.spec import (
    Circuit,
    DeviceCard,
    available_circuits,
    available_devices,
    circuit_from_text,
    find_circuit,
    find_device_card,
    load_any,
    load_circuit,
    load_device,
)
from analog_hep.spec._yaml import load_yaml

TOY = find_circuit("toy").read_text(encoding="utf-8")
IDEAL = find_device_card("ideal").read_text(encoding="utf-8")


_replace = replace_once
_line = line_with


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _check_fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``analog-hep check ARGV``; assert exit 2 and one clean stderr line; return it."""
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("analog-hep check: error: ")
    return lines[0]


# --------------------------------------------------------------------------------------------
# Bad files through the CLI.


def test_unknown_key_suggests_the_field(tmp_path, capsys):
    text = _replace(TOY, "  noise_std: 0.0", "  nosie_std: 0.0")
    path = _write(tmp_path, "typo.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "nosie_std")
    assert (
        f"{path}:{line}: neuron.nosie_std: unknown key 'nosie_std'; did you mean 'noise_std'?"
        in msg
    )
    # The misspelt key is one problem, not "unknown" plus "missing".
    assert "more error" not in msg


def test_unknown_key_inside_a_tagged_union_is_walked_without_the_tag(tmp_path, capsys):
    response = (
        "  model: soft_bounds\n  dw_min: 0.01\n  w_min: -1.0\n  w_max: 1.0\n  mult_nosie: true"
    )
    text = _replace(IDEAL, "  model: ideal", response)
    path = _write(tmp_path, "card.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "mult_nosie")
    assert f"{path}:{line}: response.mult_nosie: unknown key 'mult_nosie'" in msg
    assert "did you mean 'mult_noise'?" in msg
    assert "soft_bounds." not in msg


def test_wrong_type(tmp_path, capsys):
    text = _replace(TOY, "std: 0.5", "std: abc")
    path = _write(tmp_path, "wrongtype.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "std: abc")
    assert msg.endswith(
        f"{path}:{line}: crossbars.default.init.std: expected a number (float), found 'abc' (str)"
    )


def test_wrong_type_in_a_list_names_the_index(tmp_path, capsys):
    text = _replace(TOY, "layers: [6, 4, 4]", "layers:\n  - 6\n  - four\n  - 4")
    path = _write(tmp_path, "layers.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "- four")
    assert f"{path}:{line}: layers[1]: expected an integer (int), found 'four' (str)" in msg


def test_yaml_1_1_booleans_are_not_booleans(tmp_path, capsys):
    text = _replace(TOY, "bias: true", "bias: yes")
    path = _write(tmp_path, "yes.yaml", text)
    msg = _check_fails(capsys, str(path))
    assert (
        f"{path}:{_line(text, 'bias: yes')}: crossbars.default.bias: expected true or false" in msg
    )


def test_missing_card(tmp_path, capsys):
    text = _replace(TOY, "device: ideal", "device: nosuchcard")
    path = _write(tmp_path, "nocard.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "device: nosuchcard")
    assert f"{path}:{line}: crossbars.default.device: no device card named 'nosuchcard'" in msg
    assert "available: " in msg and "ideal" in msg


def test_missing_card_by_path(tmp_path, capsys):
    text = _replace(TOY, "device: ideal", "device: cards/gone.yaml")
    path = _write(tmp_path, "nocard.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "device: cards/gone.yaml")
    assert f"{path}:{line}: crossbars.default.device: device card file 'cards/gone.yaml'" in msg
    assert "not found" in msg


def test_card_with_g_min_above_g_max(tmp_path, capsys):
    text = _replace(IDEAL, "g_min_S: 0.0", "g_min_S: 2.0e-5")
    path = _write(tmp_path, "badcard.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "g_min_S")
    assert f"{path}:{line}: conductance.g_min_S: g_min_S must be below g_max_S" in msg
    assert "Value error" not in msg


def test_circuit_names_the_device_line_of_an_invalid_card(tmp_path, capsys):
    card_text = _replace(IDEAL, "g_min_S: 0.0", "g_min_S: 2.0e-5")
    card = _write(tmp_path, "badcard.yaml", card_text)
    text = _replace(TOY, "device: ideal", "device: badcard.yaml")
    path = _write(tmp_path, "circuit.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "device: badcard.yaml")
    assert (
        f"{path}:{line}: crossbars.default.device: device card 'badcard.yaml' is invalid: " in msg
    )
    assert f"{card}:{_line(card_text, 'g_min_S')}: conductance.g_min_S:" in msg


def test_not_yaml(tmp_path, capsys):
    text = _replace(TOY, "  loss: cross_entropy", "  loss: [cross_entropy")
    path = _write(tmp_path, "broken.yaml", text)
    msg = _check_fails(capsys, str(path))
    assert f"{path}:" in msg and "not valid YAML" in msg
    line = int(msg.split(f"{path}:")[1].split(":")[0])
    assert line >= _line(text, "[cross_entropy")


def test_top_level_not_a_mapping(tmp_path, capsys):
    path = _write(tmp_path, "list.yaml", "# a list\n- 6\n- 4\n")
    msg = _check_fails(capsys, str(path))
    assert f"{path}:2: not a YAML mapping" in msg


def test_empty_file(tmp_path, capsys):
    path = _write(tmp_path, "empty.yaml", "# nothing here\n")
    msg = _check_fails(capsys, str(path))
    assert f"{path}:1: not a YAML mapping" in msg


def test_duplicate_key_names_both_lines(tmp_path, capsys):
    text = _replace(TOY, "    bias: true\n", "    bias: true\n    bias: false\n")
    path = _write(tmp_path, "dup.yaml", text)
    msg = _check_fails(capsys, str(path))
    first = _line(text, "bias: true")
    second = _line(text, "bias: false")
    assert f"{path}:{second}: crossbars.default.bias: duplicate key 'bias'" in msg
    assert f"line {first}" in msg


def test_missing_required_key_points_at_the_parent(tmp_path, capsys):
    text = _replace(TOY, "  noise_std: 0.0\n", "")
    path = _write(tmp_path, "missing.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "neuron:")
    assert msg.endswith(f"{path}:{line}: neuron.noise_std: missing required key 'noise_std'")


def test_missing_top_level_key(tmp_path, capsys):
    text = _replace(TOY, "seed: 0\n", "")
    path = _write(tmp_path, "noseed.yaml", text)
    msg = _check_fails(capsys, str(path))
    assert f"{path}:" in msg and "seed: missing required key 'seed'" in msg


def test_override_of_unknown_crossbar(tmp_path, capsys):
    text = _replace(
        TOY, "    bias: true\n", "    bias: true\n  overrides:\n    W7:\n      bias: false\n"
    )
    path = _write(tmp_path, "override.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "W7:")
    assert f"{path}:{line}: crossbars.overrides.W7: unknown crossbar 'W7'" in msg
    assert "W0, W1, readout" in msg


def test_validator_error_points_at_the_field(tmp_path, capsys):
    text = _replace(TOY, "  nudge_steps: 300", "  nudge_steps: 300\n  tau_s: 1e-6")
    path = _write(tmp_path, "dyn.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "tau_s")
    assert f"{path}:{line}: dynamics.tau_s: dynamics mode 'discrete' takes no 'tau_s'" in msg


def test_more_errors_are_counted(tmp_path, capsys):
    text = _replace(TOY, "std: 0.5", "std: abc")
    text = _replace(text, "free_steps: 300", "free_steps: many")
    path = _write(tmp_path, "two.yaml", text)
    msg = _check_fails(capsys, str(path))
    assert "crossbars.default.init.std" in msg  # the first by line
    assert msg.endswith("(+1 more errors)")


def test_unknown_response_model(tmp_path, capsys):
    text = _replace(IDEAL, "model: ideal", "model: idael")
    path = _write(tmp_path, "model.yaml", text)
    msg = _check_fails(capsys, str(path))
    line = _line(text, "model: idael")
    assert f"{path}:{line}: response.model: expected one of 'ideal', " in msg
    assert "found 'idael' (str)" in msg


def test_file_not_found(tmp_path, capsys):
    msg = _check_fails(capsys, str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in msg and "not found" in msg


def test_neither_circuit_nor_card(tmp_path, capsys):
    path = _write(tmp_path, "other.yaml", "foo: 1\n")
    msg = _check_fails(capsys, str(path))
    assert f"{path}:1: neither a circuit (no 'layers' or 'blocks' key) nor a device card" in msg


# --------------------------------------------------------------------------------------------
# Good files.


def test_float_without_dot_is_a_float(tmp_path, capsys):
    text = _replace(IDEAL, "g_max_S: 1.0e-5", "g_max_S: 1e-5")
    path = _write(tmp_path, "card.yaml", text)
    assert main(["check", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["conductance"]["g_max_S"] == 1e-5
    assert isinstance(load_device(path).conductance.g_max_S, float)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-5", 1e-5),
        ("-2E+3", -2000.0),
        ("1.0e5", 1.0e5),
        ("3e2", 300.0),
        (".5", 0.5),
        ("-.inf", float("-inf")),
        ("12", 12),
        ("yes", "yes"),
        ("true", True),
        ("1_000", 1000),
    ],
)
def test_yaml_scalars(text, value):
    data = load_yaml(f"x: {text}\n", path="t.yaml").data
    assert data["x"] == value
    assert type(data["x"]) is type(value)


def test_line_numbers_of_keys_and_items():
    doc = load_yaml(TOY, path="toy.yaml")
    assert doc.lines[("crossbars", "default", "init", "std")] == _line(TOY, "std: 0.5")
    assert doc.lines[("layers", 2)] == _line(TOY, "layers:")
    assert doc.lines[("dynamics", "nudge_steps")] == _line(TOY, "nudge_steps")


def test_toy_and_ideal_pass_check(capsys):
    assert main(["check", str(find_circuit("toy"))]) == 0
    out = capsys.readouterr().out
    assert "circuit toy" in out
    assert out.rstrip().endswith("holomorphic: yes")
    assert main(["check", str(find_device_card("ideal"))]) == 0
    out = capsys.readouterr().out
    assert "device card ideal" in out and "µS" in out


def test_check_json(capsys):
    assert main(["check", str(find_circuit("toy")), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "circuit"
    assert summary["name"] == "toy"
    assert summary["layers"] == [6, 4, 4]
    shapes = {c["name"]: (c["n_out"], c["n_in"]) for c in summary["crossbars"]}
    assert shapes == {"W0": (4, 6), "W1": (4, 4), "readout": (4, 4)}
    # 6*4+4 + 4*4+4 + 4*4+4
    assert summary["parameter_count"] == 68
    assert summary["holomorphic"] is True
    assert all(c["device"] == "ideal" and c["bias"] for c in summary["crossbars"])

    assert main(["check", str(find_device_card("ideal")), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["kind"] == "device"
    assert card["conductance"]["g_max_uS"] == pytest.approx(10.0)
    assert card["response"]["model"] == "ideal"


def test_non_holomorphic_activation_is_flagged(tmp_path, capsys):
    text = _replace(TOY, "{name: shifted_sigmoid, a: -4.0, b: 2.0}", "{name: relu}")
    text = _replace(text, "  read_noise_std: 0.0", "  read_noise_std: 0.0\n  adc_bits: 8")
    path = _write(tmp_path, "relu.yaml", text)
    assert main(["check", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["holomorphic"] is False
    assert summary["non_holomorphic_parts"] == ["activation relu"]
    assert summary["outside_dynamics"] == ["adc (8 bits)"]


def test_resolution_by_name(capsys):
    assert "ideal" in available_devices()
    assert "toy" in available_circuits()
    assert find_device_card("ideal").name == "ideal.yaml"
    assert load_device("ideal").name == "ideal"
    circuit = load_circuit("toy")
    assert isinstance(circuit, Circuit)
    assert set(circuit.devices) == {"W0", "W1", "readout"}
    assert dict(circuit.device_texts) == {"ideal": IDEAL}
    assert circuit.text == TOY
    assert main(["check", "toy"]) == 0
    capsys.readouterr()


def test_unknown_name_lists_available_cards():
    with pytest.raises(SpecError, match=r"no device card named 'idael'; did you mean 'ideal'\?"):
        find_device_card("idael")


def test_card_by_relative_path(tmp_path, monkeypatch):
    (tmp_path / "cards").mkdir()
    (tmp_path / "circuits").mkdir()
    _write(tmp_path / "cards", "mine.yaml", _replace(IDEAL, "name: ideal", "name: mine"))
    text = _replace(TOY, "    device: ideal\n", "    device: ../cards/mine.yaml\n")
    text = _replace(
        text,
        "    bias: true\n",
        "    bias: true\n  overrides:\n    readout:\n      device: ideal\n",
    )
    path = _write(tmp_path / "circuits", "rel.yaml", text)
    monkeypatch.chdir(tmp_path / "cards")  # not the circuit's folder: paths follow the file
    circuit = load_circuit(path)
    assert circuit.devices["W0"].name == "mine"
    assert circuit.devices["readout"].name == "ideal"
    assert set(circuit.device_texts) == {"mine", "ideal"}
    assert circuit.path == str(path)


def test_circuit_from_text_rebuilds_with_recorded_cards():
    circuit = load_circuit("toy")
    again = circuit_from_text(circuit.text, name="record")
    assert again.spec == circuit.spec and again.path is None
    changed = _replace(IDEAL, "g_max_S: 1.0e-5", "g_max_S: 2.0e-5")
    recorded = circuit_from_text(circuit.text, device_texts={"ideal": changed})
    assert recorded.devices["W0"].conductance.g_max_S == 2.0e-5


def test_circuit_from_text_errors_use_the_given_name():
    with pytest.raises(SpecError, match=r"^record:\d+: neuron\.nosie_std: unknown key"):
        circuit_from_text(_replace(TOY, "  noise_std", "  nosie_std"), name="record")


def test_load_any_decides_by_keys():
    assert isinstance(load_any(find_circuit("toy")), Circuit)
    assert isinstance(load_any(find_device_card("ideal")), DeviceCard)
    # A conv chip has input_shape and blocks instead of layers.
    cnn = load_any(Path(__file__).parent / "data" / "cnn_two_blocks.yaml")
    assert isinstance(cnn, Circuit) and cnn.spec.layers == (64, 256, 128, 64)


def test_a_conv_file_with_only_blocks_is_read_as_a_circuit(tmp_path, capsys):
    cnn = (Path(__file__).parent / "data" / "cnn_two_blocks.yaml").read_text(encoding="utf-8")
    path = _write(tmp_path, "cnn.yaml", _replace(cnn, "input_shape: [1, 8, 8]\n", ""))
    msg = _check_fails(capsys, str(path))
    assert f"{path}:{_line(cnn, 'blocks:') - 1}: blocks: blocks need a top-level input_shape" in msg
