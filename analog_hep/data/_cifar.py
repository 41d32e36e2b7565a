"""CIFAR-10 and CIFAR-100 in their "python version" batch files (Krizhevsky 2009).

Each batch file is a pickle (protocol 2, written by Python 2, so its strings load as bytes)
of a dict: ``b"data"`` a uint8 array (n, 3072), each row one 32x32 colour image in
channel-first order (1024 red, 1024 green, 1024 blue values, each plane row-major), and the
labels as a list of ints: ``b"labels"`` (CIFAR-10, 0..9), ``b"fine_labels"`` (CIFAR-100,
0..99) and ``b"coarse_labels"`` (CIFAR-100's 20 superclasses, 0..19).

The files are unpickled by an unpickler that builds NumPy arrays, lists, dicts, ints and
bytes only: a file that asks for anything else (a pickle can name any Python callable) is
refused as not a CIFAR batch, so a stray or hostile file cannot run code.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import SpecError
from ._images import require_files

__all__ = ["CIFAR_LAYOUTS", "CifarLayout", "find_cifar_dir", "read_cifar", "read_cifar_batch"]

_PIXELS = 3 * 32 * 32


class CifarLayout(NamedTuple):
    """Where one CIFAR variant keeps its batches, and which labels it reads."""

    title: str
    subdir: str  # the folder the archive unpacks to
    train: tuple[str, ...]  # training batch files, in the order they are read
    test: str
    label_key: bytes
    n_classes: int


CIFAR_LAYOUTS = {
    "cifar10": CifarLayout(
        "CIFAR-10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        b"labels",
        10,
    ),
    "cifar100": CifarLayout(
        "CIFAR-100 (fine labels)", "cifar-100-python", ("train",), "test", b"fine_labels", 100
    ),
    "cifar100-coarse": CifarLayout(
        "CIFAR-100 (coarse labels)", "cifar-100-python", ("train",), "test", b"coarse_labels", 20
    ),
}
"""Spec name -> layout of its folder (batch file names, label key, classes)."""


def _reconstructors() -> dict[tuple[str, str], object]:
    """The callables a pickled NumPy array names, under the module paths of NumPy 1 and 2
    (the CIFAR files name ``numpy.core.multiarray``; NumPy 2 writes ``numpy._core``)."""
    array_reduce = np.zeros(1).__reduce__()[0]
    scalar_reduce = np.int64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes pickled by Python 3 with protocol 2
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = array_reduce
        allowed[(module, "scalar")] = scalar_reduce
    return allowed


_ALLOWED = _reconstructors()


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, not one of the NumPy array builders"
            )
        return found


def _unpickle(path: Path) -> object:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise SpecError(f"{path}: expected a CIFAR batch file, found no such file") from err
    except OSError as err:
        raise SpecError(f"{path}: cannot read the file ({err})") from err
    try:
        return _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # unpickling arbitrary bytes can fail in any way at all
        raise SpecError(
            f"{path}: expected a CIFAR batch (a Python pickle of a dict), found a corrupt or "
            f"foreign pickle ({type(err).__name__}: {err})"
        ) from err


def read_cifar_batch(
    path: str | Path, *, label_key: bytes, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file.

    Args:
        path: the pickle file.
        label_key: ``b"labels"``, ``b"fine_labels"`` or ``b"coarse_labels"``.
        n_classes: labels must lie in ``0 .. n_classes - 1``.

    Returns:
        ``(pixels, labels)``: uint8, shape (n, 3072), the file's own rows (channel-first
        32x32 images); int32, shape (n,).

    Raises:
        SpecError: one line naming the file, for a missing or unreadable file, a corrupt or
            foreign pickle, a missing key, wrong shapes or dtypes, or a label out of range.
    """
    path = Path(path)
    batch = _unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        found = (
            f"keys {sorted(map(repr, batch))}" if isinstance(batch, dict) else type(batch).__name__
        )
        raise SpecError(
            f"{path}: expected a dict with keys b'data' and {label_key!r}, found {found}"
        )
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise SpecError(
            f"{path}: b'data': expected a 2-D uint8 array (n, {_PIXELS}), found {_kind(data)}"
        )
    if data.shape[1] != _PIXELS:
        raise SpecError(
            f"{path}: b'data': expected {_PIXELS} values per image (3x32x32), found {data.shape[1]}"
        )
    labels = np.asarray(batch[label_key])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise SpecError(
            f"{path}: {label_key!r}: expected a list of ints, found {_kind(batch[label_key])}"
        )
    if labels.shape[0] != data.shape[0]:
        raise SpecError(
            f"{path}: {label_key!r}: expected {data.shape[0]} labels (one per image), found "
            f"{labels.shape[0]}"
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise SpecError(
            f"{path}: {label_key!r}: expected labels in 0..{n_classes - 1}, found "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return np.ascontiguousarray(data), labels.astype(np.int32)


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D {value.dtype} array of shape {value.shape}"
    if isinstance(value, list) and value:
        return f"a list of {type(value[0]).__name__}"
    return type(value).__name__


def find_cifar_dir(directory: Path, layout: CifarLayout) -> Path:
    """``directory`` if it holds the test batch, else its ``cifar-10-batches-py`` (or
    ``cifar-100-python``) subfolder when that exists, else ``directory``."""
    if (directory / layout.test).exists():
        return directory
    sub = directory / layout.subdir
    return sub if sub.is_dir() else directory


def read_cifar(
    spec: str, directory: Path, layout: CifarLayout, *, max_train: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Path, bool]:
    """All batches of a CIFAR folder: ``(x_train, y_train, x_test, y_test, folder, cut)``.

    ``x_*`` uint8 (n, 3072), ``y_*`` int32; the training batches in file order, read only
    until ``max_train`` images are in hand (``cut``: fewer than all of them were kept).
    Every file must be present before any is read.
    """
    folder = find_cifar_dir(directory, layout)
    require_files(
        spec,
        folder,
        (*layout.train, layout.test),
        what=f"{layout.title} python batches",
        where=f" (or in its {layout.subdir}/ subfolder)",
        hint="unpack the python version of the archive there",
    )
    key, classes = layout.label_key, layout.n_classes
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    held = 0
    for name in layout.train:
        if max_train is not None and held >= max_train:
            break
        x, y = read_cifar_batch(folder / name, label_key=key, n_classes=classes)
        xs.append(x)
        ys.append(y)
        held += y.shape[0]
    x_train, y_train = np.concatenate(xs), np.concatenate(ys)
    cut = len(xs) < len(layout.train) or (max_train is not None and max_train < held)
    if max_train is not None and max_train < held:
        x_train, y_train = x_train[:max_train].copy(), y_train[:max_train].copy()
    x_test, y_test = read_cifar_batch(folder / layout.test, label_key=key, n_classes=classes)
    return x_train, y_train, x_test, y_test, folder, cut
