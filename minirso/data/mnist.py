"""MNIST and Fashion-MNIST: four IDX files each, checked against the published md5 sums.

Both datasets ship as the same four gzip-compressed IDX files (60,000
training and 10,000 test images of 28x28 grey pixels, labels 0-9):
``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.  A file may
also sit there uncompressed (the name without ``.gz``); it is then verified
through the md5 of its uncompressed content, which is published as well.

The package bundles the MNIST *test* set as package data in
``minirso/data/bundled/`` (:data:`BUNDLED_DIR`, inside the installed package,
read-only), so that any install, editable or not, has real digits without a
network: :func:`bundled_mnist_split` splits it 8,000 / 2,000, and
:func:`load_mnist_or_bundled` uses that split when the full MNIST is not in
the data directory.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import numpy

from . import download as _dl
from .dataset import Dataset
from .dataset import normalize as _normalize
from .idx import DataError, read_idx

if TYPE_CHECKING:
    import os

__all__ = [
    "BUNDLED_DIR",
    "MNIST_TEST_MD5",
    "MNIST_FILES",
    "FASHION_MNIST_FILES",
    "FASHION_SYSTEM_DIRS",
    "load_mnist",
    "load_fashion_mnist",
    "load_mnist_test",
    "bundled_mnist_split",
    "load_mnist_or_bundled",
]

# Package data (pyproject.toml: [tool.setuptools.package-data]), found beside this module in every install.
BUNDLED_DIR = pathlib.Path(__file__).resolve().parent / "bundled"
MNIST_TEST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}  # the published sums

# name -> (md5 of the published .gz, md5 of its uncompressed content); the sums torchvision
# and others publish.  The bundled t10k files match both columns.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
}
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
}
# Copies of the original files (yann.lecun.com, their first host, no longer serves them reliably).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_MNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
# Where Debian's package dataset-fashion-mnist installs the files (re-compressed, so only the
# content md5 matches).  Searched after the data directory.
FASHION_SYSTEM_DIRS = (pathlib.Path("/usr/share/datasets/fashion-mnist"),)

MNIST_CLASSES = tuple("0123456789")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True, normalize: bool = True) -> Dataset:
    """The full MNIST (60,000 / 10,000) from ``<data dir>/mnist/``, downloaded if missing and allowed.

    Images (N, 1, 28, 28): float32 ``pixels / 255`` minus the global mean of
    the training pixels (the authors' RSO preprocessing; no division by a
    standard deviation), or uint8 0-255 with ``normalize=False``.
    """
    root = _dl.data_dir(data_dir)
    return _load_idx_dataset(
        "MNIST", "mnist", MNIST_FILES, [root / "mnist"], MNIST_MIRRORS, download, normalize, MNIST_CLASSES
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, download: bool = True, normalize: bool = True
) -> Dataset:
    """Fashion-MNIST (60,000 / 10,000) from ``<data dir>/fashion-mnist/`` or Debian's copy.

    Looked for in ``<data dir>/fashion-mnist/``, then in
    :data:`FASHION_SYSTEM_DIRS` (``apt-get install dataset-fashion-mnist``);
    downloads go to the first.  Normalised as :func:`load_mnist`.
    """
    root = _dl.data_dir(data_dir)
    dirs = [root / "fashion-mnist", *FASHION_SYSTEM_DIRS]
    return _load_idx_dataset(
        "Fashion-MNIST",
        "fashion-mnist",
        FASHION_MNIST_FILES,
        dirs,
        FASHION_MNIST_MIRRORS,
        download,
        normalize,
        FASHION_MNIST_CLASSES,
    )


def _load_idx_dataset(title, name, files, directories, mirrors, download, normalize, classes) -> Dataset:
    published = {f: sums[0] for f, sums in files.items()}
    paths, fetched = _dl.find_or_fetch(title, published, directories, mirrors, download, plain_ok=True)
    arrays = {f: read_idx(paths[f], files[f][0], content_md5=files[f][1]) for f in files}
    parts = []
    for split in ("train", "t10k"):
        images, labels = arrays[f"{split}-images-idx3-ubyte.gz"], arrays[f"{split}-labels-idx1-ubyte.gz"]
        where = f"{paths[f'{split}-images-idx3-ubyte.gz']} / {paths[f'{split}-labels-idx1-ubyte.gz']}"
        # With the real checksums this cannot fail; it guards tables changed by hand (and the tests' files).
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != numpy.uint8:
            raise DataError(f"{where}: images have shape {images.shape} {images.dtype}, expected (N, 28, 28) uint8")
        if labels.shape != (len(images),) or (len(labels) and labels.max() >= len(classes)):
            raise DataError(
                f"{where}: {labels.shape} labels for {len(images)} images, or a label outside 0-{len(classes) - 1}"
            )
        parts += [images.reshape(-1, 1, 28, 28), labels.astype(numpy.int64)]
    x_train, y_train, x_test, y_test = parts
    if normalize:
        x_train, x_test = _normalize(x_train, x_test, per_channel=False)
    dirs = sorted({str(p.parent) for p in paths.values()})
    source = f"{title} IDX files in {', '.join(dirs)}, md5 verified"
    if fetched:
        source += f" (downloaded {', '.join(fetched)})"
    return Dataset(x_train, y_train, x_test, y_test, name=name, source=source, classes=classes)


def load_mnist_test(directory: str | os.PathLike = BUNDLED_DIR) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The official MNIST test set: uint8 images (10000, 28, 28) and int64 labels (10000,), checksums verified."""
    d = pathlib.Path(directory)
    images = read_idx(d / "t10k-images-idx3-ubyte.gz", MNIST_TEST_MD5["t10k-images-idx3-ubyte.gz"])
    labels = read_idx(d / "t10k-labels-idx1-ubyte.gz", MNIST_TEST_MD5["t10k-labels-idx1-ubyte.gz"])
    if images.shape != (10000, 28, 28) or labels.shape != (10000,) or labels.max() > 9:
        raise DataError(
            f"{d}: MNIST test files have shapes {images.shape} / {labels.shape}, expected "
            "(10000, 28, 28) / (10000,) with labels 0-9"
        )
    return images, labels.astype(numpy.int64)


def bundled_mnist_split(
    n_train: int = 8000, directory: str | os.PathLike = BUNDLED_DIR
) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
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


def load_mnist_or_bundled(
    data_dir: str | os.PathLike | None = None, download: bool = False, n_train: int = 8000, normalize: bool = True
) -> tuple[Dataset, str]:
    """``(dataset, note)``: the full MNIST if it is under the data directory, else the bundled split.

    The fallback is the official MNIST test set shipped in :data:`BUNDLED_DIR`,
    the first ``n_train`` digits as ``x_train`` and the rest as ``x_test``
    (held out).  ``note`` is one line saying which was used, for logs.
    Only *missing* files fall back; a damaged file still raises
    :class:`DataError`, so a broken download never passes silently.
    """
    root = _dl.data_dir(data_dir)
    try:
        full = load_mnist(root, download=download, normalize=normalize)
        return full, f"full MNIST from {root / 'mnist'}: {len(full.y_train):,} train / {len(full.y_test):,} test"
    except _dl.MissingDataError:
        pass
    if normalize:
        x_train, y_train, x_test, y_test = bundled_mnist_split(n_train)
    else:
        images, labels = load_mnist_test()
        if not 0 < n_train < len(labels):
            raise ValueError(f"n_train must be in (0, {len(labels)}), got {n_train}")
        x = images.reshape(-1, 1, 28, 28)
        x_train, y_train, x_test, y_test = x[:n_train], labels[:n_train], x[n_train:], labels[n_train:]
    n_held = len(y_test)
    why = " (and could not be downloaded)" if download else ""
    note = (
        f"full MNIST not found in {root / 'mnist'}{why}: using the bundled official MNIST test set split "
        f"{n_train:,} train / {n_held:,} held-out"
    )
    source = (
        f"official MNIST test set bundled in {BUNDLED_DIR} (md5 verified): first {n_train:,} digits as "
        f"train, last {n_held:,} as held-out test"
    )
    return Dataset(
        x_train, y_train, x_test, y_test, name="mnist-test-split", source=source, classes=MNIST_CLASSES
    ), note
