"""The HDF5 file of a sweep: one row per finished point, written as points finish.

Layout::

    /            attrs: format ("analog-hep-sweep/1"), kind, sweep_text, sweep_path,
                        created, n_rows (complete rows)
    /rows/<col>  one resizable 1-D dataset per column (float64, int64 or UTF-8 strings);
                 ``key`` identifies the point (a hash of its effective circuit, cards and
                 parameters), ``index`` its place in the sweep's expansion
    /runs/<key>/metrics/<name>, /runs/<key>/steps/<name>   per-epoch and per-step tables of
                 training points (as in a run record)

A row is complete when ``n_rows`` counts it: ``n_rows`` is written after all its columns and
the file is flushed after every batch of rows, so a killed sweep loses at most the rows of
the batch it was writing, and a restarted one trims any partial row. Columns that appear
later are back-filled (NaN, -1 or ""), columns a row lacks are filled the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...errors import SpecError

__all__ = ["FORMAT", "SweepFile", "read_sweep_rows", "read_sweep_runs"]

FORMAT = "analog-hep-sweep/1"
_STR = h5py.string_dtype("utf-8")


def _kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return "i"
    if isinstance(value, (float, np.floating)):
        return "f"
    return "s"


def _fill(kind: str) -> Any:
    return {"i": -1, "f": np.nan, "s": ""}[kind]


class SweepFile:
    """An open sweep file (``h5py.File`` underneath). Use as a context manager.

    **Arguments:** ``path``; ``meta`` attributes of a new file (``kind``, ``sweep_text``,
    ``sweep_path``). An existing file is reopened for appending (a restart): it must be a
    sweep file of the same ``kind``.

    **Raises:** :class:`~analog_hep.errors.SpecError` if the file cannot be opened or is not a
    sweep file of that kind.
    """

    def __init__(self, path: str | Path, *, meta: Mapping[str, str]):
        self.path = Path(path)
        exists = self.path.exists()
        if not exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.h5 = h5py.File(self.path, "a")
        except OSError as err:
            if "lock" in str(err):
                raise SpecError(
                    f"{self.path}: another process has this sweep file open (is a sweep still "
                    "writing it?); wait for it or choose another --out"
                ) from None
            raise SpecError(f"{self.path}: cannot open sweep file ({err})") from None
        if exists and "format" in self.h5.attrs:
            fmt = self.h5.attrs.get("format")
            kind = self.h5.attrs.get("kind")
            if fmt != FORMAT or kind != meta.get("kind"):
                self.h5.close()
                raise SpecError(
                    f"{self.path}: not a {meta.get('kind')} sweep file (format {fmt!r}, kind "
                    f"{kind!r}); choose another --out"
                )
        else:
            self.h5.attrs["format"] = FORMAT
            self.h5.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            for k, v in meta.items():
                self.h5.attrs[k] = v
            self.h5.attrs["n_rows"] = 0
        self.rows = self.h5.require_group("rows")
        self._kinds: dict[str, str] = {
            name: str(d.attrs.get("kind", "f")) for name, d in self.rows.items()
        }
        self._trim()

    @property
    def n_rows(self) -> int:
        return int(self.h5.attrs.get("n_rows", 0))

    def _trim(self) -> None:
        """Drop a partial row left by a killed writer."""
        n = self.n_rows
        for d in self.rows.values():
            if d.shape[0] != n:
                d.resize((n,))

    def keys(self) -> set[str]:
        """Keys of the finished points."""
        if "key" not in self.rows:
            return set()
        return set(self.rows["key"].asstr()[: self.n_rows])

    def _column(self, name: str, kind: str) -> h5py.Dataset:
        if name in self._kinds:
            return self.rows[name]
        n = self.n_rows
        dtype = {"i": np.int64, "f": np.float64, "s": _STR}[kind]
        d = self.rows.create_dataset(name, shape=(n,), maxshape=(None,), dtype=dtype, chunks=True)
        if n:
            d[:] = _fill(kind)
        d.attrs["kind"] = kind
        self._kinds[name] = kind
        return d

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append complete rows (one resize and write per column) and flush; returns how many
        were written."""
        rows = list(rows)
        if not rows:
            return 0
        n, m = self.n_rows, len(rows)
        for row in rows:
            for name, value in row.items():
                if name not in self._kinds:
                    self._column(name, _kind(value))
        for name, kind in self._kinds.items():
            values = [_convert(row.get(name), kind, name) for row in rows]
            d = self.rows[name]
            d.resize((n + m,))
            d[n : n + m] = np.asarray(values, dtype=object if kind == "s" else None)
        self.h5.attrs["n_rows"] = n + m
        self.h5.flush()
        return m

    def save_run(self, key: str, tables: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Store a training point's tables under ``/runs/<key>/<table>/<column>``."""
        name = f"runs/{key}"
        if name in self.h5:
            del self.h5[name]
        g = self.h5.create_group(name)
        for table, cols in tables.items():
            tg = g.create_group(table)
            for col, values in cols.items():
                tg.create_dataset(col, data=np.asarray(values))
        self.h5.flush()

    def close(self) -> None:
        if self.h5.id.valid:
            self.h5.flush()
            self.h5.close()

    def __enter__(self) -> SweepFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _convert(value: Any, kind: str, name: str) -> Any:
    if kind == "s":
        return "" if value is None else str(value)
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return _fill(kind)
    if kind == "i":
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise ValueError(f"column {name!r} holds integers, got {value!r}")
        return int(value)
    return float(value)


def read_sweep_rows(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The rows of a sweep file as columns, and its attributes.

    The file is opened without HDF5 file locking, so a running sweep's file can be read:
    the result is a snapshot of the rows complete at that moment.

    **Returns:** ``(columns, attrs)``: ``columns[name]`` a 1-D array (``str`` objects for
    string columns) with one entry per finished point, in the order they finished.

    **Raises:** :class:`~analog_hep.errors.SpecError` if ``path`` is not a sweep file.
    """
    try:
        with h5py.File(path, "r", locking=False) as h5:
            if h5.attrs.get("format") != FORMAT:
                raise SpecError(f"{path}: not an analog-hep sweep file")
            attrs = dict(h5.attrs)
            n = int(attrs.get("n_rows", 0))
            cols: dict[str, np.ndarray] = {}
            for name, d in h5.get("rows", {}).items():
                if d.attrs.get("kind") == "s":
                    cols[name] = np.asarray(d.asstr()[:n], dtype=object)
                else:
                    cols[name] = np.asarray(d[:n])
    except OSError as err:
        raise SpecError(f"{path}: cannot read sweep file ({err})") from None
    return cols, attrs


def read_sweep_runs(path: str | Path) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """``{key: {table: {column: array}}}`` of the training points of a sweep file."""
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    with h5py.File(path, "r", locking=False) as h5:
        for key, g in h5.get("runs", {}).items():
            out[key] = {t: {c: np.asarray(v) for c, v in tg.items()} for t, tg in g.items()}
    return out
