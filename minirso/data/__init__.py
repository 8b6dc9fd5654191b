"""Datasets: IDX reading with checksums, and the official MNIST test set bundled in the repository.

The repository's ``data/mnist/`` holds the official MNIST *test* set (10,000
digits, the published md5 sums), so a fresh clone trains and evaluates on real
digits with no network.  :func:`bundled_mnist_split` splits it 8,000 / 2,000.
"""

from __future__ import annotations

import pathlib

import numpy

from .idx import DataError, md5sum, read_idx

__all__ = ["DataError", "read_idx", "md5sum", "BUNDLED_DIR", "MNIST_TEST_MD5", "load_mnist_test", "bundled_mnist_split"]

BUNDLED_DIR = pathlib.Path(__file__).resolve().parent.parent.parent / "data" / "mnist"
MNIST_TEST_MD5 = {"t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                  "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}  # the published sums


def load_mnist_test(directory=BUNDLED_DIR):
    """The official MNIST test set: uint8 images (10000, 28, 28) and int64 labels (10000,), checksums verified."""
    d = pathlib.Path(directory)
    images = read_idx(d / "t10k-images-idx3-ubyte.gz", MNIST_TEST_MD5["t10k-images-idx3-ubyte.gz"])
    labels = read_idx(d / "t10k-labels-idx1-ubyte.gz", MNIST_TEST_MD5["t10k-labels-idx1-ubyte.gz"])
    if images.shape != (10000, 28, 28) or labels.shape != (10000,) or labels.max() > 9:
        raise DataError(f"{d}: MNIST test files have shapes {images.shape} / {labels.shape}, expected "
                        "(10000, 28, 28) / (10000,) with labels 0-9")
    return images, labels.astype(numpy.int64)


def bundled_mnist_split(n_train: int = 8000, directory=BUNDLED_DIR):
    """``(x_train, y_train, x_held, y_held)`` from the MNIST test set: the first ``n_train`` digits train.

    Images are float32 (N, 1, 28, 28), ``pixels / 255`` minus the mean of the
    training part (the authors' RSO normalisation).
    """
    images, labels = load_mnist_test(directory)
    if not 0 < n_train < len(labels):
        raise ValueError(f"n_train must be in (0, {len(labels)}), got {n_train}")
    x = images.reshape(-1, 1, 28, 28).astype(numpy.float32) / 255.0  # (10000, 1, 28, 28)
    x -= x[:n_train].mean()
    return x[:n_train], labels[:n_train], x[n_train:], labels[n_train:]
