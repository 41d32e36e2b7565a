"""Datasets for training and evaluation: scikit-learn digits, the MNIST family, CIFAR-10,
CIFAR-100 and ImageNet 32x32.

``load_dataset(spec)`` turns a ``--dataset`` spec (``digits``, ``mnist[:DIR]``,
``mnist-test[:DIR]``, ``fashion-mnist[:DIR]``, ``cifar10:DIR``, ``cifar100:DIR``,
``cifar100-coarse:DIR``, ``imagenet32:DIR``, ``synthetic:FxC``; image sets optionally
followed by ``?augment=crop,flip&normalize=channel``) into a ``Dataset``: float32 inputs
(pixel scaling into [0, 1], optionally standardised per channel), int32 labels, its image
shape ``(C, H, W)``, a fixed train/test split, batches whose order depends only on
``(seed, epoch)`` and augmentation that depends only on ``(seed, epoch, step)``. Files are
validated exactly; optional MNIST downloads are verified by SHA-256 before they enter the
cache. See docs/data.md.
"""

from ._cifar import read_cifar_batch as read_cifar_batch
from ._dataset import CROP_PADDING as CROP_PADDING
from ._dataset import DATASET_OPTIONS as DATASET_OPTIONS
from ._dataset import DATASET_SPECS as DATASET_SPECS
from ._dataset import NORMALIZATIONS as NORMALIZATIONS
from ._dataset import Dataset as Dataset
from ._dataset import load_dataset as load_dataset
from ._dataset import one_hot as one_hot
from ._download import FASHION_MNIST_SHA256 as FASHION_MNIST_SHA256
from ._download import MNIST_SHA256 as MNIST_SHA256
from ._download import default_base_url as default_base_url
from ._download import default_cache_dir as default_cache_dir
from ._download import download_files as download_files
from ._idx import read_idx as read_idx
from ._idx import read_idx_images as read_idx_images
from ._idx import read_idx_labels as read_idx_labels
from ._idx import write_idx as write_idx
from ._images import AUGMENTATIONS as AUGMENTATIONS
from ._images import augment_images as augment_images

__all__ = [
    "AUGMENTATIONS",
    "CROP_PADDING",
    "DATASET_OPTIONS",
    "DATASET_SPECS",
    "FASHION_MNIST_SHA256",
    "MNIST_SHA256",
    "NORMALIZATIONS",
    "Dataset",
    "augment_images",
    "default_base_url",
    "default_cache_dir",
    "download_files",
    "load_dataset",
    "one_hot",
    "read_cifar_batch",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "write_idx",
]
