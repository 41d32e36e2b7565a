"""The HDF5 record of a run: everything it produced, and what it needs to resume.

Layout (one file per run)::

    /                 attrs: format, kind, circuit_text, device_texts (JSON), config (JSON),
                             seed, driver, dataset, created
    /metrics/<name>   one row per finished epoch (epoch, train/test loss and accuracy, ...)
    /steps/<name>     one row per training step (loss, used, dropped, pulses, ...)
    /checkpoints/epoch_<E>/driver/<key>, /controller/<key>   state after epoch E
    /final/weights/<crossbar>/W, b                                     when the run ended

Rows are appended and the file is flushed after every epoch, so a killed run loses at most
the epoch it was in; ``latest_checkpoint`` finds where to resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import SpecError

__all__ = ["Record"]

FORMAT = "analog-hep-run/1"


class Record:
    """An open run record (``h5py.File`` underneath). Use as a context manager."""

    def __init__(self, path: str | Path, mode: str):
        self.path = Path(path)
        try:
            self.h5 = h5py.File(self.path, mode)
        except OSError as err:
            raise SpecError(f"{self.path}: cannot open run record ({err})") from None

    # -- creation and checks -----------------------------------------------------------------

    @classmethod
    def create(cls, path: str | Path, *, meta: Mapping[str, Any]) -> Record:
        """A new record (an existing file is refused: use ``--resume`` or another ``--out``)."""
        path = Path(path)
        if path.exists():
            raise SpecError(
                f"{path}: a run record already exists; pass --resume to continue it or choose "
                "another --out"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        rec = cls(path, "w")
        rec.h5.attrs["format"] = FORMAT
        rec.h5.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        for k, v in meta.items():
            rec.h5.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v)
        rec.h5.flush()
        return rec

    @classmethod
    def open_existing(cls, path: str | Path) -> Record:
        rec = cls(path, "r+")
        if rec.h5.attrs.get("format") != FORMAT:
            raise SpecError(
                f"{path}: not an analog-hep run record (format {rec.h5.attrs.get('format')!r})"
            )
        return rec

    def attr(self, key: str) -> Any:
        return self.h5.attrs[key]

    # -- rows --------------------------------------------------------------------------------

    def append(self, group: str, row: Mapping[str, float | int]) -> None:
        """Append one row to ``/group/<name>`` resizable 1-D datasets."""
        g = self.h5.require_group(group)
        for k, v in row.items():
            if k not in g:
                dtype = np.int64 if isinstance(v, (int, np.integer, bool)) else np.float64
                g.create_dataset(k, shape=(0,), maxshape=(None,), dtype=dtype, chunks=True)
            d = g[k]
            d.resize((d.shape[0] + 1,))
            d[-1] = v

    def extend(self, group: str, rows: list[Mapping[str, float | int]]) -> None:
        for row in rows:
            self.append(group, row)

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

    def save_checkpoint(self, epoch: int, parts: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Write ``/checkpoints/epoch_<epoch>/<part>/<key>`` and flush."""
        name = f"checkpoints/epoch_{epoch:05d}"
        if name in self.h5:
            del self.h5[name]
        g = self.h5.create_group(name + ".partial")
        for part, arrays in parts.items():
            pg = g.create_group(part)
            for k, a in arrays.items():
                pg.create_dataset(k, data=np.asarray(a))
        self.h5.move(name + ".partial", name)  # complete checkpoints only carry the final name
        self.h5.flush()

    def latest_checkpoint(self) -> tuple[int, dict[str, dict[str, np.ndarray]]] | None:
        if "checkpoints" not in self.h5:
            return None
        done = sorted(k for k in self.h5["checkpoints"] if not k.endswith(".partial"))
        if not done:
            return None
        g = self.h5["checkpoints"][done[-1]]
        parts: dict[str, dict[str, np.ndarray]] = {}
        for part, pg in g.items():
            arrays: dict[str, np.ndarray] = {}
            pg.visititems(
                lambda k, v, a=arrays: (
                    a.__setitem__(k, np.asarray(v)) if isinstance(v, h5py.Dataset) else None
                )
            )
            parts[part] = arrays
        return int(done[-1].split("_")[1]), parts

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
