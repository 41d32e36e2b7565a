"""The update-scheme checks: what a chip that claims a scheme other than ``direct`` in
``capabilities.update_schemes`` must do, through the driver contract only (``direct``, the
plain outer product, is the ``update`` check's).

``tiki_taka`` (docs/devices.md, "Tiki-Taka"): ``apply_outer_product`` pulses a fast array
``A`` and every ``transfer_every`` updates the chip transfers ``A`` into the weights' array
``C``; the weights read back are ``C + gamma A``. The check reads ``transfer_every`` from
``describe().extra["tiki_taka"][crossbar]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..drivers import ChipDescription, Driver
from ._base import (
    CheckSkipped,
    _as_controller_sends,
    _cos,
    _opened,
    _require,
    _same_state,
    _same_weights,
    _Target,
    _w_full,
)

__all__ = ["TIKI_TAKA_MAX_EVERY", "check_tiki_taka"]

TIKI_TAKA_MAX_EVERY = 1000
"""Largest ``transfer_every`` the check waits for (it sends that many updates twice)."""

HUGE_LR = -1e3  # with all-ones factors: every entry asks for -1000 weight units


def _settings(desc: ChipDescription) -> dict[str, Any]:
    extra = desc.extra.get("tiki_taka")
    _require(
        isinstance(extra, dict) and set(extra) == set(desc.crossbar_names),
        "a chip with the tiki_taka scheme describes every crossbar's settings in "
        f"describe().extra['tiki_taka'] (crossbars {list(desc.crossbar_names)}), found "
        f"{sorted(extra) if isinstance(extra, dict) else type(extra).__name__}",
    )
    for name, s in extra.items():
        every = s.get("transfer_every") if isinstance(s, dict) else None
        _require(
            type(every) is int and every >= 1,
            f"extra['tiki_taka'][{name!r}]['transfer_every'] must be an int >= 1, found {every!r}",
        )
    return extra


def _push(d: Driver, name: str, rows: np.ndarray, cols: np.ndarray, lr: float) -> None:
    d.apply_outer_product(name, _as_controller_sends(rows), _as_controller_sends(cols), lr=lr)


def check_tiki_taka(t: _Target) -> str:
    d = _opened(t)
    try:
        desc = d.describe()
        caps = desc.capabilities
        if "tiki_taka" not in caps.update_schemes:
            raise CheckSkipped(
                f"the chip's update schemes are {', '.join(caps.update_schemes)}, not tiki_taka"
            )
        _require(caps.outer_product_update, "tiki_taka updates go through apply_outer_product")
        settings = _settings(desc)
        c = desc.crossbars[-1]
        every = settings[c.name]["transfer_every"]
        if every > TIKI_TAKA_MAX_EVERY:
            raise CheckSkipped(
                f"{c.name}: transfer_every {every} > {TIKI_TAKA_MAX_EVERY}: too many updates "
                "to wait for; check the chip on a circuit with a shorter schedule"
            )
        ones_r = np.ones((1, c.n_out), np.float32)
        ones_c = np.ones((1, c.n_in + 1), np.float32)
        zero_r = np.zeros((1, c.n_out), np.float32)
        mask = np.ones(c.n_in + 1)
        if not c.has_bias:
            mask[-1] = 0.0
        want = HUGE_LR * np.outer(ones_r[0], ones_c[0]) * mask
        w0 = d.read_weights()
        state0 = d.state_dict() if caps.checkpoint else None

        # A request as large as can be: A's devices go as far as one update takes them.
        _push(d, c.name, ones_r, ones_c, HUGE_LR)
        w1 = d.read_weights()
        _require(
            all(np.isfinite(_w_full(w1, n)).all() for n in desc.crossbar_names),
            "weights not finite after a huge request",
        )
        # Zero requests cannot move A: whatever moves now is C, by a transfer. One of the
        # next transfer_every updates is a transfer.
        for _ in range(every):
            _push(d, c.name, zero_r, ones_c, HUGE_LR)
        w2 = d.read_weights()
        for other in desc.crossbar_names:
            if other != c.name:
                _require(
                    _same_weights({other: w0[other]}, {other: w2[other]}),
                    f"updates of {c.name} changed crossbar {other}",
                )
        moved = _w_full(w2, c.name) - _w_full(w1, c.name)
        _require(
            float(np.abs(moved).max()) > 0,
            f"{c.name}: no transfer moved the weights within transfer_every = {every} updates "
            "after a huge request (zero requests afterwards move A not at all)",
        )
        cos = _cos(moved, want)
        _require(cos > 0, f"{c.name}: the transfer moved C against the request (cosine {cos:.3f})")
        t.metrics["transfer_cosine"] = cos
        done = [f"a transfer within {every} updates moves C with the request (cosine {cos:.2f})"]

        if caps.checkpoint:
            assert state0 is not None
            mid = d.state_dict()
            rng = np.random.default_rng(t.seed + 2)
            steps = [
                (
                    rng.normal(size=(2, c.n_out)).astype(np.float32),
                    rng.normal(size=(2, c.n_in + 1)).astype(np.float32),
                )
                for _ in range(every + 1)
            ]
            for rows, cols in steps:
                _push(d, c.name, rows, cols, -0.05)
            w_end, s_end = d.read_weights(), d.state_dict()
            _require(not _same_state(mid, s_end), "updates left the state unchanged")
            d.load_state_dict(mid)
            _require(_same_weights(w2, d.read_weights()), "load_state_dict did not restore W")
            _require(_same_state(mid, d.state_dict()), "load_state_dict did not restore state")
            for rows, cols in steps:
                _push(d, c.name, rows, cols, -0.05)
            _require(
                _same_weights(w_end, d.read_weights()) and _same_state(s_end, d.state_dict()),
                "updates after load_state_dict differ from the same updates before it: the "
                "state must hold the fast array, the buffer and the transfer counters",
            )
            d.load_state_dict(state0)
            _require(_same_weights(w0, d.read_weights()), "the first state did not restore W")
            done.append(f"a resumed run of {every + 1} updates repeats bitwise")
    finally:
        d.close()
    return "; ".join(done)
