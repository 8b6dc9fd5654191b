"""Tiny dataset files in the real formats, written from the format descriptions, for the loader tests.

Nothing here touches the network: the tests put these files where a loader
looks, or hand their bytes to a fake download function, and patch the
loaders' checksum tables with the md5 sums of the files made here.
"""

import gzip
import hashlib
import io
import pickle
import struct
import tarfile

import numpy as np

from minirso.data import cifar, mnist

IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def idx_bytes(array: np.ndarray) -> bytes:
    """Uncompressed uint8 IDX: magic 0 0 0x08 ndim, big-endian uint32 sizes, the values in C order."""
    assert array.dtype == np.uint8
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()


def mnist_like(n_train=20, n_test=10, seed=0):
    """Random (asymmetric, so a transposed read shows) 28x28 uint8 images and labels 0-9 for both splits."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    return arrays


def gz_files(arrays, mtime=0):
    """``{name: gzip bytes}`` of the IDX files for ``arrays`` (gzip's header mtime changes the md5)."""
    return {name: gzip.compress(idx_bytes(a), mtime=mtime) for name, a in arrays.items()}


def patch_idx_table(monkeypatch, table, arrays, files, names=IDX_NAMES):
    """Make ``table`` (MNIST_FILES or FASHION_MNIST_FILES) publish the sums of these files."""
    for name in names:
        monkeypatch.setitem(table, name, (md5(files[name]), md5(idx_bytes(arrays[name]))))


def write_files(directory, files):
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def fake_mnist(monkeypatch, directory, table=mnist.MNIST_FILES, seed=0, **kw):
    """Write a tiny MNIST-format set in ``directory`` and publish its sums in ``table``; returns the arrays."""
    arrays = mnist_like(seed=seed, **kw)
    files = gz_files(arrays)
    patch_idx_table(monkeypatch, table, arrays, files)
    write_files(directory, files)
    return arrays


# ---------------------------------------------------------------- CIFAR-10


def cifar_batches(sizes=(3, 4, 2, 3, 5), n_test=4, seed=1):
    """``{batch: (data uint8 (n, 3072), labels list)}`` for the five training batches and the test batch."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
        for name, n in zip(names, [*sizes, n_test])
    }


def batch_bytes(name, data, labels) -> bytes:
    """A batch pickled as the real ones: a dict with byte-string keys, protocol 2 (Python 2 era)."""
    batch = {
        b"batch_label": f"{name} of the tiny test set".encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def cifar_tarball(batches, extra_members=(), skip=()) -> bytes:
    """``cifar-10-python.tar.gz`` bytes with the real member names ``cifar-10-batches-py/<batch>``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        members = [(n, batch_bytes(n, *b)) for n, b in batches.items() if n not in skip] + list(extra_members)
        for name, data in [("batches.meta", pickle.dumps({b"label_names": []}, protocol=2)), *members]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def patch_cifar_tables(monkeypatch, batches=None, archive: bytes | None = None):
    if archive is not None:
        monkeypatch.setattr(cifar, "CIFAR10_ARCHIVE_MD5", md5(archive))
    for name, b in (batches or {}).items():
        monkeypatch.setitem(cifar.CIFAR10_BATCH_MD5, name, md5(batch_bytes(name, *b)))
