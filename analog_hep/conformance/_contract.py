"""The structural checks: the protocol and the description (``structure``), inputs
refused before they reach the chip (``validation``), and typed errors for misuse
(``failures``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..drivers import Capabilities, ChipDescription, NudgeSchedule
from ..drivers.validate import check_description
from ..errors import AnalogHepError, OutOfRange, UnsupportedCapability
from ._base import (
    BATCH,
    CheckFailed,
    _as_controller_sends,
    _opened,
    _raises,
    _require,
    _same_state,
    _same_weights,
    _Target,
)

__all__ = ["check_failures", "check_structure", "check_validation"]


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
        # The controller pairs states through each crossbar's pre/post, but the kit's checks
        # compare the chip with the emulator crossbar by crossbar, by name: the circuit's
        # names and order are required here, and pre/post must say what the names mean.
        _require(
            names == tuple(spec.crossbar_names),
            f"crossbar names {names} differ from the circuit's {tuple(spec.crossbar_names)} "
            "(W0 .. W{L-1}, then readout, in that order)",
        )
        geoms = _circuit_geometries(spec)
        for i, c in enumerate(desc.crossbars):
            want_pre_post = (len(desc.layers) - 1, -1) if c.name == "readout" else (i, i + 1)
            _require(
                (c.pre, c.post) == want_pre_post,
                f"{c.name}: (pre, post) = {(c.pre, c.post)}, expected {want_pre_post}",
            )
            _require(0 <= c.pre < len(desc.layers), f"{c.name}: pre {c.pre} is not a layer")
            _require(
                c.geometry == geoms.get(c.name),
                f"{c.name}: geometry {c.geometry} differs from the circuit's "
                f"{geoms.get(c.name)} (None: a dense crossbar)",
            )
            if c.geometry is not None:
                continue  # a conv crossbar's shapes are its geometry's: check_description
            _require(c.n_in == desc.layers[c.pre], f"{c.name}: n_in != layers[{c.pre}]")
            want_out = desc.classes if c.post == -1 else desc.layers[c.post]
            _require(c.n_out == want_out, f"{c.name}: n_out {c.n_out}, expected {want_out}")
        try:
            check_description(desc)
        except OutOfRange as err:
            raise CheckFailed(str(err)) from None
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
        _require(
            isinstance(caps.update_schemes, tuple)
            and len(caps.update_schemes) > 0
            and all(isinstance(s, str) and s for s in caps.update_schemes),
            f"update_schemes must be a non-empty tuple of names, found {caps.update_schemes!r}",
        )
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
    conv = [c.name for c in desc.crossbars if c.geometry is not None]
    kinds = f" (conv: {', '.join(conv)})" if conv else ""
    return f"{len(names)} crossbars {', '.join(names)}{kinds}; {_caps_text(caps)}"


def _circuit_geometries(spec: Any) -> dict[str, Any]:
    """``{name: ConvGeometry}`` of the circuit's conv crossbars (none for an MLP)."""
    geoms = tuple(getattr(spec, "geometries", ()) or ())
    names = spec.crossbar_names[: len(geoms)]
    return {n: g for n, g in zip(names, geoms, strict=True) if g is not None}


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
