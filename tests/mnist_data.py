"""The bundled official MNIST test set (data/mnist/, published md5 checked) for tests on real digits.

A test-side reader only; the library's data loaders (minirso.data) come with the user's-path issue.
"""

import gzip
import hashlib
import pathlib

import numpy as np

DIR = pathlib.Path(__file__).resolve().parent.parent / "data" / "mnist"
MD5 = {"t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
       "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}


def _read(name, offset):
    raw = (DIR / name).read_bytes()
    assert hashlib.md5(raw).hexdigest() == MD5[name], f"{name}: checksum mismatch"
    return np.frombuffer(gzip.decompress(raw), dtype=np.uint8, offset=offset)


def mnist_test_split(n_train=8000):
    """(x_train, y_train, x_held, y_held): float32 (N, 1, 28, 28) pixels / 255 minus the training mean."""
    images = _read("t10k-images-idx3-ubyte.gz", 16).reshape(10000, 1, 28, 28).astype(np.float32) / 255.0
    labels = _read("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    mean = images[:n_train].mean()
    images -= mean
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]
