"""The ``Dataset`` container, deterministic batching, and ``load_dataset(spec)``.

A dataset is named by a spec string (the CLI's ``--dataset``): ``digits``, or an IDX dataset
``mnist``, ``mnist-test`` or ``fashion-mnist`` optionally followed by ``:DIR``, the directory
that holds its files. Batch order is a pure function of ``(seed, epoch)``, so a run resumed
from a checkpoint sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ._digits import DIGITS_DESCRIPTION, load_digits_split
from ._download import default_base_url, default_cache_dir, default_sha256, download_files
from ._idx import read_idx_pair
from ._synthetic import SYNTHETIC_SPEC, parse_synthetic, synthetic_split

__all__ = ["DATASET_SPECS", "Dataset", "load_dataset", "one_hot"]

DATASET_SPECS = (
    "digits",
    "mnist[:DIR]",
    "mnist-test[:DIR]",
    "fashion-mnist[:DIR] (or fashion_mnist[:DIR])",
    SYNTHETIC_SPEC,
)
"""The accepted forms of a dataset spec, as shown in error messages and help texts."""

_SPLITS = ("train", "test")
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
        name: canonical name, e.g. ``"digits"`` or ``"mnist-test"``.
        x_train: float32, shape (n_train, n_features), values in [0, 1].
        y_train: int32, shape (n_train,), values in [0, n_classes).
        x_test: float32, shape (n_test, n_features), values in [0, 1].
        y_test: int32, shape (n_test,), values in [0, n_classes).
        n_classes: number of classes.
        description: where the data came from and how it was split.

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

    def __post_init__(self) -> None:
        n_classes = _check_nonneg_int(f"Dataset {self.name}: n_classes", self.n_classes, minimum=1)
        for split in _SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            where = f"Dataset {self.name}: {split}"
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
                raise TypeError(f"{where}: expected x as a 2-D float32 array, found {_kind(x)}")
            if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.ndim != 1:
                raise TypeError(f"{where}: expected y as a 1-D int32 array, found {_kind(y)}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{where}: expected one label per row, found {x.shape[0]} "
                    f"rows and {y.shape[0]} labels"
                )
            # `not (a >= 0)` is also true for NaN.
            if x.size and not (x.min() >= 0.0 and x.max() <= 1.0):
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
        """``(x, y)`` of ``split``, "train" or "test" (read-only arrays)."""
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
        _, y = self.split(split)
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
            ``(x, y)``: float32 (b, n_features) in [0, 1] and int32 (b,), fresh copies,
            b = batch_size except possibly for the last batch when ``drop_last=False``.
        """
        x, y = self.split(split)
        batch_size = _check_nonneg_int("batches: batch_size", batch_size, minimum=1)
        seed = _check_nonneg_int("batches: seed", seed)
        epoch = _check_nonneg_int("batches: epoch", epoch)
        n = y.shape[0]
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        # Validation above runs at the call, not at the first next(), hence the inner generator.
        return (
            (x[order[i : i + batch_size]], y[order[i : i + batch_size]])
            for i in range(0, stop, batch_size)
        )


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.ndim}-D {value.dtype}"
    return type(value).__name__


def _parse_spec(spec: str) -> tuple[str, Path | None]:
    """``"name[:DIR]"`` -> (name as written, lowercased; DIR or None)."""
    expected = f"expected one of {', '.join(DATASET_SPECS)}"
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"dataset spec {spec!r}: {expected}, found an empty spec")
    name, sep, directory = spec.strip().partition(":")
    name = name.strip().lower()
    if name == "digits":
        if sep:
            raise SpecError(
                f"dataset spec {spec!r}: {expected}, found a directory after "
                f"'digits' (it ships with scikit-learn and needs no files)"
            )
        return name, None
    if name not in _IDX_NAMES:
        raise SpecError(f"dataset spec {spec!r}: {expected}, found unknown name {name!r}")
    if sep and not directory.strip():
        raise SpecError(f"dataset spec {spec!r}: {expected}, found an empty DIR after ':'")
    return name, Path(directory.strip()).expanduser() if sep else None


def _locate(directory: Path, stem: str) -> Path | None:
    """The raw file ``stem`` if present (no decompression), else ``stem.gz``, else None."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(
    spec: str,
    name: str,
    directory: Path,
    *,
    download: bool,
    base_url: str | None,
    sha256: Mapping[str, str | None] | None,
) -> Dataset:
    canonical, family = _IDX_NAMES[name]
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
    x_test, y_test = read_idx_pair(*(paths[s] for s in _IDX_STEMS["t10k"]), n_classes=10)
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
        x_train, y_train = read_idx_pair(*(paths[s] for s in _IDX_STEMS["train"]), n_classes=10)
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
    return Dataset(canonical, x_train, y_train, x_test, y_test, 10, description)


def load_dataset(
    spec: str,
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    base_url: str | None = None,
    sha256: Mapping[str, str | None] | None = None,
) -> Dataset:
    """Load the dataset that ``spec`` names.

    Args:
        spec: one of
            ``digits``: scikit-learn's 8x8 digits (offline), 64 features, 1437 train /
            360 test (fixed stratified split, 20 % test, seed 0);
            ``mnist[:DIR]``, ``fashion-mnist[:DIR]`` (or ``fashion_mnist``): the four IDX
            files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``)
            in DIR, 784 features, 60000 train / 10000 test;
            ``mnist-test[:DIR]``: only the two t10k files, first 8000 train / last 2000 test;
            ``synthetic:FxC``: a linear teacher task with F inputs and C classes (2000 train /
            500 test), for circuits no real dataset fits (``analog_hep.data._synthetic``).
        cache_dir: directory of the IDX files when the spec names none; default
            ``~/.cache/analog-hep/<mnist|fashion-mnist>``. Ignored if the spec has ``:DIR``.
        download: fetch missing (or corrupt cached) ``.gz`` files into that directory first,
            each verified by SHA-256 before it is put in place.
        base_url: mirror to download from; default from ``ANALOG_HEP_MNIST_URL`` /
            ``ANALOG_HEP_FASHION_MNIST_URL`` or a public mirror.
        sha256: checksum table ``{file name: hex digest}`` that replaces the built-in one
            (see ``download_files``).

    Returns:
        The ``Dataset``: float32 inputs in [0, 1], int32 labels, 10 classes (C for synthetic).

    Raises:
        SpecError: bad spec; missing files (naming the directory and files); a corrupt file
            (naming it and the fault); a failed download or checksum mismatch.
    """
    if isinstance(spec, str) and spec.strip().lower().startswith("synthetic"):
        features, classes = parse_synthetic(spec)
        x_train, y_train, x_test, y_test = synthetic_split(features, classes)
        how = (
            f"{features} inputs uniform in [0, 1], labels argmax of a fixed random linear "
            f"teacher (seed 0); {len(y_train)} train / {len(y_test)} test"
        )
        name = f"synthetic:{features}x{classes}"
        return Dataset(name, x_train, y_train, x_test, y_test, classes, how)
    name, directory = _parse_spec(spec)
    if name == "digits":
        x_train, y_train, x_test, y_test = load_digits_split()
        return Dataset("digits", x_train, y_train, x_test, y_test, 10, DIGITS_DESCRIPTION)
    if directory is None:
        family = _IDX_NAMES[name][1]
        directory = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(family)
    return _load_idx_dataset(
        spec, name, directory, download=download, base_url=base_url, sha256=sha256
    )
