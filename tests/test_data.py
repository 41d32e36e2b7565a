"""Tests of analog_hep.data: digits, IDX files, MNIST specs, batching, verified downloads."""

from __future__ import annotations

import functools
import gzip
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analog_hep.data import (
    MNIST_SHA256,
    Dataset,
    download_files,
    load_dataset,
    one_hot,
    read_idx,
    read_idx_images,
    read_idx_labels,
    write_idx,
)
from analog_hep.errors import SpecError

# The machines' shared MNIST test set lives next to the repository clone (read-only).
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
T10K = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def _shared_mnist() -> Path:
    if not all((SHARED_MNIST / f"{stem}.gz").is_file() for stem in T10K):
        pytest.skip(f"shared MNIST t10k files not found in {SHARED_MNIST}")
    return SHARED_MNIST


def _write_set(directory: Path, stems: tuple[str, str], n: int, *, gz: bool, seed: int) -> None:
    """Synthetic 28x28 uint8 images and labels 0..9 as an IDX file pair."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    write_idx(directory / f"{stems[0]}{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
    write_idx(directory / f"{stems[1]}{suffix}", rng.integers(0, 10, n, dtype=np.uint8))


# --- digits -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits_shapes_ranges_classes(digits: Dataset) -> None:
    assert digits.name == "digits" and digits.n_classes == 10 and digits.n_features == 64
    assert digits.x_train.shape == (1437, 64) and digits.x_test.shape == (360, 64)
    for x, y in (digits.split("train"), digits.split("test")):
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.min() == 0.0 and x.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
    # Stratified: every class has (about) 20 % of its examples in test.
    frac = np.bincount(digits.y_test) / (np.bincount(digits.y_test) + np.bincount(digits.y_train))
    assert np.all(np.abs(frac - 0.2) < 0.01)
    assert "random_state=0" in digits.description and "test_size=0.2" in digits.description


def test_digits_split_is_fixed(digits: Dataset) -> None:
    again = load_dataset("digits")
    assert np.array_equal(again.x_train, digits.x_train)
    assert np.array_equal(again.y_test, digits.y_test)
    # Pinned so that a change of the split (e.g. a scikit-learn upgrade) cannot go unnoticed:
    # recorded results refer to this exact test set.
    fingerprint = hashlib.sha256(digits.x_test.tobytes() + digits.y_test.tobytes()).hexdigest()
    assert fingerprint[:16] == "31899533f0421efe"


# --- Dataset, batches, one_hot ------------------------------------------------------------


def _small() -> Dataset:
    rng = np.random.default_rng(1)
    x = rng.random((23, 3), dtype=np.float32)
    y = rng.integers(0, 4, 23).astype(np.int32)
    return Dataset("small", x, y, x[:5].copy(), y[:5].copy(), 4, "synthetic")


def _epoch(ds: Dataset, **kw: object) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(ds.batches("train", 5, **kw))  # type: ignore[arg-type]


def test_batches_depend_only_on_seed_and_epoch() -> None:
    ds = _small()
    a, b = _epoch(ds, seed=3, epoch=7), _epoch(ds, seed=3, epoch=7)
    assert all(
        np.array_equal(xa, xb) and np.array_equal(ya, yb)
        for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )
    other_epoch = _epoch(ds, seed=3, epoch=8)
    other_seed = _epoch(ds, seed=4, epoch=7)
    assert not all(np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(a, other_epoch, strict=True))
    assert not all(np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(a, other_seed, strict=True))
    # Global RNG state plays no part.
    np.random.seed(123)
    c = _epoch(ds, seed=3, epoch=7)
    assert all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))


def test_batches_shapes_and_coverage() -> None:
    ds = _small()
    full = _epoch(ds, seed=0, epoch=0)
    assert len(full) == ds.n_batches("train", 5) == 4
    assert all(x.shape == (5, 3) and x.dtype == np.float32 and y.dtype == np.int32 for x, y in full)
    ragged = list(ds.batches("train", 5, seed=0, epoch=0, drop_last=False))
    assert len(ragged) == ds.n_batches("train", 5, drop_last=False) == 5
    assert [len(y) for _, y in ragged] == [5, 5, 5, 5, 3]
    # One epoch without drop_last visits every example exactly once.
    seen = np.concatenate([x for x, _ in ragged])
    assert np.array_equal(np.sort(seen, axis=0), np.sort(ds.x_train, axis=0))
    in_order = list(ds.batches("test", 2, seed=0, epoch=0, shuffle=False, drop_last=False))
    assert np.array_equal(np.concatenate([x for x, _ in in_order]), ds.x_test)
    assert ds.n_batches("test", 10) == 0 and ds.n_batches("test", 10, drop_last=False) == 1


def test_batches_reject_bad_arguments_at_call() -> None:
    ds = _small()
    with pytest.raises(ValueError, match="split"):
        ds.batches("val", 5, seed=0, epoch=0)
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches("train", 0, seed=0, epoch=0)
    with pytest.raises(ValueError, match="seed"):
        ds.batches("train", 5, seed=-1, epoch=0)


def test_one_hot() -> None:
    ds = _small()
    oh = ds.one_hot(np.array([0, 3, 1], dtype=np.int32))
    assert oh.dtype == np.float32 and oh.shape == (3, 4)
    assert np.array_equal(oh, np.eye(4, dtype=np.float32)[[0, 3, 1]])
    assert one_hot(np.zeros(0, dtype=np.int64), 2).shape == (0, 2)
    with pytest.raises(ValueError, match=r"0\.\.3"):
        ds.one_hot(np.array([4]))


def test_dataset_validates_and_is_read_only() -> None:
    ds = _small()
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0] = 0.5
    x = np.full((2, 3), 1.5, dtype=np.float32)
    y = np.zeros(2, dtype=np.int32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Dataset("bad", x, y, x, y, 2, "")
    with pytest.raises(TypeError, match="float32"):
        Dataset("bad", x.astype(np.float64), y, x, y, 2, "")
    with pytest.raises(ValueError, match=r"0\.\.1"):
        Dataset("bad", x / 2, y + 2, x / 2, y, 2, "")


# --- IDX files ------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    dtype=st.sampled_from(["u1", "i1", "i2", "i4", "f4", "f8"]),
    gz=st.booleans(),
)
def test_idx_roundtrip(
    tmp_path_factory: pytest.TempPathFactory, shape: list[int], dtype: str, gz: bool
) -> None:
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    array = (np.arange(int(np.prod(shape))) % 100 - 50 * (dtype != "u1")).astype(dtype)
    write_idx(path, array.reshape(shape))
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and np.array_equal(back, array.reshape(shape))


def test_shared_mnist_test_split() -> None:
    directory = _shared_mnist()
    ds = load_dataset(f"mnist-test:{directory}")
    assert ds.name == "mnist-test" and ds.n_classes == 10 and ds.n_features == 784
    assert ds.x_train.shape == (8000, 784) and ds.x_test.shape == (2000, 784)
    assert ds.y_train.shape == (8000,) and ds.y_test.shape == (2000,)
    for x, y in (ds.split("train"), ds.split("test")):
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
        assert y.dtype == np.int32 and set(np.unique(y)) == set(range(10))
    images = read_idx_images(directory / "t10k-images-idx3-ubyte.gz")
    labels = read_idx_labels(directory / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    # First 8000 train, last 2000 test, in stored order.
    assert np.array_equal(ds.x_train[0], images[0].reshape(-1) / np.float32(255))
    assert np.array_equal(ds.x_test[-1], images[-1].reshape(-1) / np.float32(255))
    assert np.array_equal(np.concatenate([ds.y_train, ds.y_test]), labels)
    assert "first 8000" in ds.description and "last 2000" in ds.description


def test_raw_files_equal_gzipped(tmp_path: Path) -> None:
    directory = _shared_mnist()
    for stem in T10K:
        with gzip.open(directory / f"{stem}.gz", "rb") as f:
            (tmp_path / stem).write_bytes(f.read())
    raw = load_dataset(f"mnist-test:{tmp_path}")
    packed = load_dataset(f"mnist-test:{directory}")
    assert np.array_equal(raw.x_train, packed.x_train)
    assert np.array_equal(raw.y_test, packed.y_test)


def test_full_mnist_spec_from_synthetic_files(tmp_path: Path) -> None:
    _write_set(tmp_path, TRAIN, 30, gz=False, seed=1)
    _write_set(tmp_path, T10K, 12, gz=True, seed=2)
    for spec in (f"mnist:{tmp_path}", f"fashion-mnist:{tmp_path}", f"fashion_mnist:{tmp_path}"):
        ds = load_dataset(spec)
        assert (ds.n_train, ds.n_test, ds.n_features) == (30, 12, 784)
        assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() <= ds.x_train.max() <= 1
    assert load_dataset(f"fashion_mnist:{tmp_path}").name == "fashion-mnist"
    # With no DIR the cache dir is used.
    assert load_dataset("mnist", cache_dir=tmp_path).n_train == 30
    assert load_dataset("mnist-test", cache_dir=tmp_path).n_train == 9  # 4/5 of 12


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ("cifar10", "'cifar10'"),
        ("digits:/tmp", "directory"),
        ("mnist:", "empty DIR"),
        ("", "empty"),
    ],
)
def test_bad_spec(spec: str, found: str) -> None:
    with pytest.raises(SpecError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message and repr(spec) in message and found in message
    assert "digits, mnist[:DIR], mnist-test[:DIR], fashion-mnist[:DIR]" in message


def test_missing_files_named(tmp_path: Path) -> None:
    _write_set(tmp_path, T10K, 10, gz=True, seed=0)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SpecError) as info:
        load_dataset(f"mnist-test:{tmp_path}")
    message = str(info.value)
    assert str(tmp_path) in message and "t10k-labels-idx1-ubyte" in message
    assert "t10k-images" not in message and "download=True" in message
    with pytest.raises(SpecError, match="no such directory"):
        load_dataset(f"mnist:{tmp_path / 'nowhere'}")


def _corrupt_cases(directory: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (file to overwrite, bytes); relative to a valid 10-image t10k set."""
    images = directory / "t10k-images-idx3-ubyte"
    good = images.read_bytes()
    return {
        "truncated": (images.name, good[:-7]),
        "trailing bytes": (images.name, good + b"\0"),
        "magic": (images.name, b"\x00\x00\x08\x01" + good[4:]),
        "not an IDX": (images.name, b"PK\x03\x04" + good[4:]),
        "labels": (
            "t10k-labels-idx1-ubyte",
            b"\x00\x00\x08\x01" + (9).to_bytes(4, "big") + bytes(9),
        ),
    }


@pytest.mark.parametrize("fault", ["truncated", "trailing bytes", "magic", "not an IDX", "labels"])
def test_corrupt_raw_files_named(tmp_path: Path, fault: str) -> None:
    _write_set(tmp_path, T10K, 10, gz=False, seed=0)
    name, data = _corrupt_cases(tmp_path)[fault]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(SpecError, match=fault) as info:
        load_dataset(f"mnist-test:{tmp_path}")
    assert name in str(info.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    _write_set(tmp_path, T10K, 10, gz=False, seed=0)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 10, dtype=np.uint8))
    with pytest.raises(SpecError, match=r"t10k-labels-idx1-ubyte: expected labels in 0\.\.9"):
        load_dataset(f"mnist-test:{tmp_path}")


@pytest.mark.parametrize("fault", ["garbage", "truncated stream", "truncated content"])
def test_corrupt_gzip_named(tmp_path: Path, fault: str) -> None:
    _write_set(tmp_path, T10K, 10, gz=True, seed=0)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    packed = path.read_bytes()
    if fault == "garbage":
        path.write_bytes(b"definitely not gzip")
    elif fault == "truncated stream":
        path.write_bytes(packed[: len(packed) // 2])
    else:
        path.write_bytes(gzip.compress(gzip.decompress(packed)[:-100], mtime=0))
    expected = "truncated" if fault == "truncated content" else "corrupt gzip"
    with pytest.raises(SpecError, match=expected) as info:
        load_dataset(f"mnist-test:{tmp_path}")
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)


# --- downloads ------------------------------------------------------------------------------


class _Server:
    """A static HTTP server on 127.0.0.1 that records the paths requested."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

        self.httpd = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[_Server, Path, dict[str, str]]]:
    """(server, its data folder, checksum table) serving a synthetic 10-image t10k set."""
    root = tmp_path / "www" / "data"
    root.mkdir(parents=True)
    _write_set(root, T10K, 10, gz=True, seed=5)
    images, labels = (root / f"{stem}.gz" for stem in T10K)
    table = {
        # One key of each kind: the decompressed IDX bytes, and the .gz file as served.
        T10K[0]: hashlib.sha256(gzip.decompress(images.read_bytes())).hexdigest(),
        labels.name: hashlib.sha256(labels.read_bytes()).hexdigest(),
    }
    server = _Server(tmp_path / "www")
    try:
        yield server, root, table
    finally:
        server.close()


def test_download_verifies_then_caches(
    served: tuple[_Server, Path, dict[str, str]], tmp_path: Path
) -> None:
    server, _, table = served
    cache = tmp_path / "cache"
    kw = {"cache_dir": cache, "download": True, "base_url": server.url, "sha256": table}
    first = load_dataset("mnist-test", **kw)  # type: ignore[arg-type]
    assert sorted(server.requests) == [f"/data/{stem}.gz" for stem in T10K]
    assert sorted(p.name for p in cache.iterdir()) == [f"{stem}.gz" for stem in T10K]
    second = load_dataset("mnist-test", **kw)  # type: ignore[arg-type]
    assert len(server.requests) == 2  # served from the cache
    assert np.array_equal(first.x_train, second.x_train) and first.n_train == 8
    # A damaged cached copy fails its checksum and is fetched again.
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(b"oops")
    load_dataset("mnist-test", **kw)  # type: ignore[arg-type]
    assert server.requests[2:] == ["/data/t10k-labels-idx1-ubyte.gz"]


@pytest.mark.parametrize("tampered", T10K)
def test_download_checksum_mismatch_leaves_nothing(
    served: tuple[_Server, Path, dict[str, str]], tmp_path: Path, tampered: str
) -> None:
    server, root, table = served
    gz = root / f"{tampered}.gz"
    kind = (np.uint8, (10, 28, 28)) if "images" in tampered else (np.uint8, (10,))
    write_idx(gz, np.ones(kind[1], dtype=kind[0]))  # valid IDX, different bytes
    cache = tmp_path / "cache"
    with pytest.raises(SpecError, match="checksum mismatch") as info:
        download_files(cache, [f"{stem}.gz" for stem in T10K], base_url=server.url, sha256=table)
    message = str(info.value)
    key = tampered if tampered in table else f"{tampered}.gz"
    want = table[key]
    got = hashlib.sha256(
        gzip.decompress(gz.read_bytes()) if key == tampered else gz.read_bytes()
    ).hexdigest()
    assert f"{tampered}.gz" in message and want in message and got in message
    assert not (cache / gz.name).exists()
    assert not any(p.name.endswith(".part") for p in cache.iterdir())


def test_download_refuses_unknown_checksum(
    served: tuple[_Server, Path, dict[str, str]], tmp_path: Path
) -> None:
    server, _, table = served
    partial = {T10K[0]: table[T10K[0]], f"{T10K[1]}.gz": None}
    with pytest.raises(SpecError, match=r"t10k-labels-idx1-ubyte\.gz") as info:
        load_dataset(
            "mnist-test",
            cache_dir=tmp_path / "c",
            download=True,
            base_url=server.url,
            sha256=partial,
        )
    assert "SHA-256" in str(info.value) and server.requests == []  # refused before any request


def test_download_http_error_is_spec_error(
    served: tuple[_Server, Path, dict[str, str]], tmp_path: Path
) -> None:
    server, _, table = served
    with pytest.raises(SpecError, match="download failed"):
        download_files(
            tmp_path / "c", [f"{T10K[0]}.gz"], base_url=server.url + "/nowhere", sha256=table
        )
    assert not any((tmp_path / "c").iterdir())


def test_default_mnist_checksums_match_shared_files() -> None:
    directory = _shared_mnist()
    # Both files pass their checksums, so no request is made (the URL is never contacted).
    paths = download_files(
        directory,
        [f"{stem}.gz" for stem in T10K],
        base_url="http://127.0.0.1:9/unused",
        sha256=MNIST_SHA256,
    )
    assert [p.parent for p in paths] == [directory, directory]
    ds = load_dataset(f"mnist-test:{directory}", download=True, base_url="http://127.0.0.1:9/")
    assert ds.n_train == 8000
