"""Serve one driver over TCP: ``analog-hep serve`` and :class:`DriverServer`.

The server wraps any registered driver (the emulator or a lab's chip) behind the wire
protocol of :mod:`analog_hep.drivers._wire`. Rules it keeps:

- It binds to loopback unless told otherwise; on any other address a token is required
  (HMAC challenge-response: the token never crosses the wire).
- One controlling client at a time. A client owns a *session* (its run): the server opens
  the driver for it with the client's seed (``open_driver(name, circuit, seed=...)``), so a
  remote run draws the same noise as an in-process one. A client that reconnects with its
  session id takes its chip back; a new client is refused while the owner is connected and
  gets a freshly opened driver once it is gone.
- Unauthenticated connections cannot starve the owner: a new connection has
  ``handshake_timeout_s`` in all to authenticate, and waits in a pool of its own
  (``max_preauth``) whose oldest member is closed when a new one arrives and the pool is
  full; authenticated connections have their own limit (``max_connections``), refused with
  a ``ChipBusy`` error marked ``"retry": true`` that clients retry.
- Every request is checked (frame size, dtypes, shapes, capabilities, finite values, request
  id) before the driver sees it, through its entry of the operation table
  (:mod:`analog_hep.drivers._operations`, with the validators of
  :mod:`analog_hep.drivers.validate`: the client's own checks); malformed input gets a typed
  error reply (``ProtocolError`` for the envelope, ``OutOfRange`` for arguments) and never
  reaches the chip. The connection stays open unless the framing itself is broken.
- Replies are cached per request id, so a request re-sent after a reconnect is answered
  again, not applied twice; an id at or below the session's highest executed id that is
  no longer cached is refused, never executed.
- A frame's buffer grows as its bytes arrive (never the claimed size up front); a frame
  not complete within ``frame_timeout_s`` gets a ``ProtocolError`` reply and the
  connection is closed.
- :meth:`DriverServer.shutdown` (SIGINT/SIGTERM in ``analog-hep serve``) stops accepting,
  lets a running chip call finish, closes the driver and returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import secrets
import selectors
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import __version__
from ..errors import AnalogHepError, OutOfRange, SpecError
from . import _wire as w
from ._operations import OPERATIONS, Request, request_from_message, request_id
from ._protocol import ChipDescription, Driver
from ._registry import available_drivers, open_driver, parse_driver_arg

__all__ = ["DriverServer", "is_loopback"]

_REPLY_CACHE_ENTRIES = 16
_REPLY_CACHE_BYTES = 256 << 20


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only the loopback interface (``127.0.0.0/8``, ``::1``,
    ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Session:
    """One client's run: its driver, description, the replies per request id, and the
    highest request id that reached the driver (``highest``)."""

    def __init__(self, sid: str, seed: int, driver: Driver, desc: ChipDescription):
        self.id = sid
        self.seed = seed
        self.driver = driver
        self.desc = desc
        self.lock = threading.Lock()  # one chip call at a time
        self.owner: socket.socket | None = None
        self.replies: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self._bytes = 0
        self.highest = w.HELLO_ID
        self.state_ref: dict[str, np.ndarray] | None = None

    def remember(self, rid: int, digest: bytes, reply: bytes) -> None:
        self.highest = max(self.highest, rid)
        self.replies[rid] = (digest, reply)
        self._bytes += len(reply)
        while len(self.replies) > _REPLY_CACHE_ENTRIES or (
            self._bytes > _REPLY_CACHE_BYTES and len(self.replies) > 1
        ):
            _, (_, old) = self.replies.popitem(last=False)
            self._bytes -= len(old)


class DriverServer:
    """Serve one driver over TCP with the analog-hep wire protocol.

    **Arguments:**

    - ``circuit``: the loaded :class:`analog_hep.spec.Circuit` the chip implements; clients
      must present the same circuit (SHA-256 of its YAML and device cards).
    - ``driver``: ``NAME[:KEY=VALUE,...]`` of a registered driver (default ``emulator``).
    - ``host``, ``port``: where to listen (``port=0``: any free port; see :attr:`address`).
    - ``token``: shared secret; required unless ``host`` is loopback (then optional).
    - ``max_frame_bytes``: largest payload accepted from an authenticated client (bytes).
    - ``handshake_timeout_s``: time a new connection has, from its accept, to send a valid
      hello (s); then it is closed.
    - ``frame_timeout_s``: time to receive the rest of a started frame (s).
    - ``idle_timeout_s``: an owner's connection silent this long is closed (s; the session
      stays, the client can reconnect).
    - ``max_connections``: concurrent authenticated connections; a hello beyond it gets a
      ``ChipBusy`` error marked ``"retry": true``.
    - ``max_preauth``: concurrent connections not yet authenticated; when a new one arrives
      with the pool full, the oldest is closed.
    - ``log``: where one-line events go (default: stderr).

    **Raises:** :class:`SpecError` for a non-loopback host without a token, an unknown
    driver, or an address that cannot be bound.
    """

    def __init__(
        self,
        circuit: Any,
        *,
        driver: str = "emulator",
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        max_frame_bytes: int = w.DEFAULT_MAX_PAYLOAD_BYTES,
        handshake_timeout_s: float = 5.0,
        frame_timeout_s: float = 30.0,
        idle_timeout_s: float = 3600.0,
        max_connections: int = 8,
        max_preauth: int = 16,
        log: Callable[[str], None] | None = None,
    ):
        if not is_loopback(host) and not token:
            raise SpecError(
                f"--host {host}: serving beyond loopback needs --token-file (a shared secret "
                "clients present); bind 127.0.0.1 and tunnel (ssh -L) otherwise"
            )
        if token is not None and len(token) < 16:
            raise SpecError("the token must be at least 16 characters long")
        name, _ = parse_driver_arg(driver)
        if name == "tcp":
            raise SpecError("--driver: a server serves a local driver, not tcp://")
        if name not in available_drivers():
            raise SpecError(
                f"--driver {driver}: no driver named {name!r}; registered: "
                f"{', '.join(sorted(available_drivers()))}"
            )
        self.circuit = circuit
        self.driver_arg = driver
        self.token = token
        self.max_frame_bytes = int(max_frame_bytes)
        self.handshake_timeout_s = float(handshake_timeout_s)
        self.frame_timeout_s = float(frame_timeout_s)
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_connections = int(max_connections)
        self.max_preauth = int(max_preauth)
        if self.max_connections < 1 or self.max_preauth < 1:
            raise SpecError("max_connections and max_preauth must be at least 1")
        self._log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self._digest = w.circuit_digest(circuit)
        # Conv crossbars need protocol version 2: older clients are refused at their hello.
        spec = circuit.spec
        geoms = tuple(getattr(spec, "geometries", ()) or ())
        self._conv_crossbars = tuple(
            n
            for n, g in zip(spec.crossbar_names[: len(geoms)], geoms, strict=True)
            if g is not None
        )
        self._session: _Session | None = None
        self._opening = False
        self._state = threading.Lock()  # guards _session, _conns, _preauth and _authed
        self._conns: dict[socket.socket, threading.Thread] = {}
        # not yet authenticated, oldest first: socket -> its handshake deadline (monotonic s)
        self._preauth: OrderedDict[socket.socket, float] = OrderedDict()
        self._authed: set[socket.socket] = set()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(16)
        except OSError as err:
            sock.close()
            raise SpecError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
        sock.setblocking(False)
        self._sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]

    # -- running -----------------------------------------------------------------------------

    def serve_forever(self, *, poll_s: float = 0.2) -> None:
        """Accept connections until :meth:`shutdown`; then close everything and return."""
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if not sel.select(timeout=poll_s):
                    continue
                try:
                    conn, peer = self._sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                self._accept(conn, peer)
        finally:
            sel.close()
            self._close_all()
            self._stopped.set()

    def start(self) -> DriverServer:
        """Serve in a background thread (tests, notebooks); returns ``self``."""
        self._thread = threading.Thread(target=self.serve_forever, name="analog-hep-serve")
        self._thread.start()
        return self

    def shutdown(self, *, timeout_s: float = 30.0) -> None:
        """Stop serving: no new connections, running calls finish, the driver is closed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        else:
            self._stopped.wait(timeout_s)

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop (safe from a signal handler)."""
        self._stop.set()

    def __enter__(self) -> DriverServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def session_driver(self) -> Driver | None:
        """The driver of the current session (tests and introspection)."""
        s = self._session
        return None if s is None else s.driver

    def _close_all(self) -> None:
        self._sock.close()
        with self._state:
            conns = list(self._conns.items())
        for c, _ in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for _, t in conns:
            t.join(self.frame_timeout_s)
        s = self._session
        if s is not None:
            got = s.lock.acquire(timeout=self.frame_timeout_s)
            try:
                self._close_driver(s)
            finally:
                if got:
                    s.lock.release()
            self._session = None
        self._log("server stopped")

    def _close_driver(self, s: _Session) -> None:
        try:
            s.driver.close()
        except Exception as err:  # a driver failing to close must not stop the server
            self._log(f"closing the driver failed: {type(err).__name__}: {err}")

    # -- connections -------------------------------------------------------------------------

    def _accept(self, conn: socket.socket, peer: Any) -> None:
        """Start a handshake thread for ``conn``; close the oldest unauthenticated
        connection when the pre-authentication pool is full (so idle sockets cannot keep
        the owner out)."""
        conn.setblocking(True)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = threading.Thread(
            target=self._handle, args=(conn, peer), name=f"conn-{peer}", daemon=True
        )
        with self._state:
            evicted = []
            while len(self._preauth) >= self.max_preauth:
                evicted.append(self._preauth.popitem(last=False)[0])
            self._preauth[conn] = time.monotonic() + self.handshake_timeout_s
            self._conns[conn] = t
        for old in evicted:  # its thread sees the shutdown and cleans up
            with contextlib.suppress(OSError):
                old.shutdown(socket.SHUT_RDWR)
        if evicted:
            self._log(f"{peer}: closed {len(evicted)} unauthenticated connection(s): pool full")
        t.start()

    def _promote(self, conn: socket.socket) -> bool | None:
        """Move ``conn`` from the pre-authentication pool to the authenticated one: ``True``;
        ``False`` when the authenticated pool is full; ``None`` when ``conn`` was evicted."""
        with self._state:
            if self._preauth.pop(conn, None) is None:
                return None
            if len(self._authed) >= self.max_connections:
                return False
            self._authed.add(conn)
            return True

    def _send_quietly(
        self, conn: socket.socket, frame: bytes, *, timeout_s: float | None = None
    ) -> bool:
        """Send ``frame`` within ``timeout_s`` (default ``frame_timeout_s``); ``False`` when
        the link failed."""
        try:
            conn.settimeout(self.frame_timeout_s if timeout_s is None else max(timeout_s, 1e-3))
            conn.sendall(frame)
            return True
        except OSError:
            return False

    @staticmethod
    def _error(
        rid: int | None,
        kind: str,
        message: str,
        *,
        retry: bool = False,
        version: int = w.MIN_PROTOCOL_VERSION,
    ) -> bytes:
        """An error reply framed in ``version`` (before a hello is read: the oldest version,
        which every peer reads)."""
        error: dict[str, Any] = {"type": kind, "message": message}
        if retry:  # a transient refusal: the client may try again
            error["retry"] = True
        return w.encode_frame({"id": rid, "ok": False, "error": error}, version=version)

    @classmethod
    def _error_of(cls, rid: int | None, err: BaseException, *, version: int) -> bytes:
        e = w.error_to_wire(err)
        return cls._error(rid, e["type"], e["message"], version=version)

    def _handle(self, conn: socket.socket, peer: Any) -> None:
        session: _Session | None = None
        try:
            opened = self._handshake(conn, peer)
            if opened is not None:
                session, version = opened
                self._serve_session(conn, session, version)
        except Exception as err:  # never let one connection take the server down
            self._log(f"{peer}: connection dropped: {type(err).__name__}: {err}")
        finally:
            with self._state:
                self._conns.pop(conn, None)
                self._preauth.pop(conn, None)
                self._authed.discard(conn)
                if session is not None and session.owner is conn:
                    session.owner = None
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _handshake(self, conn: socket.socket, peer: Any) -> tuple[_Session, int] | None:
        """Welcome, read and check the hello, authenticate, then claim the session; all of
        it before the connection's handshake deadline. Returns the session and the
        connection's protocol version (its hello's), or ``None`` when refused.

        The welcome is framed in the oldest version (every peer reads it) and names the
        newest this server speaks; the client's hello chooses the connection's version."""
        with self._state:
            deadline = self._preauth.get(conn, time.monotonic() + self.handshake_timeout_s)
        nonce = secrets.token_hex(16)
        welcome = {
            "type": "welcome",
            "protocol": w.PROTOCOL_VERSION,  # the newest version spoken here
            "server": f"analog-hep {__version__}",
            "nonce": nonce,
            "auth": "hmac-sha256" if self.token else "none",
            "driver": self.driver_arg,
            "circuit": self.circuit.spec.name,
        }
        left = deadline - time.monotonic()
        frame = w.encode_frame(welcome, version=w.MIN_PROTOCOL_VERSION)
        if not self._send_quietly(conn, frame, timeout_s=left):
            return None
        rid: int | None = None
        v = w.MIN_PROTOCOL_VERSION  # until the hello says which version the client speaks
        try:
            raw = w.read_raw_frame(
                conn,
                max_header_bytes=w.PREAUTH_MAX_FRAME_BYTES,
                max_payload_bytes=0,
                first_byte_timeout_s=None,
                frame_timeout_s=None,
                deadline=deadline,
            )
            v = raw.version
            msg = w.decode_frame(raw.header, raw.payload)
            rid = request_id(msg)
            req = request_from_message(msg, first=True)
            a = req.args
            sid = a.get("session")
            if not isinstance(sid, str) or not 8 <= len(sid) <= 64 or not sid.isalnum():
                raise w.ProtocolError("hello: session must be 8 to 64 letters or digits")
            if self.token and not self._authentic(a.get("auth"), nonce, sid):
                self._log(f"{peer}: authentication failed")
                self._send_quietly(
                    conn,
                    self._error(
                        rid,
                        "SpecError",
                        "authentication failed: the server needs the "
                        "token of its --token-file (tcp://HOST:PORT?token_file=F)",
                        version=v,
                    ),
                )
                return None
            promoted = self._promote(conn)
            if promoted is None:
                return None  # closed to make room while it was authenticating
            if not promoted:
                self._send_quietly(
                    conn,
                    self._error(rid, "ChipBusy", "too many connections", retry=True, version=v),
                )
                return None
            seed, reconnect = a.get("seed"), a.get("reconnect")
            if type(seed) is not int or not 0 <= seed < 2**63 or type(reconnect) is not bool:
                raise w.ProtocolError(
                    "hello: seed must be a non-negative integer, reconnect a bool"
                )
            if a.get("circuit_sha256") != self._digest:
                self._send_quietly(
                    conn,
                    self._error(
                        rid,
                        "SpecError",
                        f"circuit mismatch: this server serves circuit "
                        f"{self.circuit.spec.name!r} (sha256 {self._digest[:12]}...) and the "
                        "client's circuit file differs: use the same circuit (and device cards) "
                        "on both ends",
                        version=v,
                    ),
                )
                return None
            if v < w.CONV_PROTOCOL_VERSION and self._conv_crossbars:
                self._send_quietly(
                    conn,
                    self._error(
                        rid,
                        "SpecError",
                        f"this chip has conv crossbars ({', '.join(self._conv_crossbars)}), "
                        f"which protocol version {v} cannot describe: use a client that speaks "
                        f"version {w.CONV_PROTOCOL_VERSION} (analog-hep {__version__} or later)",
                        version=v,
                    ),
                )
                return None
        except (w.ProtocolError, OutOfRange) as err:
            if not isinstance(err, w.PeerClosed):
                self._send_quietly(conn, self._error(rid, "ProtocolError", str(err), version=v))
            return None
        except TimeoutError:
            text = f"no valid hello within {self.handshake_timeout_s:g} s of connecting"
            self._send_quietly(
                conn, self._error(rid, "ProtocolError", text, version=v), timeout_s=1.0
            )
            return None
        except OSError:
            return None  # gone, or closed to make room for a newer connection
        s = self._claim(conn, peer, rid, sid, seed, reconnect, v)
        return None if s is None else (s, v)

    def _authentic(self, given: Any, nonce: str, sid: str) -> bool:
        """Whether ``given`` is the HMAC of this connection's nonce and ``sid``."""
        assert self.token is not None
        expected = w.auth_digest(self.token, nonce, sid)
        return isinstance(given, str) and hmac.compare_digest(
            given.encode("utf-8", "replace"), expected.encode("ascii")
        )

    def _claim(
        self,
        conn: socket.socket,
        peer: Any,
        rid: int | None,
        sid: str,
        seed: int,
        reconnect: bool,
        v: int,
    ) -> _Session | None:
        """Make ``conn`` the owner of session ``sid`` (opening the driver when it is new);
        replies in protocol version ``v``."""
        with self._state:
            cur = self._session
            if cur is not None and cur.id == sid:
                old = cur.owner
                cur.owner = conn
                if old is not None and old is not conn:
                    with contextlib.suppress(OSError):
                        old.shutdown(socket.SHUT_RDWR)
                self._log(f"{peer}: session {sid[:8]} reconnected")
                reply = {"id": rid, "ok": True, "result": self._hello_result(cur, True, v)}
                frame = w.encode_frame(reply, version=v)
                return cur if self._send_quietly(conn, frame) else None
            if reconnect:
                self._send_quietly(
                    conn,
                    self._error(
                        rid,
                        "UnknownSession",
                        "the server no longer holds this run's chip (it was restarted or "
                        "another run took it over); the chip state of this run is lost",
                        version=v,
                    ),
                )
                return None
            if self._opening or (cur is not None and cur.owner is not None):
                self._send_quietly(
                    conn,
                    self._error(
                        rid,
                        "ChipBusy",
                        "another client controls this chip; one client at a time",
                        version=v,
                    ),
                )
                return None
            # Claim the chip before opening it (which may take a while) outside the lock:
            # a concurrent hello sees it busy.
            self._session = None
            self._opening = True
        try:
            if cur is not None:
                with cur.lock:
                    self._close_driver(cur)
            try:
                driver = open_driver(self.driver_arg, self.circuit, seed=seed)
                desc = driver.describe()
            except AnalogHepError as err:
                self._send_quietly(conn, self._error_of(rid, err, version=v))
                return None
            except Exception as err:
                self._log(f"opening driver {self.driver_arg!r} failed:\n{traceback.format_exc()}")
                self._send_quietly(
                    conn,
                    self._error(rid, "DriverError", f"{type(err).__name__}: {err}", version=v),
                )
                return None
            s = _Session(sid, seed, driver, desc)
            s.owner = conn
            with self._state:
                self._session = s
        finally:
            with self._state:
                self._opening = False
        self._log(f"{peer}: session {sid[:8]} opened {self.driver_arg} (seed {seed})")
        reply = {"id": rid, "ok": True, "result": self._hello_result(s, False, v)}
        return s if self._send_quietly(conn, w.encode_frame(reply, version=v)) else None

    @staticmethod
    def _hello_result(s: _Session, resumed: bool, v: int) -> dict[str, Any]:
        return {
            "session": s.id,
            "resumed": resumed,
            "description": w.description_to_wire(s.desc, version=v),
        }

    def _serve_session(self, conn: socket.socket, s: _Session, v: int) -> None:
        """Answer the owner's requests, one at a time, in protocol version ``v`` (the
        hello's), until it leaves or breaks the framing."""
        while not self._stop.is_set():
            try:
                raw = w.read_raw_frame(
                    conn,
                    max_payload_bytes=self.max_frame_bytes,
                    first_byte_timeout_s=self.idle_timeout_s,
                    frame_timeout_s=self.frame_timeout_s,
                )
            except w.PeerClosed:
                return
            except (w.ProtocolError, w.FrameIncomplete) as err:
                self._send_quietly(conn, self._error(None, "ProtocolError", str(err), version=v))
                return  # the byte stream cannot be trusted any more
            except (TimeoutError, OSError):
                return
            reply, done = self._answer(conn, s, raw, v)
            if reply is None or not self._send_quietly(conn, reply) or done:
                return

    def _answer(
        self, conn: socket.socket, s: _Session, raw: w.RawFrame, v: int
    ) -> tuple[bytes | None, bool]:
        """The reply to one complete frame and whether the connection ends after it;
        ``(None, True)`` when the session was taken over by a reconnect."""
        msg: Any = None
        try:  # the frame was read whole: a bad message leaves the stream usable
            msg = w.decode_frame(raw.header, raw.payload)
            req = request_from_message(msg, first=False)
            if raw.version != v:
                raise w.ProtocolError(
                    f"a frame of protocol version {raw.version} on a connection whose hello "
                    f"spoke version {v}: one version per connection"
                )
        except w.ProtocolError as err:
            return self._error(request_id(msg), "ProtocolError", str(err), version=v), False
        digest = hashlib.sha256(repr((req.op, _fingerprint(req.args))).encode()).digest()
        with s.lock:
            if s.owner is not conn or self._session is not s:
                return None, True  # taken over by a reconnect of the same client
            cached = s.replies.get(req.id)
            if cached is not None and cached[0] == digest:
                # re-sent: answer again (in this connection's version), apply nothing
                return w.with_version(cached[1], v), req.op == "close"
            if cached is not None:
                text = f"request id {req.id} was used for another request"
                return self._error(req.id, "ProtocolError", text, version=v), False
            if req.id <= s.highest:  # its reply left the cache: never execute it again
                text = (
                    f"request id {req.id} is stale: this session has executed requests up to "
                    f"id {s.highest}; a new request needs a higher id"
                )
                return self._error(req.id, "ProtocolError", text, version=v), False
            reply, reached = self._execute(s, req, v)
            if reached:
                s.remember(req.id, digest, reply)
            if req.op == "close" and reached:
                with self._state:
                    if self._session is s:
                        self._session = None
            return reply, req.op == "close" and reached

    # -- requests ----------------------------------------------------------------------------

    def _execute(self, s: _Session, req: Request, v: int) -> tuple[bytes, bool]:
        """Validate ``req``, then run it on the driver: ``(reply, reached_the_driver)``, the
        reply framed in protocol version ``v``.

        A request refused by validation never reaches the chip and its reply is not cached
        (re-sending it gives the same refusal); one that reached the driver is cached.
        """
        try:
            call = self._prepare(s, req.op, req.args)
        except (AnalogHepError, w.ProtocolError) as err:
            return self._error_of(req.id, err, version=v), False
        except Exception as err:  # a check that missed a malformed value: refuse, never drop
            self._log(f"refused a malformed {req.op} request: {type(err).__name__}: {err}")
            text = f"{req.op}: malformed arguments"
            return self._error(req.id, "OutOfRange", text, version=v), False
        try:
            result = call()
            return w.encode_frame({"id": req.id, "ok": True, "result": result}, version=v), True
        except (AnalogHepError, w.ProtocolError) as err:
            return self._error_of(req.id, err, version=v), True
        except Exception as err:
            self._log(f"driver failed in {req.op}:\n{traceback.format_exc()}")
            text = f"{type(err).__name__}: {err}"
            return self._error(req.id, "DriverError", text, version=v), True

    def _prepare(self, s: _Session, name: str, a: dict[str, Any]) -> Callable[[], Any]:
        """Check the arguments of op ``name`` completely (its entry of the operation
        table); return the call to make."""
        op = OPERATIONS[name]  # the envelope check let only the table's ops through
        if set(a) != op.args:
            raise OutOfRange(f"{name}: expected arguments {sorted(op.args)}, found {sorted(a)}")
        call = op.request.decode(a)
        op.check(s.desc, call)
        if op.check_served is not None:
            op.check_served(s.driver, call)
        target = s.driver if op.served_by == "driver" else _SessionOps(self, s)
        return lambda: op.reply.encode(op.invoke(target, call))


class _SessionOps:
    """The operations a server answers itself (``served_by="server"`` in the table): the
    session's description, a ping, and closing the session's driver."""

    def __init__(self, server: DriverServer, session: _Session):
        self._server = server
        self._session = session

    def describe(self) -> ChipDescription:
        """The description the driver gave when the session opened it."""
        return self._session.desc

    def ping(self) -> None:
        """Nothing: the reply is the answer."""

    def close(self) -> None:
        """Close the session's driver (a failure to close is logged, never raised)."""
        self._server._close_driver(self._session)


def _fingerprint(v: Any) -> Any:
    """A hashable digest of decoded request args (arrays by dtype, shape and bytes)."""
    if isinstance(v, np.ndarray):
        return (v.dtype.str, v.shape, hashlib.sha256(v.tobytes()).hexdigest())
    if isinstance(v, dict):
        return tuple(sorted((k, _fingerprint(x)) for k, x in v.items()))
    if isinstance(v, list):
        return tuple(_fingerprint(x) for x in v)
    return (type(v).__name__, repr(v))
