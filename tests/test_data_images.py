"""Image datasets: CIFAR-10 / CIFAR-100 python batches and ImageNet 32x32 npz batches written
here in exactly their published formats and read back; image shapes; spec options; the paper
code's augmentation (crop after padding 4, horizontal flip); per-channel standardisation;
a CIFAR-shaped MLP trained through the CLI, augmented, and resumed bitwise."""

from __future__ import annotations

import datetime
import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from analog_hep.data import Dataset, augment_images, load_dataset, write_idx
from analog_hep.errors import SpecError

PIXELS = 3 * 32 * 32
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def _pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, PIXELS), dtype=np.uint8)


def _pickle(path: Path, obj: object) -> None:
    # Protocol 2, as the published files (written by Python 2's cPickle) use.
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _cifar10(directory: Path, *, per_batch: int = 4, n_test: int = 3, seed: int = 0) -> dict:
    """A CIFAR-10 "python version" folder: five training batches, the test batch and
    batches.meta, each a protocol-2 pickle of a dict with bytes keys."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i, name in enumerate(CIFAR10_TRAIN):
        x = _pixels(per_batch, seed + 1 + i)
        y = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(
            directory / name,
            {
                b"batch_label": f"training batch {i + 1} of 5".encode(),
                b"labels": y,
                b"data": x,
                b"filenames": [f"img_{i}_{k}.png".encode() for k in range(per_batch)],
            },
        )
        xs.append(x)
        ys.append(y)
    x_test = _pixels(n_test, seed + 100)
    y_test = [int(v) for v in rng.integers(0, 10, n_test)]
    _pickle(directory / "test_batch", {b"labels": y_test, b"data": x_test})
    _pickle(
        directory / "batches.meta",
        {b"label_names": [b"airplane", b"automobile"], b"num_vis": PIXELS},
    )
    return {
        "x_train": np.concatenate(xs),
        "y_train": np.concatenate(ys).astype(np.int32),
        "x_test": x_test,
        "y_test": np.asarray(y_test, np.int32),
    }


def _cifar100(directory: Path, *, n_train: int = 6, n_test: int = 4) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = _pixels(n, 50 + n)
        fine = [0, 99, *(int(v) for v in rng.integers(0, 100, n - 2))]
        coarse = [19, 0, *(int(v) for v in rng.integers(0, 20, n - 2))]
        _pickle(directory / split, {b"data": x, b"fine_labels": fine, b"coarse_labels": coarse})
        out[split] = (x, np.asarray(fine, np.int32), np.asarray(coarse, np.int32))
    _pickle(directory / "meta", {b"fine_label_names": [b"apple"], b"coarse_label_names": [b"x"]})
    return out


def _imagenet32(directory: Path, *, sizes: tuple[int, ...] = (3, 2, 1, 1, 2, 1, 1, 1, 2, 1)):
    """Ten train_data_batch_N.npz and val_data.npz: data uint8 (n, 3072), labels one-based
    ints (a list, as the published files were written), mean in the training batches."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    xs, ys = [], []
    for i, n in enumerate(sizes, start=1):
        x = _pixels(n, 200 + i)
        y = [int(v) for v in rng.integers(1, 1001, n)]
        if i == 1:
            y[:2] = [1, 1000]  # both ends of the one-based range
        np.savez(
            directory / f"train_data_batch_{i}.npz",
            data=x,
            labels=y,
            mean=x.mean(axis=0),
        )
        xs.append(x)
        ys.append(y)
    x_val = _pixels(4, 300)
    y_val = [5, 1000, 1, 77]
    np.savez(directory / "val_data.npz", data=x_val, labels=y_val)
    return {
        "x_train": np.concatenate(xs),
        "y_train": np.concatenate(ys).astype(np.int32) - 1,
        "x_test": x_val,
        "y_test": np.asarray(y_val, np.int32) - 1,
    }


# --- reading ----------------------------------------------------------------------------


def test_cifar10_values_order_labels_and_shape(tmp_path: Path) -> None:
    truth = _cifar10(tmp_path)
    ds = load_dataset(f"cifar10:{tmp_path}")
    assert ds.name == "cifar10" and ds.n_classes == 10 and ds.n_features == PIXELS
    assert ds.image_shape == (3, 32, 32) and (ds.n_train, ds.n_test) == (20, 3)
    # Stored as the files' uint8 rows, in batch order 1..5; inputs are pixel / 255.
    assert ds.x_train.dtype == np.uint8
    np.testing.assert_array_equal(ds.x_train, truth["x_train"])
    np.testing.assert_array_equal(ds.y_train, truth["y_train"])
    np.testing.assert_array_equal(ds.y_test, truth["y_test"])
    x, y = ds.split("test")
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, truth["x_test"].astype(np.float32) / np.float32(255))
    first = next(ds.batches("train", 4, seed=0, epoch=0, shuffle=False))[0]
    np.testing.assert_array_equal(first, truth["x_train"][:4] / np.float32(255))


def test_cifar_rows_are_channel_first(tmp_path: Path) -> None:
    """A row is (1024 red, 1024 green, 1024 blue), each plane row-major: reshaped to the
    dataset's image_shape, channel c and pixel (i, j) is value [c*1024 + i*32 + j]."""
    _cifar10(tmp_path)
    image = np.zeros((3, 32, 32), np.uint8)
    image[0], image[1], image[2] = 10, 20, 30
    image[0, 1, 2] = 255  # red, row 1, column 2
    _pickle(tmp_path / "test_batch", {b"data": image.reshape(1, -1), b"labels": [4]})
    ds = load_dataset(f"cifar10:{tmp_path}")
    x = ds.split("test")[0][0].reshape(ds.image_shape) * 255
    np.testing.assert_allclose(x[:, 0, 0], [10, 20, 30], rtol=1e-6)
    assert x[0, 1, 2] == pytest.approx(255) and ds.split("test")[0][0, 1 * 32 + 2] == 1.0


def test_cifar10_subfolder_form(tmp_path: Path) -> None:
    truth = _cifar10(tmp_path / "cifar-10-batches-py")
    for spec in (f"cifar10:{tmp_path}", f"cifar10:{tmp_path / 'cifar-10-batches-py'}"):
        ds = load_dataset(spec)
        np.testing.assert_array_equal(ds.x_train, truth["x_train"])
        assert "cifar-10-batches-py" in ds.description


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    truth = _cifar100(tmp_path / "cifar-100-python")
    fine = load_dataset(f"cifar100:{tmp_path}")
    coarse = load_dataset(f"cifar100-coarse:{tmp_path}")
    assert (fine.n_classes, coarse.n_classes) == (100, 20)
    assert fine.image_shape == coarse.image_shape == (3, 32, 32)
    for split in ("train", "test"):
        x, y_fine, y_coarse = truth[split]
        np.testing.assert_array_equal(getattr(fine, f"x_{split}"), x)
        np.testing.assert_array_equal(getattr(fine, f"y_{split}"), y_fine)
        np.testing.assert_array_equal(getattr(coarse, f"y_{split}"), y_coarse)


def test_imagenet32_one_based_labels_batch_order_and_val_split(tmp_path: Path) -> None:
    truth = _imagenet32(tmp_path)
    ds = load_dataset(f"imagenet32:{tmp_path}")
    assert ds.name == "imagenet32" and ds.n_classes == 1000 and ds.image_shape == (3, 32, 32)
    assert (ds.n_train, ds.n_test) == (15, 4) and ds.x_train.dtype == np.uint8
    for key in truth:
        np.testing.assert_array_equal(getattr(ds, key), truth[key])
    assert ds.y_train[:2].tolist() == [0, 999]
    assert ds.y_test.tolist() == [4, 999, 0, 76]


def test_max_train_is_honoured_while_reading(tmp_path: Path) -> None:
    """With max_train, the readers stop at the batch file that completes it: a later,
    corrupt batch is not even opened (and is found without max_train)."""
    truth = _imagenet32(tmp_path)
    (tmp_path / "train_data_batch_5.npz").write_bytes(b"not an npz")
    ds = load_dataset(f"imagenet32:{tmp_path}", max_train=4)  # batches 1 (3) and 2 (2)
    np.testing.assert_array_equal(ds.x_train, truth["x_train"][:4])
    np.testing.assert_array_equal(ds.y_train, truth["y_train"][:4])
    assert ds.n_test == 4 and ds.description.endswith("first 4 training samples")
    with pytest.raises(SpecError, match=r"train_data_batch_5\.npz"):
        load_dataset(f"imagenet32:{tmp_path}")
    cifar = _cifar10(tmp_path / "c10")
    (tmp_path / "c10" / "data_batch_3").write_bytes(b"garbage")
    ds = load_dataset(f"cifar10:{tmp_path / 'c10'}", max_train=6)
    np.testing.assert_array_equal(ds.x_train, cifar["x_train"][:6])
    assert load_dataset("digits", max_train=10).n_train == 10


def test_every_dataset_states_its_image_shape(tmp_path: Path) -> None:
    assert load_dataset("digits").image_shape == (1, 8, 8)
    assert load_dataset("synthetic:6x4").image_shape is None
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 10, np.uint8))
    assert load_dataset(f"mnist-test:{tmp_path}").image_shape == (1, 28, 28)


# --- errors: one line naming the path ----------------------------------------------------


def _cifar_fault(directory: Path, fault: str) -> str:
    """Break a valid CIFAR-10 folder; return the file name the error must name."""
    batch = directory / "data_batch_2"
    good = batch.read_bytes()
    x = _pixels(4, 1)
    cases: dict[str, object] = {
        "wrong width": {b"data": x[:, :-1].copy(), b"labels": [0, 1, 2, 3]},
        "wrong dtype": {b"data": x.astype(np.float32), b"labels": [0, 1, 2, 3]},
        "label range": {b"data": x, b"labels": [0, 1, 2, 10]},
        "label count": {b"data": x, b"labels": [0, 1, 2]},
        "missing key": {b"data": x},
        "str keys": {"data": x, "labels": [0, 1, 2, 3]},
        "not a dict": [x],
        "foreign pickle": {b"data": x, b"labels": datetime.date(2020, 1, 1)},
    }
    if fault == "missing file":
        batch.unlink()
    elif fault == "garbage":
        batch.write_bytes(b"this is not a pickle")
    elif fault == "truncated":
        batch.write_bytes(good[: len(good) // 2])
    else:
        _pickle(batch, cases[fault])
    return batch.name


CIFAR_FAULTS = {
    "missing file": "data_batch_2 in",
    "garbage": "corrupt or foreign pickle",
    "truncated": "corrupt or foreign pickle",
    "wrong width": "3072 values per image",
    "wrong dtype": "2-D uint8 array",
    "label range": r"labels in 0\.\.9, found 0\.\.10",
    "label count": "expected 4 labels",
    "missing key": "b'labels'",
    "str keys": "b'data'",
    "not a dict": "dict",
    "foreign pickle": "datetime.date",
}


@pytest.mark.parametrize("fault", sorted(CIFAR_FAULTS))
def test_cifar_faults_are_one_line_naming_the_file(tmp_path: Path, fault: str) -> None:
    _cifar10(tmp_path)
    name = _cifar_fault(tmp_path, fault)
    with pytest.raises(SpecError, match=CIFAR_FAULTS[fault]) as info:
        load_dataset(f"cifar10:{tmp_path}")
    message = str(info.value)
    assert "\n" not in message and name in message and str(tmp_path) in message


def test_cifar_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such directory") as info:
        load_dataset(f"cifar100:{tmp_path / 'nowhere'}")
    assert "\n" not in str(info.value) and "nowhere" in str(info.value)


IMAGENET_FAULTS = {
    "missing file": "val_data.npz in",
    "garbage": "corrupt file",
    "truncated": "corrupt file",
    "missing key": "arrays 'data' and 'labels'",
    "zero-based": r"one-based labels in 1\.\.1000, found 0\.\.",
    "wrong shape": r"uint8 of shape \(2, 3072\)",
    "a .npy": "corrupt file",
}


@pytest.mark.parametrize("fault", sorted(IMAGENET_FAULTS))
def test_imagenet32_faults_are_one_line_naming_the_file(tmp_path: Path, fault: str) -> None:
    _imagenet32(tmp_path)
    path = tmp_path / ("val_data.npz" if fault == "missing file" else "train_data_batch_2.npz")
    good = path.read_bytes()
    x = _pixels(2, 0)
    if fault == "missing file":
        path.unlink()
    elif fault == "garbage":
        path.write_bytes(b"PK\x03\x04 no zip at all")
    elif fault == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif fault == "missing key":
        np.savez(path, data=x, label=[1, 2])
    elif fault == "zero-based":
        np.savez(path, data=x, labels=[0, 999])
    elif fault == "wrong shape":
        np.savez(path, data=x[:, :1024], labels=[1, 2])
    else:
        with path.open("wb") as f:
            np.save(f, x)
    with pytest.raises(SpecError, match=IMAGENET_FAULTS[fault]) as info:
        load_dataset(f"imagenet32:{tmp_path}")
    message = str(info.value)
    assert "\n" not in message and path.name in message and str(tmp_path) in message


# --- spec options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "augmentation", "normalization"),
    [
        ("", (), "none"),
        ("?augment=crop,flip", ("crop", "flip"), "none"),
        ("?augment=flip,crop", ("crop", "flip"), "none"),
        ("?augment=flip", ("flip",), "none"),
        ("?AUGMENT=Crop&normalize=channel", ("crop",), "channel"),
        ("?normalize=none&augment=none", (), "none"),
    ],
)
def test_spec_options(tmp_path: Path, options: str, augmentation: tuple, normalization: str):
    _cifar10(tmp_path)
    ds = load_dataset(f"cifar10:{tmp_path}{options}")
    assert ds.augmentation == augmentation and ds.normalization == normalization
    assert load_dataset(f"digits{options}").augmentation == augmentation


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ("cifar10:{d}?augment=rotate", "augment='rotate'"),
        ("cifar10:{d}?augment=crop,crop", "augment='crop,crop'"),
        ("cifar10:{d}?normalize=batch", "normalize='batch'"),
        ("cifar10:{d}?scale=2", "'scale=2'"),
        ("cifar10:{d}?augment", "'augment'"),
        ("cifar10:{d}?", "''"),
        ("cifar10:{d}?augment=crop&augment=flip", "'augment' twice"),
        ("synthetic:6x4?augment=flip", "no images"),
        ("cifar10", "no DIR"),
        ("imagenet32:", "empty DIR"),
        ("cifar-10:{d}", "unknown name 'cifar-10'"),
    ],
)
def test_bad_specs_are_one_line(tmp_path: Path, spec: str, found: str) -> None:
    _cifar10(tmp_path)
    spec = spec.format(d=tmp_path)
    with pytest.raises(SpecError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "\n" not in message and repr(spec) in message and found in message


# --- normalisation ------------------------------------------------------------------------


def test_channel_normalisation_uses_the_training_split(tmp_path: Path) -> None:
    truth = _cifar10(tmp_path)
    ds = load_dataset(f"cifar10:{tmp_path}?normalize=channel")
    planes = truth["x_train"].reshape(-1, 3, 1024) / 255.0
    mean, std = planes.mean(axis=(0, 2)), planes.std(axis=(0, 2))
    assert ds.channel_mean is not None and ds.channel_std is not None
    np.testing.assert_allclose(ds.channel_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(ds.channel_std, std, rtol=1e-9)
    x = ds.split("train")[0].reshape(-1, 3, 1024)
    np.testing.assert_allclose(x.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(0, 2)), 1.0, atol=1e-5)
    lo, hi = ds.input_bounds
    assert lo == pytest.approx(min(-mean / std), rel=1e-5)
    assert hi == pytest.approx(max((1 - mean) / std), rel=1e-5)
    assert load_dataset(f"cifar10:{tmp_path}").input_bounds == (0.0, 1.0)
    # max_train: the statistics of the samples kept
    head = load_dataset(f"cifar10:{tmp_path}?normalize=channel", max_train=8)
    np.testing.assert_allclose(head.channel_mean, planes[:8].mean(axis=(0, 2)), rtol=1e-12)


def test_constant_channel_cannot_be_standardised(tmp_path: Path) -> None:
    _cifar10(tmp_path)
    for name in CIFAR10_TRAIN:
        x = np.full((4, PIXELS), 7, np.uint8)
        _pickle(tmp_path / name, {b"data": x, b"labels": [0, 1, 2, 3]})
    with pytest.raises(SpecError, match="normalize=channel"):
        load_dataset(f"cifar10:{tmp_path}?normalize=channel")


# --- augmentation -------------------------------------------------------------------------


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``images`` (C, H, W) moved by (dy, dx), the uncovered border zero."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _explain(before: np.ndarray, after: np.ndarray, *, crop: bool, flip: bool) -> set:
    """Every (dy, dx, flipped) that turns ``before`` into ``after``."""
    shifts = range(-4, 5) if crop else (0,)
    found = set()
    for dy in shifts:
        for dx in shifts:
            moved = _shifted(before, dy, dx)
            for flipped in (False, True) if flip else (False,):
                if np.array_equal(moved[:, :, ::-1] if flipped else moved, after):
                    found.add((dy, dx, flipped))
    return found


@pytest.fixture
def augmented_sets(tmp_path: Path) -> dict[str, Dataset]:
    _cifar10(tmp_path, per_batch=8)
    return {
        opts: load_dataset(f"cifar10:{tmp_path}?augment={opts}")
        for opts in ("crop", "flip", "crop,flip", "none")
    }


@pytest.mark.parametrize("opts", ["crop", "flip", "crop,flip"])
def test_augmentation_moves_and_mirrors_only(augmented_sets: dict, opts: str) -> None:
    ds = augmented_sets[opts]
    x = next(ds.batches("train", 40, seed=0, epoch=0, shuffle=False))[0]
    before = x.copy()
    out = ds.augment(x, seed=3, epoch=1, step=2)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(x, before)  # the batch itself is left alone
    crop, flip = "crop" in opts, "flip" in opts
    moves = [
        _explain(b.reshape(3, 32, 32), a.reshape(3, 32, 32), crop=crop, flip=flip)
        for b, a in zip(x, out, strict=True)
    ]
    assert all(moves), "an augmented image is no shifted / mirrored copy of its original"
    if crop:
        assert any((0, 0) not in {m[:2] for m in found} for found in moves)
    if flip:
        assert any(all(m[2] for m in found) for found in moves)
        assert any(not any(m[2] for m in found) for found in moves)


def test_augmentation_is_a_function_of_seed_epoch_step(augmented_sets: dict) -> None:
    ds = augmented_sets["crop,flip"]
    x = next(ds.batches("train", 40, seed=0, epoch=0))[0]
    a = ds.augment(x, seed=0, epoch=1, step=2)
    np.testing.assert_array_equal(a, ds.augment(x.copy(), seed=0, epoch=1, step=2))
    for other in ({"step": 3}, {"epoch": 2}, {"seed": 1}):
        kw = {"seed": 0, "epoch": 1, "step": 2} | other
        assert not np.array_equal(a, ds.augment(x, **kw)), other
    # the draws: default_rng([seed, epoch, step, 1]), crop offsets first, then the flips
    rng = np.random.default_rng([0, 1, 2, 1])
    reference = augment_images(
        x, (3, 32, 32), crop_padding=4, flip=True, fill=np.zeros(3, np.float32), rng=rng
    )
    np.testing.assert_array_equal(a, reference)


def test_no_augmentation_and_evaluation_batches_are_untouched(augmented_sets: dict) -> None:
    plain, ds = augmented_sets["none"], augmented_sets["crop,flip"]
    x = next(plain.batches("train", 10, seed=0, epoch=0))[0]
    assert plain.augment(x, seed=0, epoch=0, step=0) is x
    # batches() and split() never augment: the augmentation runs in the training loop only
    for split in ("train", "test"):
        got = np.concatenate([b for b, _ in ds.batches(split, 1, seed=0, epoch=0, shuffle=False)])
        np.testing.assert_array_equal(got, plain.split(split)[0])
        np.testing.assert_array_equal(ds.split(split)[0], plain.split(split)[0])


def test_crop_fill_is_a_black_pixel_after_standardisation(tmp_path: Path) -> None:
    """Standardised inputs pad with (0 - mean) / std: cropping then standardising (the paper
    code's order: pixels padded with 0) equals standardising then cropping, bit for bit."""
    _cifar10(tmp_path)
    ds = load_dataset(f"cifar10:{tmp_path}?augment=crop,flip&normalize=channel")
    raw = ds.x_train[:12]
    got = ds.augment(ds.inputs(raw), seed=5, epoch=0, step=1)
    pixels = raw.astype(np.float32) / np.float32(255)
    moved = augment_images(
        pixels,
        (3, 32, 32),
        crop_padding=4,
        flip=True,
        fill=np.zeros(3, np.float32),
        rng=np.random.default_rng([5, 0, 1, 1]),
    )
    mean, std = ds.channel_mean.astype(np.float32), ds.channel_std.astype(np.float32)
    expected = ((moved.reshape(12, 3, -1) - mean[:, None]) / std[:, None]).reshape(12, -1)
    np.testing.assert_array_equal(got, expected)


# --- training through the CLI -------------------------------------------------------------

CIRCUIT = """\
# A CIFAR-shaped MLP for the tests: 3072 inputs (3x32x32 images, flattened channel-first),
# 16 hidden neurons, a 10-class readout, ideal devices, hEP with N=4, |beta|=0.4. Discrete
# settling with few steps: a smoke run on a handful of fake images, not a study.
name: cifar_mlp_test
description: 3072-16 MLP with a 10-class readout on a fake CIFAR-10 folder, ideal devices
seed: 0
layers: [3072, 16]
readout:
  classes: 10
  loss: cross_entropy
neuron:
  activation: {name: shifted_sigmoid, a: -4.0, b: 2.0}
  gain_mismatch_rel: 0.0
  offset_mismatch: 0.0
  noise_std: 0.0
crossbars:
  default:
    device: ideal
    init: {scheme: fan_in_uniform, gain: 1.0, bias: same}
    mapping: {scheme: balanced, w_max: 2.0}
    bias: true
dynamics:
  mode: discrete
  free_steps: 40
  nudge_steps: 20
training:
  method: hep
  points: 4
  beta: 0.4
  batch: 10
  epochs: 2
  optimizer: {name: sgd, lr: 0.2, momentum: 0.0, schedule: constant}
  residual_tol: 1.0e-2
"""


def _final_weights(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path) as f:
        return {k: np.asarray(f[f"final/weights/{k}/W"]) for k in f["final/weights"]}


def test_cifar_mlp_trains_augmented_and_resumes_bitwise(tmp_path: Path, capsys) -> None:
    """``analog-hep train`` on a fake CIFAR-10 folder with crop and flip; a run stopped after
    its first epoch's checkpoint and resumed ends bitwise where the whole run ends (the
    augmentation depends on (seed, epoch, step) only), and the augmentation did change the
    training (a run without it ends elsewhere)."""
    from analog_hep.cli import main
    from analog_hep.spec import load_circuit
    from analog_hep.studies import TrainOptions, train

    _cifar10(tmp_path / "cifar", per_batch=8)
    circuit = tmp_path / "cifar_mlp_test.yaml"
    circuit.write_text(CIRCUIT)
    dataset = f"cifar10:{tmp_path / 'cifar'}?augment=crop,flip"
    args = ["train", str(circuit), "--dataset", dataset, "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "ref.h5"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["epochs"] == 2 and 0.0 <= res["test_accuracy"] <= 1.0

    class Stop(Exception):
        pass

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2"):  # logged after epoch 1's checkpoint
            raise Stop

    c = load_circuit(circuit)
    opts = TrainOptions.from_circuit(c, dataset=dataset)
    run = tmp_path / "run.h5"
    with pytest.raises(Stop):
        train(c, opts, out=run, progress=False, log=stop_after_first_epoch)
    with h5py.File(run) as f:
        assert "final" not in f and f["metrics/epoch"].shape == (1,)
    assert main([*args, "--out", str(run), "--resume"]) == 0
    ref, resumed = _final_weights(tmp_path / "ref.h5"), _final_weights(run)
    for k in ref:
        np.testing.assert_array_equal(ref[k], resumed[k])

    plain = tmp_path / "plain.h5"
    assert main([*args[:3], dataset.split("?")[0], "--no-progress", "--out", str(plain)]) == 0
    assert any(not np.array_equal(ref[k], w) for k, w in _final_weights(plain).items())


def test_train_on_a_missing_cifar_folder_is_one_line(tmp_path: Path, capsys) -> None:
    from analog_hep.cli import main

    circuit = tmp_path / "cifar_mlp_test.yaml"
    circuit.write_text(CIRCUIT)
    code = main(["train", str(circuit), "--dataset", f"cifar10:{tmp_path / 'nowhere'}"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "nowhere" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("classes", "name"),
    [
        (10, "cifar10:DIR"),
        (100, "cifar100:DIR"),
        (20, "cifar100-coarse:DIR"),
        (1000, "imagenet32:DIR"),
    ],
)
def test_a_circuit_of_an_image_set_shape_asks_for_its_folder(classes, name):
    from analog_hep.cli._train import default_dataset
    from analog_hep.errors import SpecError
    from analog_hep.spec import circuit_from_text

    text = (Path(__file__).resolve().parents[1] / "circuits" / "digits.yaml").read_text()
    text = text.replace("layers: [64, 128]", "layers: [3072, 16]")
    text = text.replace("classes: 10", f"classes: {classes}")
    circuit = circuit_from_text(text, name="img.yaml")
    with pytest.raises(SpecError, match=name.replace(":", ":")) as err:
        default_dataset(circuit, None)
    assert len(str(err.value).splitlines()) == 1
