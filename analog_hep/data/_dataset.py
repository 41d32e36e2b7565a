"""The ``Dataset`` container, deterministic batching, and ``load_dataset(spec)``.

A dataset is named by a spec string (the CLI's ``--dataset``): ``digits``; an IDX dataset
``mnist``, ``mnist-test`` or ``fashion-mnist`` optionally followed by ``:DIR``, the directory
that holds its files; ``cifar10:DIR``, ``cifar100:DIR``, ``cifar100-coarse:DIR`` or
``imagenet32:DIR``; or ``synthetic:FxC``. An image dataset's spec may end in options,
``?augment=crop,flip&normalize=channel``. Batch order is a pure function of
``(seed, epoch)`` and augmentation of ``(seed, epoch, step)``, so a run resumed from a
checkpoint sees exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ._cifar import CIFAR_LAYOUTS, read_cifar
from ._digits import DIGITS_DESCRIPTION, load_digits_split
from ._download import default_base_url, default_cache_dir, default_sha256, download_files
from ._idx import read_idx_pair_shaped
from ._imagenet32 import IMAGENET32_TEST, IMAGENET32_TRAIN, read_imagenet32
from ._images import AUGMENTATIONS, augment_images, channel_stats
from ._synthetic import SYNTHETIC_SPEC, parse_synthetic, synthetic_split

__all__ = [
    "CROP_PADDING",
    "DATASET_OPTIONS",
    "DATASET_SPECS",
    "NORMALIZATIONS",
    "Dataset",
    "load_dataset",
    "one_hot",
]

DATASET_SPECS = (
    "digits",
    "mnist[:DIR]",
    "mnist-test[:DIR]",
    "fashion-mnist[:DIR] (or fashion_mnist[:DIR])",
    "cifar10:DIR",
    "cifar100:DIR",
    "cifar100-coarse:DIR",
    "imagenet32:DIR",
    SYNTHETIC_SPEC,
)
"""The accepted forms of a dataset spec, as shown in error messages and help texts."""
DATASET_OPTIONS = "?augment=crop,flip&normalize=channel"
"""The options an image dataset's spec may end in (each optional, in any order)."""
NORMALIZATIONS = ("none", "channel")
"""``none``: inputs are the stored scaling (pixels / 255); ``channel``: standardised per
channel with the training split's mean and standard deviation."""
CROP_PADDING = 4
"""Pixels of black padding on every side before the random crop (the paper code's value)."""
_AUGMENT_STREAM = 1
# Appended to (seed, epoch, step): the augmentation generator of a step is
# default_rng([seed, epoch, step, 1]), never the batch order's default_rng([seed, epoch])
# (SeedSequence pads short entropy with zeros, so the last word must not be 0).

_SPLITS = ("train", "test")
_STORED = (np.dtype(np.float32), np.dtype(np.uint8))
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Spec name -> (canonical name, family: names the cache dir, mirror and checksum table).
_IDX_NAMES = {
    "mnist": ("mnist", "mnist"),
    "mnist-test": ("mnist-test", "mnist"),
    "fashion-mnist": ("fashion-mnist", "fashion-mnist"),
    "fashion_mnist": ("fashion-mnist", "fashion-mnist"),
}
_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
# Image sets read from a folder the user names (no default folder, no download).
_FOLDER_SETS = (*CIFAR_LAYOUTS, "imagenet32")


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """One-hot encode integer labels.

    Args:
        y: integer labels, shape (n,), values in [0, n_classes).
        n_classes: number of classes.

    Returns:
        float32, shape (n, n_classes): 1.0 at ``[i, y[i]]``, 0.0 elsewhere.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"one_hot: expected 1-D integer labels, found {y.ndim}-D {y.dtype}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(
            f"one_hot: expected labels in 0..{n_classes - 1}, found {int(y.min())}..{int(y.max())}"
        )
    out = np.zeros((y.shape[0], n_classes), dtype=np.float32)
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def _check_nonneg_int(what: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what}: expected an integer >= {minimum}, found {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset, split into train and test, ready for a model.

    Attributes:
        name: canonical name, e.g. ``"digits"`` or ``"cifar10"``.
        x_train: the stored training rows, shape (n_train, n_features): float32 inputs in
            [0, 1], or uint8 pixels whose input is pixel / 255 (the CIFAR and ImageNet 32x32
            sets, kept at a quarter of float32's memory). Models take :meth:`split` and
            :meth:`batches`, which give float32 inputs either way.
        y_train: int32, shape (n_train,), values in [0, n_classes).
        x_test: the stored test rows, like ``x_train``.
        y_test: int32, shape (n_test,), values in [0, n_classes).
        n_classes: number of classes.
        description: where the data came from and how it was split.
        image_shape: ``(channels, height, width)`` of one input, whose flattened row is in
            channel-first C order; ``None`` for inputs that are not images (synthetic).
        augmentation: what :meth:`augment` does to training batches: any of ``"crop"``
            (random crop after black padding of 4) and ``"flip"`` (random horizontal flip),
            in that order; empty for none. Needs an ``image_shape``.
        normalization: ``"none"`` (inputs as stored, pixels / 255) or ``"channel"`` (each
            channel standardised with the training split's mean and standard deviation, set
            in ``channel_mean`` / ``channel_std``). Needs an ``image_shape``.

    The arrays are checked on construction and stored as read-only views, so a dataset shared
    between runs cannot be altered by one of them. Equality is identity (arrays have no
    single truth value).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    description: str
    image_shape: tuple[int, int, int] | None = None
    augmentation: tuple[str, ...] = ()
    normalization: str = "none"
    # Per-channel mean and std (float64, (C,), input units) of x_train, with "channel".
    channel_mean: np.ndarray | None = field(init=False, default=None, repr=False)
    channel_std: np.ndarray | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        n_classes = _check_nonneg_int(f"Dataset {self.name}: n_classes", self.n_classes, minimum=1)
        for split in _SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            where = f"Dataset {self.name}: {split}"
            if not isinstance(x, np.ndarray) or x.dtype not in _STORED or x.ndim != 2:
                raise TypeError(
                    f"{where}: expected x as a 2-D float32 or uint8 array, found {_kind(x)}"
                )
            if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.ndim != 1:
                raise TypeError(f"{where}: expected y as a 1-D int32 array, found {_kind(y)}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{where}: expected one label per row, found {x.shape[0]} "
                    f"rows and {y.shape[0]} labels"
                )
            # `not (a >= 0)` is also true for NaN.
            if x.dtype == np.float32 and x.size and not (x.min() >= 0.0 and x.max() <= 1.0):
                raise ValueError(f"{where}: expected x in [0, 1], found {x.min()}..{x.max()}")
            if y.size and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(
                    f"{where}: expected y in 0..{n_classes - 1}, found {y.min()}..{y.max()}"
                )
            for attr, array in ((f"x_{split}", x), (f"y_{split}", y)):
                view = array.view()
                view.flags.writeable = False
                object.__setattr__(self, attr, view)
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ValueError(
                f"Dataset {self.name}: expected as many features in train as in "
                f"test, found {self.x_train.shape[1]} and {self.x_test.shape[1]}"
            )
        if self.x_train.dtype != self.x_test.dtype:
            raise TypeError(
                f"Dataset {self.name}: expected train and test stored alike, found "
                f"{self.x_train.dtype} and {self.x_test.dtype}"
            )
        self._check_image_options()

    def _check_image_options(self) -> None:
        shape = self.image_shape
        where = f"Dataset {self.name}"
        if shape is not None and (
            not isinstance(shape, tuple)
            or len(shape) != 3
            or not all(isinstance(v, int) and v >= 1 for v in shape)
            or math.prod(shape) != self.n_features
        ):
            raise ValueError(
                f"{where}: expected image_shape (C, H, W) of positive ints with C*H*W = "
                f"{self.n_features} features, found {shape!r}"
            )
        if not isinstance(self.augmentation, tuple) or list(self.augmentation) != [
            a for a in AUGMENTATIONS if a in self.augmentation
        ]:
            raise ValueError(
                f"{where}: expected augmentation as a tuple of distinct {AUGMENTATIONS} in that "
                f"order, found {self.augmentation!r}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"{where}: expected normalization in {NORMALIZATIONS}, found {self.normalization!r}"
            )
        if shape is None and (self.augmentation or self.normalization != "none"):
            raise ValueError(
                f"{where}: augmentation and normalization need an image_shape, found none"
            )
        if self.normalization == "channel" and shape is not None:
            mean, std = channel_stats(self.x_train, shape, scale=self._scale)
            if self.n_train == 0 or not np.all(std > 0.0):
                raise SpecError(
                    f"dataset {self.name}: normalize=channel: expected every channel of the "
                    f"{self.n_train} training images to vary, found std {np.round(std, 6)}"
                )
            object.__setattr__(self, "channel_mean", mean)
            object.__setattr__(self, "channel_std", std)

    @property
    def _scale(self) -> float:
        """What a stored value is multiplied by to become an input."""
        return 1.0 / 255.0 if self.x_train.dtype == np.uint8 else 1.0

    def _affine(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(mean, std)`` as float32 (C,) when inputs are standardised, else ``None``."""
        if self.channel_mean is None or self.channel_std is None:
            return None
        return self.channel_mean.astype(np.float32), self.channel_std.astype(np.float32)

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Model inputs of stored rows ``x`` (2-D, this dataset's ``x_train.dtype``).

        uint8 pixels become ``pixel / 255`` (float32 division, as the IDX reader does);
        with ``normalization="channel"`` each channel then becomes ``(v - mean_c) / std_c``
        (float32). Float32 rows without normalization are returned as they are (no copy);
        otherwise a new float32 array of the same shape.
        """
        affine = self._affine()
        if x.dtype == np.uint8:
            out = x.astype(np.float32) / np.float32(255.0)
        elif affine is not None:
            out = np.array(x, dtype=np.float32)
        else:
            return x
        if affine is not None and self.image_shape is not None:
            mean, std = affine
            planes = out.reshape(out.shape[0], self.image_shape[0], -1)
            planes -= mean[:, None]
            planes /= std[:, None]
        return out

    @property
    def input_bounds(self) -> tuple[float, float]:
        """The lowest and highest input any pixel can give: (0, 1) without normalization;
        with ``channel``, the extremes of ``(0 - mean_c) / std_c`` and ``(1 - mean_c) / std_c``
        (compare them with the chip's DAC ``input_range``)."""
        affine = self._affine()
        if affine is None:
            return 0.0, 1.0
        mean, std = affine
        return float(np.min((0.0 - mean) / std)), float(np.max((1.0 - mean) / std))

    def augment(self, x: np.ndarray, *, seed: int, epoch: int, step: int) -> np.ndarray:
        """The training batch ``x`` augmented as ``augmentation`` says (``x`` itself when
        it says nothing).

        The draws come from ``numpy.random.default_rng([seed, epoch, step, 1])``: the same
        ``(seed, epoch, step)`` gives the same batch, with no global state, so a resumed run
        augments exactly like an uninterrupted one. A crop pads with the input value of a
        black pixel (0, or ``-mean_c / std_c`` when standardised), so it equals cropping the
        raw image with zero padding, as the paper code does. Never used on evaluation data.

        Args:
            x: float32, shape (b, n_features): inputs from :meth:`batches`.
            seed, epoch, step: integers >= 0; ``step`` counts the batches of the epoch from 0.

        Returns:
            float32, shape (b, n_features): a new array, or ``x`` without augmentation.
        """
        if not self.augmentation:
            return x
        seed = _check_nonneg_int("augment: seed", seed)
        epoch = _check_nonneg_int("augment: epoch", epoch)
        step = _check_nonneg_int("augment: step", step)
        if x.ndim != 2 or x.dtype != np.float32 or x.shape[1] != self.n_features:
            raise ValueError(
                f"augment: expected float32 inputs (b, {self.n_features}), found {_kind(x)} "
                f"of shape {x.shape}"
            )
        assert self.image_shape is not None  # checked on construction
        affine = self._affine()
        c = self.image_shape[0]
        fill = (
            np.zeros(c, np.float32) if affine is None else (np.float32(0) - affine[0]) / affine[1]
        )
        return augment_images(
            x,
            self.image_shape,
            crop_padding=CROP_PADDING if "crop" in self.augmentation else 0,
            flip="flip" in self.augmentation,
            fill=fill,
            rng=np.random.default_rng([seed, epoch, step, _AUGMENT_STREAM]),
        )

    @property
    def n_features(self) -> int:
        """Number of input features (columns of ``x_train``)."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.y_test.shape[0])

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``split``, "train" or "test": float32 inputs (:meth:`inputs` of the
        stored rows: the read-only stored array itself when that is already the input, else
        a new array, which for ImageNet 32x32's training split is 15.7 GB: use
        :meth:`batches` there) and the read-only int32 labels."""
        x, y = self._stored(split)
        return self.inputs(x), y

    def _stored(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in _SPLITS:
            raise ValueError(
                f"Dataset {self.name}: expected split 'train' or 'test', found {split!r}"
            )
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")

    def one_hot(self, y: np.ndarray) -> np.ndarray:
        """One-hot encode labels ``y`` (int, shape (n,)) -> float32, shape (n, n_classes)."""
        return one_hot(y, self.n_classes)

    def n_batches(self, split: str, batch_size: int, drop_last: bool = True) -> int:
        """Number of batches ``batches(split, batch_size, drop_last=...)`` yields."""
        _, y = self._stored(split)
        batch_size = _check_nonneg_int("n_batches: batch_size", batch_size, minimum=1)
        n = y.shape[0]
        return n // batch_size if drop_last else -(-n // batch_size)

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Iterate over ``split`` in batches.

        The order is a permutation drawn from ``numpy.random.default_rng([seed, epoch])``
        (no global state): the same ``(seed, epoch)`` gives the same batches, on any machine,
        and different epochs give different orders. With ``shuffle=False`` the order is the
        stored one and ``seed``/``epoch`` are ignored.

        Args:
            split: "train" or "test".
            batch_size: examples per batch, >= 1.
            seed, epoch: integers >= 0 that fix the order.
            shuffle: permute the examples (else keep the stored order).
            drop_last: skip the final batch if it has fewer than ``batch_size`` examples
                (so every batch has the same shape, which keeps jitted steps from retracing).

        Yields:
            ``(x, y)``: float32 (b, n_features) inputs (:meth:`inputs`: in [0, 1] unless
            standardised) and int32 (b,), fresh copies, b = batch_size except possibly for
            the last batch when ``drop_last=False``. Not augmented: the training loop calls
            :meth:`augment` on each training batch.
        """
        x, y = self._stored(split)
        batch_size = _check_nonneg_int("batches: batch_size", batch_size, minimum=1)
        seed = _check_nonneg_int("batches: seed", seed)
        epoch = _check_nonneg_int("batches: epoch", epoch)
        n = y.shape[0]
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        # Validation above runs at the call, not at the first next(), hence the inner generator.
        return (
            (self.inputs(x[order[i : i + batch_size]]), y[order[i : i + batch_size]])
            for i in range(0, stop, batch_size)
        )


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.ndim}-D {value.dtype}"
    return type(value).__name__


@dataclass(frozen=True)
class _Spec:
    """A parsed dataset spec: ``name[:DIR][?OPTIONS]``."""

    name: str  # as written, lowercased
    directory: Path | None
    augmentation: tuple[str, ...] = ()
    normalization: str = "none"


def _parse_options(spec: str, query: str) -> tuple[tuple[str, ...], str]:
    """``"augment=crop,flip&normalize=channel"`` -> ``(("crop", "flip"), "channel")``."""
    expected = (
        f"expected options after '?' of the form {DATASET_OPTIONS} (augment: any of "
        f"{', '.join(AUGMENTATIONS)} or none; normalize: {' or '.join(NORMALIZATIONS)}; "
        "joined by '&')"
    )
    given: dict[str, str] = {}
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if not eq or key not in ("augment", "normalize") or not value:
            raise SpecError(f"dataset spec {spec!r}: {expected}, found {item!r}")
        if key in given:
            raise SpecError(f"dataset spec {spec!r}: {expected}, found {key!r} twice")
        given[key] = value
    augmentation: tuple[str, ...] = ()
    if given.get("augment", "none") != "none":
        names = [v.strip() for v in given["augment"].split(",")]
        bad = [v for v in names if v not in AUGMENTATIONS]
        if bad or len(set(names)) != len(names):
            raise SpecError(
                f"dataset spec {spec!r}: {expected}, found augment={given['augment']!r}"
            )
        augmentation = tuple(a for a in AUGMENTATIONS if a in names)
    normalization = given.get("normalize", "none")
    if normalization not in NORMALIZATIONS:
        raise SpecError(f"dataset spec {spec!r}: {expected}, found normalize={normalization!r}")
    return augmentation, normalization


def _parse_spec(spec: str) -> _Spec:
    """``"name[:DIR][?OPTIONS]"`` -> name (lowercased), DIR or None, and the options."""
    expected = (
        f"expected one of {', '.join(DATASET_SPECS)}, an image set (not synthetic) optionally "
        f"followed by {DATASET_OPTIONS}"
    )
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"dataset spec {spec!r}: {expected}, found an empty spec")
    base, question, query = spec.strip().partition("?")
    name, sep, directory = base.partition(":")
    name = name.strip().lower()
    if name.startswith("synthetic"):
        if question:
            raise SpecError(
                f"dataset spec {spec!r}: {expected}, found options for a synthetic task (its "
                "inputs are no images: nothing to crop, flip or standardise per channel)"
            )
        return _Spec("synthetic", None)
    options = _parse_options(spec, query) if question else ((), "none")
    if name == "digits":
        if sep:
            raise SpecError(
                f"dataset spec {spec!r}: {expected}, found a directory after "
                f"'digits' (it ships with scikit-learn and needs no files)"
            )
        return _Spec(name, None, *options)
    if name not in _IDX_NAMES and name not in _FOLDER_SETS:
        raise SpecError(f"dataset spec {spec!r}: {expected}, found unknown name {name!r}")
    if sep and not directory.strip():
        raise SpecError(f"dataset spec {spec!r}: {expected}, found an empty DIR after ':'")
    if not sep and name in _FOLDER_SETS:
        raise SpecError(
            f"dataset spec {spec!r}: {expected}, found no DIR after {name!r} (its files cannot "
            f"be downloaded here: name the folder that holds them, {name}:DIR)"
        )
    return _Spec(name, Path(directory.strip()).expanduser() if sep else None, *options)


def _locate(directory: Path, stem: str) -> Path | None:
    """The raw file ``stem`` if present (no decompression), else ``stem.gz``, else None."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(
    spec: str,
    parsed: _Spec,
    directory: Path,
    *,
    download: bool,
    base_url: str | None,
    sha256: Mapping[str, str | None] | None,
) -> Dataset:
    canonical, family = _IDX_NAMES[parsed.name]
    test_only = canonical == "mnist-test"
    parts = ("t10k",) if test_only else ("train", "t10k")
    stems = [stem for part in parts for stem in _IDX_STEMS[part]]
    if download:
        # A raw file the user put there wins over the cache and is not re-downloaded.
        fetch = [f"{stem}.gz" for stem in stems if not (directory / stem).is_file()]
        download_files(
            directory,
            fetch,
            base_url=base_url if base_url is not None else default_base_url(family),
            sha256=sha256 if sha256 is not None else default_sha256(family),
        )
    paths = {stem: _locate(directory, stem) for stem in stems}
    missing = [stem for stem, path in paths.items() if path is None]
    if missing:
        files = ", ".join(f"{stem}[.gz]" for stem in missing)
        found = "them missing" if directory.is_dir() else "no such directory"
        raise SpecError(
            f"dataset {spec!r}: expected {files} in {directory}, found {found}; put the IDX "
            f"files there (raw or .gz), or pass download=True to fetch them into it"
        )
    title = _TITLES[family]
    x_test, y_test, (rows, cols) = read_idx_pair_shaped(
        *(paths[s] for s in _IDX_STEMS["t10k"]), n_classes=10
    )
    if test_only:
        # t10k is already in random order, so a cut (no reshuffle) is a fair split.
        n_train = 4 * y_test.shape[0] // 5
        x_train, y_train = x_test[:n_train], y_test[:n_train]
        x_test, y_test = x_test[n_train:], y_test[n_train:]
        how = (
            f"only the t10k test files, split in stored order (t10k is already shuffled): "
            f"first {n_train} images train, last {y_test.shape[0]} test"
        )
    else:
        x_train, y_train, _ = read_idx_pair_shaped(
            *(paths[s] for s in _IDX_STEMS["train"]), n_classes=10
        )
        if x_train.shape[1] != x_test.shape[1]:
            raise SpecError(
                f"{paths['t10k-images-idx3-ubyte']}: expected images of "
                f"{x_train.shape[1]} pixels like {paths['train-images-idx3-ubyte']}, "
                f"found {x_test.shape[1]}"
            )
        how = (
            f"the standard split: train-* files {y_train.shape[0]} train, "
            f"t10k-* files {y_test.shape[0]} test"
        )
    description = f"{title} IDX files from {directory}, pixels / 255 in [0, 1]; {how}"
    return Dataset(
        canonical,
        x_train,
        y_train,
        x_test,
        y_test,
        10,
        description,
        image_shape=(1, rows, cols),
        augmentation=parsed.augmentation,
        normalization=parsed.normalization,
    )


def _load_folder_set(spec: str, parsed: _Spec, *, max_train: int | None) -> Dataset:
    """A CIFAR or ImageNet 32x32 folder, kept as uint8 pixels (inputs: pixel / 255)."""
    assert parsed.directory is not None  # _parse_spec requires DIR for these sets
    directory = parsed.directory
    if parsed.name == "imagenet32":
        x_train, y_train, x_test, y_test, cut = read_imagenet32(
            spec, directory, max_train=max_train
        )
        n_classes = 1000
        how = (
            f"ImageNet 32x32 npz files from {directory} (labels 1..1000 read as 0..999), "
            f"{IMAGENET32_TRAIN[0]}..{IMAGENET32_TRAIN[-1]} {y_train.shape[0]} train, "
            f"{IMAGENET32_TEST} (the validation set) {y_test.shape[0]} test"
        )
    else:
        layout = CIFAR_LAYOUTS[parsed.name]
        x_train, y_train, x_test, y_test, folder, cut = read_cifar(
            spec, directory, layout, max_train=max_train
        )
        n_classes = layout.n_classes
        how = (
            f"{layout.title} python batches from {folder}, {'+'.join(layout.train)} "
            f"{y_train.shape[0]} train, {layout.test} {y_test.shape[0]} test"
        )
    description = f"{how}; pixels / 255 in [0, 1] (stored as uint8, converted per batch)"
    if cut:
        description += f"; first {max_train} training samples"
    return Dataset(
        parsed.name,
        x_train,
        y_train,
        x_test,
        y_test,
        n_classes,
        description,
        image_shape=(3, 32, 32),
        augmentation=parsed.augmentation,
        normalization=parsed.normalization,
    )


def _head(ds: Dataset, max_train: int | None) -> Dataset:
    """``ds`` with only its first ``max_train`` training samples (stored order)."""
    if max_train is None or max_train >= ds.n_train:
        return ds
    return dataclasses.replace(
        ds,
        x_train=ds.x_train[:max_train],
        y_train=ds.y_train[:max_train],
        description=ds.description + f"; first {max_train} training samples",
    )


def load_dataset(
    spec: str,
    *,
    max_train: int | None = None,
    cache_dir: str | Path | None = None,
    download: bool = False,
    base_url: str | None = None,
    sha256: Mapping[str, str | None] | None = None,
) -> Dataset:
    """Load the dataset that ``spec`` names.

    Args:
        spec: ``NAME[:DIR][?OPTIONS]``, NAME one of
            ``digits``: scikit-learn's 8x8 digits (offline), 64 features, 1437 train /
            360 test (fixed stratified split, 20 % test, seed 0);
            ``mnist[:DIR]``, ``fashion-mnist[:DIR]`` (or ``fashion_mnist``): the four IDX
            files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``)
            in DIR, 784 features, 60000 train / 10000 test;
            ``mnist-test[:DIR]``: only the two t10k files, first 8000 train / last 2000 test;
            ``cifar10:DIR``, ``cifar100:DIR`` (fine labels), ``cifar100-coarse:DIR`` (the 20
            superclasses): the python batch pickles in DIR or its ``cifar-10-batches-py`` /
            ``cifar-100-python`` subfolder, 3072 features, 50000 train / 10000 test;
            ``imagenet32:DIR``: the ImageNet 32x32 npz batches in DIR, 3072 features,
            1281167 train / 50000 test (the validation set);
            ``synthetic:FxC``: a linear teacher task with F inputs and C classes (2000 train /
            500 test), for circuits no real dataset fits (``analog_hep.data._synthetic``).
            OPTIONS (image sets only; docs/data.md): ``augment=crop,flip`` (any of them, or
            ``none``) and ``normalize=channel`` (or ``none``), joined by ``&``.
        max_train: keep only the first ``max_train`` training samples (stored order); the
            CIFAR and ImageNet 32x32 readers stop reading batch files once they hold them.
            Per-channel statistics are those of the samples kept.
        cache_dir: directory of the IDX files when the spec names none; default
            ``~/.cache/analog-hep/<mnist|fashion-mnist>``. Ignored if the spec has ``:DIR``.
        download: fetch missing (or corrupt cached) ``.gz`` files into that directory first,
            each verified by SHA-256 before it is put in place (MNIST family only).
        base_url: mirror to download from; default from ``ANALOG_HEP_MNIST_URL`` /
            ``ANALOG_HEP_FASHION_MNIST_URL`` or a public mirror.
        sha256: checksum table ``{file name: hex digest}`` that replaces the built-in one
            (see ``download_files``).

    Returns:
        The ``Dataset``: inputs in [0, 1] (pixel / 255, digits pixel / 16) unless
        standardised, int32 labels, its ``image_shape`` (None for synthetic).

    Raises:
        SpecError: bad spec or option; missing files (naming the directory and files); a
            corrupt file (naming it and the fault); a failed download or checksum mismatch.
    """
    if max_train is not None:
        max_train = _check_nonneg_int("load_dataset: max_train", max_train, minimum=1)
    parsed = _parse_spec(spec)
    if parsed.name == "synthetic":
        features, classes = parse_synthetic(spec)
        x_train, y_train, x_test, y_test = synthetic_split(features, classes)
        how = (
            f"{features} inputs uniform in [0, 1], labels argmax of a fixed random linear "
            f"teacher (seed 0); {len(y_train)} train / {len(y_test)} test"
        )
        name = f"synthetic:{features}x{classes}"
        return _head(Dataset(name, x_train, y_train, x_test, y_test, classes, how), max_train)
    if parsed.name in _FOLDER_SETS:
        if download:
            raise SpecError(
                f"dataset spec {spec!r}: download=True is for the MNIST family only; the "
                f"{parsed.name} files are the user's (docs/data.md says where to get them)"
            )
        return _load_folder_set(spec, parsed, max_train=max_train)
    if parsed.name == "digits":
        x_train, y_train, x_test, y_test = load_digits_split()
        ds = Dataset(
            "digits",
            x_train,
            y_train,
            x_test,
            y_test,
            10,
            DIGITS_DESCRIPTION,
            image_shape=(1, 8, 8),
            augmentation=parsed.augmentation,
            normalization=parsed.normalization,
        )
        return _head(ds, max_train)
    directory = parsed.directory
    if directory is None:
        family = _IDX_NAMES[parsed.name][1]
        directory = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(family)
    ds = _load_idx_dataset(
        spec, parsed, directory, download=download, base_url=base_url, sha256=sha256
    )
    return _head(ds, max_train)
