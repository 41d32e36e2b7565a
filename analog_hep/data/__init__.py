"""Datasets for training and evaluation: scikit-learn digits and the MNIST family.

``load_dataset(spec)`` turns a ``--dataset`` spec (``digits``, ``mnist[:DIR]``,
``mnist-test[:DIR]``, ``fashion-mnist[:DIR]``) into a ``Dataset``: float32 inputs in [0, 1],
int32 labels, a fixed train/test split, and batches whose order depends only on
``(seed, epoch)``. IDX files are read raw or gzipped and validated exactly; optional downloads
are verified by SHA-256 before they enter the cache. See docs/data.md.
"""

from ._dataset import DATASET_SPECS as DATASET_SPECS
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

__all__ = [
    "DATASET_SPECS",
    "FASHION_MNIST_SHA256",
    "MNIST_SHA256",
    "Dataset",
    "default_base_url",
    "default_cache_dir",
    "download_files",
    "load_dataset",
    "one_hot",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "write_idx",
]
