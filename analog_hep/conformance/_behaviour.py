"""The behavioural checks: what a settle returns (``schedule``), what an update does to
the weights and reports (``update``), and checkpoints that restore bitwise
(``checkpoint``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..drivers import ChipDescription, NudgeSchedule, Settled, UpdateReport
from ..drivers.validate import check_post
from ..errors import OutOfRange, UnsupportedCapability
from ._base import (
    BATCH,
    HEP_BETA,
    RESIDUAL_TOL,
    SYMMETRIC_BETA,
    CheckFailed,
    CheckSkipped,
    _as_controller_sends,
    _cos,
    _loss,
    _opened,
    _raises,
    _require,
    _same_state,
    _same_weights,
    _Target,
    _w_full,
)

__all__ = ["check_checkpoint", "check_schedule", "check_update"]


def _check_settled(
    s: Settled, desc: ChipDescription, batch: int, betas: Sequence[complex], what: str
) -> None:
    _require(isinstance(s, Settled), f"{what}: run_schedule must return Settled")
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
    _check_post(s, desc, betas, what)


def _check_post(s: Settled, desc: ChipDescription, betas: Sequence[complex], what: str) -> None:
    """Conv crossbars: ``free_post``/``post`` for every one, of their shapes, finite, real
    at the free point and at real betas (complex signals only from complex nudges); ``None``
    for a chip without conv crossbars."""
    try:
        check_post(desc, s)
    except OutOfRange as err:
        raise CheckFailed(f"{what}: {err}") from None
    if s.post is None or not s.post:
        return
    real = all(complex(b).imag == 0 for b in betas)
    for name in s.post:
        f, p = np.asarray(s.free_post[name]), np.asarray(s.post[name])
        _require(
            np.isfinite(f).all() and np.isfinite(p).all(),
            f"{what}: the post-synaptic signals of {name} are not finite",
        )
        _require(np.isrealobj(f), f"{what}: free_post[{name!r}] must be real, found {f.dtype}")
        _require(
            not real or np.isrealobj(p) or not np.any(np.asarray(p).imag),
            f"{what}: post[{name!r}] is complex at real betas",
        )


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
            for name, p in (c.post or {}).items():
                p1, p3 = np.asarray(p[1]), np.asarray(p[3])
                scale = float(np.abs(p1).mean()) + 1e-12
                _require(
                    float(np.abs(p1 - np.conj(p3)).mean()) < 0.05 * scale + 1e-6,
                    f"post-synaptic signals of {name} at conjugate betas must be (nearly) "
                    "conjugate",
                )
            done.append("complex")
        if caps.previous_start:
            p = d.run_schedule(NudgeSchedule(betas=(beta, -beta), start="previous"))
            _check_settled(p, desc, BATCH, (beta, -beta), "previous-start schedule")
            done.append("previous")
    finally:
        d.close()
    conv = [x.name for x in desc.crossbars if x.geometry is not None]
    posts = f"; post-synaptic signals of {', '.join(conv)}" if conv else ""
    return f"{', '.join(done)} schedules: shapes, dtypes, betas, residuals and nudge sign ok{posts}"


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
        # Only the direct scheme applies the request to the weights at once (another scheme,
        # e.g. tiki_taka, has a check of its own).
        direct = "direct" in caps.update_schemes
        if caps.outer_product_update and direct:
            rows = rng.normal(size=(3, c.n_out)).astype(np.float32)
            cols = rng.normal(size=(3, c.n_in + 1)).astype(np.float32)
            lr = -0.01  # negative, as the controller sends it (gradient descent)
            step = (desc.extra.get("dw_min") or {}).get(c.name)
            if step:
                # A chip that describes its pulse step gets a request of about 10 steps per
                # weight: the direction of a few coarse stochastic pulses is the device's
                # noise, not the driver's contract.
                lr = -10.0 * float(step) / float(np.mean(np.abs(rows.T @ cols)))
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
        if not (caps.program_delta or direct):
            if not done:
                raise CheckSkipped(
                    "no direct update to check (update schemes "
                    f"{', '.join(caps.update_schemes)}: see their own checks)"
                )
            return f"{', '.join(done)}: reports match the weights read back"
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
        # Bounded: the second push moves much less (the weights sit at their bounds), or
        # neither push took more than a sliver of the request (a device with many small steps
        # may not reach its bound within one write-verify's pulse budget).
        sliver = 1e-2 * rep1.requested_norm
        _require(
            n2 <= 0.5 * n1 + 1e-6 or max(n1, n2) <= sliver,
            f"huge update: weights unbounded ({n1:.3g}, then {n2:.3g}, of "
            f"{rep1.requested_norm:.3g} requested)",
        )
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
        _require(
            not _same_weights(before, d.read_weights()) or not _same_state(state, d.state_dict()),
            "the update changed nothing",
        )
        d.load_state_dict(state)
        _require(_same_weights(before, d.read_weights()), "load_state_dict did not restore weights")
        _require(_same_state(state, d.state_dict()), "load_state_dict did not restore the state")
    finally:
        d.close()
    return f"state of {len(state)} arrays restores the chip bitwise"
