"""Pulse-response measurements for ``analog-hep fit-device``: reading and checking the CSV.

A CSV file with a header and one row per pulse::

    device,pulse,direction,conductance_S

``direction`` is +1 (potentiating) or -1 (depressing), or 0 for a read without a pulse (e.g.
the initial state); ``conductance_S`` is the conductance read after the pulse, in siemens;
``pulse`` numbers the pulses of one device (unique, need not start at 0). Extra columns are
ignored. Each pulse whose previous read (pulse number minus one) is present gives one
observed step ``ΔG_k = G_k - G_{k-1}`` at state ``G_{k-1}``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import SpecError
from ...spec._yaml import decode_text

__all__ = ["MAX_CSV_BYTES", "PulseData", "read_measurements"]

_REQUIRED = ("device", "pulse", "direction", "conductance_S")


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PulseData:
    """Observed steps of all devices (numpy, siemens).

    - ``device_names``: device labels in order of first appearance;
    - ``device``: int ``(m,)`` index into ``device_names`` of each step;
    - ``direction``: int ``(m,)`` +1 / -1;
    - ``g_before_S``, ``g_after_S``: float64 ``(m,)`` reads before and after the pulse;
    - ``g_lo_S``, ``g_hi_S``: float64 ``(n_devices,)`` lowest and highest read of each device;
    - ``n_rows``: data rows read; ``n_unpaired``: pulses without a previous read.
    """

    path: str
    device_names: tuple[str, ...]
    device: np.ndarray
    direction: np.ndarray
    g_before_S: np.ndarray
    g_after_S: np.ndarray
    g_lo_S: np.ndarray
    g_hi_S: np.ndarray
    n_rows: int
    n_unpaired: int

    @property
    def n_devices(self) -> int:
        return len(self.device_names)

    @property
    def step_S(self) -> np.ndarray:
        return self.g_after_S - self.g_before_S


def _row_error(path: str, line: int, column: str, expected: str, found: str) -> SpecError:
    return SpecError(f"{path}:{line}: {column}: expected {expected}, found {found!r} (row {line})")


MAX_CSV_BYTES = 256 * 1024 * 1024
"""Largest measurements file read (bytes): ~5 million pulse rows."""


def _read_csv_text(p: str) -> str:
    """The measurements file as text: UTF-8, at most :data:`MAX_CSV_BYTES`.

    **Raises:** :class:`SpecError` naming the file (and the line of a byte that is not UTF-8)
    for a file that cannot be read, is too large, or is binary / in another encoding.
    """
    try:
        with open(p, "rb") as raw_file:
            raw = raw_file.read(MAX_CSV_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{p}: cannot read the measurements file: {err.strerror}") from None
    if len(raw) > MAX_CSV_BYTES:
        raise SpecError(
            f"{p}: the measurements file is larger than the limit of {MAX_CSV_BYTES} bytes "
            "(256 MiB)"
        )
    return decode_text(
        raw, p, expected="expected a CSV of device,pulse,direction,conductance_S rows"
    )


def read_measurements(path: str | Path) -> PulseData:
    """Read and check a pulse-response CSV (see the module docstring).

    **Raises:** :class:`SpecError` naming the file, the line (row) and the column of the
    first problem: a missing header column, a short row, a non-integer pulse, a direction
    other than +1/-1/0, a conductance that is not a finite number >= 0 S, a repeated pulse
    number of one device, or too little data.
    """
    p = str(path)
    with io.StringIO(_read_csv_text(p), newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise SpecError(
                f"{p}:1: header: expected 'device,pulse,direction,conductance_S', found an "
                "empty file"
            ) from None
        except csv.Error as err:
            raise SpecError(f"{p}:1: header: not a CSV line ({err})") from None
        names = [h.strip() for h in header]
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            raise SpecError(
                f"{p}:1: header: expected columns {', '.join(_REQUIRED)} (extra columns are "
                f"ignored), found {','.join(names)!r}; missing {', '.join(missing)}"
            )
        col = {c: names.index(c) for c in _REQUIRED}
        need = max(col.values()) + 1
        records: dict[str, dict[int, tuple[int, float, int]]] = {}
        order: list[str] = []
        n_rows = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                raise SpecError(f"{p}:{reader.line_num}: not a CSV line ({err})") from None
            line = reader.line_num
            if not row or all(not f.strip() for f in row):
                continue
            n_rows += 1
            if len(row) < need:
                raise SpecError(
                    f"{p}:{line}: row {line}: expected at least {need} fields "
                    f"({','.join(names)}), found {len(row)}: {','.join(row)!r}"
                )
            dev = row[col["device"]].strip()
            if not dev:
                raise _row_error(p, line, "device", "a non-empty device label", dev)
            pulse_s = row[col["pulse"]].strip()
            try:
                pulse = int(pulse_s)
            except ValueError:
                raise _row_error(p, line, "pulse", "an integer pulse number", pulse_s) from None
            dir_s = row[col["direction"]].strip()
            try:
                direction = int(float(dir_s))
                if float(dir_s) != direction or direction not in (-1, 0, 1):
                    raise ValueError
            except ValueError:
                raise _row_error(
                    p, line, "direction", "+1 (potentiate), -1 (depress) or 0 (read only)", dir_s
                ) from None
            g_s = row[col["conductance_S"]].strip()
            try:
                g = float(g_s)
                if not math.isfinite(g) or g < 0.0:
                    raise ValueError
            except ValueError:
                raise _row_error(
                    p, line, "conductance_S", "a finite conductance >= 0 in siemens", g_s
                ) from None
            per = records.get(dev)
            if per is None:
                per = records[dev] = {}
                order.append(dev)
            if pulse in per:
                raise SpecError(
                    f"{p}:{line}: pulse: device {dev!r} pulse {pulse} appears twice (first at "
                    f"line {per[pulse][2]}, again at row {line}); pulse numbers must be unique "
                    "per device"
                )
            per[pulse] = (direction, g, line)
    if n_rows == 0:
        raise SpecError(f"{p}:2: expected at least one data row after the header, found none")

    dev_idx, dirs, g0, g1 = [], [], [], []
    g_lo, g_hi = [], []
    n_unpaired = 0
    for i, dev in enumerate(order):
        per = records[dev]
        pulses = sorted(per)
        reads = np.array([per[k][1] for k in pulses])
        g_lo.append(float(reads.min()))
        g_hi.append(float(reads.max()))
        prev: int | None = None
        for k in pulses:
            direction, g, _ = per[k]
            if direction != 0:
                if prev is not None and prev == k - 1:
                    dev_idx.append(i)
                    dirs.append(direction)
                    g0.append(per[prev][1])
                    g1.append(g)
                else:
                    n_unpaired += 1
            prev = k
    return PulseData(
        path=p,
        device_names=tuple(order),
        device=np.asarray(dev_idx, dtype=np.int64),
        direction=np.asarray(dirs, dtype=np.int64),
        g_before_S=np.asarray(g0, dtype=np.float64),
        g_after_S=np.asarray(g1, dtype=np.float64),
        g_lo_S=np.asarray(g_lo),
        g_hi_S=np.asarray(g_hi),
        n_rows=n_rows,
        n_unpaired=n_unpaired,
    )
