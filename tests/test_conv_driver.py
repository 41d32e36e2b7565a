"""Conv chips through the driver machinery: the conformance kit, the TCP wire (geometry and
post-synaptic signals, bitwise), training over a server, and a killed run resumed.

The circuit is tests/data/cnn_two_blocks.yaml (two conv crossbars with softmax pooling, a dense
layer and the readout).
"""

from __future__ import annotations

import dataclasses
import json
import socket
from contextlib import closing

import h5py
import numpy as np
import pytest

from analog_hep._geometry import ConvGeometry
from analog_hep.cli import main
from analog_hep.conformance import run_check, run_conformance
from analog_hep.data import load_dataset
from analog_hep.drivers import (
    DriverServer,
    NudgeSchedule,
    RemoteDriver,
    Settled,
    open_driver,
)
from analog_hep.drivers import _wire as wire
from analog_hep.drivers.validate import check_description, check_post
from analog_hep.emulator import EmulatorDriver
from analog_hep.errors import ConnectionLost, OutOfRange, SpecError
from analog_hep.hep import Controller, circle_betas
from analog_hep.spec import load_circuit
from analog_hep.studies import TrainOptions

CNN = "tests/data/cnn_two_blocks.yaml"


@pytest.fixture(scope="module")
def cnn():
    return load_circuit(CNN)


@pytest.fixture(scope="module")
def cnn_server(cnn):
    """An in-process server (background thread) of the emulator on the conv circuit."""
    srv = DriverServer(cnn, log=lambda s: None).start()
    try:
        yield srv
    finally:
        srv.shutdown()


def _addr(srv: DriverServer) -> str:
    host, port = srv.address
    return f"tcp://{host}:{port}"


def _frame_round_trip(msg: dict) -> dict:
    """``msg`` through a frame: encoded, then decoded as the peer decodes it."""
    frame = wire.encode_frame(msg)
    h = int.from_bytes(frame[8:12], "little")
    return wire.decode_frame(frame[20 : 20 + h], frame[20 + h :])


def _settled(cnn, betas) -> tuple[Settled, object]:
    """One settle of the emulator on the conv circuit at ``betas`` (4 samples)."""
    with closing(open_driver("emulator", cnn, seed=0)) as d:
        desc = d.describe()
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, (4, desc.layers[0])).astype(np.float32)
        y = np.eye(desc.classes, dtype=np.float32)[np.arange(4) % desc.classes]
        d.load_inputs(x, y)
        return d.run_schedule(NudgeSchedule(betas=betas)), desc


# -- the conformance kit ---------------------------------------------------------------------


def test_the_conformance_kit_passes_on_a_conv_chip(cnn):
    report = run_conformance("emulator", cnn)
    by_name = {r.name: r for r in report.results}
    assert report.passed, [(r.name, r.message) for r in report.results if r.status == "failed"]
    assert by_name["tiki_taka"].status == "skipped"
    assert all(r.status == "passed" for n, r in by_name.items() if n != "tiki_taka")
    assert "conv: W0, W1" in by_name["structure"].message
    assert "post-synaptic signals of W0, W1" in by_name["schedule"].message
    # the gradient checks used the conv crossbars' signals: within the kit's thresholds
    assert by_name["gradient_hep"].metrics["cosine"] >= 0.9999
    assert by_name["gradient_hep"].metrics["rel_error"] <= 1e-4


class DenseLookingDriver(EmulatorDriver):
    """Describes its conv crossbars as dense ones (no geometry): a driver written before
    conv chips, opened on a conv circuit."""

    def describe(self):
        desc = super().describe()
        xbs = tuple(dataclasses.replace(c, geometry=None) for c in desc.crossbars)
        return dataclasses.replace(desc, crossbars=xbs)


class NoPostDriver(EmulatorDriver):
    """Returns no post-synaptic signals."""

    def run_schedule(self, schedule):
        return super().run_schedule(schedule)._replace(free_post=None, post=None)


class HalfPostDriver(EmulatorDriver):
    """Returns post-synaptic signals of the right shapes and half the size."""

    def run_schedule(self, schedule):
        s = super().run_schedule(schedule)
        return s._replace(post={n: 0.5 * v for n, v in s.post.items()})


def test_the_kit_fails_a_conv_driver_that_breaks_the_contract(cnn):
    res = run_check("structure", lambda: DenseLookingDriver(cnn, seed=0), cnn)
    assert res.status == "failed" and "W0: geometry None differs" in res.message, res.message
    res = run_check("schedule", lambda: NoPostDriver(cnn, seed=0), cnn)
    assert res.status == "failed" and "must map every conv crossbar" in res.message, res.message
    # the right shapes, the wrong values: only the gradient sees it
    res = run_check("gradient_symmetric", lambda: HalfPostDriver(cnn, seed=0), cnn)
    assert res.status == "failed" and "relative error" in res.message, res.message


# -- the contract's checks -------------------------------------------------------------------


def test_a_conv_description_must_agree_with_its_geometry(cnn):
    with closing(open_driver("emulator", cnn, seed=0)) as d:
        desc = d.describe()
    check_description(desc)
    w0 = desc.crossbars[0]
    assert w0.kind == "conv" and w0.geometry == cnn.spec.geometries[0]
    assert (w0.n_out, w0.n_in) == (16, 9)

    def with_w0(**changes) -> object:
        xbs = (dataclasses.replace(w0, **changes), *desc.crossbars[1:])
        return dataclasses.replace(desc, crossbars=xbs)

    for changes, words in [
        ({"n_out": 8}, "n_out is 8, expected 16"),
        ({"n_in": 64}, "n_in is 64, expected 9"),
        ({"post": -1}, "drives a layer, not the logits"),
        ({"geometry": dataclasses.replace(w0.geometry, pool="none", pool_size=1)}, "layers[1]"),
        ({"geometry": dataclasses.replace(w0.geometry, in_shape=(1, 4, 4))}, "layers[0]"),
    ]:
        with pytest.raises(OutOfRange, match=words.replace("[", r"\[").replace("]", r"\]")):
            check_description(with_w0(**changes))


def test_settled_post_signals_are_checked(cnn):
    s, desc = _settled(cnn, (0.1, -0.1))
    check_post(desc, s)
    assert set(s.free_post) == set(s.post) == {"W0", "W1"}
    assert s.free_post["W0"].shape == (4, 16 * 8 * 8) and s.post["W1"].shape == (2, 4, 32 * 4 * 4)
    with pytest.raises(OutOfRange, match=r"post must hold the conv crossbars .*missing \['W1'\]"):
        check_post(desc, s._replace(post={"W0": s.post["W0"]}))
    with pytest.raises(OutOfRange, match=r"free_post\['W0'\] must be \(4, 1024\)"):
        check_post(desc, s._replace(free_post={**s.free_post, "W0": s.free_post["W0"][:, :-1]}))
    with pytest.raises(OutOfRange, match="must map every conv crossbar"):
        check_post(desc, s._replace(post=None))
    dense = dataclasses.replace(
        desc, crossbars=tuple(dataclasses.replace(c, geometry=None) for c in desc.crossbars)
    )
    with pytest.raises(OutOfRange, match=r"no conv crossbars: Settled\.free_post must be None"):
        check_post(dense, s)
    check_post(dense, s._replace(free_post=None, post=None))


# -- the wire --------------------------------------------------------------------------------


def test_geometry_and_post_signals_round_trip_the_wire_exactly(cnn):
    s, desc = _settled(cnn, circle_betas(0.1, 4))
    d = _frame_round_trip({"d": wire.description_to_wire(desc)})["d"]
    assert [("geometry" in c) for c in d["crossbars"]] == [True, True, False, False]
    back = wire.description_from_wire(d)
    assert back == desc  # every field, the geometries included
    assert all(isinstance(c.geometry, (ConvGeometry, type(None))) for c in back.crossbars)

    got = wire.settled_from_wire(_frame_round_trip({"s": wire.settled_to_wire(s)})["s"])
    for key in ("free_post", "post"):
        want, have = getattr(s, key), getattr(got, key)
        assert set(have) == set(want)
        for n in want:
            a, b = np.asarray(want[n]), have[n]
            assert b.dtype == a.dtype and b.shape == a.shape
            np.testing.assert_array_equal(b, a)
    assert got.post["W0"].dtype == np.complex64  # complex nudges: complex signals
    check_post(back, got)


def test_a_dense_chip_sends_no_geometry_and_no_post_and_reads_none(toy):
    with closing(open_driver("emulator", toy, seed=0)) as d:
        desc = d.describe()
        x = np.zeros((2, desc.layers[0]), np.float32)
        d.load_inputs(x, None)
        s = d.run_schedule(NudgeSchedule(betas=()))
    w = _frame_round_trip({"d": wire.description_to_wire(desc)})["d"]
    assert all("geometry" not in c for c in w["crossbars"])
    v1 = _frame_round_trip({"d": wire.description_to_wire(desc, version=1)})["d"]
    assert v1 == w  # the same in both versions
    assert wire.description_from_wire(w) == desc
    sw = wire.settled_to_wire(s)
    assert "free_post" not in sw and "post" not in sw
    back = wire.settled_from_wire(_frame_round_trip({"s": sw})["s"])
    assert back.free_post is None and back.post is None
    w["crossbars"][0]["geometry"] = None  # explicit null: dense too
    assert wire.description_from_wire(w).crossbars[0].geometry is None


def test_malformed_geometries_are_protocol_errors(cnn):
    with closing(open_driver("emulator", cnn, seed=0)) as d:
        w = wire.description_to_wire(d.describe())
    good = w["crossbars"][0]["geometry"]
    bad = [
        ({**good, "kernel": 20}, "kernel 20 is larger than its padded input"),
        ({**good, "kernel": 3.0}, "kernel must be an integer >= 1"),
        ({**good, "in_shape": [1, 8]}, r"in_shape must be \[C, H, W\]"),
        ({**good, "pool_size": 0}, "pool_size must be an integer >= 1"),
        ({**good, "pool": "median"}, "geometry pool: expected one of"),
        ({**good, "temperature": "hot"}, "temperature must be a finite number"),
        ({**good, "colour": 1}, "geometry must be an object with fields"),
        ({k: v for k, v in good.items() if k != "stride"}, "geometry must be an object"),
        ([1, 2, 3], "geometry must be an object"),
        ({**good, "channels": 8}, "n_out is 16, expected 8"),
    ]
    for geometry, words in bad:
        d = json.loads(json.dumps(w))
        d["crossbars"][0]["geometry"] = geometry
        with pytest.raises(wire.ProtocolError, match=words):
            wire.description_from_wire(d)
    s, _ = _settled(cnn, (0.1,))
    sw = wire.settled_to_wire(s)
    for post, words in [([1], "post must be an object of arrays"), ({"W0": 1}, "object of")]:
        with pytest.raises(wire.ProtocolError, match=words):
            wire.settled_from_wire({**sw, "post": post})


def test_a_server_reply_missing_a_post_signal_is_connection_lost(cnn_server, cnn, monkeypatch):
    with RemoteDriver.connect(_addr(cnn_server)[len("tcp://") :], circuit=cnn, seed=0) as d:
        desc = d.describe()
        x = np.zeros((2, desc.layers[0]), np.float32)
        d.load_inputs(x, None)
        served = cnn_server.session_driver
        real = type(served).run_schedule

        def drops_w1(self, schedule):  # a served driver that forgets a conv crossbar
            s = real(self, schedule)
            return s._replace(post={"W0": s.post["W0"]})

        monkeypatch.setattr(type(served), "run_schedule", drops_w1)
        with pytest.raises(ConnectionLost, match=r"malformed run_schedule reply.*'W1'"):
            d.run_schedule(NudgeSchedule(betas=()))


def test_a_protocol_1_client_is_refused_by_a_conv_server_before_it_opens_a_chip(cnn_server, cnn):
    host, port = cnn_server.address
    with socket.create_connection((host, port), timeout=10) as sock:
        raw = wire.read_raw_frame(sock, first_byte_timeout_s=10, frame_timeout_s=10)
        assert raw.version == 1  # every peer reads the welcome
        welcome = wire.decode_frame(raw.header, raw.payload)
        assert welcome["protocol"] == wire.PROTOCOL_VERSION == 2
        hello = {
            "id": 0,
            "op": "hello",
            "args": {
                "session": "c" * 32,
                "reconnect": False,
                "seed": 0,
                "circuit_sha256": wire.circuit_digest(cnn),
                "auth": None,
                "client": "analog-hep 0 (protocol 1)",
            },
        }
        sock.sendall(wire.encode_frame(hello, version=1))
        raw = wire.read_raw_frame(sock, first_byte_timeout_s=30, frame_timeout_s=30)
    reply = wire.decode_frame(raw.header, raw.payload)
    assert raw.version == 1 and reply["ok"] is False
    assert reply["error"]["type"] == "SpecError"
    assert "conv crossbars (W0, W1)" in reply["error"]["message"]
    assert "version 2" in reply["error"]["message"]
    assert isinstance(wire.error_from_wire(reply["error"], where="x"), SpecError)
    assert cnn_server.session_driver is None  # refused before any chip was opened


# -- training over the wire, and a killed run resumed ---------------------------------------


def test_a_conv_chip_over_tcp_trains_to_the_same_weights_bitwise(cnn_server, cnn):
    """Three hEP steps (N = 2, the circuit's) of the same controller on the same batches,
    in process and through the server: the same weights, bit for bit."""
    opts = TrainOptions.from_circuit(cnn)
    ds = load_dataset("digits")
    stream = ds.batches("train", 8, seed=0, epoch=0)
    batches = [(x, ds.one_hot(y)) for x, y in (next(stream) for _ in range(3))]

    def train(driver) -> dict:
        with closing(driver) as d:
            ctrl = Controller(d, opts.hep_config(len(batches)))
            for x, y in batches:
                ctrl.train_step(x, y)
            return {n: (np.asarray(w), np.asarray(b)) for n, (w, b) in d.read_weights().items()}

    ref = train(open_driver("emulator", cnn, seed=0))
    got = train(open_driver(_addr(cnn_server), cnn, seed=0))
    assert set(got) == set(ref) == {"W0", "W1", "W2", "readout"}
    start = load_circuit(CNN)
    with closing(open_driver("emulator", start, seed=0)) as d0:
        w0 = d0.read_weights()
    for n in ref:
        np.testing.assert_array_equal(got[n][0], ref[n][0], err_msg=n)
        np.testing.assert_array_equal(got[n][1], ref[n][1], err_msg=n)
        assert not np.array_equal(ref[n][0], np.asarray(w0[n][0])), f"{n} did not train"


def _final_weights(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        g = f["final/weights"]
        return {f"{k}/{p}": np.asarray(g[k][p]) for k in g for p in ("W", "b")}


def test_a_killed_conv_run_resumes_to_the_same_weights(tmp_path, kill_after_first_epoch, capsys):
    """A real subprocess training the conv chip is killed (SIGKILL) after its first epoch's
    checkpoint; --resume ends where an uninterrupted run with the same seed ends, bitwise."""
    args = ["train", CNN, "--epochs", "2", "--max-train", "60", "--no-progress"]
    ref = tmp_path / "ref.h5"
    assert main([*args, "--out", str(ref)]) == 0

    run = tmp_path / "run.h5"
    kill_after_first_epoch([*args, "--out", str(run)], 2)
    with h5py.File(run) as f:
        assert "final" not in f  # it really stopped before the end
        assert f["metrics/epoch"].shape[0] == 1
    capsys.readouterr()
    assert main([*args, "--out", str(run), "--resume"]) == 0
    a, b = _final_weights(ref), _final_weights(run)
    assert set(a) == set(b) and {"W0/W", "W1/W"} <= set(a)
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
