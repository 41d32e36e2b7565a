"""The HDF5 record of a run: everything it produced, and what it needs to resume.

Layout (one file per run)::

    /                 attrs: format, kind, circuit_text, device_texts (JSON), config (JSON),
                             seed, driver, dataset, created, extra (JSON: the driver's
                             describe().extra when the record was created)
    /metrics/<name>   one row per finished epoch (epoch, train/test loss and accuracy, ...)
    /steps/<name>     one row per training step (loss, used, dropped, pulses, ...)
    /checkpoints/epoch_<E>/driver/<key>, /controller/<key>   state after epoch E (0-based);
                      attrs: extra (JSON: describe().extra at that checkpoint)
    /final/weights/<crossbar>/W, b                                     when the run ended

Rows are appended and the file is flushed after every epoch, so a killed run loses at most
the epoch it was in; ``resume_point`` checks that rows and checkpoints agree and finds where
to resume, ``check_state`` that a checkpoint fits the chip before it is restored.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import SpecError

__all__ = ["Record", "ResumePoint", "to_json"]

FORMAT = "analog-hep-run/1"
# Root attributes that hold a JSON object, and whether every record has it (``extra``
# came later).
JSON_ATTRS = {"config": True, "device_texts": True, "extra": False}
_CHECKPOINT = re.compile(r"epoch_(\d{5})")
_RECOVER = (
    "--resume will not append to it; it is left as it is (analog-hep report still reads it): "
    "train again with another --out"
)


def to_json(value: Any) -> str:
    """``value`` as JSON; NumPy scalars and arrays become numbers and lists, anything else
    unknown its ``str`` (calibration data of a driver's ``describe().extra``)."""

    def fallback(v: Any) -> Any:
        if isinstance(v, (np.generic, np.ndarray)):
            return v.tolist()
        return str(v)

    return json.dumps(value, default=fallback)


@dataclass(frozen=True)
class ResumePoint:
    """Where a record resumes: ``epochs`` complete epochs (rows kept), the last one's
    checkpoint ``checkpoint`` (``None`` when no epoch finished)."""

    epochs: int
    checkpoint: str | None


class Record:
    """An open run record (``h5py.File`` underneath). Use as a context manager."""

    def __init__(self, path: str | Path, mode: str, *, locking: bool | None = None):
        """Open ``path`` in h5py ``mode``; ``locking=False`` reads a record that a run is
        still writing (a snapshot; :mod:`._record_read` opens records so)."""
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, mode, locking=locking)
        except OSError as err:
            raise SpecError(f"{self.path}: cannot open run record ({err})") from None

    # -- creation and checks -----------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, *, meta: Mapping[str, Any]) -> Record:
        """A new record (an existing file is refused: use ``--resume`` or another ``--out``)."""
        path = Path(path)
        cls.check_new(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = cls(path, "w")
        rec.h5.attrs["format"] = FORMAT
        rec.h5.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        for k, v in meta.items():
            rec.h5.attrs[k] = v if isinstance(v, (str, int, float)) else to_json(v)
        rec.h5.flush()
        return rec

    @staticmethod
    def check_new(path: str | Path) -> None:
        """Refuse to create a record over an existing file (before any work is done)."""
        if Path(path).exists():
            raise SpecError(
                f"{path}: a run record already exists; pass --resume to continue it or choose "
                "another --out"
            )

    @classmethod
    def open_existing(cls, path: str | Path) -> Record:
        """An existing training record, opened for appending (format and kind checked)."""
        rec = cls(path, "r+")
        fmt, kind = rec.h5.attrs.get("format"), rec.h5.attrs.get("kind")
        if fmt != FORMAT or kind != "train":
            rec.close()
            raise SpecError(
                f"{path}: attribute 'format'/'kind': expected {FORMAT!r}/'train' (a record of "
                f"analog-hep train), found {fmt!r}/{kind!r}"
            )
        return rec

    def attr(self, key: str) -> Any:
        """A root attribute; a missing one is a one-line error naming it."""
        if key not in self.h5.attrs:
            raise SpecError(f"{self.path}: attribute {key!r} is missing (a damaged record?)")
        return self.h5.attrs[key]

    def json_attr(self, key: str, kind: type = dict) -> Any:
        """A root attribute holding JSON, decoded and of type ``kind``; else one line naming
        the file and the attribute."""
        raw = self.attr(key)
        try:
            value = json.loads(raw)
        except (TypeError, ValueError) as err:
            raise SpecError(f"{self.path}: attribute {key!r} is not valid JSON ({err})") from None
        if not isinstance(value, kind):
            raise SpecError(
                f"{self.path}: attribute {key!r}: expected a JSON {kind.__name__}, found "
                f"{type(value).__name__}"
            )
        return value

    def check_json_attrs(self) -> None:
        """Every JSON attribute of the record decodes to an object (one line if not)."""
        for key, required in JSON_ATTRS.items():
            if required or key in self.h5.attrs:
                self.json_attr(key)

    def set_json(self, key: str, value: Any) -> None:
        """Store ``value`` as JSON in root attribute ``key``."""
        self.h5.attrs[key] = to_json(value)

    # -- rows --------------------------------------------------------------------------------

    def append(self, group: str, row: Mapping[str, float | int]) -> None:
        """Append one row to ``/group/<name>`` resizable 1-D datasets."""
        self.extend(group, [row])

    def extend(self, group: str, rows: list[Mapping[str, float | int]]) -> None:
        """Append rows, column by column (one resize per column, not per value)."""
        if not rows:
            return
        g = self.h5.require_group(group)
        n = max((d.shape[0] for d in g.values()), default=0)
        keys = dict.fromkeys(k for r in rows for k in r)  # every key, first-seen order
        for k in keys:
            values = [r.get(k, math.nan) for r in rows]
            d = g[k] if k in g else self._column(g, k, values[0], n)
            d.resize((n + len(rows),))
            d[n:] = values

    @staticmethod
    def _column(g: h5py.Group, key: str, first: float | int, n: int) -> h5py.Dataset:
        """A new resizable column: int64 for integer values, float64 otherwise. In a group
        that already has ``n`` rows (a record resumed by a newer version) it is float, NaN
        for the rows that never had it, so that all columns stay aligned."""
        if n:
            return g.create_dataset(
                key, data=np.full(n, np.nan), maxshape=(None,), dtype=np.float64, chunks=True
            )
        dtype = np.int64 if isinstance(first, (int, np.integer, bool)) else np.float64
        return g.create_dataset(key, shape=(0,), maxshape=(None,), dtype=dtype, chunks=True)

    def truncate(self, group: str, n: int) -> None:
        """Keep the first ``n`` rows of every dataset of ``group`` (drop an unfinished epoch)."""
        if group not in self.h5:
            return
        for d in self.h5[group].values():
            d.resize((min(n, d.shape[0]),))

    def table(self, group: str) -> dict[str, np.ndarray]:
        if group not in self.h5:
            return {}
        return {k: np.asarray(v) for k, v in self.h5[group].items()}

    # -- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(
        self,
        epoch: int,
        parts: Mapping[str, Mapping[str, np.ndarray]],
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``/checkpoints/epoch_<epoch>/<part>/<key>`` (and ``extra`` as a JSON
        attribute of the checkpoint) and flush."""
        name = f"checkpoints/epoch_{epoch:05d}"
        for stale in (name, name + ".partial"):  # a .partial is left by a kill mid-write
            if stale in self.h5:
                del self.h5[stale]
        g = self.h5.create_group(name + ".partial")
        if extra is not None:
            g.attrs["extra"] = to_json(dict(extra))
        for part, arrays in parts.items():
            pg = g.create_group(part)
            for k, a in arrays.items():
                pg.create_dataset(k, data=np.asarray(a))
        self.h5.move(name + ".partial", name)  # complete checkpoints only carry the final name
        self.h5.flush()

    def checkpoints(self) -> list[str]:
        """Names of the complete checkpoints, oldest first (``.partial`` ones are skipped;
        any other name is a damaged record)."""
        if "checkpoints" not in self.h5:
            return []
        g = self._group("checkpoints")
        names = [k for k in g if not k.endswith(".partial")]
        for k in names:
            if not _CHECKPOINT.fullmatch(k) or not isinstance(g[k], h5py.Group):
                raise SpecError(
                    f"{self.path}: checkpoints/{k}: expected a group named epoch_NNNNN; {_RECOVER}"
                )
        return sorted(names)

    def _group(self, name: str) -> h5py.Group:
        """``/name``, which must be a group (a dataset there is a damaged record)."""
        g = self.h5[name]
        if not isinstance(g, h5py.Group):
            raise SpecError(f"{self.path}: {name}: expected a group, found a dataset; {_RECOVER}")
        return g

    def load_checkpoint(self, name: str) -> dict[str, dict[str, np.ndarray]]:
        """``{part: {key: array}}`` of checkpoint ``name`` (keys may contain ``/``)."""
        parts: dict[str, dict[str, np.ndarray]] = {}
        for part, pg in self.h5["checkpoints"][name].items():
            if not isinstance(pg, h5py.Group):
                raise SpecError(
                    f"{self.path}: checkpoints/{name}/{part}: expected a group of arrays"
                )
            arrays: dict[str, np.ndarray] = {}
            pg.visititems(
                lambda k, v, a=arrays: (
                    a.__setitem__(k, np.asarray(v)) if isinstance(v, h5py.Dataset) else None
                )
            )
            parts[part] = arrays
        return parts

    def latest_checkpoint(self) -> tuple[int, dict[str, dict[str, np.ndarray]]] | None:
        """``(epoch, parts)`` of the newest complete checkpoint (``epoch`` 0-based)."""
        done = self.checkpoints()
        if not done:
            return None
        return int(done[-1].split("_")[1]), self.load_checkpoint(done[-1])

    # -- checks before resuming ----------------------------------------------------------------

    def resume_point(self, steps_per_epoch: int) -> ResumePoint:
        """Check that rows and checkpoints agree and say where to resume.

        A record is written epoch by epoch: the epoch's step rows, its metrics row, then its
        checkpoint. So with the last complete checkpoint after epoch ``c`` (1-based; 0 if
        none), a record that was only ever killed has ``c`` or ``c + 1`` metric rows
        numbered ``1, 2, ...`` and between ``c`` and ``c + 1`` epochs of step rows
        (``steps_per_epoch`` each); the surplus, if any, is the unfinished epoch, dropped on
        resume. Anything else (a deleted group, rows of another run, a checkpoint without a
        controller part) is refused with one line naming the group.
        """
        done = self.checkpoints()
        c = 0 if not done else int(done[-1].split("_")[1]) + 1
        where = f"the last checkpoint is after epoch {c}" if c else "there is no checkpoint"
        self._check_rows("metrics", c, c + 1, where)
        self._check_rows("steps", c * steps_per_epoch, (c + 1) * steps_per_epoch, where)
        if c:
            epochs = self.table("metrics").get("epoch", np.zeros(0))[:c]
            if not np.array_equal(epochs, np.arange(1, c + 1)):
                raise SpecError(
                    f"{self.path}: metrics/epoch: expected 1..{c} ({where}), found "
                    f"{epochs.tolist()[:8]}; {_RECOVER}"
                )
            if "controller" not in self.h5["checkpoints"][done[-1]]:
                raise SpecError(
                    f"{self.path}: checkpoints/{done[-1]}: no 'controller' part; {_RECOVER}"
                )
        return ResumePoint(c, done[-1] if done else None)

    def _check_rows(self, group: str, lo: int, hi: int, where: str) -> None:
        """Every dataset of ``group`` has between ``lo`` and ``hi`` rows (none: ``lo == 0``)."""
        if group not in self.h5:
            if lo:
                raise SpecError(f"{self.path}: group {group!r} is missing but {where}; {_RECOVER}")
            return
        # "epoch" first: the column that says most when a count is off
        for k, d in sorted(self._group(group).items(), key=lambda kv: kv[0] != "epoch"):
            n = d.shape[0] if isinstance(d, h5py.Dataset) and d.ndim == 1 else None
            if n is None or not lo <= n <= hi:
                raise SpecError(
                    f"{self.path}: {group}/{k}: expected {lo}"
                    f"{'' if hi == lo else f' to {hi}'} rows ({where}), found "
                    f"{'a non-row dataset' if n is None else n}; {_RECOVER}"
                )

    def check_state(
        self,
        checkpoint: str,
        part: str,
        state: Mapping[str, np.ndarray],
        reference: Mapping[str, Any],
        *,
        optional: tuple[str, ...] = (),
    ) -> None:
        """Refuse a checkpoint part that does not fit: its keys, shapes and dtypes must be
        those of ``reference`` (the freshly opened chip's or controller's ``state_dict()``;
        keys in ``optional`` may be absent) and every value finite."""
        epoch = int(checkpoint.split("_")[1]) + 1
        at = f"{self.path}: checkpoint after epoch {epoch}: checkpoints/{checkpoint}/{part}"
        missing = sorted(set(reference) - set(state) - set(optional))
        unknown = sorted(set(state) - set(reference))
        if missing or unknown:
            what = f"missing {missing[:5]}" if missing else f"unknown {unknown[:5]}"
            raise SpecError(f"{at}: keys differ from this chip's state ({what}); {_RECOVER}")
        for k, a in state.items():
            ref = np.asarray(reference[k])
            if a.shape != ref.shape or a.dtype != ref.dtype:
                raise SpecError(
                    f"{at}/{k}: expected {ref.dtype} {ref.shape}, found {a.dtype} {a.shape}; "
                    f"{_RECOVER}"
                )
            if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
                bad = int(a.size - np.isfinite(a).sum())
                raise SpecError(f"{at}/{k}: {bad} of {a.size} values are NaN or inf; {_RECOVER}")

    def save_weights(self, weights: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        if "final" in self.h5:
            del self.h5["final"]
        g = self.h5.create_group("final/weights")
        for n, (w, b) in weights.items():
            g.create_dataset(f"{n}/W", data=np.asarray(w))
            g.create_dataset(f"{n}/b", data=np.asarray(b))
        self.h5.flush()

    def flush(self) -> None:
        self.h5.flush()

    def close(self) -> None:
        if self.h5.id.valid:
            self.h5.close()

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
