"""A fake instrument link to the pretend TOY-1 chip (what pyvisa-sim is to a real device).

The chip speaks a small SCPI-like command set in SI units. Binary data travel as NumPy
blocks (a real link would use IEEE 488.2 definite-length blocks). Behind the link, the
analog-hep emulator plays the chip's physics; a real driver replaces this class with a
``pyvisa`` resource and keeps everything in ``_driver.py``.

Commands (``l`` a layer index, ``NAME`` a crossbar)::

    *IDN?                          PretendLabs,TOY-1,<serial>,<firmware>
    CAL:VOLT? / CAL:COND? / CAL:CURR?   V per activity unit, S per weight unit, A per unit beta
    CONF:XBAR?                     NAME,n_out,n_in,bias;...   (bias 1 or 0)
    CONF:LAY? / CONF:SETT?         layer sizes and classes "6,4,4;4"; settle steps "300,300"
    SOUR:VOLT:BLOC <block>         clamp inputs (B, n_0) in V
    SOUR:TARG:BLOC <block>         targets (B, classes), one-hot
    SOUR:CURR:LIST <block>         nudge currents (K,) in A (real: a DC chip)
    SOUR:CURR:LIST?                the currents as applied (A)
    INIT                           settle free, then at every nudge current
    FETC:FREE? l / FETC:NUDG? l    node voltages (B, n_l) / (K, B, n_l) in V
    FETC:OUT:FREE? / FETC:OUT:NUDG?   read-out voltages (B, C) / (K, B, C) in V
    FETC:RES:FREE? / FETC:RES:NUDG?   settle residuals (B,) / (K, B) in V
    PROG:DELT:BLOC NAME <block>    write-verify conductance deltas (n_out, n_in + 1) in S
    PROG:REP?                      "pulses,failed" of the last programming
    MEAS:COND? NAME                G+ - G- of every device pair (n_out, n_in + 1) in S
    SYST:ERR?                      "0,No error" or "code,message" (oldest first)
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

__all__ = ["FakeInstrument"]

V_PER_UNIT = 0.25  # volts per activity unit (powers of two: conversions are exact)
S_PER_UNIT = 2.0**-20  # siemens per weight unit (about 0.95 uS)
A_PER_UNIT = 2.0**-24  # amperes per unit of beta (about 60 nA)


class FakeInstrument:
    """A message-based link to a TOY-1 chip emulated from ``circuit`` with ``seed``.

    ``writes`` counts every command that reached the chip (for tests that check that a
    driver validates before any I/O); ``timeout_s`` is the link timeout (unused here).
    """

    def __init__(self, circuit: Any, *, seed: int, serial: str = "SN0001", timeout_s: float = 5.0):
        from analog_hep.emulator import EmulatorDriver  # the chip's physics, behind the link

        self._chip = EmulatorDriver(circuit, seed=seed)
        self._serial = serial
        self.timeout_s = timeout_s
        self.writes = 0
        self._errors: deque[str] = deque()
        self._currents_A = np.zeros(0)
        self._settled: Any = None
        self._prog = (0, 0)
        self._open = True

    # -- the link ----------------------------------------------------------------------------

    def write(self, command: str) -> None:
        self._io()
        self.writes += 1
        cmd = command.partition(" ")[0]
        if cmd == "INIT":
            self._init()
        else:
            self._error(-113, f"undefined header {cmd!r}")

    def write_block(self, command: str, block: np.ndarray) -> None:
        self._io()
        self.writes += 1
        cmd, _, arg = command.partition(" ")
        try:
            if cmd == "SOUR:VOLT:BLOC":
                self._x = np.asarray(block, np.float32) / np.float32(V_PER_UNIT)
            elif cmd == "SOUR:TARG:BLOC":
                self._chip.load_inputs(self._x, np.asarray(block, np.float32))
            elif cmd == "SOUR:CURR:LIST":
                self._currents_A = np.asarray(block, np.float64)
            elif cmd == "PROG:DELT:BLOC":
                delta_w = np.asarray(block, np.float32) / np.float32(S_PER_UNIT)
                rep = self._chip.program_delta(arg, delta_w)
                self._prog = (rep.pulses, rep.clipped_bound)
            else:
                self._error(-113, f"undefined header {cmd!r}")
        except Exception as err:  # the chip flags an execution error, the link survives
            self._error(-200, f"execution error: {err}")

    def query(self, command: str) -> str:
        self._io()
        cmd, _, _ = command.partition(" ")
        chip = self._chip
        desc = chip.describe()
        if cmd == "*IDN?":
            return f"PretendLabs,TOY-1,{self._serial},1.0"
        if cmd == "CAL:VOLT?":
            return repr(V_PER_UNIT)
        if cmd == "CAL:COND?":
            return repr(S_PER_UNIT)
        if cmd == "CAL:CURR?":
            return repr(A_PER_UNIT)
        if cmd == "CONF:XBAR?":
            return ";".join(
                f"{c.name},{c.n_out},{c.n_in},{int(c.has_bias)}" for c in desc.crossbars
            )
        if cmd == "CONF:LAY?":
            return ",".join(map(str, desc.layers)) + f";{desc.classes}"
        if cmd == "CONF:SETT?":
            return f"{desc.free_steps},{desc.nudge_steps}"
        if cmd == "PROG:REP?":
            return f"{self._prog[0]},{self._prog[1]}"
        if cmd == "SYST:ERR?":
            return self._errors.popleft() if self._errors else "0,No error"
        self._error(-113, f"undefined header {cmd!r}")
        return ""

    def query_block(self, command: str) -> np.ndarray:
        self._io()
        cmd, _, arg = command.partition(" ")
        s = self._settled
        if cmd == "MEAS:COND?":
            w = self._chip.read_weights().get(arg)
            if w is None:
                self._error(-224, f"no crossbar {arg!r}")
                return np.zeros(0)
            full = np.concatenate([w[0], w[1][:, None]], axis=1)
            return full.astype(np.float64) * S_PER_UNIT
        if cmd == "SOUR:CURR:LIST?":
            return self._currents_A.copy()
        if s is None:
            self._error(-230, "no settled data: send INIT first")
            return np.zeros(0)
        volts = {
            "FETC:FREE?": lambda: s.free_states[int(arg)],
            "FETC:NUDG?": lambda: s.states[int(arg)],
            "FETC:OUT:FREE?": lambda: s.free_logits,
            "FETC:OUT:NUDG?": lambda: s.logits,
            "FETC:RES:FREE?": lambda: s.free_residual,
            "FETC:RES:NUDG?": lambda: s.residual,
        }
        if cmd not in volts:
            self._error(-113, f"undefined header {cmd!r}")
            return np.zeros(0)
        return np.asarray(volts[cmd]()) * np.float32(V_PER_UNIT)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._chip.close()

    # -- inside the chip ---------------------------------------------------------------------

    def _io(self) -> None:
        if not self._open:
            raise ConnectionError("the instrument link is closed")

    def _error(self, code: int, message: str) -> None:
        self._errors.append(f"{code},{message}")

    def _init(self) -> None:
        from analog_hep.drivers import NudgeSchedule

        betas = tuple(complex(i / A_PER_UNIT) for i in self._currents_A)
        try:
            self._settled = self._chip.run_schedule(NudgeSchedule(betas=betas))
        except Exception as err:
            self._settled = None
            self._error(-200, f"execution error: {err}")
