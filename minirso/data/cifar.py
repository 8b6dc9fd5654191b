"""CIFAR-10 from the official "python version" tarball, checked against the published md5 sums.

``cifar-10-python.tar.gz`` (Krizhevsky, 163 MiB) holds six pickled batches in
``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (50,000
training images) and ``test_batch`` (10,000).  Each is a dict with byte-string
keys: ``b"data"``, a uint8 array (10000, 3072) whose row is the red, then the
green, then the blue 32x32 plane, each row-major, so that a reshape to
(N, 3, 32, 32) gives NCHW directly, and ``b"labels"``, a list of 0-9.

The batches are read straight out of the tarball (no extraction needed), or
from an extracted ``cifar-10-batches-py/`` directory when one is present.
Pickle can run code while loading, so a file is unpickled only after its md5
has matched the published sum.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zlib

import numpy

from . import download as _dl
from .dataset import Dataset
from .dataset import normalize as _normalize
from .idx import DataError

__all__ = ["CIFAR10_ARCHIVE", "CIFAR10_ARCHIVE_MD5", "CIFAR10_BATCH_MD5", "CIFAR10_MIRRORS", "load_cifar10"]

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
# The published sums of the extracted batches (the same table as torchvision's).
CIFAR10_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_cifar10(data_dir=None, download: bool = True, normalize: bool = True) -> Dataset:
    """CIFAR-10 (50,000 / 10,000 images, (N, 3, 32, 32)) from ``<data dir>/cifar-10/``.

    Uses ``cifar-10-batches-py/`` there if it holds all six batches, else
    ``cifar-10-python.tar.gz``, downloaded if missing and allowed.  Images are
    float32 ``pixels / 255`` minus the per-channel mean of the training images
    (the authors' ``train.py``; no division by a standard deviation), or uint8
    0-255 with ``normalize=False``.
    """
    folder = _dl.data_dir(data_dir) / "cifar-10"
    extracted = folder / CIFAR10_FOLDER
    if all((extracted / b).is_file() for b in CIFAR10_BATCH_MD5):
        batches = {
            b: _verified(extracted / b, (extracted / b).read_bytes(), CIFAR10_BATCH_MD5[b]) for b in CIFAR10_BATCH_MD5
        }
        source = f"CIFAR-10 python batches in {extracted}, md5 verified"
    else:
        paths, fetched = _dl.find_or_fetch(
            "CIFAR-10", {CIFAR10_ARCHIVE: CIFAR10_ARCHIVE_MD5}, [folder], CIFAR10_MIRRORS, download
        )
        archive = paths[CIFAR10_ARCHIVE]
        batches = _read_archive(archive)
        source = f"CIFAR-10 python batches in {archive}, md5 verified"
        if fetched:
            source += f" (downloaded from {fetched[0].split(' from ', 1)[1]})"
    train = [_parse_batch(where, raw) for where, raw in (batches[b] for b in TRAIN_BATCHES)]
    x_test, y_test = _parse_batch(*batches["test_batch"])
    x_train = numpy.concatenate([x for x, _ in train])
    y_train = numpy.concatenate([y for _, y in train])
    if normalize:
        x_train, x_test = _normalize(x_train, x_test, per_channel=True)
    return Dataset(x_train, y_train, x_test, y_test, name="cifar-10", source=source, classes=CIFAR10_CLASSES)


def _verified(where, raw: bytes, md5: str):
    got = hashlib.md5(raw).hexdigest()
    if got != md5:
        raise DataError(f"{where}: md5 {got} does not match the published {md5} (truncated or corrupt file?)")
    return where, raw


def _read_archive(path) -> dict:
    """``{batch: (where, bytes)}`` for the six batches inside the tarball, after checking its md5."""
    raw = path.read_bytes()
    _verified(path, raw, CIFAR10_ARCHIVE_MD5)
    wanted = {f"{CIFAR10_FOLDER}/{b}": b for b in CIFAR10_BATCH_MD5}
    batches = {}
    try:
        # Iterate instead of getmember(): one sequential pass through the gzip stream.
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    batches[wanted[member.name]] = (f"{path}:{member.name}", tar.extractfile(member).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: damaged tar.gz archive ({e})") from None
    missing = [m for m, b in wanted.items() if b not in batches]
    if missing:
        raise DataError(f"{path}: the archive lacks {', '.join(missing)}")
    return batches


def _parse_batch(where, raw: bytes):
    """``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` from one pickled batch."""
    try:
        batch = pickle.loads(raw, encoding="bytes")  # bytes: the batches were pickled by Python 2
    except Exception as e:  # unpickling can fail in many ways (UnpicklingError, EOFError, ValueError, ...)
        raise DataError(f"{where}: not a readable pickle ({type(e).__name__}: {e})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{where}: expected a dict with b'data' and b'labels', got {keys}")
    data, labels = batch[b"data"], numpy.asarray(batch[b"labels"])
    if not isinstance(data, numpy.ndarray) or data.dtype != numpy.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{where}: b'data' is {getattr(data, 'shape', type(data).__name__)} "
            f"{getattr(data, 'dtype', '')}, expected uint8 (N, 3072)"
        )
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(
            f"{where}: b'labels' is {labels.shape} {labels.dtype} for {len(data)} images, "
            "expected one integer per image"
        )
    if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise DataError(f"{where}: labels outside 0-9 (from {labels.min()} to {labels.max()})")
    return data.reshape(-1, 3, 32, 32), labels.astype(numpy.int64)
