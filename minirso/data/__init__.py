"""Datasets: MNIST, Fashion-MNIST and CIFAR-10 with published checksums, and the bundled MNIST test set.

Example::

    from minirso import data
    ds = data.load_mnist()                   # downloads into <data dir>/mnist/ if missing
    ds.x_train.shape, ds.x_train.dtype       # (60000, 1, 28, 28) float32
    ds, note = data.load_mnist_or_bundled()  # no network needed: falls back to the bundled split

Every loader returns a :class:`Dataset` (``x_train, y_train, x_test, y_test,
name, source``): images float32 NCHW, normalised as in the RSO authors' code
(pixels / 255 minus the training mean: global for MNIST and Fashion-MNIST,
per channel for CIFAR-10; no division by a standard deviation), or the raw
uint8 pixels with ``normalize=False``; labels int64.

Where the files are.  The data directory, :func:`data_dir`, is the
``data_dir=`` argument of the loaders (``--data-dir`` of the examples), else
``$MINIRSO_DATA``, else the user cache folder ``pooch.os_cache("minirso")``
(``~/.cache/minirso`` on Linux).  The loaders look for the full datasets
there, in ``mnist/``, ``fashion-mnist/`` and ``cifar-10/``, and download
missing files into the same folders (with pooch, md5-checked, mirrors tried
in turn).  Nothing is ever written into the installed package.  The only
data the package carries is the official MNIST test set (package data in
``minirso/data/bundled/``, :data:`BUNDLED_DIR`), which every install has,
editable or not, and which :func:`load_mnist_or_bundled` falls back to.

The repository's ``data/`` folder is not searched: a library that looks in
different places depending on how it was installed is what broke
``pip install .`` (seen from the installed module, the clone's ``data/`` is
``site-packages/data/``).  It holds only ``data/README.md``; to keep datasets there,
``export MINIRSO_DATA=$PWD/data`` (or pass ``--data-dir data``).

Every file is checked against its published md5 before it is parsed; a
missing, damaged or truncated file raises :class:`DataError` naming it
(:class:`MissingDataError` when it is merely absent; without a network its
message names the files, the folder and the URLs to fetch them from by hand).

Modules: :mod:`.idx` (the IDX format), :mod:`.download` (data directory,
fetching), :mod:`.dataset` (``Dataset``, normalisation), :mod:`.mnist`,
:mod:`.cifar`.
"""

from __future__ import annotations

from .cifar import load_cifar10
from .dataset import Dataset, normalize
from .download import MissingDataError, data_dir
from .idx import DataError, md5sum, read_idx
from .mnist import (
    BUNDLED_DIR,
    MNIST_TEST_MD5,
    bundled_mnist_split,
    load_fashion_mnist,
    load_mnist,
    load_mnist_or_bundled,
    load_mnist_test,
)

__all__ = [
    "DataError",
    "MissingDataError",
    "read_idx",
    "md5sum",
    "Dataset",
    "normalize",
    "data_dir",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_mnist_or_bundled",
    "BUNDLED_DIR",
    "MNIST_TEST_MD5",
    "load_mnist_test",
    "bundled_mnist_split",
]
