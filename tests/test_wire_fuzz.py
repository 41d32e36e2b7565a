"""Hostile input never crashes the server nor changes the chip.

A server on the toy circuit (token required) is controlled by a legitimate client. Hypothesis
then sends at least 1,000 hostile frames, each on its own connection: random bytes,
truncated, oversized, wrong magic/version/flags, malformed JSON and arrays, bad tokens,
wrong circuits, and (authenticated as the controlling client) requests with wrong dtypes,
shapes, names, values and ops. Afterwards the chip's weights and state are bitwise unchanged,
and the legitimate client trains on.

A second test sends, on one authenticated connection, a mutated request for every op (wrong
types for every argument, arrays where strings belong, missing and extra fields, bad ids,
a second hello) and requires a typed error reply to each, the connection still usable and
the chip unchanged.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analog_hep.drivers import (
    Capabilities,
    ChipDescription,
    CrossbarInfo,
    DriverServer,
    RemoteDriver,
    Settled,
)
from analog_hep.drivers import _wire as wire
from analog_hep.drivers._operations import OPS
from analog_hep.drivers.validate import MAX_STEPS, check_post
from analog_hep.errors import OutOfRange
from analog_hep.hep import Controller, HepConfig
from analog_hep.spec import load_circuit

TOKEN = "fuzz-token-0123456789abcdef"
N_FRAMES = 1000
MAX_FRAME = 1 << 20


def _prefix(h_len: int, p_len: int, *, magic=b"AHEP", version=1, flags=0) -> bytes:
    return struct.pack("<4sHHIQ", magic, version, flags, h_len, p_len)


def _raw(header: dict, payload: bytes = b"", **kw) -> bytes:
    text = json.dumps(header).encode()
    return _prefix(len(text), len(payload), **kw) + text + payload


# -- strategies ------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)
bad_dtypes = st.sampled_from([np.int32, np.int64, np.float64, np.complex64, np.uint8, np.bool_])
shapes = st.lists(st.integers(0, 9), min_size=0, max_size=3).map(tuple)


@st.composite
def bad_array(draw, good_shape: tuple[int, ...]):
    """An array the server must refuse where a float32 ``good_shape`` array belongs."""
    kind = draw(st.sampled_from(["dtype", "shape", "nonfinite"]))
    if kind == "dtype":
        return np.zeros(good_shape, draw(bad_dtypes))
    if kind == "shape":
        shape = draw(shapes.filter(lambda s: s != good_shape))
        return np.zeros(shape, np.float32)
    a = np.zeros(good_shape, np.float32)
    a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return a


@st.composite
def bad_request(draw):
    """An authenticated request that is invalid (so it must change nothing)."""
    kind = draw(
        st.sampled_from(
            [
                "inputs",
                "outer",
                "delta",
                "schedule",
                "state",
                "op",
                "args",
                "name",
                "lr",
                "envelope",
            ]
        )
    )
    rid = draw(st.integers(2**40, 2**62))
    if kind == "inputs":
        args = {"x": draw(bad_array((3, 6))), "y": None}
        return {"id": rid, "op": "load_inputs", "args": args}
    if kind == "outer":
        which = draw(st.sampled_from(["rows", "cols"]))
        args = {
            "name": "W1",
            "rows": np.zeros((2, 4), np.float32),
            "cols": np.zeros((2, 5), np.float32),
            "lr": 0.1,
        }
        args[which] = draw(bad_array(args[which].shape))
        return {"id": rid, "op": "apply_outer_product", "args": args}
    if kind == "delta":
        args = {"name": "readout", "delta_w": draw(bad_array((4, 5)))}
        return {"id": rid, "op": "program_delta", "args": args}
    if kind == "schedule":
        args = {"betas": [0.1, -0.1], "free_steps": None, "nudge_steps": None, "start": "free"}
        field = draw(st.sampled_from(["betas", "free_steps", "nudge_steps", "start"]))
        args[field] = draw(
            {
                "betas": st.sampled_from([[float("nan")], ["x"], [True], [[1, 2]], 3, None]),
                "free_steps": st.sampled_from([0, -1, 10**9, 1.5, "10", True]),
                "nudge_steps": st.sampled_from([0, -5, 10**12, [], "a"]),
                "start": st.sampled_from(["sideways", "", None, 1]),
            }[field]
        )
        return {"id": rid, "op": "run_schedule", "args": args}
    if kind == "state":
        state = draw(
            st.sampled_from(
                [
                    {"calls": np.zeros((), np.int64)},
                    {"x": np.zeros(3, np.float32)},
                    "not a dict",
                ]
            )
        )
        return {"id": rid, "op": "load_state_dict", "args": {"state": state}}
    if kind == "op":
        op = draw(st.text(max_size=20).filter(lambda o: o not in OPS and o != "hello"))
        return {"id": rid, "op": op, "args": {}}
    if kind == "args":
        op = draw(st.sampled_from(["load_inputs", "program_delta", "apply_outer_product"]))
        keys = st.text(max_size=6).filter(lambda k: not k.startswith("$"))
        return {"id": rid, "op": op, "args": draw(st.dictionaries(keys, json_scalars))}
    if kind == "name":
        name = draw(
            st.one_of(st.text(max_size=8), st.integers(), st.none()).filter(
                lambda n: n not in ("W0", "W1", "readout")
            )
        )
        args = {"name": name, "delta_w": np.zeros((4, 5), np.float32)}
        return {"id": rid, "op": "program_delta", "args": args}
    if kind == "lr":
        lr = draw(st.sampled_from([float("nan"), float("inf"), "0.1", None, True, [0.1]]))
        args = {
            "name": "W1",
            "rows": np.zeros((1, 4), np.float32),
            "cols": np.zeros((1, 5), np.float32),
            "lr": lr,
        }
        return {"id": rid, "op": "apply_outer_product", "args": args}
    env = draw(
        st.sampled_from(
            [
                {"id": -1, "op": "ping", "args": {}},
                {"id": "7", "op": "ping", "args": {}},
                {"id": 2**63, "op": "ping", "args": {}},
                {"id": rid, "op": "ping", "args": [], "extra": 1},
                {"id": rid, "args": {}},
            ]
        )
    )
    return env


def _authed_hello(sock: socket.socket, session: str, nonce: str) -> None:
    hello = {
        "id": 0,
        "op": "hello",
        "args": {
            "session": session,
            "reconnect": True,
            "seed": 0,
            "circuit_sha256": DIGEST,
            "auth": wire.auth_digest(TOKEN, nonce, session),
            "client": "fuzz",
        },
    }
    sock.sendall(wire.encode_frame(hello))
    reply = wire.read_frame(sock, first_byte_timeout_s=10, frame_timeout_s=10)
    assert reply.get("ok"), reply


@st.composite
def hostile(draw):
    """``(authenticated, bytes)``: what one hostile connection sends."""
    kind = draw(
        st.sampled_from(
            [
                "random",
                "random_prefixed",
                "truncated_hello",
                "oversized",
                "version",
                "magic",
                "flags",
                "bad_token",
                "bad_circuit",
                "bad_hello",
                "bad_json",
                "array_mismatch",
                "authed",
                "authed",
                "authed",
                "authed_truncated",
                "authed_oversized",
                "authed_other_version",
            ]
        )
    )
    good_hello = {
        "id": 0,
        "op": "hello",
        "args": {
            "session": "f" * 32,
            "reconnect": False,
            "seed": 0,
            "circuit_sha256": DIGEST,
            "auth": None,
            "client": "fuzz",
        },
    }
    if kind == "random":
        return False, draw(st.binary(min_size=0, max_size=300))
    if kind == "random_prefixed":
        body = draw(st.binary(max_size=200))
        return False, _prefix(draw(st.integers(0, 300)), draw(st.integers(0, 300))) + body
    if kind == "truncated_hello":
        frame = wire.encode_frame(good_hello)
        return False, frame[: draw(st.integers(0, len(frame) - 1))]
    if kind == "oversized":
        h = draw(st.sampled_from([2**32 - 1, wire.PREAUTH_MAX_FRAME_BYTES + 1, 0, 1]))
        return False, _prefix(h, draw(st.sampled_from([0, 2**63, 2**40]))) + b"{}"
    if kind == "version":
        spoken = range(wire.MIN_PROTOCOL_VERSION, wire.PROTOCOL_VERSION + 1)
        v = draw(st.integers(0, 2**16 - 1).filter(lambda v: v not in spoken))
        return False, _raw(good_hello, version=v)
    if kind == "magic":
        m = draw(st.binary(min_size=4, max_size=4).filter(lambda m: m != b"AHEP"))
        return False, _raw(good_hello, magic=m)
    if kind == "flags":
        return False, _raw(good_hello, flags=draw(st.integers(1, 2**16 - 1)))
    if kind == "bad_token":
        h = json.loads(json.dumps(good_hello))
        h["args"]["auth"] = draw(st.one_of(st.none(), st.text(max_size=70), st.integers()))
        h["args"]["session"] = draw(st.sampled_from(["f" * 32, SESSION[0]]))
        return False, _raw(h)
    if kind == "bad_circuit":
        h = json.loads(json.dumps(good_hello))
        h["args"]["circuit_sha256"] = draw(st.text(max_size=64))
        return False, _raw(h)
    if kind == "bad_hello":
        h = json.loads(json.dumps(good_hello))
        key = draw(st.sampled_from(["session", "seed", "reconnect", "args", "op", "id"]))
        target = h if key in ("args", "op", "id") else h["args"]
        target[key] = draw(json_values)
        return False, _raw(h)
    if kind == "bad_json":
        text = draw(st.binary(min_size=2, max_size=100))
        return False, _prefix(len(text), 0) + text
    if kind == "array_mismatch":
        h = {"id": 0, "op": "hello", "args": {}, "arrays": draw(json_values)}
        return False, _raw(h, draw(st.binary(max_size=40)))
    if kind == "authed_other_version":
        # A valid update, framed in a version other than the connection's (its hello's):
        # refused, never applied.
        delta = np.full((4, 5), 0.1, np.float32)
        req = {"id": draw(st.integers(2**40, 2**62)), "op": "program_delta"}
        req["args"] = {"name": "readout", "delta_w": delta}
        return True, wire.encode_frame(req, version=wire.MIN_PROTOCOL_VERSION)
    req = draw(bad_request())
    frame = wire.encode_frame(req)
    if kind == "authed_truncated":
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    if kind == "authed_oversized":
        frame = _prefix(2, MAX_FRAME + draw(st.integers(1, 2**40))) + b"{}"
    return True, frame


DIGEST = ""
SESSION = [""]


@pytest.fixture(scope="module")
def served():
    global DIGEST
    c = load_circuit("toy")
    DIGEST = wire.circuit_digest(c)
    log: list[str] = []
    srv = DriverServer(c, token=TOKEN, max_frame_bytes=MAX_FRAME, log=log.append).start()
    host, port = srv.address
    try:
        with RemoteDriver(host, port, circuit=c, seed=0, token=TOKEN) as d:
            SESSION[0] = d._session
            yield srv, d, log
    finally:
        srv.shutdown()


def _send_hostile(address, authenticated: bool, data: bytes) -> None:
    with socket.create_connection(address, timeout=10) as s:
        s.settimeout(10)
        welcome = wire.read_frame(s, first_byte_timeout_s=10, frame_timeout_s=10)
        assert welcome["type"] == "welcome" and welcome["auth"] == "hmac-sha256"
        if authenticated:
            _authed_hello(s, SESSION[0], welcome["nonce"])
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            return  # the server already hung up on us: fine
        try:  # drain the replies: the server must answer (or close) promptly, not hang
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass


def _assert_same_chip(before: tuple[dict, dict], after: tuple[dict, dict]) -> None:
    """Weights ``{name: (W, b)}`` and state dicts bitwise equal: the chip was not touched."""
    (before_w, before_s), (after_w, after_s) = before, after
    for n in before_w:
        np.testing.assert_array_equal(after_w[n][0], before_w[n][0])
        np.testing.assert_array_equal(after_w[n][1], before_w[n][1])
    assert before_s.keys() == after_s.keys()
    for k in before_s:
        np.testing.assert_array_equal(after_s[k], before_s[k], err_msg=k)


def test_hostile_frames_never_crash_the_server_nor_change_the_chip(served):
    srv, client, log = served
    before_w, before_s = client.read_weights(), client.state_dict()
    sent = [0]

    @settings(
        max_examples=N_FRAMES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile())
    def attack(case):
        authenticated, data = case
        _send_hostile(srv.address, authenticated, data)
        sent[0] += 1

    attack()
    assert sent[0] >= N_FRAMES
    # every hostile frame met a deliberate refusal, none an unexpected exception
    unexpected = [m for m in log if "connection dropped" in m or "driver failed" in m]
    assert not unexpected, unexpected[:5]
    assert sum("opened" in m for m in log) == 1  # the chip was never replaced
    after_w, after_s = client.read_weights(), client.state_dict()  # reconnects if taken over
    _assert_same_chip((before_w, before_s), (after_w, after_s))
    # ... and it still serves: a real training step through the same session
    cfg = HepConfig(
        method="hep",
        points=4,
        beta=0.1,
        lr=0.05,
        momentum=0.0,
        schedule="constant",
        total_steps=1,
        residual_tol=1e-3,
        update="auto",
    )
    ctrl = Controller(client, cfg)
    x = np.random.default_rng(0).uniform(size=(6, 6)).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1]]
    rep = ctrl.train_step(x, y)
    assert rep.used == 6 and not rep.refused
    assert not np.array_equal(client.read_weights()["W0"][0], before_w["W0"][0])


# -- every op, mutated, on one authenticated connection --------------------------------------

WRONG_VALUES: list[Any] = [
    None,
    True,
    -1,
    2**70,
    10**400,
    1.5,
    float("nan"),
    float("-inf"),
    1j,
    "readout",
    "",
    [],
    {},
    {"k": 1},
    [1, "a"],
    np.zeros(3, np.float32),  # an array where a string or another array belongs
    np.zeros((2, 2), np.int64),
]
BAD_IDS: list[Any] = [None, -1, 0, 2**63, 2**70, 1.5, float("nan"), True, "7", [], {"k": 1}]
TYPED = {"ProtocolError", "OutOfRange", "UnsupportedCapability"}


def _finite_real(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _valid_value(op: str, key: str, v: Any) -> bool:
    """Whether replacing argument ``key`` of a valid ``op`` request by ``v`` leaves it
    valid (such a mutation would run on the chip, so it is skipped)."""
    if key == "y":
        return v is None
    if key == "lr":
        return _finite_real(v)
    if key in ("free_steps", "nudge_steps"):
        return v is None or (type(v) is int and 1 <= v <= MAX_STEPS)
    if key == "betas":
        return isinstance(v, list) and all(_finite_real(b) for b in v)
    if key == "name":
        return isinstance(v, str) and v in ("W0", "W1", "readout")
    return False


def _valid_args(client: RemoteDriver) -> dict[str, dict[str, Any]]:
    """A valid argument set per op for the served chip."""
    d = client.describe()
    xb = {c.name: c for c in d.crossbars}["readout"]
    return {
        "load_inputs": {
            "x": np.zeros((2, d.layers[0]), np.float32),
            "y": np.zeros((2, d.classes), np.float32),
        },
        "run_schedule": {
            "betas": [0.1, -0.1],
            "free_steps": None,
            "nudge_steps": None,
            "start": "free",
        },
        "apply_outer_product": {
            "name": "readout",
            "rows": np.zeros((1, xb.n_out), np.float32),
            "cols": np.zeros((1, xb.n_in + 1), np.float32),
            "lr": 0.01,
        },
        "program_delta": {
            "name": "readout",
            "delta_w": np.zeros((xb.n_out, xb.n_in + 1), np.float32),
        },
        "load_state_dict": {"state": client.state_dict()},
        **{op: {} for op in ("describe", "read_weights", "state_dict", "ping", "close")},
    }


def _mutated_requests(valid: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict]]:
    """``(label, request)`` for every malformed request of every op; ids from 10**9 up."""
    ids = iter(range(10**9, 10**10))
    for op, args in valid.items():
        for key in args:
            for v in WRONG_VALUES:
                if not _valid_value(op, key, v):
                    yield (
                        f"{op}.{key}={v!r:.30}",
                        {"id": next(ids), "op": op, "args": {**args, key: v}},
                    )
            rest = {k: x for k, x in args.items() if k != key}
            yield f"{op} without {key}", {"id": next(ids), "op": op, "args": rest}
        yield f"{op} with an extra argument", {"id": next(ids), "op": op, "args": {**args, "zz": 1}}
        for bad_args in ([], "x", None, 3, np.zeros(2, np.float32)):
            yield f"{op} args={bad_args!r:.30}", {"id": next(ids), "op": op, "args": bad_args}
        if args:
            yield f"{op} without args", {"id": next(ids), "op": op}
        for rid in BAD_IDS:
            yield f"{op} id={rid!r:.30}", {"id": rid, "op": op, "args": args}
        yield f"{op} without id", {"op": op, "args": args}
        yield f"{op} extra field", {"id": next(ids), "op": op, "args": args, "more": 1}
    for op in (None, 7, "", "HELLO", "ping ", np.zeros(2, np.float32), ["ping"]):
        yield f"op={op!r:.30}", {"id": next(ids), "op": op, "args": {}}
    yield "no op", {"id": next(ids), "args": {}}
    hello = {
        "session": SESSION[0],
        "reconnect": True,
        "seed": 0,
        "circuit_sha256": DIGEST,
        "auth": None,
        "client": "fuzz",
    }
    yield "second hello", {"id": next(ids), "op": "hello", "args": hello}
    yield "second hello, id 0", {"id": 0, "op": "hello", "args": hello}


def _reply_id(rid: Any) -> int | None:
    return rid if type(rid) is int and 0 <= rid < 2**63 else None


def _ask_refused(s: socket.socket, label: str, req: dict) -> None:
    """Send ``req``; its reply must be a typed refusal addressed to its id."""
    s.sendall(wire.encode_frame(req))
    reply = wire.read_frame(s, first_byte_timeout_s=10, frame_timeout_s=10)
    assert reply.get("ok") is False, (label, reply)
    err = reply["error"]
    assert err["type"] in TYPED and isinstance(err["message"], str), (label, err)
    assert reply["id"] == _reply_id(req.get("id")), (label, reply)


def _encodable(v: Any) -> bool:
    try:
        wire.encode_frame({"v": v})
    except TypeError:  # "$" keys are reserved
        return False
    return True


def test_every_malformed_request_gets_a_typed_error_and_changes_nothing(served):
    srv, client, log = served
    valid = _valid_args(client)
    chip = srv.session_driver
    before_w, before_s = chip.read_weights(), chip.state_dict()
    cases = list(_mutated_requests(valid))
    logged = len(log)
    assert len(cases) > 300
    with socket.create_connection(srv.address, timeout=10) as s:
        welcome = wire.read_frame(s, first_byte_timeout_s=10, frame_timeout_s=10)
        _authed_hello(s, SESSION[0], welcome["nonce"])  # takes the session over
        for label, req in cases:
            _ask_refused(s, label, req)
        ids = iter(range(5 * 10**9, 6 * 10**9))

        @settings(max_examples=300, deadline=None, database=None, derandomize=True)
        @given(st.sampled_from(sorted(valid)), st.data())
        def random_argument(op: str, data: st.DataObject) -> None:
            args = dict(valid[op])
            key = data.draw(st.sampled_from([*args, "zz"]))
            v = data.draw(json_values.filter(_encodable))
            if key in args and _valid_value(op, key, v):
                return
            args[key] = v
            _ask_refused(s, f"{op}.{key}={v!r:.40}", {"id": next(ids), "op": op, "args": args})

        random_argument()
        # still usable; the ping takes the legitimate client's next id (ids rise per session)
        rid = client._next_id
        client._next_id += 1
        s.sendall(wire.encode_frame({"id": rid, "op": "ping", "args": {}}))
        pong = wire.read_frame(s, first_byte_timeout_s=10, frame_timeout_s=10)
        assert pong == {"id": rid, "ok": True, "result": {}}
    assert srv.session_driver is chip  # no close went through
    # every refusal was deliberate: none fell through to the server's safety net
    unexpected = [m for m in log[logged:] if "connection dropped" in m or "malformed" in m]
    assert not unexpected, unexpected[:5]
    after_w, after_s = chip.read_weights(), chip.state_dict()
    _assert_same_chip((before_w, before_s), (after_w, after_s))
    client.read_weights()  # the legitimate client takes its session back


# -- what a hostile server sends: conv descriptions and post-synaptic signals ----------------


def _conv_description() -> ChipDescription:
    """The conv circuit's description as the emulator gives it, built from its spec (no
    chip: the decoders are what is tested)."""
    spec = load_circuit("tests/data/cnn_two_blocks.yaml").spec
    geoms = spec.geometries
    xbs = []
    for i, name in enumerate(spec.crossbar_names):
        g = geoms[i] if i < len(geoms) else None
        ro = name == "readout"
        n_out = g.channels if g else (spec.readout.classes if ro else spec.layers[i + 1])
        n_in = g.n_in if g else spec.layers[-1 if ro else i]
        pre, post = (len(spec.layers) - 1, -1) if ro else (i, i + 1)
        xbs.append(CrossbarInfo(name, n_out, n_in, True, pre, post, geometry=g))
    caps = Capabilities(True, True, True, True, True)
    return ChipDescription(
        spec.name, "emulator", tuple(spec.layers), 10, "cross_entropy", tuple(xbs), caps, 60,
        20, None, True,
    )  # fmt: skip


def _wire_form(value: dict) -> dict:
    frame = wire.encode_frame({"v": value})
    h = int.from_bytes(frame[8:12], "little")
    return wire.decode_frame(frame[20 : 20 + h], frame[20 + h :])["v"]


def test_hostile_conv_descriptions_and_signals_are_protocol_errors_or_valid():
    """A client decodes every mutated conv description, and every mutated settled reply of
    a conv chip, into a valid value or a typed refusal; never anything else."""
    desc = _conv_description()
    good_d = _wire_form(wire.description_to_wire(desc))
    assert wire.description_from_wire(good_d) == desc
    b, k = 2, 2
    conv = {c.name: c.geometry.conv_size for c in desc.crossbars if c.geometry is not None}
    settled = Settled(
        free_states=tuple(np.zeros((b, n), np.float32) for n in desc.layers),
        free_logits=np.zeros((b, 10), np.float32),
        free_residual=np.zeros(b, np.float32),
        betas=np.array([0.1, -0.1], np.complex64),
        states=tuple(np.zeros((k, b, n), np.float32) for n in desc.layers),
        logits=np.zeros((k, b, 10), np.float32),
        residual=np.zeros((k, b), np.float32),
        free_post={n: np.zeros((b, m), np.float32) for n, m in conv.items()},
        post={n: np.zeros((k, b, m), np.float32) for n, m in conv.items()},
    )
    good_s = _wire_form(wire.settled_to_wire(settled))
    check_post(desc, wire.settled_from_wire(good_s))
    geometry_keys = sorted(good_d["crossbars"][0]["geometry"])
    hostile_value = json_values | shapes.map(lambda sh: np.zeros(sh, np.float32))
    outcomes = {"valid": 0, "refused": 0}

    @settings(max_examples=400, deadline=None, database=None, derandomize=True)
    @given(st.data())
    def mutate(data: st.DataObject) -> None:
        if data.draw(st.booleans()):
            d = json.loads(json.dumps(good_d))
            xb = d["crossbars"][data.draw(st.integers(0, len(d["crossbars"]) - 1))]
            where = data.draw(st.sampled_from(["geometry", "n_in", "n_out", *geometry_keys]))
            target = xb if where in ("geometry", "n_in", "n_out") else xb.get("geometry")
            if target is None:
                target, where = xb, "geometry"
            if data.draw(st.booleans()) and where != "geometry":
                target.pop(where)
            else:
                target[where] = data.draw(json_values)
            decode = lambda: wire.description_from_wire(d)  # noqa: E731
        else:
            s = dict(good_s)
            key = data.draw(st.sampled_from(["free_post", "post"]))
            if data.draw(st.booleans()):
                s[key] = data.draw(hostile_value)
            else:
                signals = dict(s[key])
                name = data.draw(st.sampled_from([*signals, "W9"]))
                signals[name] = data.draw(hostile_value)
                s[key] = signals
            decode = lambda: check_post(desc, wire.settled_from_wire(s))  # noqa: E731
        try:
            decode()
            outcomes["valid"] += 1
        except (wire.ProtocolError, OutOfRange):
            outcomes["refused"] += 1

    mutate()
    assert outcomes["refused"] > 100, outcomes
