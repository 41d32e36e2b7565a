"""The remote client driver: ``--driver tcp://HOST:PORT[?KEY=VALUE&...]``.

:class:`RemoteDriver` meets the :class:`~analog_hep.drivers.Driver` protocol by talking to
``analog-hep serve`` over TCP (wire protocol: :mod:`analog_hep.drivers._wire`). It needs
neither the emulator nor JAX on this side of the wire.

- Every argument is checked against the chip's description *before* any I/O (shapes, dtypes,
  finite values, capabilities, ``beta_max``, ``max_batch``), by the operation's entry of the
  table in :mod:`analog_hep.drivers._operations` (the checks the server makes): a bad call
  raises :class:`OutOfRange` or :class:`UnsupportedCapability` and nothing is sent.
- Every request carries an id. When the link breaks, the client reconnects (for up to
  ``reconnect_s``), takes its session back and re-sends the same request with the same id;
  the server answers a request it already executed from its reply cache, so an update is
  never applied twice.
- The protocol version is agreed per connection: the server's welcome names the newest
  version it speaks, and the client speaks ``min(that, its own)`` (a version 1 server
  drives a dense chip as before; a conv chip needs version 2 on both ends).
- Every reply of ``run_schedule`` is checked against the description (each conv
  crossbar's post-synaptic signals present, of their shapes): a malformed one is a
  :class:`ConnectionLost`.
- Failures are typed: :class:`ConnectionLost` (server gone for longer than ``reconnect_s``,
  server restarted and lost the run's chip, chip busy, malformed reply),
  :class:`DriverTimeout` (no reply within ``timeout_s``), and the server's own errors
  (:class:`OutOfRange`, :class:`NotSettled`, ...) re-raised with their type. The training
  loop then checkpoints and stops with a ``--resume`` hint.

- Opening retries what is transient: a refused or reset connect (the server is starting),
  a connection closed before the hello was answered (the server made room for newer
  unauthenticated connections), a ``ChipBusy`` error marked ``"retry"`` (no free slot).
  Attempts back off from 0.05 s, doubling to 1 s, and none starts later than
  ``connect_retry_s`` after the first; then :class:`ConnectionLost`. A chip held by another
  client, a failed authentication or a circuit mismatch are not retried.

Address options (``tcp://127.0.0.1:7100?timeout_s=60&reconnect_s=5``): ``timeout_s`` (reply
wait per call, default 300 s: the first settle on a fresh server compiles),
``connect_timeout_s`` (TCP connect and handshake, default 10 s), ``connect_retry_s`` (how
long opening retries, default 10 s), ``reconnect_s`` (how long to retry a broken link,
default 10 s), ``token_file`` (shared secret for a server that requires one; or set
``ANALOG_HEP_TOKEN_FILE``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from .. import __version__
from ..errors import (
    AnalogHepError,
    ConnectionLost,
    DriverTimeout,
    OutOfRange,
    SpecError,
)
from . import _wire as w
from ._operations import OPERATIONS
from ._protocol import ChipDescription, NudgeSchedule, Settled, UpdateReport
from .validate import check_post

__all__ = ["RemoteDriver", "parse_address", "read_token_file"]

_OPTIONS = {"timeout_s", "connect_timeout_s", "connect_retry_s", "reconnect_s", "token_file"}
_BACKOFF_FIRST_S = 0.05  # first pause between two connection attempts (s)
_BACKOFF_MAX_S = 1.0  # longest pause between two connection attempts (s)


def read_token_file(path: str | os.PathLike[str]) -> str:
    """The token in ``path`` (surrounding whitespace stripped); :class:`SpecError` if the
    file cannot be read or holds fewer than 16 characters."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise SpecError(f"token file {path}: {err.strerror or err}") from None
    if len(token) < 16:
        raise SpecError(f"token file {path}: the token must be at least 16 characters long")
    return token


def parse_address(address: str) -> tuple[str, int, dict[str, str]]:
    """``HOST:PORT[?K=V&...]`` (``tcp://`` optional, ``[::1]:PORT`` for IPv6) ->
    ``(host, port, options)``.

    **Raises:** :class:`SpecError` naming what is wrong.
    """
    text = address[len("tcp://") :] if address.startswith("tcp://") else address
    where, _, query = text.partition("?")
    if where.startswith("["):
        host, sep, rest = where[1:].partition("]")
        port_s = rest[1:] if rest.startswith(":") else ""
        if not sep:
            port_s = ""
    else:
        host, _, port_s = where.rpartition(":")
    if not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise SpecError(f"--driver tcp://{text}: expected tcp://HOST:PORT[?KEY=VALUE&...]")
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in _OPTIONS:
            raise SpecError(
                f"--driver tcp://{text}: unknown option {key!r}; "
                f"known: {', '.join(sorted(_OPTIONS))}"
            )
        options[key] = value
    return host, int(port_s), options


def _seconds(
    options: dict[str, str], key: str, default: float, address: str, *, zero_ok: bool = False
) -> float:
    """Option ``key`` in seconds (finite, positive; zero too when ``zero_ok``)."""
    if key not in options:
        return default
    try:
        v = float(options[key])
    except ValueError:
        v = -1.0
    if not (v >= 0 if zero_ok else v > 0) or not math.isfinite(v):
        what = "a non-negative" if zero_ok else "a positive"
        raise SpecError(f"--driver {address}: {key} must be {what} number of seconds")
    return v


class RemoteDriver:
    """A chip served by ``analog-hep serve`` on another process or machine.

    **Arguments:**

    - ``host``, ``port``: the server.
    - ``circuit``: the run's circuit; the server refuses a different one.
    - ``seed``: the run seed; the server opens its driver with it (same noise as in process).
    - ``token``: the shared secret when the server requires one.
    - ``timeout_s``: how long one call waits for its reply (s).
    - ``connect_timeout_s``: TCP connect plus handshake (s); opening the served driver is
      part of the first call's ``timeout_s``.
    - ``connect_retry_s``: how long opening retries a refused connect, a busy server or a
      connection it closed during the handshake (s): no attempt starts later than this after
      the first one.
    - ``reconnect_s``: how long a broken link is retried before :class:`ConnectionLost` (s).

    **Raises:** :class:`ConnectionLost` if the server cannot be reached, :class:`SpecError`
    for a circuit mismatch or a failed authentication.
    """

    name = "tcp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        circuit: Any,
        seed: int,
        token: str | None = None,
        timeout_s: float = 300.0,
        connect_timeout_s: float = 10.0,
        connect_retry_s: float = 10.0,
        reconnect_s: float = 10.0,
        max_frame_bytes: int = w.DEFAULT_MAX_PAYLOAD_BYTES,
    ):
        self.host, self.port = host, int(port)
        self.where = f"tcp://{host}:{port}" if ":" not in host else f"tcp://[{host}]:{port}"
        self.seed = int(seed)
        self.token = token
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.connect_retry_s = float(connect_retry_s)
        self.reconnect_s = float(reconnect_s)
        self.max_frame_bytes = int(max_frame_bytes)
        self._digest = w.circuit_digest(circuit)
        self._session = secrets.token_hex(16)
        self._sock: socket.socket | None = None
        self._next_id = 1
        self._version = w.PROTOCOL_VERSION  # the connection's, agreed at each welcome
        self._closed = False
        self._lock = threading.Lock()  # one request in flight (the protocol is sequential)
        self.reconnects = 0
        self.requests_sent = 0
        try:
            desc = self._open_retrying()
        except TimeoutError:
            raise DriverTimeout(
                f"{self.where} did not open its chip within {self.timeout_s:g} s"
            ) from None
        except w.ServerBusy as err:
            raise ConnectionLost(
                f"{err} (still so after retrying for {self.connect_retry_s:g} s)"
            ) from None
        except w.PeerClosed:
            raise ConnectionLost(
                f"{self.where} closed every connection before answering the hello (retried "
                f"for {self.connect_retry_s:g} s)"
            ) from None
        except ConnectionLost:
            raise
        except OSError as err:
            raise ConnectionLost(
                f"cannot reach the chip server at {self.where}: {_why(err)} (is `analog-hep "
                f"serve` running there? retried for {self.connect_retry_s:g} s)"
            ) from None
        self._desc = dataclasses.replace(desc, driver=f"{self.where} ({desc.driver})")

    @classmethod
    def connect(cls, address: str, *, circuit: Any, seed: int) -> RemoteDriver:
        """Open ``address`` (``HOST:PORT[?KEY=VALUE&...]``, see the module docs)."""
        host, port, opts = parse_address(address)
        token_file = opts.get("token_file") or os.environ.get("ANALOG_HEP_TOKEN_FILE")
        return cls(
            host,
            port,
            circuit=circuit,
            seed=seed,
            token=read_token_file(token_file) if token_file else None,
            timeout_s=_seconds(opts, "timeout_s", 300.0, address),
            connect_timeout_s=_seconds(opts, "connect_timeout_s", 10.0, address),
            connect_retry_s=_seconds(opts, "connect_retry_s", 10.0, address, zero_ok=True),
            reconnect_s=_seconds(opts, "reconnect_s", 10.0, address),
        )

    # -- the link ----------------------------------------------------------------------------

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _open(self, *, reconnect: bool, timeout_s: float) -> ChipDescription:
        """Connect, authenticate and say hello; on success ``self._sock`` is the link."""
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            welcome = w.read_frame(
                sock,
                max_header_bytes=w.PREAUTH_MAX_FRAME_BYTES,
                max_payload_bytes=w.PREAUTH_MAX_FRAME_BYTES,
                first_byte_timeout_s=self.connect_timeout_s,
                frame_timeout_s=self.connect_timeout_s,
            )
            if welcome.get("type") != "welcome" or not isinstance(welcome.get("nonce"), str):
                err = welcome.get("error")
                if isinstance(err, dict):
                    raise w.error_from_wire(err, where=self.where)
                raise w.ProtocolError(f"{self.where} did not greet as an analog-hep server")
            version = _agreed_version(welcome.get("protocol"), self.where)
            auth = None
            if welcome.get("auth") == "hmac-sha256":
                if not self.token:
                    raise SpecError(
                        f"{self.where} requires a token: add ?token_file=FILE to the address or "
                        "set ANALOG_HEP_TOKEN_FILE"
                    )
                auth = w.auth_digest(self.token, welcome["nonce"], self._session)
            hello = {
                "id": 0,
                "op": "hello",
                "args": {
                    "session": self._session,
                    "reconnect": reconnect,
                    "seed": self.seed,
                    "circuit_sha256": self._digest,
                    "auth": auth,
                    "client": f"analog-hep {__version__}",
                },
            }
            sock.settimeout(self.connect_timeout_s)
            sock.sendall(w.encode_frame(hello, version=version))
            reply = w.read_frame(
                sock,
                max_payload_bytes=self.max_frame_bytes,
                first_byte_timeout_s=timeout_s,
                frame_timeout_s=timeout_s,
            )
            if not reply.get("ok"):
                raise w.error_from_wire(reply.get("error"), where=self.where)
            result = reply.get("result")
            desc = w.description_from_wire(
                result.get("description") if isinstance(result, dict) else None
            )
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._version = version
        return desc

    def _open_retrying(self) -> ChipDescription:
        """:meth:`_open` for a new session, retrying transient refusals for up to
        ``connect_retry_s`` with exponential backoff."""
        deadline = time.monotonic() + self.connect_retry_s
        delay_s = _BACKOFF_FIRST_S
        while True:
            try:
                return self._open(reconnect=False, timeout_s=self.timeout_s)
            except ConnectionLost as err:  # the server answered: retry only "no slot now"
                if not isinstance(err, (w.ServerBusy, w.PeerClosed)):
                    raise
                if time.monotonic() + delay_s > deadline:
                    raise
            except TimeoutError:
                raise  # it already took connect_timeout_s or timeout_s
            except OSError:  # refused or reset: the server is starting or made room
                if time.monotonic() + delay_s > deadline:
                    raise
            time.sleep(delay_s)
            delay_s = min(2 * delay_s, _BACKOFF_MAX_S)

    def _reconnect(self, cause: BaseException, op: str) -> None:
        """Retry the link for ``reconnect_s``; :class:`ConnectionLost` when it stays down."""
        deadline = time.monotonic() + self.reconnect_s
        delay_s = 0.05
        last: BaseException = cause
        while True:
            try:
                self._open(reconnect=True, timeout_s=self.timeout_s)
                self.reconnects += 1
                return
            except ConnectionLost as err:
                if not isinstance(err, (w.ProtocolError, w.PeerClosed, w.ServerBusy)):
                    raise  # the server answered: it lost our chip, or someone else holds it
                last = err
            except (OSError, TimeoutError) as err:
                last = err
            if time.monotonic() + delay_s > deadline:
                raise ConnectionLost(
                    f"lost the chip at {self.where} during {op} ({_why(cause)}); no answer for "
                    f"{self.reconnect_s:g} s ({_why(last)})"
                ) from None
            time.sleep(delay_s)
            delay_s = min(2 * delay_s, 1.0)

    def _request(self, name: str, /, **call: Any) -> Any:
        """Make driver call ``name`` through its entry of the operation table: encode the
        arguments, check them as the server will (before any I/O), send them, decode the
        result."""
        op = OPERATIONS[name]
        args = op.request.encode(call)
        op.check(self._desc, op.request.decode(args))
        result = self._call(name, args)
        try:
            return op.reply.decode(result)
        except OutOfRange as err:
            raise ConnectionLost(f"{self.where} sent a malformed {name} reply: {err}") from None

    def _call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._call_locked(op, args)

    def _call_locked(self, op: str, args: dict[str, Any] | None) -> Any:
        if self._closed:
            raise ConnectionLost(f"the remote driver {self.where} is closed")
        rid = self._next_id
        self._next_id += 1
        frame = w.encode_frame({"id": rid, "op": op, "args": args or {}}, version=self._version)
        if len(frame) - w.PREFIX_BYTES > self.max_frame_bytes:
            raise OutOfRange(f"{op}: request of {len(frame)} bytes exceeds max_frame_bytes")
        while True:
            try:
                if self._sock is None:
                    self._reconnect(ConnectionLost("link down"), op)
                assert self._sock is not None
                self._sock.settimeout(self.timeout_s)
                # the version agreed with the server (again after a reconnect)
                self._sock.sendall(w.with_version(frame, self._version))
                self.requests_sent += 1
                reply = w.read_frame(
                    self._sock,
                    max_payload_bytes=self.max_frame_bytes,
                    first_byte_timeout_s=self.timeout_s,
                    frame_timeout_s=self.timeout_s,
                )
            except TimeoutError:
                self._drop()
                raise DriverTimeout(
                    f"{op} got no reply from {self.where} within {self.timeout_s:g} s (raise "
                    "timeout_s in the address if the chip is just slow)"
                ) from None
            except w.ProtocolError as err:
                self._drop()
                raise ConnectionLost(
                    f"{self.where} sent a malformed reply to {op}: {err}"
                ) from None
            except (w.PeerClosed, OSError) as err:
                if isinstance(err, ConnectionLost) and not isinstance(err, w.PeerClosed):
                    raise
                self._drop()
                self._reconnect(err, op)
                continue  # re-send the same request id: never applied twice
            break
        if reply.get("id") != rid:
            if reply.get("ok") is False and reply.get("id") is None:
                self._drop()
                raise w.error_from_wire(reply.get("error"), where=self.where)
            self._drop()
            raise ConnectionLost(f"{self.where} answered request {reply.get('id')!r}, not {rid}")
        if not reply.get("ok"):
            raise w.error_from_wire(reply.get("error"), where=self.where)
        return reply.get("result")

    # -- the driver protocol -----------------------------------------------------------------

    def describe(self) -> ChipDescription:
        """The served chip's description (fetched at connect; ``driver`` names the link)."""
        return self._desc

    def load_inputs(self, x: Any, y: Any | None) -> None:
        self._request("load_inputs", x=x, y=y)

    def run_schedule(self, schedule: NudgeSchedule) -> Settled:
        settled = self._request("run_schedule", schedule=schedule)
        try:
            check_post(self._desc, settled)
        except OutOfRange as err:
            raise ConnectionLost(
                f"{self.where} sent a malformed run_schedule reply: {err}"
            ) from None
        return settled

    def apply_outer_product(self, name: str, rows: Any, cols: Any, *, lr: float) -> UpdateReport:
        return self._request("apply_outer_product", name=name, rows=rows, cols=cols, lr=lr)

    def program_delta(self, name: str, delta_w: Any) -> UpdateReport:
        return self._request("program_delta", name=name, delta_w=delta_w)

    def read_weights(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self._request("read_weights")

    def state_dict(self) -> dict[str, np.ndarray]:
        return self._request("state_dict")

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self._request("load_state_dict", state=state)

    def ping(self) -> float:
        """Round-trip time of an empty request (s)."""
        t0 = time.perf_counter()
        self._request("ping")
        return time.perf_counter() - t0

    def close(self) -> None:
        """End the session (the server closes its driver) and the link; idempotent."""
        if self._closed:
            return
        try:
            if self._sock is not None:
                self.timeout_s = min(self.timeout_s, 10.0)
                self.reconnect_s = 0.0
                self._request("close")
        except AnalogHepError:
            pass  # the server is gone already: nothing left to release
        finally:
            self._closed = True
            self._drop()

    def __enter__(self) -> RemoteDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _agreed_version(offered: Any, where: str) -> int:
    """The protocol version of a connection: the newest both sides speak, from the newest
    the server's welcome names (``offered``).

    **Raises:** :class:`~._wire.ProtocolError` when the server names no version this
    client speaks.
    """
    if type(offered) is not int or offered < w.MIN_PROTOCOL_VERSION:
        raise w.ProtocolError(
            f"{where} speaks protocol version {offered!r}; this client speaks versions "
            f"{w.MIN_PROTOCOL_VERSION} to {w.PROTOCOL_VERSION}"
        )
    return min(offered, w.PROTOCOL_VERSION)


def _why(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) < 200 else text[:200] + "..."
