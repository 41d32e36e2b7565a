"""A chip over TCP: ``analog-hep serve`` and ``--driver tcp://HOST:PORT``.

Same run remote and in process ends bitwise equal; a killed server stops the trainer with a
clear error and ``--resume`` continues once it is back; reconnects never apply an update
twice; timeouts, busy chips, tokens and circuit mismatches give typed errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.drivers import DriverServer, NudgeSchedule, RemoteDriver, open_driver
from analog_hep.drivers import _wire as wire
from analog_hep.drivers._remote import parse_address
from analog_hep.errors import ConnectionLost, DriverTimeout, OutOfRange, SpecError
from analog_hep.spec import load_circuit
from analog_hep.studies import TrainOptions

REPO = Path(__file__).resolve().parents[1]
TRAIN_ARGS = ["train", "digits", "--epochs", "3", "--max-train", "400", "--no-progress"]


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subprocess_env(tmp_path_factory):
    """Environment of server/trainer subprocesses: a shared JAX compilation cache, so the
    second process on a circuit loads what the first compiled."""
    cache = tmp_path_factory.mktemp("jax-cache")
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }


class ServerProcess:
    """``python -m analog_hep serve`` in a subprocess; ``port`` from its first stdout line."""

    def __init__(self, circuit: str, env: dict, log: Path, *args: str, port: int = 0):
        self.log = log
        self._err = open(log, "a")  # noqa: SIM115 (closed in stop)
        cmd = [sys.executable, "-m", "analog_hep", "serve", circuit, "--port", str(port), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._err, text=True, env=env, cwd=REPO
        )
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port from the first stdout line (waits for it, up to 120 s)."""
        if self._port is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 120)
            line = self.proc.stdout.readline() if ready else ""
            if not line.startswith("listening on "):
                self.stop()
                raise AssertionError(f"server did not start: {line!r}\n{self.log.read_text()}")
            self._port = int(line.strip().rsplit(":", 1)[1])
        return self._port

    def stop(self, sig: int = signal.SIGTERM) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(30)
        self.proc.stdout.close()
        self._err.close()
        return code


@pytest.fixture
def toy_server():
    """An in-process server (background thread) on the toy circuit."""
    c = load_circuit("toy")
    srv = DriverServer(c, log=lambda s: None).start()
    try:
        yield srv, c
    finally:
        srv.shutdown()


def _addr(srv: DriverServer) -> str:
    host, port = srv.address
    return f"tcp://{host}:{port}"


def _final_weights(path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        g = f["final/weights"]
        return {f"{k}/{p}": np.asarray(g[k][p]) for k in g for p in ("W", "b")}


def _warm_up(address: str) -> None:
    """One training step and one evaluation batch through the server: it compiles what a
    run needs (and fills the shared compilation cache for later servers)."""
    from analog_hep.data import load_dataset
    from analog_hep.hep import Controller

    c = load_circuit("digits")
    opts = TrainOptions.from_circuit(c)
    ds = load_dataset("digits")
    with open_driver(address, c, seed=0) as d:
        ctrl = Controller(d, opts.hep_config(10))
        x, y = next(ds.batches("train", opts.batch, seed=0, epoch=0))
        ctrl.train_step(x, ds.one_hot(y))
        xt, yt = ds.split("test")
        ctrl.evaluate(xt[:250], ds.one_hot(yt[:250]))


@pytest.fixture(scope="module")
def digits_server(subprocess_env, tmp_path_factory):
    """A server on the digits circuit, warmed up in a thread while the test process does
    its own work (the reference run)."""
    srv = ServerProcess(
        "circuits/digits.yaml", subprocess_env, tmp_path_factory.mktemp("srv") / "server.log"
    )
    srv.port  # noqa: B018 (waits until it listens)
    errors: list[BaseException] = []

    def warm() -> None:
        try:
            _warm_up(f"tcp://127.0.0.1:{srv.port}")
        except BaseException as err:  # reported by the test that uses the server
            errors.append(err)

    t = threading.Thread(target=warm)
    t.start()
    try:
        yield srv, t, errors
    finally:
        t.join(300)
        srv.stop()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted in-process run every remote run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    assert main([*TRAIN_ARGS, "--out", str(out)]) == 0
    return out


# -- wire format -----------------------------------------------------------------------------


def test_frames_round_trip_every_dtype_and_tag():
    arrays = {
        d: (np.arange(6).reshape(2, 3) % 2).astype(d)
        for d in ("bool", "int8", "uint8", "int16", "int32", "int64", "float32", "float64")
    }
    arrays["complex64"] = np.array([1 + 2j, -3.5j], np.complex64)
    arrays["scalar"] = np.asarray(7, np.int64)  # 0-d stays 0-d
    arrays["empty"] = np.zeros((0, 4), np.float32)
    arrays["big_endian"] = np.arange(3, dtype=">f8")
    msg = {"a": arrays, "c": 1 - 0.5j, "n": [float("nan"), float("inf"), -float("inf")], "s": "x"}
    frame = wire.encode_frame(msg)
    assert frame[:4] == b"AHEP" and struct.unpack("<H", frame[4:6])[0] == wire.PROTOCOL_VERSION == 2
    _, _, _, h_len, p_len = struct.unpack("<4sHHIQ", frame[:20])
    out = wire.decode_frame(frame[20 : 20 + h_len], frame[20 + h_len :])
    assert len(frame) == 20 + h_len + p_len
    for k, a in arrays.items():
        b = out["a"][k]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("<")
        np.testing.assert_array_equal(b, a)
    assert out["c"] == 1 - 0.5j and out["s"] == "x"
    assert np.isnan(out["n"][0]) and out["n"][1:] == [float("inf"), -float("inf")]
    with pytest.raises(TypeError, match="reserved"):
        wire.encode_frame({"x": {"$array": 0}})
    with pytest.raises(TypeError, match="cannot cross"):
        wire.encode_frame({"x": np.array(["text"])})


def test_addresses_parse_and_bad_ones_are_spec_errors():
    assert parse_address("tcp://127.0.0.1:7100") == ("127.0.0.1", 7100, {})
    assert parse_address("[::1]:80?timeout_s=3&reconnect_s=1") == (
        "::1",
        80,
        {"timeout_s": "3", "reconnect_s": "1"},
    )
    assert parse_address("h:1?connect_retry_s=0")[2] == {"connect_retry_s": "0"}
    for bad in ("127.0.0.1", "host:0", "host:http", "h:1?colour=red"):
        with pytest.raises(SpecError):
            parse_address(bad)


# -- same run, remote and in process ---------------------------------------------------------


def test_remote_training_ends_bitwise_equal_to_in_process(digits_server, reference_run, tmp_path):
    srv, warm_up, errors = digits_server
    warm_up.join(300)
    assert not errors, errors
    out = tmp_path / "remote.h5"
    driver = f"tcp://127.0.0.1:{srv.port}"
    assert main([*TRAIN_ARGS, "--driver", driver, "--out", str(out)]) == 0
    assert srv.stop() == 0  # SIGTERM: clean shutdown
    assert "server stopped" in srv.log.read_text()
    ref, got = _final_weights(reference_run), _final_weights(out)
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    with h5py.File(reference_run) as a, h5py.File(out) as b:
        np.testing.assert_array_equal(a["steps/loss"][()], b["steps/loss"][()])
        np.testing.assert_array_equal(a["metrics/test_loss"][()], b["metrics/test_loss"][()])


def test_a_noisy_chip_over_tcp_trains_sequential_hep_bitwise_as_in_process(
    subprocess_env, tmp_path
):
    """The ECRAM digits chip is noisy: ``hep_schedule: auto`` is sequential in process and
    through the server alike (``describe().extra`` crosses the wire), with the same
    noise stream: the same weights, bit for bit."""
    args = ["train", "circuits/digits_ecram.yaml", "--epochs", "1", "--max-train", "100"]
    args += ["--no-progress", "--ramp-points", "1"]
    ref = tmp_path / "ref.h5"
    assert main([*args, "--out", str(ref)]) == 0
    srv = ServerProcess("circuits/digits_ecram.yaml", subprocess_env, tmp_path / "s.log")
    try:
        out = tmp_path / "tcp.h5"
        assert main([*args, "--driver", f"tcp://127.0.0.1:{srv.port}", "--out", str(out)]) == 0
    finally:
        srv.stop()
    a, b = _final_weights(ref), _final_weights(out)
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    with h5py.File(ref) as f:
        assert json.loads(f.attrs["config"])["hep_schedule"] == "auto"
        assert f.attrs["extra"] and json.loads(f.attrs["extra"])["noisy"] is True


def test_killed_server_stops_the_trainer_and_resume_continues(
    digits_server, reference_run, subprocess_env, tmp_path, capsys
):
    """SIGKILL the server mid-epoch: the trainer (``analog-hep train``) exits 1 with one
    clear line naming --resume; with the server back on the same port, --resume ends on the
    weights of the uninterrupted in-process run."""
    srv = ServerProcess("circuits/digits.yaml", subprocess_env, tmp_path / "s1.log")
    port = srv.port
    run = tmp_path / "run.h5"
    driver = f"tcp://127.0.0.1:{port}?reconnect_s=1"
    out, err, killed = [], [], threading.Event()

    def kill_in_epoch_2() -> None:  # watches the trainer's output
        while not killed.is_set():
            o = capsys.readouterr()
            out.append(o.out)
            err.append(o.err)
            if "epoch 1/3" in "".join(out):
                time.sleep(0.1)  # inside epoch 2 (an epoch of 20 steps takes ~0.4 s)
                srv.proc.send_signal(signal.SIGKILL)
                killed.set()
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_in_epoch_2)
    watcher.start()
    try:
        code = main([*TRAIN_ARGS, "--driver", driver, "--out", str(run)])
    finally:
        killed.set()
        watcher.join(10)
        srv.stop(signal.SIGKILL)
    o = capsys.readouterr()
    stdout, stderr = "".join(out) + o.out, "".join(err) + o.err
    assert code == 1, f"exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("analog-hep train: ConnectionLost: lost the chip at"), lines[0]
    assert "--resume" in lines[0] and str(run) in lines[0]
    with h5py.File(run) as f:
        assert "final" not in f
        assert 1 <= f["metrics/epoch"].shape[0] < 3
    srv2 = ServerProcess("circuits/digits.yaml", subprocess_env, tmp_path / "s2.log", port=port)
    assert srv2.port == port
    try:
        assert main([*TRAIN_ARGS, "--driver", driver, "--out", str(run), "--resume"]) == 0
    finally:
        assert srv2.stop(signal.SIGINT) == 0
    ref, got = _final_weights(reference_run), _final_weights(run)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


# -- reconnects and idempotent replay --------------------------------------------------------


class DroppingProxy:
    """A TCP relay that, once, swallows the ``drop_at``-th frame from the server and cuts
    both connections: the server has executed the request, the client never hears of it."""

    def __init__(self, target: tuple[str, int], drop_at: int):
        self.target = target
        self.drop_at = drop_at
        self.dropped = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=5)
            self._socks += [client, server]
            for args in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pump, args=args, daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        n = 0
        try:
            src.settimeout(60)
            while True:
                prefix = _recv(src, 20)
                _, _, _, h, p = struct.unpack("<4sHHIQ", prefix)
                body = _recv(src, h + p)
                n += 1
                if from_server and not self.dropped and n == self.drop_at:
                    self.dropped = True
                    for s in (src, dst):
                        with contextlib.suppress(OSError):
                            s.shutdown(socket.SHUT_RDWR)
                    return
                dst.sendall(prefix + body)
        except (OSError, EOFError):
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)
        for s in self._socks:
            s.close()


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def test_a_reply_lost_in_a_reconnect_is_replayed_not_reapplied(toy_server):
    srv, c = toy_server
    # frames from the server: 1 welcome, 2 hello reply, 3 the update's reply (dropped)
    proxy = DroppingProxy(srv.address, drop_at=3)
    ref = open_driver("emulator", c, seed=0)
    rows = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    cols = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    try:
        with RemoteDriver.connect(f"127.0.0.1:{proxy.port}", circuit=c, seed=0) as d:
            rep = d.apply_outer_product("readout", rows, cols, lr=0.05)
            assert proxy.dropped and d.reconnects == 1
            assert rep == ref.apply_outer_product("readout", rows, cols, lr=0.05)
            assert int(srv.session_driver.state_dict()["readout/updates"]) == 1  # applied once
            got, want = d.read_weights(), ref.read_weights()
            for n in want:
                np.testing.assert_array_equal(got[n][0], want[n][0])
    finally:
        proxy.close()
        ref.close()


def test_a_slow_chip_is_a_typed_timeout_and_the_link_recovers(toy_server):
    srv, c = toy_server
    d = RemoteDriver.connect(_addr(srv) + "?timeout_s=0.3", circuit=c, seed=0)
    try:
        before = d.read_weights()
        # the chip is busy with something else
        with srv._session.lock, pytest.raises(DriverTimeout, match="no reply"):
            d.read_weights()
        after = d.read_weights()  # reconnects, takes its session back
        assert d.reconnects == 1
        for n in before:
            np.testing.assert_array_equal(after[n][0], before[n][0])
    finally:
        d.close()


def test_one_controlling_client_at_a_time(toy_server):
    srv, c = toy_server
    first = open_driver(_addr(srv), c, seed=0)
    try:
        with pytest.raises(ConnectionLost, match="another client controls"):
            open_driver(_addr(srv), c, seed=0)
    finally:
        first.close()
    second = open_driver(_addr(srv), c, seed=1)  # the chip is free again: a fresh one
    second.close()


def test_a_restarted_server_does_not_pass_for_the_old_chip(toy_server):
    srv, c = toy_server
    d = open_driver(_addr(srv) + "?reconnect_s=0.5", c, seed=0)
    try:
        srv._session.owner.shutdown(socket.SHUT_RDWR)  # link drops ...
        with srv._state:
            srv._session = None  # ... and the server forgot the run (a restart)
        with pytest.raises(ConnectionLost, match="no longer holds this run's chip"):
            d.read_weights()
    finally:
        d.close()


def test_bad_arguments_are_refused_before_any_io(toy_server):
    srv, c = toy_server
    with open_driver(_addr(srv), c, seed=0) as d:
        sent = d.requests_sent
        with pytest.raises(OutOfRange):
            d.load_inputs(np.zeros((2, 7)), None)
        with pytest.raises(OutOfRange, match="NaN"):
            d.load_inputs(np.full((2, 6), np.nan), None)
        with pytest.raises(OutOfRange):
            d.apply_outer_product("W9", np.zeros((1, 4)), np.zeros((1, 7)), lr=0.1)
        with pytest.raises(OutOfRange):
            d.program_delta("W0", np.zeros((4, 6)))
        with pytest.raises(OutOfRange):
            d.run_schedule(NudgeSchedule(betas=(float("inf"),)))
        assert d.requests_sent == sent


# -- protocol versions -----------------------------------------------------------------------


def _v1_request(sock: socket.socket, req: dict, version: int = 1) -> tuple[int, dict]:
    """Send ``req`` framed in ``version``; the reply's frame version and message."""
    sock.sendall(wire.encode_frame(req, version=version))
    raw = wire.read_raw_frame(sock, first_byte_timeout_s=60, frame_timeout_s=60)
    return raw.version, wire.decode_frame(raw.header, raw.payload)


def test_a_protocol_1_client_still_drives_a_dense_chip(toy_server):
    """A peer of the previous version (frames of version 1, no geometry, no post signals)
    is answered in version 1, with the messages it knows."""
    srv, c = toy_server
    with socket.create_connection(srv.address, timeout=10) as sock:
        raw = wire.read_raw_frame(sock, first_byte_timeout_s=10, frame_timeout_s=10)
        welcome = wire.decode_frame(raw.header, raw.payload)
        assert raw.version == 1 and welcome["protocol"] == 2
        hello = {
            "id": 0,
            "op": "hello",
            "args": {
                "session": "e" * 32,
                "reconnect": False,
                "seed": 0,
                "circuit_sha256": wire.circuit_digest(c),
                "auth": None,
                "client": "analog-hep (protocol 1)",
            },
        }
        v, reply = _v1_request(sock, hello)
        assert v == 1 and reply["ok"], reply
        desc = reply["result"]["description"]
        assert all("geometry" not in x for x in desc["crossbars"])
        assert wire.description_from_wire(desc).crossbars[0].geometry is None
        x = np.random.default_rng(0).uniform(size=(3, 6)).astype(np.float32)
        args = {"x": x, "y": np.eye(4, dtype=np.float32)[:3]}
        v, reply = _v1_request(sock, {"id": 1, "op": "load_inputs", "args": args})
        assert v == 1 and reply == {"id": 1, "ok": True, "result": {}}
        sched = {"betas": [0.1, -0.1], "free_steps": None, "nudge_steps": None, "start": "free"}
        v, reply = _v1_request(sock, {"id": 2, "op": "run_schedule", "args": sched})
        assert v == 1 and reply["ok"], reply
        assert "post" not in reply["result"] and "free_post" not in reply["result"]
        assert wire.settled_from_wire(reply["result"]).states[1].shape == (2, 3, 4)
        # one version per connection: a version 2 frame here is refused, the link stays
        v, reply = _v1_request(sock, {"id": 3, "op": "ping", "args": {}}, version=2)
        assert v == 1 and reply["ok"] is False and reply["error"]["type"] == "ProtocolError"
        assert "one version per connection" in reply["error"]["message"]
        v, reply = _v1_request(sock, {"id": 4, "op": "close", "args": {}})
        assert v == 1 and reply == {"id": 4, "ok": True, "result": {}}


def test_the_client_speaks_protocol_1_to_a_protocol_1_server(toy):
    """A server of the previous version (welcome ``"protocol": 1``, frames of version 1
    only): the client frames everything in version 1 and drives the dense chip."""
    with contextlib.closing(open_driver("emulator", toy, seed=0)) as ref:
        desc = wire.description_to_wire(ref.describe(), version=1)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[tuple[int, str]] = []

    def v1_server() -> None:
        conn, _ = listener.accept()
        with conn:
            welcome = {"type": "welcome", "protocol": 1, "nonce": "00" * 16, "auth": "none"}
            conn.sendall(wire.encode_frame(welcome, version=1))
            while True:
                try:
                    raw = wire.read_raw_frame(conn, first_byte_timeout_s=30, frame_timeout_s=30)
                except wire.PeerClosed:
                    return
                msg = wire.decode_frame(raw.header, raw.payload)
                seen.append((raw.version, msg["op"]))
                result = {"session": "x", "resumed": False, "description": desc}
                reply = {"id": msg["id"], "ok": True, "result": result if msg["id"] == 0 else {}}
                conn.sendall(wire.encode_frame(reply, version=1))
                if msg["op"] == "close":
                    return

    t = threading.Thread(target=v1_server, daemon=True)
    t.start()
    try:
        d = RemoteDriver("127.0.0.1", port, circuit=toy, seed=0, timeout_s=30)
        assert d.describe().crossbar_names == ("W0", "W1", "readout")
        d.ping()
        d.close()
    finally:
        t.join(30)
        listener.close()
    assert seen == [(1, "hello"), (1, "ping"), (1, "close")]


@pytest.fixture
def toy():
    return load_circuit("toy")


# -- authentication, identity, reachability --------------------------------------------------


def test_tokens_guard_the_chip(tmp_path):
    c = load_circuit("toy")
    with pytest.raises(SpecError, match="token"):
        DriverServer(c, host="0.0.0.0")
    token = "s3cret-token-0123456789"
    srv = DriverServer(c, token=token, log=lambda s: None).start()
    try:
        host, port = srv.address
        with pytest.raises(SpecError, match="requires a token"):
            RemoteDriver(host, port, circuit=c, seed=0)
        with pytest.raises(SpecError, match="authentication failed"):
            RemoteDriver(host, port, circuit=c, seed=0, token="wrong-token-0123456789")
        (tmp_path / "token").write_text(token + "\n")
        with RemoteDriver.connect(
            f"{host}:{port}?token_file={tmp_path / 'token'}", circuit=c, seed=0
        ) as d:
            assert d.describe().name == "toy"
    finally:
        srv.shutdown()


def test_serve_refuses_a_public_address_without_token(capsys):
    assert main(["serve", "toy", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--token-file" in capsys.readouterr().err


def test_a_different_circuit_is_refused(toy_server):
    srv, _ = toy_server
    with pytest.raises(SpecError, match="circuit mismatch"):
        open_driver(_addr(srv), load_circuit("digits"), seed=0)


def test_no_server_is_connection_lost():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(ConnectionLost, match="cannot reach"):
        open_driver(f"tcp://127.0.0.1:{port}?connect_retry_s=0.2", load_circuit("toy"), seed=0)


def test_serve_stops_cleanly_on_sigint_and_sigterm(subprocess_env, tmp_path):
    servers = {
        sig: ServerProcess("toy", subprocess_env, tmp_path / f"serve-{sig.name}.log")
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    for sig, srv in servers.items():
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.settimeout(10)
            assert s.recv(4) == b"AHEP"  # the welcome frame
        t0 = time.monotonic()
        assert srv.stop(sig) == 0
        assert time.monotonic() - t0 < 10
        log = srv.log.read_text()
        assert f"{sig.name}: stopping" in log and "server stopped" in log


@pytest.mark.parametrize(
    ("circuit", "scheme"),
    [
        ("circuits/digits_om_rram_array.yaml", "mixed_precision"),
        ("circuits/digits_tiki_taka.yaml", "tiki_taka"),
    ],
)
def test_each_update_scheme_over_tcp_is_bitwise_as_in_process(
    circuit, scheme, subprocess_env, tmp_path
):
    """Issue 15: mixed precision's accumulator lives in the controller and its pulses cross
    the wire as outer products; Tiki-Taka is the chip's own: either way a chip trains to the
    same weights through a server as in process."""
    args = ["train", circuit, "--epochs", "1", "--max-train", "100", "--no-progress"]
    ref = tmp_path / "ref.h5"
    assert main([*args, "--out", str(ref)]) == 0
    srv = ServerProcess(circuit, subprocess_env, tmp_path / "s.log")
    try:
        out = tmp_path / "tcp.h5"
        assert main([*args, "--driver", f"tcp://127.0.0.1:{srv.port}", "--out", str(out)]) == 0
    finally:
        srv.stop()
    a, b = _final_weights(ref), _final_weights(out)
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    with h5py.File(ref) as f:
        assert json.loads(f.attrs["config"])["update_scheme"] == scheme
