"""Image-shaped inputs: per-channel statistics, and the paper code's augmentation.

Flattened inputs are in channel-first order: a row of ``C * H * W`` values is the image
``(C, H, W)`` in C order, which is how the MNIST, CIFAR and ImageNet 32x32 files store it.

Augmentation follows the paper code's torchvision pipeline: ``RandomCrop(H, padding=4)``
(pad every side with black, then cut an ``H x W`` window at a uniformly drawn offset), then
``RandomHorizontalFlip()`` (mirror the columns with probability 1/2). Every draw comes from
the NumPy generator the caller passes: no global random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import SpecError

__all__ = ["AUGMENTATIONS", "augment_images", "channel_stats", "require_files"]


def require_files(
    spec: str, folder: Path, names: Sequence[str], *, what: str, where: str = "", hint: str
) -> None:
    """One :class:`SpecError` line unless every file of ``names`` is in ``folder``, naming
    the missing ones and whether the folder exists (``what`` the files are, ``where`` more
    places they may be, ``hint`` what to do)."""
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        found = "them missing" if folder.is_dir() else "no such directory"
        raise SpecError(
            f"dataset {spec!r}: expected the {what} {', '.join(missing)} in {folder}{where}, "
            f"found {found}; {hint}"
        )


AUGMENTATIONS = ("crop", "flip")
"""The augmentations a dataset spec may ask for (``?augment=crop,flip``)."""

_CHUNK_ROWS = 8192  # rows per step of channel_stats: bounded temporaries (~200 MB at 3072 px)


def channel_stats(
    x: np.ndarray, image_shape: tuple[int, int, int], *, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (population, ddof 0) of each channel of ``x * scale``.

    Args:
        x: the stored rows, shape (n, C * H * W): uint8 pixels (summed exactly as integers)
            or float32 inputs (summed in float64), channel-first.
        image_shape: ``(C, H, W)``.
        scale: what a stored value is multiplied by to become an input (1/255 for pixels).

    Returns:
        ``(mean, std)``, float64, shape (C,), in input units.
    """
    c = image_shape[0]
    n = x.shape[0]
    integer = x.dtype == np.uint8
    acc = np.uint64 if integer else np.float64
    total = np.zeros(c, dtype=acc)
    squares = np.zeros(c, dtype=acc)
    for start in range(0, n, _CHUNK_ROWS):
        chunk = x[start : start + _CHUNK_ROWS].reshape(-1, c, x.shape[1] // c).astype(acc)
        total += chunk.sum(axis=(0, 2))
        squares += (chunk * chunk).sum(axis=(0, 2))
    count = n * (x.shape[1] // c)
    mean = total.astype(np.float64) / count
    var = squares.astype(np.float64) / count - mean * mean
    return mean * scale, np.sqrt(np.maximum(var, 0.0)) * scale


def augment_images(
    x: np.ndarray,
    image_shape: tuple[int, int, int],
    *,
    crop_padding: int,
    flip: bool,
    fill: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Random crop after padding, then random horizontal flip, of a batch of images.

    Crop: each image is padded by ``crop_padding`` on every side with ``fill`` (the input
    value of a black pixel, per channel), and the ``H x W`` window at offset ``(dy, dx)``,
    each drawn uniformly from ``0 ... 2 * crop_padding``, is kept: the image shifted by
    ``(crop_padding - dy, crop_padding - dx)`` with the uncovered border filled. Flip: each
    image has its columns reversed with probability 1/2. The draws, in this order: the
    offsets ``rng.integers(0, 2p + 1, (b, 2))`` (crop only), then ``rng.random(b) < 0.5``
    (flip only).

    Args:
        x: float32, shape (b, C * H * W), channel-first rows.
        image_shape: ``(C, H, W)``.
        crop_padding: pixels of padding for the crop (0: no crop).
        flip: draw horizontal flips.
        fill: float32, shape (C,), the value the padding takes in each channel.
        rng: the generator every draw comes from.

    Returns:
        float32, shape (b, C * H * W): a new array (``x`` is not changed).
    """
    c, h, w = image_shape
    b = x.shape[0]
    images = np.asarray(x, dtype=np.float32).reshape(b, c, h, w)
    if crop_padding > 0:
        p = crop_padding
        padded = np.empty((b, c, h + 2 * p, w + 2 * p), dtype=np.float32)
        padded[...] = np.asarray(fill, dtype=np.float32)[None, :, None, None]
        padded[:, :, p : p + h, p : p + w] = images
        offsets = rng.integers(0, 2 * p + 1, size=(b, 2))
        rows = offsets[:, 0, None] + np.arange(h)  # (b, h)
        cols = offsets[:, 1, None] + np.arange(w)  # (b, w)
        images = padded[
            np.arange(b)[:, None, None, None],
            np.arange(c)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
    else:
        images = images.copy()
    if flip:
        mirrored = rng.random(b) < 0.5
        images[mirrored] = images[mirrored, :, :, ::-1]
    return images.reshape(b, c * h * w)
