"""The read side of the HDF5 records: what a file is, a run record's data, a sweep's data.

``read_header(path)`` says what a file is (its ``format`` and ``kind`` attributes);
``read_run(path)`` reads a run record (:mod:`._record`) into a :class:`RunData`:
metadata (JSON attributes decoded, the circuit text parsed with the spec's YAML loader),
the metrics and steps tables, and per checkpoint the driver's ``describe().extra``, with
the checkpoint's arrays read on demand; ``read_sweep(path)`` reads a sweep file
(:mod:`._sweep_file`) into a :class:`SweepData`. The format strings and the layouts are
those of the writers, imported from them.

Every file is opened without HDF5 file locking, so a record that a run is still writing
can be read: the result is a snapshot. Damage is one line naming the file and what is
wrong (:class:`~analog_hep.errors.SpecError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import SpecError
from ...spec import load_yaml
from ..sweeps._sweep_file import FORMAT as SWEEP_FORMAT
from ..sweeps._sweep_file import read_sweep_rows, read_sweep_runs
from ._record import _CHECKPOINT, JSON_ATTRS, Record
from ._record import FORMAT as RUN_FORMAT

__all__ = [
    "RUN_FORMAT",
    "SWEEP_FORMAT",
    "CheckpointInfo",
    "Header",
    "RunData",
    "SweepData",
    "read_checkpoint",
    "read_header",
    "read_run",
    "read_sweep",
]

Table = dict[str, np.ndarray]


@dataclass(frozen=True)
class Header:
    """What an HDF5 file says it is: its ``format`` and ``kind`` root attributes (``None``
    where absent)."""

    format: str | None
    kind: str | None


def read_header(path: str | Path) -> Header:
    """The ``format`` and ``kind`` of an HDF5 file; one line if it is not HDF5."""
    try:
        with h5py.File(path, "r", locking=False) as h5:
            fmt, kind = h5.attrs.get("format"), h5.attrs.get("kind")
    except OSError as err:
        raise SpecError(f"{path}: cannot read as HDF5 ({err})") from None
    return Header(None if fmt is None else str(fmt), None if kind is None else str(kind))


def _json_object(raw: Any, where: str) -> dict[str, Any]:
    """A JSON-object attribute, decoded; one line naming ``where`` when it is not one."""
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where} is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a JSON object, found {type(value).__name__}")
    return value


def _parse_yaml(text: str, name: str) -> dict[str, Any]:
    """``text`` parsed with the spec's YAML loader (``{}`` for no text)."""
    if not text.strip():
        return {}
    return load_yaml(text, path=name).data


# -- run records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint: its group ``name`` (``epoch_NNNNN``), the 1-based ``epoch``
    after which it was taken, and the driver's ``describe().extra`` at that moment
    (``None`` in records written before it was stored)."""

    name: str
    epoch: int
    extra: dict[str, Any] | None


@dataclass(frozen=True)
class RunData:
    """A run record as read (see :func:`read_run`).

    ``attrs`` are the root attributes as stored (``config``, ``device_texts`` and ``extra``
    decoded in ``config``, ``device_texts``, ``extra``: ``{}`` where absent); ``metrics``
    and ``steps`` the per-epoch and per-step tables (column -> 1-D array); ``checkpoints``
    the complete checkpoints, oldest first.
    """

    path: Path
    attrs: dict[str, Any]
    config: dict[str, Any]
    device_texts: dict[str, Any]
    extra: dict[str, Any]
    metrics: Table
    steps: Table
    checkpoints: tuple[CheckpointInfo, ...] = field(default_factory=tuple)

    @property
    def driver(self) -> str:
        """The driver's name (``"?"`` where the record does not say)."""
        return str(self.attrs.get("driver", "?"))

    @property
    def method(self) -> str | None:
        """The training method of the run's config (``None`` where it does not say)."""
        method = self.config.get("method")
        return None if method is None else str(method)

    @property
    def circuit_text(self) -> str:
        """The circuit YAML the run was trained on (``""`` where not recorded)."""
        return str(self.attrs.get("circuit_text", ""))

    @property
    def circuit(self) -> dict[str, Any]:
        """The circuit YAML parsed with the spec's loader (``{}`` where not recorded)."""
        return _parse_yaml(self.circuit_text, f"{self.path}: attribute 'circuit_text'")

    def checkpoint_state(self, name: str) -> dict[str, dict[str, np.ndarray]]:
        """``{part: {key: array}}`` of checkpoint ``name`` (read now; see
        :func:`read_checkpoint`)."""
        return read_checkpoint(self.path, name)


def _open_run(path: Path) -> Record:
    """``path`` opened as a run record for reading, without file locking."""
    rec = Record(path, "r", locking=False)
    if rec.h5.attrs.get("format") != RUN_FORMAT:
        rec.close()
        raise SpecError(f"{path}: not an analog-hep run record (format {RUN_FORMAT!r})")
    return rec


def _checkpoint_infos(rec: Record) -> tuple[CheckpointInfo, ...]:
    """The complete checkpoints of ``rec`` (named ``epoch_NNNNN``), oldest first."""
    if "checkpoints" not in rec.h5:
        return ()
    out = []
    for name in sorted(rec.h5["checkpoints"]):
        m = _CHECKPOINT.fullmatch(name)
        if m is None:  # a .partial one, or damage that only --resume refuses
            continue
        raw = rec.h5["checkpoints"][name].attrs.get("extra")
        where = f"{rec.path}: checkpoints/{name}: attribute 'extra'"
        extra = None if raw is None else _json_object(raw, where)
        out.append(CheckpointInfo(name, int(m.group(1)) + 1, extra))
    return tuple(out)


def read_run(path: str | Path) -> RunData:
    """A run record (``analog-hep train --out``) as a :class:`RunData`.

    **Raises:** :class:`~analog_hep.errors.SpecError` (one line) if the file cannot be
    read, is not a run record, or a JSON attribute is not a JSON object.
    """
    path = Path(path)
    with _open_run(path) as rec:
        attrs = dict(rec.h5.attrs)
        decoded = {
            key: _json_object(attrs[key], f"{path}: attribute {key!r}") if key in attrs else {}
            for key in JSON_ATTRS
        }
        return RunData(
            path=path,
            attrs=attrs,
            config=decoded["config"],
            device_texts=decoded["device_texts"],
            extra=decoded["extra"],
            metrics=rec.table("metrics"),
            steps=rec.table("steps"),
            checkpoints=_checkpoint_infos(rec),
        )


def read_checkpoint(path: str | Path, name: str) -> dict[str, dict[str, np.ndarray]]:
    """``{part: {key: array}}`` of checkpoint ``name`` of a run record (keys of nested
    groups joined with ``/``, e.g. ``driver["W0/g_plus_S"]``)."""
    with _open_run(Path(path)) as rec:
        if name not in rec.h5.get("checkpoints", {}):
            raise SpecError(f"{path}: checkpoints/{name} is missing")
        return rec.load_checkpoint(name)


# -- sweep files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepData:
    """A sweep file as read (see :func:`read_sweep`): ``attrs`` its root attributes,
    ``columns`` one 1-D array per column with one entry per finished point, ``runs`` the
    per-epoch and per-step tables of its training points (``{key: {table: columns}}``)."""

    path: Path
    attrs: dict[str, Any]
    columns: Table
    runs: dict[str, dict[str, Table]]

    @property
    def kind(self) -> str:
        """``gradcheck`` or ``train``."""
        return str(self.attrs.get("kind", ""))

    @property
    def n_points(self) -> int:
        """How many points have finished."""
        return len(self.columns.get("key", []))

    @property
    def sweep_text(self) -> str:
        """The sweep YAML as it was run."""
        return str(self.attrs.get("sweep_text", ""))

    @property
    def spec(self) -> dict[str, Any]:
        """The sweep YAML parsed with the spec's loader (``{}`` for no text)."""
        return _parse_yaml(self.sweep_text, f"{self.path}: attribute 'sweep_text'")

    @property
    def description(self) -> str | None:
        """The sweep's ``description`` (``None`` where it has none, or its text does not
        parse: the report still reads a damaged file)."""
        try:
            desc = self.spec.get("description")
        except SpecError:
            return None
        text = "" if desc is None else str(desc).strip()
        return text or None


def read_sweep(path: str | Path) -> SweepData:
    """A sweep file (``analog-hep sweep --out``) as a :class:`SweepData`.

    **Raises:** :class:`~analog_hep.errors.SpecError` (one line) if it is not a sweep file.
    """
    columns, attrs = read_sweep_rows(path)
    return SweepData(Path(path), attrs, columns, read_sweep_runs(path))
