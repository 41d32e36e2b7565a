"""The analog-hep wire protocol (version 2): frames, values and the driver messages.

A remote chip is driven through TCP by :class:`analog_hep.drivers.RemoteDriver`, talking to
``analog-hep serve`` (:class:`analog_hep.drivers.DriverServer`). No pickle crosses the wire:
a frame is a fixed prefix, a UTF-8 JSON header and raw little-endian arrays.

**Frame** (all integers little-endian)::

    offset  size  field
    0       4     magic b"AHEP"
    4       2     protocol version, uint16 (this module writes 2, reads 1 and 2)
    6       2     flags, uint16 (reserved, must be 0)
    8       4     header length H, uint32 (2 <= H <= max_header_bytes)
    12      8     payload length P, uint64 (P <= max_payload_bytes)
    20      H     header: one JSON object (UTF-8, no NaN/Infinity literals)
    20+H    P     payload: the arrays of header["arrays"], back to back, C order

``header["arrays"]`` lists ``{"dtype": "<f4", "shape": [20, 64]}`` per array; the sizes must
add up to ``P`` exactly. Dtypes: ``|b1 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8 <f4 <f8 <c8 <c16``
(big-endian or object dtypes are refused); at most 8 dimensions.

**Values** inside the header are JSON, with tagged objects (an object with one key that
starts with ``$``): ``{"$array": i}`` the ``i``-th payload array, ``{"$complex": [re, im]}``,
``{"$float": "nan" | "inf" | "-inf"}``. Plain objects must not use ``$`` keys.

**Versions.** Version 2 adds conv chips: a crossbar's ``geometry`` in the description and
the conv crossbars' post-synaptic signals (``free_post``, ``post``) in the settled states,
each sent only when there is one, so a dense chip's messages are the same in both versions.
A connection speaks one version: the server's welcome is framed as version 1 (every peer
reads it) and names the highest version the server speaks (``"protocol": 2``); the client
frames its hello, and everything after it, in ``min(that, its own)``; the server answers in
the version of the hello. A version 1 peer therefore drives a dense chip as before; a
version 1 client is refused (``SpecError``) by a server whose chip has conv crossbars, which
version 1 cannot describe.

**Conversation.** The server speaks first, ``{"type": "welcome", "protocol": 2, "nonce":
HEX, "auth": "hmac-sha256" | "none", ...}``. The client answers ``{"op": "hello", "id": 0,
"args": {"session", "reconnect", "seed", "circuit_sha256", "auth", "client"}}`` where
``auth = HMAC-SHA256(token, "analog-hep/1" + nonce + session)`` (the token never crosses the
wire). Then requests ``{"op", "id", "args"}`` and replies ``{"id", "ok": true, "result"}`` or
``{"id", "ok": false, "error": {"type", "message"}}`` (``"retry": true`` added to a
transient refusal), one at a time. Ops: the names of the operation table in
:mod:`analog_hep.drivers._operations` (the driver's methods, ``ping`` and ``close``), which
also says each one's arguments and how they and its result are encoded.

**Request ids** are JSON integers: 0 for the hello, ``1 .. 2**63-1`` afterwards, each new
request of a session higher than every id the session executed. The server keeps its last
replies per request id, so a request re-sent after a reconnect (same id, same request) is
answered from that cache, never applied twice; a different request under a cached id, or
an older id no longer cached, is refused. A malformed request gets a typed error reply
addressed to its id (``null`` when the id itself is bad) and the connection stays open;
only a broken frame closes it. ``docs/drivers.md`` has the details.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, NamedTuple

import numpy as np

from .._geometry import ConvGeometry, GeometryError
from ..errors import (
    AnalogHepError,
    ConnectionLost,
    DriverTimeout,
    NotSettled,
    OutOfRange,
    SpecError,
    UnsupportedCapability,
)
from ._protocol import (
    Capabilities,
    ChipDescription,
    CrossbarInfo,
    NudgeSchedule,
    Settled,
    UpdateReport,
)
from .validate import MAX_POINTS, check_description, real_number, short

__all__ = [
    "CONV_PROTOCOL_VERSION",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "HELLO_ID",
    "MAGIC",
    "MIN_PROTOCOL_VERSION",
    "PREAUTH_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "RECV_CHUNK_BYTES",
    "FrameIncomplete",
    "PeerClosed",
    "ProtocolError",
    "RawFrame",
    "ServerBusy",
    "auth_digest",
    "circuit_digest",
    "decode_frame",
    "encode_frame",
    "error_from_wire",
    "read_frame",
    "read_frame_bytes",
    "read_raw_frame",
    "with_version",
]

MAGIC = b"AHEP"
PROTOCOL_VERSION = 2  # the version this side writes (conv chips: geometry, post signals)
MIN_PROTOCOL_VERSION = 1  # the oldest version this side reads and speaks (dense chips)
CONV_PROTOCOL_VERSION = 2  # the first version that describes conv crossbars
_PREFIX = struct.Struct("<4sHHIQ")
PREFIX_BYTES = _PREFIX.size  # 20
DEFAULT_MAX_HEADER_BYTES = 1 << 20  # 1 MiB of JSON
DEFAULT_MAX_PAYLOAD_BYTES = 256 << 20  # 256 MiB of arrays
PREAUTH_MAX_FRAME_BYTES = 64 << 10  # before the hello is accepted
MAX_NDIM = 8
MAX_ARRAYS = 4096
RECV_CHUNK_BYTES = 1 << 20  # a frame's buffer grows by at most this much per read (bytes)
HELLO_ID = 0  # the hello's request id; every later request of a connection uses 1 .. 2**63-1
MAX_REQUEST_ID = 2**63 - 1

DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f4", "<f8", "<c8", "<c16"]
)


class ProtocolError(ConnectionLost):
    """The peer sent something that is not a valid frame or message of this protocol."""


class PeerClosed(ConnectionLost):
    """The peer closed the connection cleanly between two frames."""


class ServerBusy(ConnectionLost):
    """The server has no free connection slot right now: a transient refusal, retried."""


class FrameIncomplete(TimeoutError):
    """A started frame did not arrive completely within its time limit."""


# -- values ----------------------------------------------------------------------------------


def _wire_array(a: np.ndarray) -> np.ndarray:
    """C-contiguous, little-endian copy-free view of ``a`` when possible."""
    a = np.asarray(a)
    if a.dtype.kind not in "biufc" or a.dtype.str.replace(">", "<") not in DTYPES:
        raise TypeError(f"array dtype {a.dtype} cannot cross the wire")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a if a.flags.c_contiguous else a.copy(order="C")  # keeps 0-d arrays 0-d


def _encode_value(v: Any, arrays: list[np.ndarray]) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, np.bool_):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isfinite(f):
            return f
        return {"$float": "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")}
    if isinstance(v, (complex, np.complexfloating)):
        c = complex(v)
        return {"$complex": [_encode_value(c.real, arrays), _encode_value(c.imag, arrays)]}
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, Mapping):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise TypeError(f"object keys must be strings, found {k!r}")
            if k.startswith("$"):
                raise TypeError(f"object keys starting with '$' are reserved, found {k!r}")
            out[k] = _encode_value(x, arrays)
        return out
    if isinstance(v, (list, tuple)):
        return [_encode_value(x, arrays) for x in v]
    if hasattr(v, "__array__") or isinstance(v, np.ndarray):
        arrays.append(_wire_array(np.asarray(v)))
        return {"$array": len(arrays) - 1}
    raise TypeError(f"cannot send a value of type {type(v).__name__}")


def _decode_value(v: Any, arrays: Sequence[np.ndarray], depth: int = 0) -> Any:
    if depth > 64:
        raise ProtocolError("value nested deeper than 64 levels")
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, list):
        return [_decode_value(x, arrays, depth + 1) for x in v]
    if isinstance(v, dict):
        tags = [k for k in v if k.startswith("$")]
        if not tags:
            return {k: _decode_value(x, arrays, depth + 1) for k, x in v.items()}
        if len(v) != 1:
            raise ProtocolError(f"a tagged value has exactly one key, found {sorted(v)[:4]}")
        tag, x = next(iter(v.items()))
        if tag == "$array":
            if type(x) is not int or not 0 <= x < len(arrays):
                raise ProtocolError(f"$array index {x!r} outside the {len(arrays)} arrays")
            return arrays[x]
        if tag == "$float":
            if x not in ("nan", "inf", "-inf"):
                raise ProtocolError(f"$float must be nan, inf or -inf, found {x!r}")
            return float(x)
        if tag == "$complex":
            if not isinstance(x, list) or len(x) != 2:
                raise ProtocolError("$complex must be [re, im]")
            re, im = (_decode_value(p, arrays, depth + 1) for p in x)
            if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in (re, im)):
                raise ProtocolError("$complex parts must be numbers")
            try:
                return complex(re, im)
            except OverflowError:  # integers beyond the float range
                raise ProtocolError("$complex parts must be within the float range") from None
        raise ProtocolError(f"unknown tag {tag!r}")
    raise ProtocolError(f"unexpected JSON value of type {type(v).__name__}")


# -- frames ----------------------------------------------------------------------------------


def _check_version(version: int) -> int:
    """``version`` when this side speaks it; ``ValueError`` otherwise (a caller's bug)."""
    if type(version) is not int or not MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
        raise ValueError(
            f"protocol version {version!r} outside [{MIN_PROTOCOL_VERSION}, {PROTOCOL_VERSION}]"
        )
    return version


def encode_frame(header: Mapping[str, Any], *, version: int = PROTOCOL_VERSION) -> bytes:
    """One frame of protocol ``version``: ``header`` (any values, arrays included) as JSON
    plus the array payload."""
    _check_version(version)
    arrays: list[np.ndarray] = []
    body = _encode_value(dict(header), arrays)
    body["arrays"] = [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays]
    text = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
    payload_len = sum(a.nbytes for a in arrays)
    prefix = _PREFIX.pack(MAGIC, version, 0, len(text), payload_len)
    return b"".join([prefix, text, *(a.tobytes() for a in arrays)])


def with_version(frame: bytes, version: int) -> bytes:
    """``frame`` (from :func:`encode_frame`) with its prefix's version set to ``version``:
    a cached reply sent again on a connection of another version (what both versions carry
    is encoded the same in both)."""
    _check_version(version)
    return frame[:4] + struct.pack("<H", version) + frame[6:]


def _parse_prefix(
    prefix: bytes, *, max_header_bytes: int, max_payload_bytes: int
) -> tuple[int, int, int]:
    """``(version, header length, payload length)`` of a frame's prefix, all checked."""
    magic, version, flags, h_len, p_len = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"not an analog-hep frame (magic {magic!r}, expected {MAGIC!r})")
    if not MIN_PROTOCOL_VERSION <= version <= PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version} is not supported; this side speaks versions "
            f"{MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}: run a compatible analog-hep "
            "release on both ends"
        )
    if flags != 0:
        raise ProtocolError(f"unknown frame flags {flags:#06x}")
    if not 2 <= h_len <= max_header_bytes:
        raise ProtocolError(f"header of {h_len} bytes outside [2, {max_header_bytes}]")
    if p_len > max_payload_bytes:
        raise ProtocolError(f"payload of {p_len} bytes exceeds the limit of {max_payload_bytes}")
    return version, h_len, p_len


def _array_specs(specs: Any, payload_len: int) -> list[tuple[np.dtype, tuple[int, ...], int]]:
    if not isinstance(specs, list) or len(specs) > MAX_ARRAYS:
        raise ProtocolError(f"header 'arrays' must be a list of at most {MAX_ARRAYS} entries")
    out = []
    total = 0
    for s in specs:
        if not isinstance(s, dict) or set(s) != {"dtype", "shape"}:
            raise ProtocolError("each array spec is {'dtype': ..., 'shape': [...]}")
        dt, shape = s["dtype"], s["shape"]
        if dt not in DTYPES:
            raise ProtocolError(f"array dtype {dt!r} not allowed; allowed: {sorted(DTYPES)}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(type(n) is int and 0 <= n <= payload_len + 1 for n in shape)
        ):
            raise ProtocolError(f"array shape {shape!r} is not a list of <= {MAX_NDIM} sizes")
        dtype = np.dtype(dt)
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        total += nbytes
        if total > payload_len:
            raise ProtocolError(f"arrays need more than the {payload_len} payload bytes")
        out.append((dtype, tuple(shape), nbytes))
    if total != payload_len:
        raise ProtocolError(f"arrays need {total} bytes, the payload has {payload_len}")
    return out


def decode_frame(header_bytes: bytes, payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The message of one frame: its header with arrays and tags resolved.

    **Raises:** :class:`ProtocolError` for anything that is not a valid message.
    """
    try:
        raw = json.loads(
            bytes(header_bytes).decode("utf-8"),
            parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"literal {c}")),
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ProtocolError(f"header is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("header must be a JSON object")
    specs = _array_specs(raw.pop("arrays", []), len(payload))
    arrays = []
    offset = 0
    for dtype, shape, nbytes in specs:
        a = np.frombuffer(payload, dtype=dtype, count=math.prod(shape), offset=offset)
        arrays.append(a.reshape(shape))
        offset += nbytes
    return _decode_value(raw, arrays)


def _recv_exact(sock: socket.socket, n: int, *, deadline: float | None) -> bytearray:
    """``n`` bytes from ``sock`` by ``deadline`` (``time.monotonic()`` seconds; ``None``:
    no limit).

    The buffer starts at ``min(n, RECV_CHUNK_BYTES)`` and at most doubles each time it is
    full, so it never holds more than twice the bytes that arrived plus one chunk: a peer
    that claims a large frame and sends nothing costs no memory.

    **Raises:** :class:`FrameIncomplete` after the deadline, :class:`ProtocolError` when
    the peer closes mid-frame, ``OSError``.
    """
    buf = bytearray(min(n, RECV_CHUNK_BYTES))
    got = 0
    while got < n:
        if got == len(buf):
            buf.extend(bytes(min(n, 2 * got) - got))  # zero pages: lazily backed
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise FrameIncomplete(f"frame incomplete after its time limit ({got}/{n} bytes)")
            sock.settimeout(left)
        try:
            with memoryview(buf) as view:
                k = sock.recv_into(view[got:], len(buf) - got)
        except TimeoutError:
            raise FrameIncomplete(
                f"frame incomplete after its time limit ({got}/{n} bytes)"
            ) from None
        if k == 0:
            raise ProtocolError(f"connection closed mid-frame ({got}/{n} bytes)")
        got += k
    return buf


class RawFrame(NamedTuple):
    """One frame as read, undecoded: its ``header`` and ``payload`` bytes and the protocol
    ``version`` of its prefix."""

    header: bytearray
    payload: bytearray
    version: int


def read_raw_frame(
    sock: socket.socket,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    first_byte_timeout_s: float | None,
    frame_timeout_s: float | None,
    deadline: float | None = None,
) -> RawFrame:
    """Read one frame from ``sock``, undecoded (with the version of its prefix).

    Waits up to ``first_byte_timeout_s`` (``None``: forever) for the frame to start, then
    up to ``frame_timeout_s`` (seconds) for the rest of it; ``deadline``
    (``time.monotonic()`` seconds) bounds both. The prefix's sizes are checked against the
    limits (bytes) before anything else is read.

    **Raises:** :class:`PeerClosed` (clean close before a frame), :class:`ProtocolError`
    (bad prefix, oversized or truncated frame), ``TimeoutError`` (no frame started;
    :class:`FrameIncomplete` for a started one), ``OSError``.
    """
    if deadline is not None:
        first_byte_timeout_s = _until(deadline, first_byte_timeout_s)
    sock.settimeout(first_byte_timeout_s)
    first = sock.recv(1)
    if not first:
        raise PeerClosed("the peer closed the connection")
    frame_deadline = None if frame_timeout_s is None else time.monotonic() + frame_timeout_s
    if deadline is not None:
        frame_deadline = deadline if frame_deadline is None else min(deadline, frame_deadline)
    prefix = first + bytes(_recv_exact(sock, PREFIX_BYTES - 1, deadline=frame_deadline))
    version, h_len, p_len = _parse_prefix(
        prefix, max_header_bytes=max_header_bytes, max_payload_bytes=max_payload_bytes
    )
    header = _recv_exact(sock, h_len, deadline=frame_deadline)
    payload = _recv_exact(sock, p_len, deadline=frame_deadline) if p_len else bytearray()
    return RawFrame(header, payload, version)


def read_frame_bytes(
    sock: socket.socket,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    first_byte_timeout_s: float | None,
    frame_timeout_s: float | None,
    deadline: float | None = None,
) -> tuple[bytearray, bytearray]:
    """Read one frame from ``sock``, undecoded: ``(header, payload)`` bytes (see
    :func:`read_raw_frame`, which also gives the frame's version)."""
    header, payload, _ = read_raw_frame(
        sock,
        max_header_bytes=max_header_bytes,
        max_payload_bytes=max_payload_bytes,
        first_byte_timeout_s=first_byte_timeout_s,
        frame_timeout_s=frame_timeout_s,
        deadline=deadline,
    )
    return header, payload


def _until(deadline: float, timeout_s: float | None) -> float:
    """The seconds left before ``deadline``, at most ``timeout_s`` (never below 1 ms: a
    zero timeout would make the socket non-blocking)."""
    left = max(deadline - time.monotonic(), 1e-3)
    return left if timeout_s is None else min(left, timeout_s)


def read_frame(
    sock: socket.socket,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    first_byte_timeout_s: float | None,
    frame_timeout_s: float | None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Read and decode one frame from ``sock`` (see :func:`read_frame_bytes`).

    **Raises:** what :func:`read_frame_bytes` raises, and :class:`ProtocolError` for a
    frame whose header or arrays are not a valid message.
    """
    header, payload = read_frame_bytes(
        sock,
        max_header_bytes=max_header_bytes,
        max_payload_bytes=max_payload_bytes,
        first_byte_timeout_s=first_byte_timeout_s,
        frame_timeout_s=frame_timeout_s,
        deadline=deadline,
    )
    return decode_frame(header, payload)


# -- authentication and identity -------------------------------------------------------------


def auth_digest(token: str, nonce_hex: str, session: str) -> str:
    """``HMAC-SHA256(token, "analog-hep/1" + nonce + session)`` as hex."""
    msg = b"analog-hep/1" + nonce_hex.encode("ascii") + session.encode("utf-8")
    return hmac.new(token.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def circuit_digest(circuit: Any) -> str:
    """SHA-256 of a circuit's YAML and the YAML of every device card it uses."""
    h = hashlib.sha256(circuit.text.encode("utf-8"))
    for name in sorted(circuit.device_texts):
        h.update(b"\0" + name.encode("utf-8") + b"\0" + circuit.device_texts[name].encode("utf-8"))
    return h.hexdigest()


# -- errors ----------------------------------------------------------------------------------

_ERRORS: dict[str, type[AnalogHepError]] = {
    "SpecError": SpecError,
    "UnsupportedCapability": UnsupportedCapability,
    "OutOfRange": OutOfRange,
    "NotSettled": NotSettled,
    "ConnectionLost": ConnectionLost,
    "DriverTimeout": DriverTimeout,
    "ProtocolError": ProtocolError,
    "AnalogHepError": AnalogHepError,
}


def error_to_wire(err: BaseException) -> dict[str, str]:
    """``{"type", "message"}`` of an error (the nearest analog-hep class by name)."""
    for cls in type(err).__mro__:
        if cls.__name__ in _ERRORS:
            return {"type": cls.__name__, "message": str(err)}
    return {"type": "DriverError", "message": f"{type(err).__name__}: {err}"}


def error_from_wire(err: Any, *, where: str) -> AnalogHepError:
    """The typed exception for an error reply (``ChipBusy``/``UnknownSession`` are
    :class:`ConnectionLost`; a driver bug is a plain :class:`AnalogHepError`)."""
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return ProtocolError(f"{where}: malformed error reply")
    kind, msg = err.get("type"), err["message"]
    # "retry": a transient refusal (no free slot); older servers only said so in words
    if kind == "ChipBusy" and (err.get("retry") is True or msg == "too many connections"):
        return ServerBusy(f"{where}: {msg}")
    if kind in ("ChipBusy", "UnknownSession"):
        return ConnectionLost(f"{where}: {msg}")
    if kind == "DriverError":
        return AnalogHepError(f"{where}: the served driver failed: {msg}")
    cls = _ERRORS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return AnalogHepError(f"{where}: {kind}: {msg}")
    return cls(msg)


# -- strict readers for decoded messages -----------------------------------------------------


def _field(obj: Any, key: str, kinds: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise OutOfRange(f"{what}: missing field {key!r}")
    v = obj[key]
    if isinstance(v, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise OutOfRange(f"{what}: field {key!r} must be {kinds}, found a bool")
    if not isinstance(v, kinds):
        raise OutOfRange(f"{what}: field {key!r} has type {type(v).__name__}")
    return v


def float32_array(a: Any, what: str) -> np.ndarray:
    """``a`` when it is a float32 array (what the client sends for every array argument);
    :class:`OutOfRange` otherwise."""
    if not isinstance(a, np.ndarray):
        raise OutOfRange(f"{what} must be an array, found {type(a).__name__}")
    if a.dtype != np.float32:
        raise OutOfRange(f"{what} must be float32 on the wire, found {a.dtype}")
    return a


# -- description -----------------------------------------------------------------------------


def conv_crossbars(desc: ChipDescription) -> tuple[str, ...]:
    """The names of ``desc``'s conv crossbars (those with a geometry)."""
    return tuple(c.name for c in desc.crossbars if c.geometry is not None)


def crossbar_to_wire(c: CrossbarInfo) -> dict[str, Any]:
    """One crossbar as an object; ``geometry`` (:meth:`ConvGeometry.to_dict`) only for a
    conv crossbar, so a dense crossbar reads the same in every protocol version."""
    out: dict[str, Any] = {
        "name": c.name,
        "n_out": c.n_out,
        "n_in": c.n_in,
        "has_bias": c.has_bias,
        "pre": c.pre,
        "post": c.post,
    }
    if c.geometry is not None:
        out["geometry"] = c.geometry.to_dict()
    return out


def description_to_wire(
    desc: ChipDescription, *, version: int = PROTOCOL_VERSION
) -> dict[str, Any]:
    """``desc`` as an object for a connection of protocol ``version``.

    **Raises:** ``ValueError`` for a chip with conv crossbars and a version before
    :data:`CONV_PROTOCOL_VERSION` (the server refuses such a client at its hello).
    """
    if version < CONV_PROTOCOL_VERSION and conv_crossbars(desc):
        raise ValueError(
            f"protocol {version} cannot describe the conv crossbars {list(conv_crossbars(desc))}"
        )
    out = asdict(desc)
    out["crossbars"] = [crossbar_to_wire(c) for c in desc.crossbars]
    out["extra"] = json.loads(json.dumps(desc.extra, default=str))
    return out


_GEOMETRY_INTS = ("channels", "kernel", "stride", "padding", "pool_size")
_GEOMETRY_FIELDS = frozenset({"in_shape", "pool", "temperature", *_GEOMETRY_INTS})


def geometry_from_wire(d: Any, what: str) -> ConvGeometry | None:
    """A crossbar's ``geometry`` from its wire form: ``None`` (absent or null: dense), or an
    object of exactly :meth:`ConvGeometry.to_dict`'s fields, every one type-checked.

    **Raises:** :class:`OutOfRange` naming the field.
    """
    if d is None:
        return None
    if not isinstance(d, dict) or set(d) != _GEOMETRY_FIELDS:
        found = sorted(d) if isinstance(d, dict) else type(d).__name__
        raise OutOfRange(
            f"{what}: geometry must be an object with fields {sorted(_GEOMETRY_FIELDS)}, "
            f"found {short(found)}"
        )
    shape = d["in_shape"]
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(type(n) is int and n >= 1 for n in shape)
    ):
        raise OutOfRange(
            f"{what}: geometry in_shape must be [C, H, W] of sizes >= 1, found {short(shape)}"
        )
    for k in _GEOMETRY_INTS:
        least = 0 if k == "padding" else 1  # sizes; a zero pool_size would divide by zero
        if type(d[k]) is not int or d[k] < least:
            raise OutOfRange(
                f"{what}: geometry {k} must be an integer >= {least}, found {short(d[k])}"
            )
    if not isinstance(d["pool"], str):
        raise OutOfRange(f"{what}: geometry pool must be a name, found {short(d['pool'])}")
    if real_number(d["temperature"]) is None:
        raise OutOfRange(
            f"{what}: geometry temperature must be a finite number, found {short(d['temperature'])}"
        )
    try:
        return ConvGeometry.from_dict({**d, "temperature": float(d["temperature"])})
    except GeometryError as err:
        raise OutOfRange(f"{what}: geometry {err.field}: {err}") from None


def _update_schemes(caps: dict[str, Any], what: str) -> tuple[str, ...]:
    """``capabilities.update_schemes``: a non-empty list of names; ``("direct",)`` when the
    peer does not send the field (it predates it)."""
    if "update_schemes" not in caps:
        return ("direct",)
    names = _field(caps, "update_schemes", list, what)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise OutOfRange(f"{what}: update_schemes must be a non-empty list of names")
    return tuple(names)


def description_from_wire(d: Any) -> ChipDescription:
    """A :class:`ChipDescription` from its wire form, every field type-checked."""
    what = "chip description"
    try:
        caps_d = _field(d, "capabilities", dict, what)
        caps = Capabilities(
            **{
                k: _field(caps_d, k, bool, what)
                for k in (
                    "complex_nudges",
                    "previous_start",
                    "outer_product_update",
                    "program_delta",
                    "checkpoint",
                )
            },
            max_batch=_field(caps_d, "max_batch", (int, type(None)), what),
            max_points=_field(caps_d, "max_points", (int, type(None)), what),
            beta_max=_field(caps_d, "beta_max", (int, float, type(None)), what),
            update_schemes=_update_schemes(caps_d, what),
        )
        xbs = []
        for c in _field(d, "crossbars", list, what):
            xbs.append(
                CrossbarInfo(
                    name=_field(c, "name", str, what),
                    n_out=_field(c, "n_out", int, what),
                    n_in=_field(c, "n_in", int, what),
                    has_bias=_field(c, "has_bias", bool, what),
                    pre=_field(c, "pre", int, what),
                    post=_field(c, "post", int, what),
                    geometry=geometry_from_wire(c.get("geometry"), f"{what}: crossbar"),
                )
            )
        layers = tuple(_field(d, "layers", list, what))
        if not all(type(n) is int and n >= 0 for n in layers):
            raise OutOfRange(f"{what}: layers must be sizes")
        loss = _field(d, "loss", str, what)
        if loss not in ("cross_entropy", "mse"):
            raise OutOfRange(f"{what}: unknown loss {loss!r}")
        dt_s = _field(d, "dt_s", (int, float, type(None)), what)
        desc = ChipDescription(
            name=_field(d, "name", str, what),
            driver=_field(d, "driver", str, what),
            layers=layers,
            classes=_field(d, "classes", int, what),
            loss=loss,  # type: ignore[arg-type]
            crossbars=tuple(xbs),
            capabilities=caps,
            free_steps=_field(d, "free_steps", int, what),
            nudge_steps=_field(d, "nudge_steps", int, what),
            dt_s=None if dt_s is None else float(dt_s),
            holomorphic=_field(d, "holomorphic", bool, what),
            extra=_field(d, "extra", dict, what),
        )
        check_description(desc)
        return desc
    except OutOfRange as err:
        raise ProtocolError(str(err)) from None


# -- messages --------------------------------------------------------------------------------


def schedule_to_wire(s: NudgeSchedule) -> dict[str, Any]:
    return {
        "betas": [complex(b) for b in s.betas],
        "free_steps": s.free_steps,
        "nudge_steps": s.nudge_steps,
        "start": s.start,
    }


def schedule_from_wire(d: Any) -> NudgeSchedule:
    what = "run_schedule"
    betas = _field(d, "betas", list, what)
    if len(betas) > MAX_POINTS:
        raise OutOfRange(f"{len(betas)} nudge points exceed {MAX_POINTS}")
    out = []
    for b in betas:
        if isinstance(b, complex):
            out.append(b)
            continue
        f = real_number(b)
        if f is None:  # non-finite floats arrive as numbers too: check_schedule names them
            if not isinstance(b, float):
                raise OutOfRange(f"{what}: beta {short(b)} is not a finite number")
            f = b
        out.append(complex(f))
    fs = _field(d, "free_steps", (int, type(None)), what)
    ns = _field(d, "nudge_steps", (int, type(None)), what)
    start = _field(d, "start", str, what)
    return NudgeSchedule(betas=tuple(out), free_steps=fs, nudge_steps=ns, start=start)  # type: ignore[arg-type]


def _np(a: Any) -> np.ndarray | None:
    return None if a is None else np.asarray(a)


def settled_to_wire(s: Settled) -> dict[str, Any]:
    """``s`` as an object; ``free_post``/``post`` (``{name: array}``) only when the chip
    returned them (conv crossbars), so a dense chip's reply is the same in every version."""
    out = {
        "free_states": [np.asarray(a) for a in s.free_states],
        "free_logits": _np(s.free_logits),
        "free_residual": np.asarray(s.free_residual),
        "betas": np.asarray(s.betas),
        "states": [np.asarray(a) for a in s.states],
        "logits": _np(s.logits),
        "residual": np.asarray(s.residual),
    }
    for key in ("free_post", "post"):
        signals = getattr(s, key)
        if signals is not None:
            out[key] = {str(n): np.asarray(v) for n, v in signals.items()}
    return out


def _signals_from_wire(v: Any, key: str, what: str) -> dict[str, np.ndarray] | None:
    """``free_post``/``post``: absent or null (no conv crossbars), or ``{name: array}``."""
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(a, np.ndarray) for a in v.values()):
        raise OutOfRange(f"{what}: {key} must be an object of arrays, found {short(v)}")
    return dict(v)


def settled_from_wire(d: Any) -> Settled:
    what = "settled states"
    try:

        def arr(v: Any, optional: bool = False) -> np.ndarray | None:
            if v is None and optional:
                return None
            if not isinstance(v, np.ndarray):
                raise OutOfRange(f"{what}: expected an array, found {type(v).__name__}")
            return v

        return Settled(
            free_states=tuple(arr(a) for a in _field(d, "free_states", list, what)),
            free_logits=arr(d.get("free_logits"), True),
            free_residual=arr(_field(d, "free_residual", np.ndarray, what)),
            betas=arr(_field(d, "betas", np.ndarray, what)),
            states=tuple(arr(a) for a in _field(d, "states", list, what)),
            logits=arr(d.get("logits"), True),
            residual=arr(_field(d, "residual", np.ndarray, what)),
            free_post=_signals_from_wire(d.get("free_post"), "free_post", what),
            post=_signals_from_wire(d.get("post"), "post", what),
        )
    except OutOfRange as err:
        raise ProtocolError(str(err)) from None


def report_to_wire(r: UpdateReport) -> dict[str, Any]:
    return {
        "crossbar": str(r.crossbar),
        "pulses": int(r.pulses),
        "clipped_bound": int(r.clipped_bound),
        "clipped_request": int(r.clipped_request),
        "requested_norm": float(r.requested_norm),
        "realised_norm": float(r.realised_norm),
    }


def report_from_wire(d: Any) -> UpdateReport:
    what = "update report"
    try:
        return UpdateReport(
            crossbar=_field(d, "crossbar", str, what),
            pulses=_field(d, "pulses", int, what),
            clipped_bound=_field(d, "clipped_bound", int, what),
            clipped_request=_field(d, "clipped_request", int, what),
            requested_norm=float(_field(d, "requested_norm", (int, float), what)),
            realised_norm=float(_field(d, "realised_norm", (int, float), what)),
        )
    except OutOfRange as err:
        raise ProtocolError(str(err)) from None


def weights_to_wire(w: Mapping[str, tuple[Any, Any]]) -> dict[str, Any]:
    return {n: [np.asarray(a), np.asarray(b)] for n, (a, b) in w.items()}


def weights_from_wire(d: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if not isinstance(d, dict):
        raise ProtocolError("weights must be an object")
    out = {}
    for n, v in d.items():
        if not isinstance(v, list) or len(v) != 2 or not all(isinstance(a, np.ndarray) for a in v):
            raise ProtocolError(f"weights of {n!r} must be [W, b] arrays")
        out[n] = (v[0], v[1])
    return out


def state_from_wire(d: Any) -> dict[str, np.ndarray]:
    if not isinstance(d, dict) or not all(isinstance(a, np.ndarray) for a in d.values()):
        raise OutOfRange("a state dict must be an object of arrays")
    return dict(d)
