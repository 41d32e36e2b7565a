"""Tiki-Taka (TTv2, chopped TTv2) on the emulated chip (issue 15): the ``tiki_taka`` block of a
crossbar, the fast array ``A`` and its transfers into ``C``, the capability, checkpoints,
the wire and the conformance kit."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from analog_hep.conformance import run_check, run_conformance
from analog_hep.drivers import DriverServer, open_driver
from analog_hep.drivers import _wire as wire
from analog_hep.emulator import EmulatorDriver, fabricate, free_phase
from analog_hep.errors import SpecError
from analog_hep.physics import (
    buffer_pulses,
    chopper_signs,
    draw_devices,
    transfer,
    transfer_mask,
)
from analog_hep.spec import circuit_from_text, find_circuit, load_device

TOY = find_circuit("toy").read_text(encoding="utf-8")

BLOCK = {
    "gamma": 0.0,
    "transfer_every": 2,
    "columns_per_transfer": 2,
    "transfer_lr": 1.0,
    "threshold": 1.0,
    "read_noise_std": 0.01,
}


def _yaml(fields: dict) -> str:
    return "".join(f"      {k}: {v}\n" for k, v in fields.items())


def _text(device: str = "idealized_rpu", *, block: dict | None = None, **fields: object) -> str:
    """The toy circuit on ``device`` with a ``tiki_taka`` block under the default crossbar
    (``BLOCK`` updated by ``fields``; ``block=None`` and no fields: ``BLOCK``)."""
    text = TOY.replace("device: ideal", f"device: {device}")
    block = {**BLOCK, **fields} if block is None else block
    return text.replace("    bias: true\n", "    bias: true\n    tiki_taka:\n" + _yaml(block))


def _circuit(device: str = "idealized_rpu", **fields: object):
    return circuit_from_text(_text(device, **fields), name="tt.yaml")


def _push(d, name: str, rng: np.random.Generator, lr: float = -0.05) -> None:
    info = {c.name: c for c in d.describe().crossbars}[name]
    rows = rng.normal(size=(2, info.n_out)).astype(np.float32)
    cols = rng.normal(size=(2, info.n_in + 1)).astype(np.float32)
    d.apply_outer_product(name, jnp.asarray(rows), jnp.asarray(cols), lr=lr)


# -- spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("gamma", -0.5, "a number >= 0"),
        ("transfer_every", 0, "a number >= 1"),
        ("transfer_every", 1.5, "an integer"),
        ("columns_per_transfer", 0, "a number >= 1"),
        ("transfer_lr", 0.0, "a number > 0"),
        ("threshold", -1.0, "a number > 0"),
        ("read_noise_std", -0.1, "a number >= 0"),
        ("chopper_period", -1, "a number >= 0"),
        ("forget_buffer", 1, "true or false"),
    ],
)
def test_bad_field_values_name_the_field(field, value, expected):
    with pytest.raises(SpecError) as err:
        _circuit(**{field: value})
    msg = str(err.value)
    assert f"crossbars.default.tiki_taka.{field}: expected {expected}" in msg
    assert msg.startswith("tt.yaml:")


def test_missing_and_unknown_keys_name_the_field():
    block = {k: v for k, v in BLOCK.items() if k != "threshold"}
    with pytest.raises(SpecError, match=r"tiki_taka\.threshold: missing required key 'threshold'"):
        circuit_from_text(_text(block=block))
    with pytest.raises(
        SpecError, match="unknown key 'transfer_evry'; did you mean 'transfer_every'"
    ):
        circuit_from_text(_text(block={**BLOCK, "transfer_evry": 3}))


def test_an_unknown_fast_card_is_refused_like_an_unknown_device():
    with pytest.raises(SpecError) as err:
        _circuit(fast_device="capacitr")
    msg = str(err.value)
    assert "crossbars.default.tiki_taka.fast_device" in msg
    assert "no device card named 'capacitr'; did you mean 'capacitor'?" in msg


def test_never_transferring_schedules_are_refused():
    # A schedule beyond the 32-bit update counter never comes round.
    with pytest.raises(SpecError, match=r"tiki_taka.transfer_every: transfer_every 2147483648"):
        _circuit(transfer_every=2**31)
    # C moves by whole pulses: an ideal card has none.
    with pytest.raises(SpecError, match=r"tiki_taka: tiki_taka moves C by whole pulses.*ideal"):
        _circuit("ideal")
    # The float32 buffer stops growing long before it reaches this threshold.
    with pytest.raises(SpecError, match=r"tiki_taka: threshold 1e\+12 .* C never moves"):
        _circuit(threshold=1e12)
    assert _circuit(threshold=1e3).fast_devices  # large, but reachable


def test_tiki_taka_is_on_every_crossbar_or_none():
    text = TOY.replace("device: ideal", "device: idealized_rpu")
    text = text.replace(
        "periphery:",
        "  overrides:\n    W0:\n      tiki_taka:\n"
        + _yaml(BLOCK).replace("      ", "        ")
        + "periphery:",
    )
    with pytest.raises(SpecError) as err:
        circuit_from_text(text, name="tt.yaml")
    msg = str(err.value)
    assert "crossbars.overrides.W0.tiki_taka" in msg
    assert "on every crossbar or on none" in msg and "not on W1, readout" in msg


def test_an_override_replaces_the_block_and_names_its_fast_card():
    text = _text().replace(
        "periphery:",
        "  overrides:\n    readout:\n      tiki_taka:\n"
        + _yaml({**BLOCK, "fast_device": "capacitor", "gamma": 0.5}).replace("      ", "        ")
        + "periphery:",
    )
    c = circuit_from_text(text)
    assert c.spec.crossbar("readout").tiki_taka.gamma == 0.5
    assert c.spec.crossbar("W0").tiki_taka.gamma == 0.0
    assert {n: card.name for n, card in c.fast_devices.items()} == {
        "W0": "idealized_rpu",
        "W1": "idealized_rpu",
        "readout": "capacitor",
    }
    assert set(c.device_texts) == {"idealized_rpu", "capacitor"}  # the record and the digest
    d = EmulatorDriver(c, seed=0)
    assert d.describe().extra["tiki_taka"]["readout"]["fast_card"] == "capacitor"
    assert d.emulated_chip.crossbars["readout"].tiki_taka.card.name == "capacitor"
    with pytest.raises(ValueError, match="fast_devices"):
        fabricate(c.spec, dict(c.devices), 0)  # the fast card must be given


# -- fabrication and reads ---------------------------------------------------------------------

# sha256 over every leaf (dtype, bytes) of fabricate(toy on CARD, seed 3), computed with the
# code before Tiki-Taka existed (commit 3a03b27): a chip without tiki_taka is drawn as before.
BEFORE = {
    "ideal": "b517cb11a1cdae84057296a15c97f8c688b890860b5f95e056ad212e6e49807d",
    "idealized_rpu": "11006e264ce81d89b88d09121d72829428156127d1c19596f8e24f2c2d9ccfdf",
    "om_rram_array": "7fd77be203fdb314ed1abb112e31ff31681ab4d2ffa55b28d343624b0c922103",
    "pcm_pair": "192053706f9ca0410d841aff048c699056f386def7efac7b861548da15c20aae",
}


def _digest(tree) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(tree):
        a = np.asarray(leaf)
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("card", sorted(BEFORE))
def test_a_chip_without_tiki_taka_fabricates_bitwise_as_before(card):
    c = circuit_from_text(TOY.replace("device: ideal", f"device: {card}"))
    chip, _ = fabricate(c.spec, dict(c.devices), 3)
    assert _digest(chip) == BEFORE[card]


def test_adding_tiki_taka_draws_the_rest_of_the_chip_bitwise_the_same():
    plain = circuit_from_text(TOY.replace("device: ideal", "device: om_rram_array"))
    tt = _circuit("om_rram_array", transfer_every=3)
    a, _ = fabricate(plain.spec, dict(plain.devices), 3)
    b, _ = fabricate(tt.spec, dict(tt.devices), 3, fast_devices=tt.fast_devices)
    stripped = {n: dataclasses.replace(x, tiki_taka=None) for n, x in b.crossbars.items()}
    assert _digest(a) == _digest(dataclasses.replace(b, crossbars=stripped))
    fast = b.crossbars["W0"].tiki_taka
    assert fast is not None and fast.buffer.shape == (4, 7) and int(fast.pointer) == 0


def test_the_fast_array_starts_at_zero_weight():
    c = _circuit("idealized_rpu")  # no program noise, no stuck devices
    chip, _ = fabricate(c.spec, dict(c.devices), 1, fast_devices=c.fast_devices)
    for xb in chip.crossbars.values():
        assert not np.any(np.asarray(xb.tiki_taka.weights_full()))


@pytest.mark.parametrize("gamma", [0.0, 0.7])
def test_the_weights_are_c_plus_gamma_a(gamma):
    c = _circuit(gamma=gamma, transfer_every=3)
    d = EmulatorDriver(c, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(4):
        _push(d, "W1", rng, lr=-0.5)
    xb = d.emulated_chip.crossbars["W1"]
    tt = xb.tiki_taka
    w_c = (np.asarray(xb.g_plus_S) - np.asarray(xb.g_minus_S)) / xb.g_unit_S
    w_a = (np.asarray(tt.g_plus_S) - np.asarray(tt.g_minus_S)) / tt.g_unit_S
    assert np.abs(w_a).max() > 0.01  # A holds something
    w, b = d.read_weights()["W1"]
    want = w_c + np.float32(gamma) * w_a
    if gamma == 0.0:  # TTv2 reads C, bitwise: what the crossbar without A reads
        w_plain, b_plain = dataclasses.replace(xb, tiki_taka=None).weights()
        np.testing.assert_array_equal(w, np.asarray(w_plain))
        np.testing.assert_array_equal(b, np.asarray(b_plain))
        np.testing.assert_allclose(w, w_c[:, :-1], rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_allclose(w, want[:, :-1], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b, want[:, -1], rtol=1e-6, atol=1e-7)


def test_with_gamma_zero_a_settle_reads_exactly_c():
    c = _circuit(gamma=0.0, transfer_every=1)
    d = EmulatorDriver(c, seed=0)
    rng = np.random.default_rng(1)
    for name in ("W0", "W1", "readout"):
        _push(d, name, rng, lr=-1.0)
    chip = d.emulated_chip
    plain = dataclasses.replace(
        chip,
        crossbars={n: dataclasses.replace(x, tiki_taka=None) for n, x in chip.crossbars.items()},
    )
    x = jnp.asarray(rng.uniform(size=(3, 6)), jnp.float32)
    with_a = free_phase(chip, x, steps=50, key=None)
    without = free_phase(plain, x, steps=50, key=None)
    for s, t in zip(with_a.states, without.states, strict=True):
        np.testing.assert_array_equal(np.asarray(s), np.asarray(t))


# -- the transfer ------------------------------------------------------------------------------


def _quiet_card():
    """idealized_rpu without any spread or noise: every pulse moves a device by dw_min."""
    card = load_device("idealized_rpu")
    resp = card.response.model_copy(
        update={"dw_min_dtod": 0.0, "dw_min_std": 0.0, "w_min_dtod": 0.0, "w_max_dtod": 0.0}
    )
    return card.model_copy(update={"response": resp})


def test_chopper_signs_and_the_column_cycle():
    reads = jnp.array([0, 1, 2, 3, 4, 5])
    assert chopper_signs(reads, 0).tolist() == [1.0] * 6
    assert chopper_signs(reads, 1).tolist() == [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]
    assert chopper_signs(reads, 3).tolist() == [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    assert transfer_mask(jnp.int32(4), n_cols=5, count=3, n_in1=6).tolist() == [
        True, True, False, False, True, False
    ]  # fmt: skip
    # Never a column twice, whatever count says.
    assert transfer_mask(jnp.int32(1), n_cols=3, count=9, n_in1=4).tolist() == [
        True, True, True, False
    ]  # fmt: skip


@pytest.mark.parametrize("forget", [False, True])
def test_buffer_keeps_the_rest_or_forgets_it(forget):
    h0 = jnp.array([[0.2, 5.0, -0.3], [0.0, 0.0, 0.0]], jnp.float32)
    read = jnp.array([[2.0, 1.0, -3.0], [0.5, 40.0, -1.0]], jnp.float32)
    mask = jnp.array([True, False, True])
    h, n, capped = buffer_pulses(
        h0, read, mask, transfer_lr=0.5, step=jnp.float32(0.4), bit_length=4, forget_buffer=forget
    )
    # H = h0 + 0.5 read on columns 0 and 2: [[1.2, ., -1.8], [0.25, ., -0.5]]
    np.testing.assert_array_equal(np.asarray(n), [[3.0, 0.0, -4.0], [0.0, 0.0, -1.0]])
    assert int(capped) == 0
    h = np.asarray(h)
    assert h[0, 1] == 5.0 and h[1, 1] == 0.0  # a column not read keeps its buffer bitwise
    if forget:
        np.testing.assert_array_equal(h[:, [0, 2]], [[0.0, 0.0], [0.25, 0.0]])
    else:
        np.testing.assert_allclose(h[:, [0, 2]], [[0.0, -0.2], [0.25, -0.1]], atol=1e-6)
    _, n, capped = buffer_pulses(
        h0, read * 10, mask, transfer_lr=0.5, step=jnp.float32(0.4), bit_length=4,
        forget_buffer=forget,
    )  # fmt: skip
    assert int(capped) == 4 and float(jnp.abs(n).max()) == 4.0  # capped at bit_length


def test_a_transfer_moves_c_in_the_sign_of_h_by_whole_pulses():
    card = _quiet_card()
    shape = (2, 3, 4)
    dev = draw_devices(card, shape, key=jr.PRNGKey(0))
    mid = 0.5 * (card.conductance.g_min_S + card.conductance.g_max_S)
    g = jnp.full(shape, mid, jnp.float32)
    g_unit = (card.conductance.g_max_S - card.conductance.g_min_S) / 4.0
    dw_c = 2 * float(dev.dw_up_S.mean()) / g_unit  # a balanced pair moves both devices
    w_a = jnp.array(
        [[0.0101, -0.0203, 0.0, 0.0517], [-0.0309, 0.0, 0.0413, 0.0], [0.0, 0.0, 0.0, -1.0]]
    )
    mask = jnp.array([True, True, True, False])
    g_new, h, rep = transfer(
        card, dev, g, w_a, jnp.zeros((3, 4)), jnp.ones(4), mask,
        g_unit_S=g_unit, transfer_lr=1.0, threshold=0.5, read_noise_std=0.0,
        forget_buffer=False, bit_length=200, key=jr.PRNGKey(1),
    )  # fmt: skip
    step = 0.5 * dw_c
    assert float(rep.step) == pytest.approx(step, rel=1e-6)
    n = np.trunc(np.asarray(w_a) / np.float32(rep.step)) * np.asarray(mask)  # 25, -50, 129, ...
    moved = (np.asarray(g_new[0] - g_new[1]) - np.asarray(g[0] - g[1])) / g_unit
    np.testing.assert_allclose(moved, n * dw_c, rtol=1e-4, atol=1e-9)
    assert np.all(np.sign(moved) == np.sign(n))
    assert moved[2, 3] == 0.0  # the column not read
    rest = (np.asarray(w_a) - n * np.float32(rep.step)) * np.asarray(mask)
    np.testing.assert_allclose(np.asarray(h), rest, atol=1e-7)
    assert int(rep.pulses) == 2 * int(np.abs(n).sum())


def test_the_chopper_flips_the_sign_a_column_is_written_with():
    """Ideal fast array, every column read after every update, period 1: the second update
    is written with the opposite sign and cancels the first."""
    c = _circuit(
        "idealized_rpu", fast_device="ideal", transfer_every=1, columns_per_transfer=7,
        chopper_period=1, gamma=1.0,
    )  # fmt: skip
    d = EmulatorDriver(c, seed=0)
    rows = jnp.ones((1, 4), jnp.float32)
    cols = jnp.asarray(np.linspace(-1.0, 1.0, 7, dtype=np.float32)[None])
    d.apply_outer_product("W0", rows, cols, lr=-0.01)
    tt = d.emulated_chip.crossbars["W0"].tiki_taka
    want = -0.01 * np.outer(np.ones(4), np.asarray(cols[0]))
    np.testing.assert_allclose(np.asarray(tt.weights_full()), want, atol=1e-6)
    assert np.asarray(tt.column_reads).tolist() == [1] * 7
    d.apply_outer_product("W0", rows, cols, lr=-0.01)
    tt = d.emulated_chip.crossbars["W0"].tiki_taka
    np.testing.assert_allclose(np.asarray(tt.weights_full()), 0.0, atol=1e-6)
    assert np.asarray(tt.column_reads).tolist() == [2] * 7 and int(tt.transfers) == 2


def test_transfers_follow_the_schedule_and_the_report_counts_them():
    c = _circuit(transfer_every=3, columns_per_transfer=2)
    d = EmulatorDriver(c, seed=0)
    rng = np.random.default_rng(2)
    info = d.describe().crossbars[0]
    for k in range(1, 7):
        before = d.read_weights()
        rows = rng.normal(size=(2, info.n_out)).astype(np.float32)
        cols = rng.normal(size=(2, info.n_in + 1)).astype(np.float32)
        rep = d.apply_outer_product("W0", jnp.asarray(rows), jnp.asarray(cols), lr=-1.0)
        after = d.read_weights()
        tt = d.emulated_chip.crossbars["W0"].tiki_taka
        assert int(tt.transfers) == k // 3
        assert int(tt.pointer) == (2 * (k // 3)) % 7
        dw = np.concatenate(
            [after["W0"][0] - before["W0"][0], (after["W0"][1] - before["W0"][1])[:, None]], 1
        )
        if k % 3:  # gamma = 0 and no transfer: the weights stay put
            assert rep.realised_norm == 0.0 and not np.any(dw)
        else:
            assert rep.realised_norm == pytest.approx(float(np.linalg.norm(dw)), rel=1e-4)
            assert rep.realised_norm > 0
        assert rep.pulses > 0


# -- capability, state, wire -----------------------------------------------------------------------


def test_capability_and_description():
    d = EmulatorDriver(_circuit(gamma=0.25, chopper_period=4), seed=0)
    desc = d.describe()
    assert desc.capabilities.update_schemes == ("tiki_taka",)
    extra = desc.extra["tiki_taka"]
    assert set(extra) == {"W0", "W1", "readout"}
    assert extra["W0"] == {
        **BLOCK,
        "gamma": 0.25,
        "chopper_period": 4,
        "forget_buffer": False,
        "fast_device": None,
        "fast_card": "idealized_rpu",
    }
    plain = EmulatorDriver(circuit_from_text(TOY), seed=0).describe()
    assert plain.capabilities.update_schemes == ("direct",)
    assert "tiki_taka" not in plain.extra


def test_state_dict_round_trips_and_a_resumed_run_is_bitwise_the_same():
    c = _circuit("om_rram_array", gamma=0.5, transfer_every=2, chopper_period=1)
    a = EmulatorDriver(c, seed=4)
    rng = np.random.default_rng(3)
    for _ in range(3):
        _push(a, "W0", rng, lr=-0.5)
    mid = a.state_dict()
    for key in ("g_plus_S", "g_minus_S", "hidden_S", "buffer", "pointer", "column_reads",
                "transfers"):  # fmt: skip
        assert f"W0/tiki_taka/{key}" in mid
    assert np.any(mid["W0/tiki_taka/buffer"]) and int(mid["W0/tiki_taka/transfers"]) == 1
    later = [np.random.default_rng(9), np.random.default_rng(9)]  # the same updates
    for _ in range(5):
        _push(a, "W0", later[0], lr=-0.5)
    end_w, end_s = a.read_weights(), a.state_dict()

    b = EmulatorDriver(c, seed=4)  # a fresh process resuming from the checkpoint
    b.load_state_dict({k: np.array(v) for k, v in mid.items()})
    assert all(np.array_equal(b.state_dict()[k], mid[k]) for k in mid)
    for _ in range(5):
        _push(b, "W0", later[1], lr=-0.5)
    assert all(np.array_equal(b.state_dict()[k], end_s[k]) for k in end_s)
    for n in end_w:
        np.testing.assert_array_equal(b.read_weights()[n][0], end_w[n][0])


def test_an_old_peer_without_update_schemes_reads_as_direct():
    desc = EmulatorDriver(_circuit(), seed=0).describe()
    on_wire = json.loads(json.dumps(wire.description_to_wire(desc)))  # as the header carries it
    assert wire.description_from_wire(on_wire) == desc
    del on_wire["capabilities"]["update_schemes"]
    assert wire.description_from_wire(on_wire).capabilities.update_schemes == ("direct",)


def test_a_served_tiki_taka_chip_gives_the_in_process_weights():
    c = _circuit(gamma=0.5, transfer_every=2, chopper_period=2)
    srv = DriverServer(c, log=lambda s: None).start()
    try:
        host, port = srv.address
        with open_driver(f"tcp://{host}:{port}", c, seed=7) as remote:
            local = open_driver("emulator", c, seed=7)
            desc = remote.describe()
            assert desc.capabilities.update_schemes == ("tiki_taka",)
            assert desc.extra["tiki_taka"] == local.describe().extra["tiki_taka"]
            r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
            for _ in range(5):
                _push(remote, "readout", r1, lr=-0.5)
                _push(local, "readout", r2, lr=-0.5)
            w_r, w_l = remote.read_weights(), local.read_weights()
            for n in w_l:
                np.testing.assert_array_equal(w_r[n][0], w_l[n][0])
                np.testing.assert_array_equal(w_r[n][1], w_l[n][1])
            s_r, s_l = remote.state_dict(), local.state_dict()
            assert all(np.array_equal(s_r[k], s_l[k]) for k in s_l)
    finally:
        srv.shutdown()


# -- the conformance kit -----------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_the_conformance_kit_passes_for_a_tiki_taka_emulator(gamma):
    c = _circuit(gamma=gamma, transfer_every=3, chopper_period=2)

    def opened() -> EmulatorDriver:
        # Write-verify reaches the devices' bounds in one call: the kit's bounds check.
        return EmulatorDriver(c, seed=0, options={"program_max_pulses": "20000"})

    report = run_conformance(opened, c)
    failed = [(r.name, r.message) for r in report.results if r.status != "passed"]
    assert not failed
    assert report.passed


def test_the_tiki_taka_check_is_skipped_for_a_direct_chip():
    res = run_check("tiki_taka", "emulator", "toy")
    assert res.status == "skipped" and "not tiki_taka" in res.message
