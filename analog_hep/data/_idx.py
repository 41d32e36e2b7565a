"""The IDX file format (the MNIST container): read and write, raw or gzip-compressed.

An IDX file is a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then NDIM big-endian uint32
sizes, then the data in C order, big-endian. A name ending in ``.gz`` means gzip-compressed.
Every size is checked exactly, so a truncated or padded file fails here, by name, rather
than as a reshape error (or silently wrong pixels) deep in training.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import SpecError

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "read_idx_pair",
    "read_idx_pair_shaped",
    "write_idx",
]

IMAGES_MAGIC = 0x00000803
"""Magic number of an IDX file of uint8 with 3 dimensions (images: n, rows, cols)."""
LABELS_MAGIC = 0x00000801
"""Magic number of an IDX file of uint8 with 1 dimension (labels: n)."""

# IDX type byte -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}


def _read_bytes(path: Path) -> bytes:
    """All bytes of ``path``, gunzipped when its name ends in ``.gz``."""
    gz = path.name.endswith(".gz")
    try:
        if gz:
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError as err:
        raise SpecError(f"{path}: expected an IDX file, found no such file") from err
    except (OSError, EOFError, zlib.error) as err:
        # gzip.BadGzipFile is an OSError; a truncated stream raises EOFError.
        if gz and not isinstance(err, (PermissionError, IsADirectoryError)):
            raise SpecError(
                f"{path}: expected a gzip-compressed IDX file, found a corrupt gzip stream "
                f"({err}); delete it and fetch it again"
            ) from err
        raise SpecError(f"{path}: cannot read the file ({err})") from err


def read_idx(path: str | Path, *, magic: int | None = None) -> np.ndarray:
    """Read one IDX file (raw, or gzip when the name ends in ``.gz``).

    Args:
        path: the file.
        magic: if given, the exact magic number required, e.g. ``IMAGES_MAGIC``.

    Returns:
        An array of the shape and dtype the header declares, in native byte order (uint8
        data is a read-only view of the file's bytes, not a copy).

    Raises:
        SpecError: naming the file, for a bad gzip stream, a bad or unexpected magic
            number, or a data size that differs from what the header declares.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise SpecError(f"{path}: expected an IDX header, found a file of {len(data)} bytes")
    found = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or data[3] == 0:
        raise SpecError(
            f"{path}: expected an IDX magic number 0x0000TTNN (TT a type code, NN >= 1 "
            f"dimensions), found 0x{found:08x}; this is not an IDX file"
        )
    if magic is not None and found != magic:
        raise SpecError(f"{path}: expected IDX magic number 0x{magic:08x}, found 0x{found:08x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SpecError(
            f"{path}: truncated: expected a {header}-byte header for {ndim} dimensions, "
            f"found {len(data)} bytes"
        )
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[data[2]]
    count = math.prod(shape)
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes"
        dims = "x".join(map(str, shape))
        raise SpecError(
            f"{path}: {what}: header declares {dims} {dtype.newbyteorder('=').name} "
            f"= {expected} bytes, found {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx_images(path: str | Path) -> np.ndarray:
    """Images from an IDX file with magic ``0x00000803``: uint8, shape (n, rows, cols)."""
    return read_idx(path, magic=IMAGES_MAGIC)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Labels from an IDX file with magic ``0x00000801``: uint8, shape (n,)."""
    return read_idx(path, magic=LABELS_MAGIC)


def read_idx_pair(
    images_path: str | Path, labels_path: str | Path, *, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image and label files as model inputs.

    Returns:
        ``x``: float32, shape (n, rows * cols), pixels / 255, so values lie in [0, 1];
        ``y``: int32, shape (n,), values in [0, n_classes).

    Raises:
        SpecError: for a corrupt file, a count mismatch, or a label outside the classes.
    """
    x, y, _ = read_idx_pair_shaped(images_path, labels_path, n_classes=n_classes)
    return x, y


def read_idx_pair_shaped(
    images_path: str | Path, labels_path: str | Path, *, n_classes: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """:func:`read_idx_pair`, and the images' ``(rows, cols)`` as the header gives them."""
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if images.shape[0] != labels.shape[0]:
        raise SpecError(
            f"{labels_path}: expected {images.shape[0]} labels (one per image in "
            f"{images_path}), found {labels.shape[0]}"
        )
    if labels.size and int(labels.max()) >= n_classes:
        raise SpecError(
            f"{labels_path}: expected labels in 0..{n_classes - 1}, found {int(labels.max())}"
        )
    x = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0)
    return x, labels.astype(np.int32), (int(images.shape[1]), int(images.shape[2]))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip when the name ends in ``.gz``).

    The dtype must be one IDX knows: uint8, int8, int16, int32, float32 or float64; the
    gzip header carries no timestamp, so equal arrays give byte-identical files.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise ValueError(
            f"write_idx: expected 1 to 255 dimensions of uint8, int8, int16, int32, float32 "
            f"or float64, found {array.ndim} dimensions of {array.dtype}"
        )
    head = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = head + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path
