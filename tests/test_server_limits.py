"""The server's limits: unauthenticated sockets cannot lock the owner out, the client
retries transient refusals within its stated time, a claimed frame costs memory only as
its bytes arrive, and a request id is never executed twice.

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import tracemalloc

import numpy as np
import pytest

from analog_hep.cli import main
from analog_hep.drivers import DriverServer, RemoteDriver
from analog_hep.drivers import _wire as wire
from analog_hep.errors import ConnectionLost
from analog_hep.spec import load_circuit


@pytest.fixture(scope="module")
def toy():
    return load_circuit("toy")


@contextlib.contextmanager
def serving(circuit, **kw):
    """An in-process server on ``circuit`` (background thread), shut down afterwards."""
    srv = DriverServer(circuit, log=lambda s: None, **kw).start()
    try:
        yield srv
    finally:
        srv.shutdown()


def _hello(sock: socket.socket, circuit, session: str = "b" * 32) -> dict:
    """Read the welcome and authenticate as ``session`` (no token); the hello's reply."""
    wire.read_frame(sock, first_byte_timeout_s=10, frame_timeout_s=10)
    args = {
        "session": session,
        "reconnect": False,
        "seed": 0,
        "circuit_sha256": wire.circuit_digest(circuit),
        "auth": None,
        "client": "test",
    }
    sock.sendall(wire.encode_frame({"id": 0, "op": "hello", "args": args}))
    return wire.read_frame(sock, first_byte_timeout_s=30, frame_timeout_s=30)


def _closed_within(sock: socket.socket, limit_s: float) -> list[dict]:
    """The frames ``sock`` receives until the server closes it (``AssertionError`` if it
    is still open after ``limit_s`` seconds)."""
    data = b""
    deadline = time.monotonic() + limit_s
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            raise AssertionError(f"socket still open after {limit_s} s") from None
        if not chunk:
            break
        data += chunk
    frames = []
    while data:
        _, _, _, h, p = struct.unpack("<4sHHIQ", data[:20])
        frames.append(wire.decode_frame(data[20 : 20 + h], data[20 + h : 20 + h + p]))
        data = data[20 + h + p :]
    return frames


# -- pre-authentication cannot starve the owner ----------------------------------------------


def test_idle_unauthenticated_sockets_do_not_lock_the_owner_out(toy):
    """20 idle raw connections (more than both pools) and the real client still opens the
    chip at once and works."""
    with serving(toy) as srv:
        idle = [socket.create_connection(srv.address, timeout=5) for _ in range(20)]
        try:
            t0 = time.monotonic()
            with RemoteDriver(*srv.address, circuit=toy, seed=0) as d:
                assert set(d.read_weights()) == {"W0", "W1", "readout"}
            assert time.monotonic() - t0 < 10  # the default connect_retry_s
        finally:
            for s in idle:
                s.close()


def test_a_silent_socket_is_closed_at_the_handshake_deadline(toy):
    """The deadline counts from the accept: a hello dripped in byte by byte does not
    extend it."""
    with (
        serving(toy, handshake_timeout_s=1.0) as srv,
        socket.create_connection(srv.address, timeout=5) as s,
    ):
        t0 = time.monotonic()
        wire.read_frame(s, first_byte_timeout_s=5, frame_timeout_s=5)  # the welcome
        time.sleep(0.95)
        frame = wire.encode_frame({"id": 0, "op": "hello", "args": {}})
        with contextlib.suppress(OSError):
            for i in range(40):  # one byte every 0.05 s: never complete in time
                s.sendall(frame[i : i + 1])
                time.sleep(0.05)
        frames = _closed_within(s, 5.0)
        assert 0.9 < time.monotonic() - t0 < 1.5
    assert [f["error"]["type"] for f in frames] == ["ProtocolError"]
    assert "no valid hello within 1 s" in frames[0]["error"]["message"]


def test_a_full_server_is_retried_until_a_slot_frees(toy):
    """With every authenticated slot taken the server answers a retryable ChipBusy; the
    client retries and gets the chip once the owner leaves."""
    with serving(toy, max_connections=1) as srv:
        owner = RemoteDriver(*srv.address, circuit=toy, seed=0)
        threading.Timer(0.5, owner.close).start()
        t0 = time.monotonic()
        with RemoteDriver(*srv.address, circuit=toy, seed=1) as d:  # retries up to 10 s
            assert d.describe().name == "toy"
        assert 0.4 < time.monotonic() - t0 < 10


def test_a_full_server_refuses_with_a_retry_hint(toy):
    with serving(toy, max_connections=1) as srv, RemoteDriver(*srv.address, circuit=toy, seed=0):
        with socket.create_connection(srv.address, timeout=5) as s:
            reply = _hello(s, toy, session="c" * 32)
        assert reply["ok"] is False and reply["id"] == 0
        assert reply["error"] == {
            "type": "ChipBusy",
            "message": "too many connections",
            "retry": True,
        }
        t0 = time.monotonic()
        with pytest.raises(ConnectionLost, match=r"too many connections.*retrying for 0\.5 s"):
            RemoteDriver(*srv.address, circuit=toy, seed=1, connect_retry_s=0.5)
        assert 0.2 < time.monotonic() - t0 < 3  # backoff 0.05, 0.1, 0.2 s: then past 0.5 s


def test_a_chip_held_by_another_client_is_refused_at_once(toy):
    """Not a transient refusal: no retry."""
    with serving(toy) as srv, RemoteDriver(*srv.address, circuit=toy, seed=0):
        t0 = time.monotonic()
        with pytest.raises(ConnectionLost, match="another client controls this chip"):
            RemoteDriver(*srv.address, circuit=toy, seed=1, connect_retry_s=10)
        assert time.monotonic() - t0 < 2


def test_a_server_that_starts_late_is_reached_by_retrying(toy):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    servers: list[DriverServer] = []
    starter = threading.Timer(
        0.5, lambda: servers.append(DriverServer(toy, port=port, log=lambda s: None).start())
    )
    starter.start()
    try:
        with RemoteDriver.connect(f"127.0.0.1:{port}", circuit=toy, seed=0) as d:  # 10 s
            assert d.describe().name == "toy"
    finally:
        starter.join(10)
        for srv in servers:
            srv.shutdown()


def test_no_server_is_connection_lost_after_the_stated_retry_time(toy):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ConnectionLost, match=r"cannot reach.*retried for 0\.5 s"):
        RemoteDriver.connect(f"tcp://127.0.0.1:{port}?connect_retry_s=0.5", circuit=toy, seed=0)
    assert 0.2 < time.monotonic() - t0 < 3


def test_serve_refuses_limits_that_cannot_work(capsys):
    for bad in (["--max-preauth", "0"], ["--handshake-timeout-s", "0"]):
        assert main(["serve", "toy", "--port", "0", *bad]) == 2
        assert bad[0] in capsys.readouterr().err


# -- frames cost memory only as their bytes arrive -------------------------------------------


def test_a_claimed_large_frame_that_never_arrives_costs_no_memory(toy):
    """An authenticated client claims a 200 MiB payload and sends 2 MiB of it: the server
    holds no more than what arrived (plus one read chunk), answers a ProtocolError after
    frame_timeout_s and closes the connection."""
    claimed, sent = 200 << 20, 2 << 20
    with (
        serving(toy, frame_timeout_s=1.0) as srv,
        socket.create_connection(srv.address, timeout=5) as s,
    ):
        assert _hello(s, toy)["ok"]
        header = b'{"id":1,"op":"load_state_dict","args":{"state":{}},"arrays":[]}'
        prefix = struct.pack("<4sHHIQ", b"AHEP", 1, 0, len(header), claimed)
        tracemalloc.start()
        try:
            t0 = time.monotonic()
            s.sendall(prefix + header + bytes(sent))
            frames = _closed_within(s, 10.0)
            elapsed = time.monotonic() - t0
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < sent + (8 << 20), f"peak {peak / 2**20:.1f} MiB"
    assert 0.9 < elapsed < 5
    assert len(frames) == 1 and frames[0]["error"]["type"] == "ProtocolError"
    assert "frame incomplete" in frames[0]["error"]["message"]


class _TrickleSocket:
    """A socket stand-in that delivers ``data`` in reads of at most 64 KiB, then times out."""

    def __init__(self, data: bytes):
        self.data = memoryview(data)

    def settimeout(self, t: float | None) -> None:
        pass

    def recv(self, n: int) -> bytes:
        view = bytearray(min(n, 65536))
        return bytes(view[: self.recv_into(memoryview(view), len(view))])

    def recv_into(self, view: memoryview, n: int) -> int:
        k = min(n, len(self.data), 65536)
        if k == 0:
            raise TimeoutError("timed out")
        view[:k] = self.data[:k]
        self.data = self.data[k:]
        return k


def test_a_frame_buffer_grows_only_with_the_bytes_that_arrived():
    """A 200 MiB claim of which 2 MiB arrive: the reader holds a few MiB, then times out;
    a complete 3 MiB frame still reads back intact."""
    header = b'{"arrays":[]}'
    sent = bytes(2 << 20)
    claim = struct.pack("<4sHHIQ", b"AHEP", 1, 0, len(header), 200 << 20) + header + sent
    tracemalloc.start()
    try:
        with pytest.raises(TimeoutError):
            wire.read_frame(_TrickleSocket(claim), first_byte_timeout_s=1, frame_timeout_s=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(sent) + (1 << 20), f"peak {peak / 2**20:.1f} MiB"
    payload = (np.arange(3 << 20) % 251).astype(np.uint8)
    got = wire.read_frame(
        _TrickleSocket(wire.encode_frame({"a": payload})), first_byte_timeout_s=1, frame_timeout_s=1
    )
    np.testing.assert_array_equal(got["a"], payload)


# -- request ids -----------------------------------------------------------------------------


def test_a_request_id_whose_reply_left_the_cache_is_never_executed_again(toy):
    """Id 1 applies an update; 20 pings push its reply out of the cache; re-sending id 1
    is refused as stale, not applied a second time."""
    with serving(toy) as srv, socket.create_connection(srv.address, timeout=5) as s:
        assert _hello(s, toy)["ok"]

        def ask(rid: int, op: str, args: dict) -> dict:
            s.sendall(wire.encode_frame({"id": rid, "op": op, "args": args}))
            return wire.read_frame(s, first_byte_timeout_s=30, frame_timeout_s=30)

        update = {
            "name": "readout",
            "rows": np.ones((1, 4), np.float32),
            "cols": np.ones((1, 5), np.float32),
            "lr": 0.01,
        }
        assert ask(1, "apply_outer_product", update)["ok"]
        for rid in range(2, 22):
            assert ask(rid, "ping", {})["ok"]
        again = ask(1, "apply_outer_product", update)
        assert again["ok"] is False and again["id"] == 1
        assert again["error"]["type"] == "ProtocolError"
        assert "stale" in again["error"]["message"]
        assert int(srv.session_driver.state_dict()["readout/updates"]) == 1
        assert ask(22, "ping", {})["ok"]  # the connection is still usable
