"""The driver conformance kit: what any chip driver must do to be trained by analog-hep.

Each check opens a fresh driver on a small circuit (``circuits/toy.yaml`` by default), asks
it what the controller would ask, and returns a :class:`CheckResult`. The same checks run
from ``analog-hep conformance --driver NAME``, from pytest (the plugin
``analog_hep.drivers.conformance_plugin``), or from Python (:func:`run_conformance`). The
emulator, the remote driver and the example driver under ``examples/`` pass them.

Checks (see :data:`CHECKS`):

- ``structure``: the :class:`Driver` protocol; a description consistent with the circuit
  (layers, crossbar names in the circuit's order, ``pre``/``post``, shapes, readout), sane
  capabilities, weights of the described shapes, idempotent ``close``.
- ``validation``: bad inputs, shapes, crossbar names, unsupported nudges and updates raise
  :class:`OutOfRange` / :class:`UnsupportedCapability` *before* anything reaches the chip:
  the chip's weights (and state) are unchanged afterwards, and it still works.
- ``schedule``: settled states of the documented shapes and dtypes, ``s_0`` the inputs,
  betas applied as asked, residuals reported and small, nudges pulling the loss the right
  way (``+beta`` lowers it, ``-beta`` raises it), complex and ``previous`` schedules when
  advertised.
- ``update``: updates return :class:`UpdateReport`s that match what the weights really did,
  move the weights in the requested direction, touch only the named crossbar, and stay
  bounded (a huge request is clipped and reported, and a second one moves little).
- ``checkpoint``: ``state_dict``/``load_state_dict`` restore the chip bitwise (when the chip
  advertises ``checkpoint``; otherwise both raise :class:`UnsupportedCapability`).
- ``failures``: typed errors for a settle before inputs and for use after ``close``.
- ``gradient_symmetric``: the symmetric (N = 2, ``|beta| = 0.01``) estimate from the
  driver's settled states has cosine >= 0.999 and relative error <= 1e-3 with the exact
  gradient of the emulator at the driver's own weights (implicit differentiation at the
  noiseless free fixed point).
- ``gradient_hep``: the same for hEP, N = 8, ``|beta| = 0.1``, cosine >= 0.9999 and relative
  error <= 1e-4, when the chip advertises ``complex_nudges``.

The kit calls the driver with the argument types the controller uses (see
:func:`_as_controller_sends`): NumPy float32 inputs and targets, a :class:`NudgeSchedule` of
Python numbers, and ``jax.Array`` float32 update factors and deltas with a negative ``lr``
(gradient descent), so a driver that passes the kit takes a training step.

This module is the one place outside the emulator that imports ``analog_hep.emulator``
(for the ground truth, lazily): a driver package needs analog-hep, not more.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import AnalogHepError, OutOfRange, UnsupportedCapability
from ._protocol import (
    Capabilities,
    ChipDescription,
    Driver,
    NudgeSchedule,
    Settled,
    UpdateReport,
)

__all__ = [
    "CHECKS",
    "CheckResult",
    "ConformanceReport",
    "run_check",
    "run_conformance",
]

BATCH = 6
RESIDUAL_TOL = 1e-3  # activity units: a settled state of the tiny circuit
SYMMETRIC_BETA = 0.05  # the schedule check's nudge (loss direction, linearity)
SYMMETRIC_COSINE_MIN = 0.999
# The symmetric estimate's own bias is O(beta^2): at |beta| = 0.01 the emulator's relative
# error on the toy circuit is 3.7e-5 to 7.4e-5 (kit seeds 0-7; 0.9e-3 to 2.3e-3 at 0.05), so
# 1e-3 leaves a 13x margin and still fails a chip whose applied beta is 1 % off its reported
# one (relative error 4.1e-3; 4.1e-2 for 10 %), which the cosine (0.99999) cannot see.
GRADIENT_SYMMETRIC_BETA = 0.01
SYMMETRIC_REL_MAX = 1e-3
HEP_BETA = 0.1
HEP_POINTS = 8
HEP_COSINE_MIN = 0.9999
# hEP N = 8 is exact to O(beta^8): the emulator's relative error is its float32 floor,
# 1.0e-6 to 1.8e-6 (kit seeds 0-3). 1e-4 is 55x above it and fails a beta 0.1 % off
# (4.1e-4; 4.1e-3 for 1 %, 8.6e-3 in the report that found the hole).
HEP_REL_MAX = 1e-4

Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class CheckResult:
    """One check: ``status`` ``passed``/``failed``/``skipped``, a one-line ``message``,
    ``seconds`` taken, and ``metrics`` (numbers such as cosines) for reports."""

    name: str
    status: Status
    message: str
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConformanceReport:
    """All checks of one driver on one circuit; ``passed`` when none failed."""

    driver: str
    circuit: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.status != "failed" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "circuit": self.circuit,
            "passed": self.passed,
            "checks": [dataclasses.asdict(r) for r in self.results],
        }


class CheckFailed(AssertionError):
    """A conformance requirement is not met (the message says which)."""


class CheckSkipped(Exception):
    """The check does not apply to this chip (the message says why)."""


@dataclass
class _Target:
    """What a check works on: a factory of fresh drivers, the circuit, the seed."""

    open: Callable[[], Driver]
    circuit: Any
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)

    def batch(self, desc: ChipDescription) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        x = rng.uniform(0.0, 1.0, (BATCH, desc.layers[0])).astype(np.float32)
        y = np.eye(desc.classes, dtype=np.float32)[np.arange(BATCH) % desc.classes]
        return x, y


def _as_controller_sends(a: np.ndarray) -> Any:
    """``a`` as the controller passes update arguments: a ``jax.Array`` (its factors and
    deltas come out of compiled JAX code), so a driver that only takes NumPy fails here and
    not on the first training step."""
    import jax.numpy as jnp

    return jnp.asarray(a)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def _opened(t: _Target) -> Driver:
    d = t.open()
    _require(isinstance(d, Driver), f"{type(d).__name__} does not meet the Driver protocol")
    return d


def _w_full(weights: dict[str, tuple[Any, Any]], name: str) -> np.ndarray:
    w, b = weights[name]
    return np.concatenate([np.asarray(w, np.float64), np.asarray(b, np.float64)[:, None]], 1)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 0 else 0.0


def _raises(kinds: tuple[type[BaseException], ...], fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except kinds:
        return
    except Exception as err:
        raise CheckFailed(
            f"{what}: raised {type(err).__name__} ({err}); expected "
            f"{' or '.join(k.__name__ for k in kinds)}"
        ) from None
    raise CheckFailed(f"{what}: was accepted; expected {' or '.join(k.__name__ for k in kinds)}")


def _same_weights(a: dict[str, tuple[Any, Any]], b: dict[str, tuple[Any, Any]]) -> bool:
    return set(a) == set(b) and all(
        np.array_equal(np.asarray(a[n][0]), np.asarray(b[n][0]))
        and np.array_equal(np.asarray(a[n][1]), np.asarray(b[n][1]))
        for n in a
    )


def _same_state(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def _loss(settled_logits: Any, states_last: Any, y: np.ndarray, loss: str) -> np.ndarray:
    """Per-sample loss of real-valued read-outs (``(..., B)``)."""
    if loss == "cross_entropy":
        o = np.asarray(settled_logits).real.astype(np.float64)
        o = o - o.max(axis=-1, keepdims=True)
        logp = o - np.log(np.exp(o).sum(axis=-1, keepdims=True))
        return -(y * logp).sum(axis=-1)
    out = np.asarray(states_last).real.astype(np.float64)
    return 0.5 * ((out - y) ** 2).sum(axis=-1)


# -- checks ----------------------------------------------------------------------------------


def check_structure(t: _Target) -> str:
    d = _opened(t)
    try:
        desc = d.describe()
        _require(isinstance(desc, ChipDescription), "describe() must return a ChipDescription")
        _require(isinstance(desc.capabilities, Capabilities), "capabilities must be Capabilities")
        _require(desc == d.describe(), "describe() must return the same description every time")
        spec = t.circuit.spec
        _require(
            tuple(desc.layers) == tuple(spec.layers),
            f"layers {desc.layers} differ from the circuit's {tuple(spec.layers)}",
        )
        _require(desc.classes == spec.readout.classes, "classes differ from the circuit's")
        _require(desc.loss in ("cross_entropy", "mse"), f"unknown loss {desc.loss!r}")
        names = desc.crossbar_names
        _require(len(set(names)) == len(names) and names, f"crossbar names {names} not unique")
        # The controller pairs crossbar i with layers i and i + 1 by position and finds the
        # readout by its name: other names or another order train the wrong weights.
        _require(
            names == tuple(spec.crossbar_names),
            f"crossbar names {names} differ from the circuit's {tuple(spec.crossbar_names)} "
            "(W0 .. W{L-1}, then readout, in that order)",
        )
        for i, c in enumerate(desc.crossbars):
            want_pre_post = (len(desc.layers) - 1, -1) if c.name == "readout" else (i, i + 1)
            _require(
                (c.pre, c.post) == want_pre_post,
                f"{c.name}: (pre, post) = {(c.pre, c.post)}, expected {want_pre_post}",
            )
            _require(0 <= c.pre < len(desc.layers), f"{c.name}: pre {c.pre} is not a layer")
            _require(c.n_in == desc.layers[c.pre], f"{c.name}: n_in != layers[{c.pre}]")
            want_out = desc.classes if c.post == -1 else desc.layers[c.post]
            _require(c.n_out == want_out, f"{c.name}: n_out {c.n_out}, expected {want_out}")
        if desc.loss == "cross_entropy":
            _require(
                any(c.post == -1 for c in desc.crossbars),
                "a cross-entropy chip needs a readout crossbar (post = -1)",
            )
        caps = desc.capabilities
        _require(
            caps.outer_product_update or caps.program_delta,
            "the chip must apply outer products or program deltas (else it cannot learn)",
        )
        _require(desc.free_steps >= 1 and desc.nudge_steps >= 1, "settle lengths must be >= 1")
        _require(desc.dt_s is None or desc.dt_s > 0, "dt_s must be None or positive")
        _require(caps.max_batch is None or caps.max_batch >= 1, "max_batch must be >= 1")
        _require(caps.max_points is None or caps.max_points >= 2, "max_points must be >= 2")
        _require(caps.beta_max is None or caps.beta_max > 0, "beta_max must be positive")
        weights = d.read_weights()
        _require(set(weights) == set(names), f"read_weights() keys {sorted(weights)} != {names}")
        for c in desc.crossbars:
            w, b = (np.asarray(a) for a in weights[c.name])
            _require(w.shape == (c.n_out, c.n_in), f"{c.name}: W has shape {w.shape}")
            _require(b.shape == (c.n_out,), f"{c.name}: b has shape {b.shape}")
            _require(
                np.isrealobj(w) and np.isfinite(w).all() and np.isfinite(b).all(),
                f"{c.name}: weights must be real and finite",
            )
            if not c.has_bias:
                _require(not np.any(b), f"{c.name}: a crossbar without bias reports b != 0")
    finally:
        d.close()
    d.close()  # idempotent
    return f"{len(names)} crossbars {', '.join(names)}; {_caps_text(caps)}"


def _caps_text(caps: Capabilities) -> str:
    flags = [f.name for f in dataclasses.fields(caps) if getattr(caps, f.name) is True]
    return "capabilities: " + (", ".join(flags) or "none")


def check_validation(t: _Target) -> str:
    d = _opened(t)
    try:
        desc = d.describe()
        caps = desc.capabilities
        x, y = t.batch(desc)
        n0, k = desc.layers[0], desc.classes
        before = d.read_weights()
        state = d.state_dict() if caps.checkpoint else None
        oor, unsup = (OutOfRange,), (UnsupportedCapability,)
        bad: list[tuple[tuple[type[BaseException], ...], Callable[[], Any], str]] = [
            (oor, lambda: d.load_inputs(np.zeros((BATCH, n0 + 1), np.float32), y), "x too wide"),
            (oor, lambda: d.load_inputs(np.zeros(n0, np.float32), None), "x of one dimension"),
            (oor, lambda: d.load_inputs(x, np.zeros((BATCH, k + 1), np.float32)), "y too wide"),
            (oor, lambda: d.load_inputs(x, np.zeros((BATCH + 1, k), np.float32)), "y too long"),
        ]
        if caps.max_batch is not None:
            big = np.zeros((caps.max_batch + 1, n0), np.float32)
            bad.append((oor, lambda: d.load_inputs(big, None), "batch above max_batch"))
        if caps.beta_max is not None:
            over = NudgeSchedule(betas=(2.0 * caps.beta_max,))
            bad.append((oor, lambda: d.run_schedule(over), "|beta| above beta_max"))
        if not caps.complex_nudges:
            cplx = NudgeSchedule(betas=(0.05j, -0.05j))
            bad.append((unsup, lambda: d.run_schedule(cplx), "complex beta without capability"))
        if not caps.previous_start:
            prev = NudgeSchedule(betas=(0.05, -0.05), start="previous")
            bad.append((unsup, lambda: d.run_schedule(prev), "start=previous without capability"))
        c0 = desc.crossbars[0]
        rows = _as_controller_sends(np.zeros((2, c0.n_out), np.float32))
        cols = _as_controller_sends(np.zeros((2, c0.n_in + 1), np.float32))
        delta = _as_controller_sends(np.zeros((c0.n_out, c0.n_in + 1), np.float32))
        if caps.outer_product_update:
            bad += [
                (oor, lambda: d.apply_outer_product("no-such", rows, cols, lr=0.1), "unknown name"),
                (
                    oor,
                    lambda: d.apply_outer_product(c0.name, rows[:, :-1], cols, lr=0.1),
                    "rows of the wrong width",
                ),
                (
                    oor,
                    lambda: d.apply_outer_product(c0.name, rows, cols[:, :-1], lr=0.1),
                    "cols without the bias column",
                ),
                (
                    oor,
                    lambda: d.apply_outer_product(c0.name, rows[:1], cols, lr=0.1),
                    "rows and cols of different R",
                ),
            ]
        else:
            bad.append(
                (
                    unsup,
                    lambda: d.apply_outer_product(c0.name, rows, cols, lr=0.1),
                    "outer product without capability",
                )
            )
        if caps.program_delta:
            bad += [
                (oor, lambda: d.program_delta("no-such", delta), "unknown crossbar name"),
                (oor, lambda: d.program_delta(c0.name, delta[:, :-1]), "delta of the wrong shape"),
            ]
        else:
            bad.append(
                (unsup, lambda: d.program_delta(c0.name, delta), "program without capability")
            )
        if not caps.checkpoint:
            bad.append((unsup, d.state_dict, "state_dict without checkpoint capability"))
        for kinds, fn, what in bad:
            _raises(kinds, fn, what)
        _require(
            _same_weights(before, d.read_weights()), "a refused call changed the chip's weights"
        )
        if state is not None:
            _require(_same_state(state, d.state_dict()), "a refused call changed the chip state")
        d.load_inputs(x, y)
        d.run_schedule(NudgeSchedule(betas=()))  # still works
    finally:
        d.close()
    return f"{len(bad)} bad calls refused with typed errors; chip unchanged and still working"


def _check_settled(
    s: Settled, desc: ChipDescription, batch: int, betas: Sequence[complex], what: str
) -> None:
    _require(isinstance(s, tuple) and len(s) == 7, f"{what}: run_schedule must return Settled")
    n_l = desc.layers
    k = len(betas)
    _require(len(s.free_states) == len(n_l), f"{what}: free_states needs one entry per layer")
    _require(len(s.states) == len(n_l), f"{what}: states needs one entry per layer")
    for i, (f, p) in enumerate(zip(s.free_states, s.states, strict=True)):
        f, p = np.asarray(f), np.asarray(p)
        _require(f.shape == (batch, n_l[i]), f"{what}: free_states[{i}] has shape {f.shape}")
        _require(np.isrealobj(f), f"{what}: free_states[{i}] must be real")
        _require(p.shape == (k, batch, n_l[i]), f"{what}: states[{i}] has shape {p.shape}")
        _require(np.isfinite(f).all() and np.isfinite(p).all(), f"{what}: states not finite")
        _require(
            f.dtype in (np.float32, np.float64)
            and p.dtype in (np.float32, np.float64, np.complex64, np.complex128),
            f"{what}: state dtypes {f.dtype}, {p.dtype} (float32/complex64 expected)",
        )
    fr, r = np.asarray(s.free_residual), np.asarray(s.residual)
    _require(fr.shape == (batch,), f"{what}: free_residual has shape {fr.shape}")
    _require(r.shape == (k, batch), f"{what}: residual has shape {r.shape}")
    _require(
        np.isrealobj(r) and np.all(fr >= 0) and np.all(r >= 0), f"{what}: residuals must be >= 0"
    )
    _require(
        float(fr.max()) <= RESIDUAL_TOL and (k == 0 or float(r.max()) <= RESIDUAL_TOL),
        f"{what}: not settled (residual {max(fr.max(), r.max(initial=0)):.3g} > {RESIDUAL_TOL})",
    )
    b = np.asarray(s.betas)
    _require(b.shape == (k,), f"{what}: betas has shape {b.shape}, expected ({k},)")
    if k:
        want = np.asarray(betas, np.complex128)
        _require(
            np.allclose(b.astype(np.complex128), want, rtol=1e-6, atol=1e-7),
            f"{what}: betas applied {b} differ from the requested {want}",
        )
    if desc.loss == "cross_entropy":
        fl, pl = np.asarray(s.free_logits), np.asarray(s.logits)
        _require(fl.shape == (batch, desc.classes), f"{what}: free_logits has shape {fl.shape}")
        _require(pl.shape == (k, batch, desc.classes), f"{what}: logits has shape {pl.shape}")


def check_schedule(t: _Target) -> str:
    d = _opened(t)
    try:
        desc = d.describe()
        caps = desc.capabilities
        x, y = t.batch(desc)
        d.load_inputs(x, y)
        free = d.run_schedule(NudgeSchedule(betas=()))
        _check_settled(free, desc, BATCH, (), "free phase")
        s0 = np.asarray(free.free_states[0])
        _require(
            np.allclose(s0, x, atol=0.02), "free_states[0] must be the clamped inputs (same units)"
        )
        beta = SYMMETRIC_BETA if caps.beta_max is None else min(SYMMETRIC_BETA, caps.beta_max)
        sched = NudgeSchedule(
            betas=(beta, -beta), free_steps=desc.free_steps, nudge_steps=desc.nudge_steps
        )
        sym = d.run_schedule(sched)
        _check_settled(sym, desc, BATCH, sched.betas, "symmetric schedule")
        l0 = _loss(sym.free_logits, sym.free_states[-1], y, desc.loss).mean()
        lp, lm = _loss(sym.logits, sym.states[-1], y, desc.loss).mean(axis=-1)
        _require(
            lp < l0 < lm,
            f"nudges pull the wrong way: loss {lp:.6g} at +beta, {l0:.6g} free, {lm:.6g} at "
            "-beta (+beta must lower the loss)",
        )
        ratio = (l0 - lp) / (lm - l0)
        _require(0.5 < ratio < 2.0, f"nudge response not linear at small beta ({ratio:.3g})")
        t.metrics["nudge_response_ratio"] = float(ratio)
        done = ["free", "symmetric"]
        if caps.complex_nudges:
            from ..hep import circle_betas

            circle = circle_betas(HEP_BETA, 4)
            c = d.run_schedule(NudgeSchedule(betas=circle))
            _check_settled(c, desc, BATCH, circle, "complex schedule")
            s1, s3 = np.asarray(c.states[-1][1]), np.asarray(c.states[-1][3])
            _require(np.iscomplexobj(s1), "complex nudges must give complex states")
            _require(
                float(np.abs(s1 - np.conj(s3)).mean()) < 0.05,
                "states at conjugate betas must be (nearly) conjugate",
            )
            done.append("complex")
        if caps.previous_start:
            p = d.run_schedule(NudgeSchedule(betas=(beta, -beta), start="previous"))
            _check_settled(p, desc, BATCH, (beta, -beta), "previous-start schedule")
            done.append("previous")
    finally:
        d.close()
    return f"{', '.join(done)} schedules: shapes, dtypes, betas, residuals and nudge sign ok"


def _check_report(rep: Any, name: str, what: str) -> UpdateReport:
    _require(isinstance(rep, UpdateReport), f"{what}: must return an UpdateReport")
    _require(rep.crossbar == name, f"{what}: report names {rep.crossbar!r}, not {name!r}")
    for f in ("pulses", "clipped_bound", "clipped_request"):
        v = getattr(rep, f)
        _require(isinstance(v, (int, np.integer)) and v >= 0, f"{what}: {f} must be an int >= 0")
    for f in ("requested_norm", "realised_norm"):
        v = float(getattr(rep, f))
        _require(math.isfinite(v) and v >= 0, f"{what}: {f} must be finite and >= 0")
    return rep


def _moved(before: dict, after: dict, name: str, desc: ChipDescription, what: str) -> np.ndarray:
    for other in desc.crossbar_names:
        if other != name:
            _require(
                np.array_equal(np.asarray(before[other][0]), np.asarray(after[other][0])),
                f"{what}: crossbar {other} changed too",
            )
    return _w_full(after, name) - _w_full(before, name)


def check_update(t: _Target) -> str:
    d = _opened(t)
    done = []
    try:
        desc = d.describe()
        caps = desc.capabilities
        rng = np.random.default_rng(t.seed + 1)
        c = desc.crossbars[-1]
        mask = np.ones(c.n_in + 1)
        if not c.has_bias:
            mask[-1] = 0.0
        if caps.outer_product_update:
            rows = rng.normal(size=(3, c.n_out)).astype(np.float32)
            cols = rng.normal(size=(3, c.n_in + 1)).astype(np.float32)
            lr = -0.01  # negative, as the controller sends it (gradient descent)
            want = lr * (rows.T.astype(np.float64) @ cols) * mask
            before = d.read_weights()
            rep = d.apply_outer_product(
                c.name, _as_controller_sends(rows), _as_controller_sends(cols), lr=lr
            )
            rep = _check_report(rep, c.name, "outer")
            dw = _moved(before, d.read_weights(), c.name, desc, "apply_outer_product")
            _check_realised(rep, dw, want, "apply_outer_product")
            done.append("outer product")
        if caps.program_delta:
            delta = (0.01 * rng.normal(size=(c.n_out, c.n_in + 1))).astype(np.float32)
            want = delta.astype(np.float64) * mask
            before = d.read_weights()
            rep = d.program_delta(c.name, _as_controller_sends(delta))
            rep = _check_report(rep, c.name, "program_delta")
            dw = _moved(before, d.read_weights(), c.name, desc, "program_delta")
            _check_realised(rep, dw, want, "program_delta")
            done.append("program delta")
        # Bounds: a huge request is clipped and reported; the weights stay finite and a
        # second identical push moves them much less (they sit at their bounds).
        huge = _as_controller_sends(np.full((c.n_out, c.n_in + 1), 1e3, np.float32))
        pushes = []
        for _ in range(2):
            before = d.read_weights()
            if caps.program_delta:
                rep = d.program_delta(c.name, huge)
            else:
                one_r = _as_controller_sends(np.ones((1, c.n_out), np.float32))
                one_c = _as_controller_sends(np.ones((1, c.n_in + 1), np.float32))
                rep = d.apply_outer_product(c.name, one_r, one_c, lr=-1e3)
            rep = _check_report(rep, c.name, "huge update")
            after = d.read_weights()
            dw = _moved(before, after, c.name, desc, "huge update")
            _require(np.isfinite(_w_full(after, c.name)).all(), "huge update: weights not finite")
            pushes.append((rep, float(np.linalg.norm(dw))))
        (rep1, n1), (_, n2) = pushes
        _require(
            rep1.realised_norm < rep1.requested_norm
            and rep1.clipped_bound + rep1.clipped_request > 0,
            "huge update: the report must show the request was clipped",
        )
        _require(n2 <= 0.5 * n1 + 1e-6, f"huge update: weights unbounded ({n1:.3g}, then {n2:.3g})")
        done.append("bounds")
    finally:
        d.close()
    return f"{', '.join(done)}: reports match the weights read back"


def _check_realised(rep: UpdateReport, dw: np.ndarray, want: np.ndarray, what: str) -> None:
    n_dw, n_want = float(np.linalg.norm(dw)), float(np.linalg.norm(want))
    _require(n_dw > 0, f"{what}: weights did not move")
    cos = _cos(dw, want)
    _require(cos >= 0.9, f"{what}: the weight change points elsewhere (cosine {cos:.4f})")
    _require(
        abs(rep.realised_norm - n_dw) <= 1e-2 * n_dw + 1e-6,
        f"{what}: report says realised_norm {rep.realised_norm:.6g}, weights moved {n_dw:.6g}",
    )
    _require(
        abs(rep.requested_norm - n_want) <= 1e-2 * n_want + 1e-6
        or rep.requested_norm >= n_want,  # a chip may count the bias column of a bias-less bar
        f"{what}: report says requested_norm {rep.requested_norm:.6g}, asked {n_want:.6g}",
    )


def check_checkpoint(t: _Target) -> str:
    d = _opened(t)
    try:
        desc = d.describe()
        if not desc.capabilities.checkpoint:
            _raises((UnsupportedCapability,), d.state_dict, "state_dict without checkpoint")
            raise CheckSkipped("no checkpoint capability (state_dict refused with a typed error)")
        state = d.state_dict()
        _require(
            isinstance(state, dict)
            and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()),
            "state_dict must map names to NumPy arrays",
        )
        before = d.read_weights()
        c = desc.crossbars[0]
        delta = np.full((c.n_out, c.n_in + 1), 0.01, np.float32)
        if desc.capabilities.program_delta:
            d.program_delta(c.name, _as_controller_sends(delta))
        else:
            rows = _as_controller_sends(np.ones((1, c.n_out), np.float32))
            d.apply_outer_product(c.name, rows, _as_controller_sends(delta[:1]), lr=-1.0)
        _require(not _same_weights(before, d.read_weights()), "the update changed nothing")
        d.load_state_dict(state)
        _require(_same_weights(before, d.read_weights()), "load_state_dict did not restore weights")
        _require(_same_state(state, d.state_dict()), "load_state_dict did not restore the state")
    finally:
        d.close()
    return f"state of {len(state)} arrays restores the chip bitwise"


def check_failures(t: _Target) -> str:
    d = _opened(t)
    try:
        _raises(
            (AnalogHepError,), lambda: d.run_schedule(NudgeSchedule(())), "settle before inputs"
        )
    finally:
        d.close()
    d.close()
    desc = d.describe()
    x, y = t.batch(desc)
    _raises((AnalogHepError,), lambda: d.load_inputs(x, y), "load_inputs after close")
    return "settle before inputs and use after close raise typed errors"


def _gradient(t: _Target, points: int, beta: float, cos_min: float, rel_max: float) -> str:
    """The estimate from the driver's settled states against the exact gradient: its
    direction (cosine) and its scale (relative error, which a wrong nudge scale moves and
    the cosine does not)."""
    import jax
    import jax.numpy as jnp

    from ..emulator import dac, fabricate, ground_truth
    from ..hep import circle_betas, hep_estimate

    d = _opened(t)
    try:
        desc = d.describe()
        caps = desc.capabilities
        if points > 2 and not caps.complex_nudges:
            raise CheckSkipped("no complex_nudges capability: hEP N > 2 does not apply")
        if caps.beta_max is not None:
            beta = min(beta, caps.beta_max)
        x, y = t.batch(desc)
        d.load_inputs(x, y)
        settled = d.run_schedule(NudgeSchedule(betas=circle_betas(beta, points)))
        weights = d.read_weights()
    finally:
        d.close()
    spec = t.circuit.spec
    chip, _ = fabricate(spec, dict(t.circuit.devices), spec.seed)
    chip = chip.without_noise()
    ref_names = chip.config.crossbar_names
    _require(
        len(ref_names) == len(desc.crossbars), "the chip's crossbars differ from the circuit's"
    )
    xbs = {}
    for ref, c in zip(ref_names, desc.crossbars, strict=True):
        xb = chip.crossbars[ref]
        full = _w_full(weights, c.name)
        _require(full.shape == xb.g_plus_S.shape, f"{c.name}: shape differs from the circuit's")
        # Same effective weights as the driver's chip: W = (G+ - G-) / g_unit about the
        # fabricated pair's midpoint.
        mid = 0.5 * (xb.g_plus_S + xb.g_minus_S)
        half = jnp.asarray(0.5 * full * xb.g_unit_S, xb.g_plus_S.dtype)
        xbs[ref] = dataclasses.replace(xb, g_plus_S=mid + half, g_minus_S=mid - half)
    chip = dataclasses.replace(chip, crossbars=xbs)
    steps = chip.config.free_steps
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    truth = ground_truth(
        chip, dac(chip, xj), yj, steps=steps, max_adjoint_iterations=max(20 * steps, 2000)
    )
    est = hep_estimate(
        tuple(jnp.asarray(s) for s in settled.states),
        None if settled.logits is None else jnp.asarray(settled.logits),
        yj,
        jnp.asarray(settled.betas),
        desc.crossbar_names,
    )
    e_all, g_all = [], []
    for ref, c in zip(ref_names, desc.crossbars, strict=True):
        ew, eb = (np.asarray(jax.device_get(a)) for a in est[c.name])
        gw, gb = (np.asarray(jax.device_get(a)) for a in truth.grads[ref])
        e_all += [ew.ravel()] + ([eb.ravel()] if c.has_bias else [])
        g_all += [gw.ravel()] + ([gb.ravel()] if c.has_bias else [])
    e, g = np.concatenate(e_all), np.concatenate(g_all)
    cos = _cos(e, g)
    rel = float(np.linalg.norm(e - g) / max(np.linalg.norm(g), 1e-300))
    t.metrics.update(cosine=cos, rel_error=rel, beta=float(beta), points=float(points))
    _require(
        cos >= cos_min,
        f"N={points} |beta|={beta:g}: cosine {cos:.6f} with the exact gradient < {cos_min}",
    )
    _require(
        rel <= rel_max,
        f"N={points} |beta|={beta:g}: relative error {rel:.2e} with the exact gradient > "
        f"{rel_max:g} (cosine {cos:.7f}): the estimate's scale is off; is every beta applied "
        "as the chip reports it?",
    )
    return f"N={points} |beta|={beta:g}: cosine {cos:.7f}, relative error {rel:.2e}"


def check_gradient_symmetric(t: _Target) -> str:
    return _gradient(t, 2, GRADIENT_SYMMETRIC_BETA, SYMMETRIC_COSINE_MIN, SYMMETRIC_REL_MAX)


def check_gradient_hep(t: _Target) -> str:
    return _gradient(t, HEP_POINTS, HEP_BETA, HEP_COSINE_MIN, HEP_REL_MAX)


CHECKS: dict[str, Callable[[_Target], str]] = {
    "structure": check_structure,
    "validation": check_validation,
    "schedule": check_schedule,
    "update": check_update,
    "checkpoint": check_checkpoint,
    "failures": check_failures,
    "gradient_symmetric": check_gradient_symmetric,
    "gradient_hep": check_gradient_hep,
}


# -- running ---------------------------------------------------------------------------------


def _target(driver: str | Callable[[], Driver], circuit: Any, seed: int) -> tuple[_Target, str]:
    if isinstance(circuit, str):
        from ..spec import load_circuit

        circuit = load_circuit(circuit)
    if isinstance(driver, str):
        from ._registry import open_driver

        arg = driver
        return _Target(lambda: open_driver(arg, circuit, seed=seed), circuit, seed), arg
    return _Target(driver, circuit, seed), getattr(driver, "__name__", repr(driver))


def run_check(
    name: str, driver: str | Callable[[], Driver], circuit: Any = "toy", *, seed: int = 0
) -> CheckResult:
    """Run the check ``name`` of :data:`CHECKS`.

    **Arguments:** ``driver`` a ``--driver`` argument (``emulator``, ``mychip:port=...``,
    ``tcp://HOST:PORT``) or a function returning a fresh driver on ``circuit``; ``circuit``
    a loaded circuit or its name/path (default the toy circuit); ``seed`` the run seed.

    **Returns:** a :class:`CheckResult`; an exception the check did not expect is a failure
    naming it, never raised.
    """
    if name not in CHECKS:
        raise KeyError(f"no conformance check {name!r}; known: {', '.join(CHECKS)}")
    t, _ = _target(driver, circuit, seed)
    t0 = time.perf_counter()
    try:
        msg = CHECKS[name](t)
        status: Status = "passed"
    except CheckSkipped as err:
        msg, status = str(err), "skipped"
    except CheckFailed as err:
        msg, status = str(err), "failed"
    except Exception as err:
        msg, status = f"raised {type(err).__name__}: {err}", "failed"
    return CheckResult(name, status, msg, time.perf_counter() - t0, dict(t.metrics))


def run_conformance(
    driver: str | Callable[[], Driver],
    circuit: Any = "toy",
    *,
    seed: int = 0,
    checks: Sequence[str] | None = None,
) -> ConformanceReport:
    """Run ``checks`` (default: all of :data:`CHECKS`) against ``driver``; see :func:`run_check`."""
    t, label = _target(driver, circuit, seed)
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        from ..errors import SpecError

        raise SpecError(f"unknown conformance check(s) {unknown}; known: {', '.join(CHECKS)}")
    results = tuple(run_check(n, t.open, t.circuit, seed=seed) for n in names)
    return ConformanceReport(label, t.circuit.spec.name, results)
