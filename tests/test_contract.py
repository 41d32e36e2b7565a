"""The driver contract in one place: public validators and one table of operations.

- The server answers exactly the operations of the table and the client sends exactly
  them, with the table's arguments (a served driver that records its calls shows what
  reached it).
- The emulator refuses what the server refuses (non-finite ``lr`` and ``y`` included) with
  the same error type and message, and a refused call changes nothing.
- The validators take NumPy arrays, ``jax.Array`` s and lists alike and refuse complex,
  non-finite and misshapen values.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp
import numpy as np
import pytest

from analog_hep.drivers import (
    Capabilities,
    ChipDescription,
    CrossbarInfo,
    Driver,
    DriverServer,
    NudgeSchedule,
    RemoteDriver,
    Settled,
    UpdateReport,
    _server,
)
from analog_hep.drivers._operations import OPERATIONS, OPS, request_from_message
from analog_hep.drivers._wire import ProtocolError
from analog_hep.drivers.validate import (
    check_delta,
    check_finite,
    check_inputs,
    check_outer_product,
    check_schedule,
    check_state,
)
from analog_hep.emulator import EmulatorDriver
from analog_hep.errors import OutOfRange, UnsupportedCapability
from analog_hep.spec import load_circuit

DESC = ChipDescription(
    name="fake",
    driver="fake",
    layers=(3, 2),
    classes=2,
    loss="cross_entropy",
    crossbars=(CrossbarInfo("W0", 2, 3, True, 0, 1), CrossbarInfo("readout", 2, 2, True, 1, -1)),
    capabilities=Capabilities(
        complex_nudges=True,
        previous_start=True,
        outer_product_update=True,
        program_delta=True,
        checkpoint=True,
        max_batch=8,
    ),
    free_steps=10,
    nudge_steps=5,
    dt_s=None,
    holomorphic=True,
)
STATE = {"calls": np.zeros((), np.int64), "W0/g": np.zeros((2, 4), np.float32)}


class RecordingDriver:
    """A driver that records every call it receives (name, arguments) and answers with
    results of the documented shapes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def _note(self, name: str, *args, **kwargs) -> None:
        self.calls.append((name, args, kwargs))

    def describe(self) -> ChipDescription:
        return DESC

    def load_inputs(self, x, y) -> None:
        self._note("load_inputs", x, y)

    def run_schedule(self, schedule: NudgeSchedule) -> Settled:
        self._note("run_schedule", schedule)
        k, b = len(schedule.betas), 1
        return Settled(
            free_states=(np.zeros((b, 3), np.float32), np.zeros((b, 2), np.float32)),
            free_logits=np.zeros((b, 2), np.float32),
            free_residual=np.zeros(b, np.float32),
            betas=np.asarray(schedule.betas, np.complex64),
            states=(np.zeros((k, b, 3), np.complex64), np.zeros((k, b, 2), np.complex64)),
            logits=np.zeros((k, b, 2), np.complex64),
            residual=np.zeros((k, b), np.float32),
        )

    def apply_outer_product(self, name, rows, cols, *, lr) -> UpdateReport:
        self._note("apply_outer_product", name, rows, cols, lr=lr)
        return UpdateReport(name, 3, 0, 0, 1.0, 1.0)

    def program_delta(self, name, delta_w) -> UpdateReport:
        self._note("program_delta", name, delta_w)
        return UpdateReport(name, 2, 0, 0, 1.0, 1.0)

    def read_weights(self):
        self._note("read_weights")
        return {c.name: (np.zeros((c.n_out, c.n_in)), np.zeros(c.n_out)) for c in DESC.crossbars}

    def state_dict(self):
        self._note("state_dict")
        return dict(STATE)

    def load_state_dict(self, state) -> None:
        self._note("load_state_dict", state)

    def close(self) -> None:
        self._note("close")


# One valid call of every operation of the table: the client method's positional and
# keyword arguments, and the call the served driver must receive (None: the server answers
# it alone).
X = np.arange(6, dtype=np.float32).reshape(2, 3)
Y = np.eye(2, dtype=np.float32)
ROWS, COLS = np.ones((1, 2), np.float32), np.ones((1, 4), np.float32)
DELTA = np.ones((2, 4), np.float32)
SCHEDULE = NudgeSchedule(betas=(0.1 + 0j, -0.1 + 0j), free_steps=7)
CALLS: dict[str, tuple[tuple, dict, tuple | None]] = {
    "describe": ((), {}, None),
    "load_inputs": ((X, Y), {}, ("load_inputs", (X, Y), {})),
    "run_schedule": ((SCHEDULE,), {}, ("run_schedule", (SCHEDULE,), {})),
    "apply_outer_product": (
        ("W0", ROWS, COLS),
        {"lr": -0.5},
        ("apply_outer_product", ("W0", ROWS, COLS), {"lr": -0.5}),
    ),
    "program_delta": (("W0", DELTA), {}, ("program_delta", ("W0", DELTA), {})),
    "read_weights": ((), {}, ("read_weights", (), {})),
    "state_dict": ((), {}, ("state_dict", (), {})),
    "load_state_dict": ((STATE,), {}, ("load_state_dict", (STATE,), {})),
    "ping": ((), {}, None),
    "close": ((), {}, ("close", (), {})),  # the server closes its driver
}


@pytest.fixture
def recorded(monkeypatch):
    """A server whose driver is a :class:`RecordingDriver`, and a client of it."""
    drv = RecordingDriver()
    monkeypatch.setattr(_server, "open_driver", lambda *a, **k: drv)
    c = load_circuit("toy")
    srv = DriverServer(c, log=lambda s: None).start()
    host, port = srv.address
    client = RemoteDriver(host, port, circuit=c, seed=0)
    try:
        yield drv, client
    finally:
        client.close()
        srv.shutdown()


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(p, q) for p, q in zip(a, b, strict=True))
    return a == b


# -- one table -------------------------------------------------------------------------------


def test_the_table_names_every_method_of_the_contract_with_its_signature():
    methods = {n for n, f in vars(Driver).items() if callable(f) and not n.startswith("_")}
    assert methods <= set(OPERATIONS)
    assert tuple(OPERATIONS) == OPS
    for op in OPERATIONS.values():
        assert callable(getattr(RemoteDriver, op.name)), op.name  # the client sends it
        if op.served_by == "server":
            assert callable(getattr(_server._SessionOps, op.name)), op.name
            continue
        params = inspect.signature(getattr(Driver, op.name)).parameters.values()
        positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        keywords = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)
        assert (op.params, op.keywords) == (positional[1:], keywords), op.name
    own = {n for n in vars(_server._SessionOps) if not n.startswith("_")}
    assert own == {op.name for op in OPERATIONS.values() if op.served_by == "server"}


def test_the_envelope_accepts_exactly_the_tables_operations():
    for name in OPS:
        assert request_from_message({"id": 1, "op": name, "args": {}}, first=False).op == name
    for name in ("hello", "emulated_chip", "__init__", "Describe", "check_inputs"):
        with pytest.raises(ProtocolError):
            request_from_message({"id": 1, "op": name, "args": {}}, first=False)


def test_every_operation_of_the_table_is_sent_and_served(recorded):
    drv, client = recorded
    assert set(CALLS) == set(OPERATIONS)  # a new entry needs a call here
    for name in OPS:
        args, kwargs, reaches = CALLS[name]
        op = OPERATIONS[name]
        call = dict(zip(op.params, args, strict=True)) | kwargs
        assert set(op.request.encode(call)) == op.args, name  # the client sends the table's
        before, sent = len(drv.calls), client.requests_sent
        if name == "describe":  # the client has it from the hello; ask the server anyway
            result = op.reply.decode(client._call("describe"))
            assert result == DESC
        else:
            result = getattr(client, name)(*args, **kwargs)
        assert client.requests_sent == sent + 1, name
        if reaches is None:
            assert len(drv.calls) == before, name
        else:
            # (load_state_dict: the server reads the chip's own state first, to check against)
            assert len(drv.calls) > before and _same(drv.calls[-1], reaches), name
        if name == "apply_outer_product":
            assert result == UpdateReport("W0", 3, 0, 0, 1.0, 1.0)


def test_an_operation_outside_the_table_is_refused_by_the_server(recorded):
    _, client = recorded
    with pytest.raises(ProtocolError, match="unknown op 'emulated_chip'"):
        client._call("emulated_chip", {})
    assert client.ping() >= 0  # the connection stays usable


# -- the same refusals everywhere ------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_pair():
    """The toy chip in process, and the same chip behind a server (with a client)."""
    c = load_circuit("toy")
    local = EmulatorDriver(c, seed=0)
    srv = DriverServer(c, log=lambda s: None).start()
    host, port = srv.address
    remote = RemoteDriver(host, port, circuit=c, seed=0)
    try:
        yield local, remote, srv
    finally:
        remote.close()
        srv.shutdown()


def _refusal(fn) -> BaseException:
    with pytest.raises((OutOfRange, UnsupportedCapability)) as info:
        fn()
    return info.value


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -float("inf")])
def test_the_emulator_refuses_a_non_finite_lr_as_the_server_does(toy_pair, lr):
    local, remote, srv = toy_pair
    xb = local.describe().crossbars[0]
    rows = np.ones((2, xb.n_out), np.float32)
    cols = np.ones((2, xb.n_in + 1), np.float32)
    before = local.read_weights()
    mine = _refusal(lambda: local.apply_outer_product(xb.name, rows, cols, lr=lr))
    # sent as it is, past the client's own check: the server refuses it
    args = {"name": xb.name, "rows": rows, "cols": cols, "lr": lr}
    served = _refusal(lambda: remote._call("apply_outer_product", args))
    checked = _refusal(lambda: remote.apply_outer_product(xb.name, rows, cols, lr=lr))
    assert type(mine) is type(served) is type(checked) is OutOfRange
    assert str(mine) == str(served) == str(checked)
    assert _same(before, local.read_weights())
    assert _same(before, srv.session_driver.read_weights())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_the_emulator_refuses_non_finite_targets_as_the_server_does(toy_pair, bad):
    local, remote, _ = toy_pair
    d = local.describe()
    x = np.zeros((2, d.layers[0]), np.float32)
    y = np.zeros((2, d.classes), np.float32)
    y[1, 0] = bad
    mine = _refusal(lambda: local.load_inputs(x, y))
    served = _refusal(lambda: remote._call("load_inputs", {"x": x, "y": y}))
    assert type(mine) is type(served) is OutOfRange
    assert str(mine) == str(served)
    local.load_inputs(x, np.zeros_like(y))  # still takes good inputs


def test_the_emulator_and_the_server_refuse_bad_calls_alike(toy_pair):
    local, remote, _ = toy_pair
    d = local.describe()
    n0, k = d.layers[0], d.classes
    xb = d.crossbars[0]
    x = np.zeros((2, n0), np.float32)
    bad = {
        "load_inputs": [
            {"x": np.zeros((2, n0 + 1), np.float32), "y": None},
            {"x": np.full((2, n0), np.inf, np.float32), "y": None},
            {"x": x, "y": np.zeros((3, k), np.float32)},
        ],
        "run_schedule": [
            {"betas": [float("nan")], "free_steps": None, "nudge_steps": None, "start": "free"},
            {"betas": [0.1], "free_steps": 0, "nudge_steps": None, "start": "free"},
            {"betas": [0.1], "free_steps": None, "nudge_steps": None, "start": "sideways"},
        ],
        "program_delta": [
            {"name": "nope", "delta_w": np.zeros((xb.n_out, xb.n_in + 1), np.float32)},
            {"name": xb.name, "delta_w": np.zeros((xb.n_out, xb.n_in), np.float32)},
        ],
        "load_state_dict": [{"state": {"calls": np.zeros((), np.int64)}}],
    }
    local.load_inputs(x, None)
    for op, cases in bad.items():
        for args in cases:
            served = _refusal(lambda op=op, args=args: remote._call(op, args))
            call = OPERATIONS[op].request.decode(args)
            mine = _refusal(lambda op=op, call=call: OPERATIONS[op].invoke(local, call))
            assert type(mine) is type(served), (op, args)
            assert str(mine) == str(served), (op, args)


# -- the validators --------------------------------------------------------------------------


def test_the_validators_take_numpy_jax_and_lists_alike():
    for kind in (np.asarray, jnp.asarray, lambda a: np.asarray(a).tolist()):
        check_inputs(DESC, kind(X), kind(Y))
        check_outer_product(DESC, "W0", kind(ROWS), kind(COLS), -0.5)
        check_delta(DESC, "W0", kind(DELTA))
        bad = np.array(X)
        bad[0, 0] = np.nan
        with pytest.raises(OutOfRange, match="NaN"):
            check_inputs(DESC, kind(bad), None)
    with pytest.raises(OutOfRange, match="NaN"):
        check_finite(jnp.full(3, jnp.inf), "a")
    check_outer_product(DESC, "W0", ROWS * np.nan, COLS, 0.1, finite=False)


def test_the_validators_refuse_what_the_contract_refuses():
    refused = [
        (OutOfRange, lambda: check_inputs(DESC, X.astype(np.complex64), None)),
        (OutOfRange, lambda: check_inputs(DESC, np.zeros((9, 3)), None)),  # above max_batch
        (OutOfRange, lambda: check_inputs(DESC, np.zeros((0, 3)), None)),  # no sample
        (OutOfRange, lambda: check_inputs(DESC, X, "y")),
        (OutOfRange, lambda: check_outer_product(DESC, "W0", ROWS, COLS, True)),
        (OutOfRange, lambda: check_outer_product(DESC, "W0", ROWS, COLS, "0.1")),
        (OutOfRange, lambda: check_outer_product(DESC, 0, ROWS, COLS, 0.1)),
        (OutOfRange, lambda: check_delta(DESC, "readout", DELTA)),  # W0's shape
        (OutOfRange, lambda: check_schedule(DESC, NudgeSchedule(betas=(0.1,), nudge_steps=1.5))),
        (OutOfRange, lambda: check_state(STATE, {**STATE, "calls": np.zeros(1, np.int64)})),
        (OutOfRange, lambda: check_state(STATE, [])),
    ]
    real_only = Capabilities(False, False, False, True, False, beta_max=0.5, max_points=2)
    dc = ChipDescription(**{**vars(DESC), "capabilities": real_only})
    refused += [
        (UnsupportedCapability, lambda: check_schedule(dc, NudgeSchedule(betas=(0.1j,)))),
        (
            UnsupportedCapability,
            lambda: check_schedule(dc, NudgeSchedule((0.1,), start="previous")),
        ),
        (UnsupportedCapability, lambda: check_outer_product(dc, "W0", ROWS, COLS, 0.1)),
        (OutOfRange, lambda: check_schedule(dc, NudgeSchedule(betas=(0.6,)))),
        (OutOfRange, lambda: check_schedule(dc, NudgeSchedule(betas=(0.1,) * 3))),
    ]
    for kind, fn in refused:
        with pytest.raises(kind):
            fn()
