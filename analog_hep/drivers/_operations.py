"""The driver operations on the wire: one table drives both the client and the server.

An :class:`Operation` is one request ``op`` of the wire protocol: the driver method it
calls and that method's parameters, the names of its arguments on the wire, the contract
check (:mod:`analog_hep.drivers.validate`), and the codecs of its arguments and of its
result. :class:`~analog_hep.drivers.RemoteDriver` sends every call through its entry
(encode the arguments, decode them and check them as the server will, before any I/O;
then decode the reply); :class:`~analog_hep.drivers.DriverServer` answers every request
through the same entry (decode, check, call the driver, encode the result). Nothing else
lists the operations: adding one is an entry of :data:`OPERATIONS`, the method on the
drivers (the :class:`~analog_hep.drivers.Driver` protocol) and a one-line method on
``RemoteDriver``.

The request envelope (ids, op names) is checked here too: :func:`request_from_message`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import numpy as np

from . import _wire as w
from ._protocol import ChipDescription
from .validate import (
    check_checkpoint,
    check_delta,
    check_inputs,
    check_outer_product,
    check_schedule,
    check_state,
    real_number,
    short,
)

__all__ = [
    "NO_ARGS",
    "NO_RESULT",
    "OPERATIONS",
    "OPS",
    "Call",
    "Codec",
    "Operation",
    "Request",
    "request_from_message",
    "request_id",
]

Call = dict[str, Any]  # a driver call's arguments by parameter name


class Codec(NamedTuple):
    """How a value crosses the wire: ``encode`` on the sending side; ``decode`` on the
    receiving side, strict (:class:`OutOfRange` or :class:`~._wire.ProtocolError` for a
    malformed value)."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _no_check(desc: ChipDescription, call: Call) -> None:
    """Nothing to check (an operation without arguments)."""


NO_ARGS = Codec(lambda call: {}, lambda args: {})
"""The arguments of an operation that takes none: ``{}`` on the wire."""
NO_RESULT = Codec(lambda result: {}, lambda result: None)
"""The result of an operation that returns ``None``: ``{}`` on the wire."""


@dataclass(frozen=True)
class Operation:
    """One operation of the wire protocol.

    - ``name``: the request's ``op``, and the name of the method it calls.
    - ``params``, ``keywords``: the method's positional and keyword-only parameters (the
      keys of a call's arguments).
    - ``wire_args``: the argument names on the wire (default: the parameters).
    - ``check``: ``(description, call)``: the contract check, on both ends.
    - ``check_served``: ``(driver, call)``: a further check the server makes against its
      driver before calling it (``None``: none).
    - ``request``: codec between a call's arguments and the request's ``args``.
    - ``reply``: codec between the method's result and the reply's ``result``.
    - ``served_by``: ``"driver"`` (the served driver's method) or ``"server"`` (the
      server's session answers it: ``describe``, ``ping``, ``close``).
    """

    name: str
    params: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    wire_args: tuple[str, ...] | None = None
    check: Callable[[ChipDescription, Call], None] = _no_check
    check_served: Callable[[Any, Call], None] | None = None
    request: Codec = NO_ARGS
    reply: Codec = NO_RESULT
    served_by: Literal["driver", "server"] = "driver"

    @property
    def args(self) -> frozenset[str]:
        """The argument names a request of this operation carries, no more, no fewer."""
        return frozenset(self.params + self.keywords if self.wire_args is None else self.wire_args)

    def invoke(self, target: Any, call: Call) -> Any:
        """Call ``target.<name>`` with ``call`` (positional parameters by position,
        keyword-only ones by keyword, as the driver contract declares them)."""
        method = getattr(target, self.name)
        return method(*(call[p] for p in self.params), **{k: call[k] for k in self.keywords})


# -- argument codecs -------------------------------------------------------------------------


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _number(v: Any) -> Any:
    """``v`` as a float when it is a finite real number; as it is otherwise (the check
    then refuses it with its own message)."""
    f = real_number(v)
    return v if f is None else f


def _inputs_to_wire(c: Call) -> dict[str, Any]:
    return {"x": _f32(c["x"]), "y": None if c["y"] is None else _f32(c["y"])}


def _inputs_from_wire(a: dict[str, Any]) -> Call:
    y = a["y"]
    return {
        "x": w.float32_array(a["x"], "inputs x"),
        "y": None if y is None else w.float32_array(y, "targets y"),
    }


def _outer_to_wire(c: Call) -> dict[str, Any]:
    rows, cols = _f32(c["rows"]), _f32(c["cols"])
    return {"name": c["name"], "rows": rows, "cols": cols, "lr": float(c["lr"])}


def _outer_from_wire(a: dict[str, Any]) -> Call:
    return {
        "name": a["name"],
        "rows": w.float32_array(a["rows"], "rows"),
        "cols": w.float32_array(a["cols"], "cols"),
        "lr": _number(a["lr"]),
    }


def _delta_to_wire(c: Call) -> dict[str, Any]:
    return {"name": c["name"], "delta_w": _f32(c["delta_w"])}


def _delta_from_wire(a: dict[str, Any]) -> Call:
    return {"name": a["name"], "delta_w": w.float32_array(a["delta_w"], "delta_w")}


def _state_to_wire(state: Any) -> Any:
    if not isinstance(state, Mapping):
        return state  # refused by the decoding check, before any I/O
    return {k: np.asarray(v) for k, v in state.items()}


_INPUTS = Codec(_inputs_to_wire, _inputs_from_wire)
_SCHEDULE = Codec(
    lambda c: w.schedule_to_wire(c["schedule"]), lambda a: {"schedule": w.schedule_from_wire(a)}
)
_OUTER = Codec(_outer_to_wire, _outer_from_wire)
_DELTA = Codec(_delta_to_wire, _delta_from_wire)
_STATE = Codec(
    lambda c: {"state": _state_to_wire(c["state"])},
    lambda a: {"state": w.state_from_wire(a["state"])},
)

# -- result codecs ---------------------------------------------------------------------------

_DESCRIPTION = Codec(w.description_to_wire, w.description_from_wire)
_SETTLED = Codec(w.settled_to_wire, w.settled_from_wire)
_REPORT = Codec(w.report_to_wire, w.report_from_wire)
_WEIGHTS = Codec(w.weights_to_wire, w.weights_from_wire)
_STATE_REPLY = Codec(_state_to_wire, w.state_from_wire)


# -- checks ----------------------------------------------------------------------------------


def _check_state_served(driver: Any, c: Call) -> None:
    """The state to load has the served chip's own keys, shapes and dtypes."""
    check_state({k: np.asarray(v) for k, v in driver.state_dict().items()}, c["state"])


def _table(*ops: Operation) -> Mapping[str, Operation]:
    """A read-only mapping of ``ops`` by name."""
    return MappingProxyType({op.name: op for op in ops})


OPERATIONS: Mapping[str, Operation] = _table(
    Operation("describe", reply=_DESCRIPTION, served_by="server"),
    Operation(
        "load_inputs",
        params=("x", "y"),
        check=lambda d, c: check_inputs(d, c["x"], c["y"]),
        request=_INPUTS,
    ),
    Operation(
        "run_schedule",
        params=("schedule",),
        wire_args=("betas", "free_steps", "nudge_steps", "start"),
        check=lambda d, c: check_schedule(d, c["schedule"]),
        request=_SCHEDULE,
        reply=_SETTLED,
    ),
    Operation(
        "apply_outer_product",
        params=("name", "rows", "cols"),
        keywords=("lr",),
        check=lambda d, c: check_outer_product(d, c["name"], c["rows"], c["cols"], c["lr"]),
        request=_OUTER,
        reply=_REPORT,
    ),
    Operation(
        "program_delta",
        params=("name", "delta_w"),
        check=lambda d, c: check_delta(d, c["name"], c["delta_w"]),
        request=_DELTA,
        reply=_REPORT,
    ),
    Operation("read_weights", reply=_WEIGHTS),
    Operation("state_dict", check=lambda d, c: check_checkpoint(d), reply=_STATE_REPLY),
    Operation(
        "load_state_dict",
        params=("state",),
        check=lambda d, c: check_checkpoint(d),
        check_served=_check_state_served,
        request=_STATE,
    ),
    Operation("ping", served_by="server"),
    Operation("close", served_by="server"),
)
"""Every operation of the wire protocol, by name."""

OPS: tuple[str, ...] = tuple(OPERATIONS)
"""The operation names, in the table's order."""


# -- the request envelope --------------------------------------------------------------------


class Request(NamedTuple):
    """A decoded request: ``id``, ``op`` (one of :data:`OPS` or ``hello``), ``args``."""

    id: int
    op: str
    args: dict[str, Any]


def request_id(msg: Any) -> int | None:
    """The id of a request message when it is a valid one (to address an error reply),
    else ``None``."""
    rid = msg.get("id") if isinstance(msg, dict) else None
    return rid if type(rid) is int and w.HELLO_ID <= rid <= w.MAX_REQUEST_ID else None


def request_from_message(msg: dict[str, Any], *, first: bool = True) -> Request:
    """Check the envelope of a request message.

    Ids are JSON integers (not bools, not floats): the hello, a connection's ``first``
    request, has id :data:`~._wire.HELLO_ID` (0); every later request an id in
    ``[1, MAX_REQUEST_ID]`` and an op of :data:`OPS` (a second hello is refused).

    **Raises:** :class:`~._wire.ProtocolError` naming what is wrong.
    """
    rid, op, args = msg.get("id"), msg.get("op"), msg.get("args", {})
    extra = set(msg) - {"id", "op", "args"}
    if extra:
        raise w.ProtocolError(f"unknown request fields {sorted(extra)[:5]}")
    if not isinstance(op, str):
        raise w.ProtocolError(f"op must be a string, found {short(op)}")
    if first and op != "hello":
        raise w.ProtocolError(f"the first request must be hello, found {short(op)}")
    if not first and op == "hello":
        raise w.ProtocolError("hello is only valid as a connection's first request")
    if op != "hello" and op not in OPERATIONS:
        raise w.ProtocolError(f"unknown op {short(op)}; known: {', '.join(OPS)}")
    lo = w.HELLO_ID if first else w.HELLO_ID + 1
    hi = w.HELLO_ID if first else w.MAX_REQUEST_ID
    if type(rid) is not int or not lo <= rid <= hi:
        raise w.ProtocolError(
            f"{op}: request id must be an integer in [{lo}, {hi}], found {short(rid)}"
        )
    if not isinstance(args, dict):
        raise w.ProtocolError(f"{op}: request args must be an object")
    return Request(rid, op, args)
