"""ImageNet 32x32 in its npz batch files (Chrabaszcz, Loshchilov and Hutter 2017, "A
downsampled variant of ImageNet as an alternative to the CIFAR datasets").

The folder holds ``train_data_batch_1.npz`` ... ``train_data_batch_10.npz`` and
``val_data.npz``. Each is a NumPy npz archive with ``data``, uint8 (n, 3072): 32x32 colour
images in channel-first order (1024 red, 1024 green, 1024 blue values, each plane
row-major), and ``labels``, ints 1..1000 (one-based; read as 0..999). Training batches also
hold ``mean`` (not read). The validation set is the test split, as in the paper.

Memory: the training set is 1,281,167 x 3072 bytes (3.9 GB) as uint8, four times that as
float32. It is kept as uint8 in one array allocated once (the label arrays, read first, give
its size), filled batch file by batch file, so reading needs the set plus one batch file;
with ``max_train`` only the batch files that hold the first ``max_train`` images are read.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ._images import require_files

__all__ = ["IMAGENET32_TEST", "IMAGENET32_TRAIN", "read_imagenet32"]

IMAGENET32_TRAIN = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
"""The training batch files, in the order they are read."""
IMAGENET32_TEST = "val_data.npz"
"""The validation batch file: the test split."""
N_CLASSES = 1000
_PIXELS = 3 * 32 * 32


def _member(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of the npz file ``path``; one SpecError line for any fault."""
    try:
        # Opened here, not by np.load, so that the file is closed on every way out (np.load
        # leaves its own handle open when the zip directory is corrupt).
        with path.open("rb") as f:
            archive = np.load(f, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an npz archive")
            with archive:
                if key not in archive.files:
                    raise SpecError(
                        f"{path}: expected an npz archive with arrays 'data' and 'labels', "
                        f"found {sorted(archive.files)}"
                    )
                return archive[key]
    except SpecError:
        raise
    except FileNotFoundError as err:
        raise SpecError(f"{path}: expected an ImageNet 32x32 npz file, found no such file") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise SpecError(
            f"{path}: expected an ImageNet 32x32 npz archive, found a corrupt file "
            f"({type(err).__name__}: {err})"
        ) from err


def _labels(path: Path) -> np.ndarray:
    """The one-based labels of ``path`` as int32 0..999."""
    labels = _member(path, "labels")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise SpecError(
            f"{path}: labels: expected a 1-D integer array, found {labels.ndim}-D {labels.dtype}"
        )
    if labels.size and (int(labels.min()) < 1 or int(labels.max()) > N_CLASSES):
        raise SpecError(
            f"{path}: labels: expected one-based labels in 1..{N_CLASSES}, found "
            f"{int(labels.min())}..{int(labels.max())}"
        )
    return (labels - 1).astype(np.int32)


def _data(path: Path, n: int) -> np.ndarray:
    data = _member(path, "data")
    if data.dtype != np.uint8 or data.shape != (n, _PIXELS):
        raise SpecError(
            f"{path}: data: expected uint8 of shape ({n}, {_PIXELS}) (one 3x32x32 image per "
            f"label), found {data.dtype} of shape {data.shape}"
        )
    return data


def read_imagenet32(
    spec: str, directory: Path, *, max_train: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """``(x_train, y_train, x_test, y_test, cut)`` of an ImageNet 32x32 folder.

    ``x_*`` uint8 (n, 3072), the files' rows; ``y_*`` int32 0..999; the training batches in
    file order, only as many as the first ``max_train`` images need (``cut``: fewer than
    all training images were kept). Every file must be present before any is read.

    Raises:
        SpecError: one line naming the folder (missing files) or the file (corrupt archive,
            missing array, wrong shape or dtype, label outside 1..1000).
    """
    require_files(
        spec,
        directory,
        (*IMAGENET32_TRAIN, IMAGENET32_TEST),
        what="ImageNet 32x32 npz files",
        hint="unpack the npz train and val archives there",
    )
    parts: list[tuple[Path, np.ndarray]] = []
    held = 0
    for name in IMAGENET32_TRAIN:
        if max_train is not None and held >= max_train:
            break
        y = _labels(directory / name)
        parts.append((directory / name, y))
        held += y.shape[0]
    n = held if max_train is None else min(held, max_train)
    cut = len(parts) < len(IMAGENET32_TRAIN) or n < held
    x_train = np.empty((n, _PIXELS), dtype=np.uint8)
    y_train = np.empty(n, dtype=np.int32)
    start = 0
    for path, y in parts:
        take = min(y.shape[0], n - start)
        x_train[start : start + take] = _data(path, y.shape[0])[:take]
        y_train[start : start + take] = y[:take]
        start += take
    y_test = _labels(directory / IMAGENET32_TEST)
    x_test = _data(directory / IMAGENET32_TEST, y_test.shape[0])
    return x_train, y_train, x_test, y_test, cut
