"""The analog-hep driver of the pretend TOY-1 chip: a thin class over the instrument link.

What every real driver does, in the order it matters:

1. **Describe** the chip from what the chip says about itself (``CONF:*``), check that it
   is the circuit the run asked for, and advertise only what the chip can do.
2. **Calibrate**: read the chip's unit constants once at open (V per activity unit,
   S per weight unit, A per unit beta) and convert every value at the link.
3. **Validate before any I/O**: shapes, finite values, ranges and capabilities raise
   :class:`OutOfRange` / :class:`UnsupportedCapability` before a byte reaches the chip.
   The checks of the contract are analog-hep's own (:mod:`analog_hep.drivers.validate`),
   made against the description the driver advertises: its limits are checked with them.
4. **Batch**: one call settles the whole minibatch at every nudge point.
5. **Report** what the chip really did (pulses, failed devices, realised change measured
   by reading the conductances back), and **check the chip's error queue** after each
   operation, turning chip errors into typed exceptions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analog_hep.drivers import (
    Capabilities,
    ChipDescription,
    CrossbarInfo,
    NudgeSchedule,
    Settled,
    UpdateReport,
)
from analog_hep.drivers.validate import (
    check_delta,
    check_inputs,
    check_schedule,
    find_crossbar,
)
from analog_hep.errors import (
    ConnectionLost,
    NotSettled,
    OutOfRange,
    SpecError,
    UnsupportedCapability,
)

from ._instrument import FakeInstrument

__all__ = ["ToyChipDriver", "open_driver"]

MAX_BATCH = 256  # the chip's input buffer (samples per call)
MAX_POINTS = 16  # nudge currents per call
BETA_MAX = 1.0  # largest |beta| the nudge current sources reach (dimensionless)


class ToyChipDriver:
    """Drive a PretendLabs TOY-1 chip.

    **Arguments:** ``circuit`` the run's circuit (the chip must implement it); ``seed`` the
    run seed (the fake chip's noise; a real chip ignores it); ``instrument`` an open link
    (default: a :class:`FakeInstrument`); ``options`` from ``--driver toychip:KEY=VALUE``:
    ``serial`` (instrument serial number), ``timeout_s`` (link timeout, s).

    **Raises:** :class:`SpecError` if the chip does not implement ``circuit`` or an option
    is unknown.
    """

    name = "toychip"

    def __init__(
        self,
        circuit: Any,
        *,
        seed: int,
        instrument: Any | None = None,
        options: dict[str, str] | None = None,
    ):
        options = dict(options or {})
        unknown = set(options) - {"serial", "timeout_s"}
        if unknown:
            raise SpecError(f"--driver toychip: unknown option(s) {sorted(unknown)}")
        timeout_s = float(options.get("timeout_s", 5.0))
        self.inst = instrument or FakeInstrument(
            circuit, seed=seed, serial=options.get("serial", "SN0001"), timeout_s=timeout_s
        )
        self.identity = self.inst.query("*IDN?")
        # Calibration: the unit constants of this chip (a real chip: from a calibration file
        # measured on the bench, with its date and temperature).
        self.v_per_unit_V = float(self.inst.query("CAL:VOLT?"))
        self.s_per_unit_S = float(self.inst.query("CAL:COND?"))
        self.a_per_unit_A = float(self.inst.query("CAL:CURR?"))
        self._desc = self._describe_chip(circuit)
        self._loaded = False
        self._closed = False
        self._check_errors("open")

    def _describe_chip(self, circuit: Any) -> ChipDescription:
        lay, _, classes = self.inst.query("CONF:LAY?").partition(";")
        layers = tuple(int(n) for n in lay.split(","))
        spec = circuit.spec
        if layers != tuple(spec.layers) or int(classes) != spec.readout.classes:
            raise SpecError(
                f"the TOY-1 chip has layers {layers} and {classes} classes; circuit "
                f"{spec.name!r} needs {tuple(spec.layers)} and {spec.readout.classes}"
            )
        xbs = []
        for i, item in enumerate(self.inst.query("CONF:XBAR?").split(";")):
            name, n_out, n_in, bias = item.split(",")
            post = -1 if name == "readout" else i + 1
            pre = len(layers) - 1 if name == "readout" else i
            xbs.append(CrossbarInfo(name, int(n_out), int(n_in), bias == "1", pre, post))
        free_steps, nudge_steps = (int(n) for n in self.inst.query("CONF:SETT?").split(","))
        return ChipDescription(
            name=spec.name,
            driver=self.name,
            layers=layers,
            classes=int(classes),
            loss=spec.readout.loss,
            crossbars=tuple(xbs),
            capabilities=Capabilities(
                complex_nudges=False,  # a DC chip: only real nudge currents
                previous_start=False,
                outer_product_update=False,
                program_delta=True,  # write-verify per device
                checkpoint=False,  # real conductances cannot be "restored"
                max_batch=MAX_BATCH,
                max_points=MAX_POINTS,
                beta_max=BETA_MAX,
            ),
            free_steps=free_steps,
            nudge_steps=nudge_steps,
            dt_s=None,
            holomorphic=True,
            extra={"identity": self.identity, "v_per_unit_V": self.v_per_unit_V},
        )

    # -- helpers -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectionLost("the TOY-1 link is closed")

    def _check_errors(self, during: str) -> None:
        """Drain the chip's error queue; raise the first error as a typed exception."""
        errors = []
        while True:
            code, _, msg = self.inst.query("SYST:ERR?").partition(",")
            if int(code) == 0:
                break
            errors.append(f"{code} {msg}")
        if errors:
            raise OutOfRange(f"TOY-1 refused {during}: {'; '.join(errors)}")

    # -- the driver protocol -----------------------------------------------------------------

    def describe(self) -> ChipDescription:
        return self._desc

    def load_inputs(self, x: Any, y: Any | None) -> None:
        self._check_open()
        check_inputs(self._desc, x, y)  # shapes, max_batch, real and finite values
        x = np.asarray(x, np.float32)
        y = np.zeros((x.shape[0], self._desc.classes)) if y is None else y
        y = np.asarray(y, np.float32)
        self.inst.write_block("SOUR:VOLT:BLOC", x * np.float32(self.v_per_unit_V))
        self.inst.write_block("SOUR:TARG:BLOC", y)
        self._check_errors("load_inputs")
        self._loaded = True

    def run_schedule(self, schedule: NudgeSchedule) -> Settled:
        self._check_open()
        # real betas only (a DC chip), at most MAX_POINTS, |beta| <= BETA_MAX, start="free"
        check_schedule(self._desc, schedule)
        betas = [complex(b).real for b in schedule.betas]
        if not self._loaded:
            raise NotSettled("load_inputs must come before run_schedule")
        self.inst.write_block("SOUR:CURR:LIST", np.asarray(betas) * self.a_per_unit_A)
        self.inst.write("INIT")
        self._check_errors("run_schedule")
        v = np.float32(self.v_per_unit_V)
        n_layers = len(self._desc.layers)

        def fetch(cmd: str) -> np.ndarray:
            return self.inst.query_block(cmd) / v

        applied = self.inst.query_block("SOUR:CURR:LIST?") / self.a_per_unit_A
        out = Settled(
            free_states=tuple(fetch(f"FETC:FREE? {i}") for i in range(n_layers)),
            free_logits=fetch("FETC:OUT:FREE?"),
            free_residual=fetch("FETC:RES:FREE?"),
            betas=applied.astype(np.complex64),
            states=tuple(fetch(f"FETC:NUDG? {i}") for i in range(n_layers)),
            logits=fetch("FETC:OUT:NUDG?"),
            residual=fetch("FETC:RES:NUDG?"),
        )
        self._check_errors("run_schedule")
        return out

    def apply_outer_product(self, name: str, rows: Any, cols: Any, *, lr: float) -> UpdateReport:
        raise UnsupportedCapability(
            "the TOY-1 has no parallel outer-product update; program deltas instead"
        )

    def program_delta(self, name: str, delta_w: Any) -> UpdateReport:
        self._check_open()
        check_delta(self._desc, name, delta_w)  # known crossbar, (n_out, n_in + 1), finite
        c = find_crossbar(self._desc, name)
        delta_w = np.array(delta_w, np.float32)  # a copy: the bias column may be zeroed
        if not c.has_bias:
            delta_w[:, -1] = 0.0
        before = self.inst.query_block(f"MEAS:COND? {name}")
        self.inst.write_block(f"PROG:DELT:BLOC {name}", delta_w * self.s_per_unit_S)
        self._check_errors("program_delta")
        pulses, failed = (int(n) for n in self.inst.query("PROG:REP?").split(","))
        after = self.inst.query_block(f"MEAS:COND? {name}")
        realised = (after - before) / self.s_per_unit_S
        return UpdateReport(
            crossbar=name,
            pulses=pulses,
            clipped_bound=failed,
            clipped_request=0,
            requested_norm=float(np.linalg.norm(delta_w)),
            realised_norm=float(np.linalg.norm(realised)),
        )

    def read_weights(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        self._check_open()
        out = {}
        for c in self._desc.crossbars:
            g = self.inst.query_block(f"MEAS:COND? {c.name}") / self.s_per_unit_S
            g = g.astype(np.float32)
            out[c.name] = (g[:, :-1], g[:, -1] if c.has_bias else np.zeros(c.n_out, np.float32))
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        raise UnsupportedCapability("the TOY-1 cannot save its conductances as a checkpoint")

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        raise UnsupportedCapability("the TOY-1 cannot restore a checkpoint")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.inst.close()


def open_driver(circuit: Any, *, seed: int, options: dict[str, str] | None = None) -> ToyChipDriver:
    """Entry-point factory (``analog_hep.drivers`` -> ``toychip``)."""
    return ToyChipDriver(circuit, seed=seed, options=options)
