"""The :class:`Dataset` every loader returns, and the authors' input normalisation.

The RSO authors' code (``train.py``) divides pixels by 255 and subtracts the
training set's mean: one global mean for MNIST, one mean per colour channel
for CIFAR-10.  It does *not* divide by a standard deviation, so neither do
we.  The mean comes from the training images only and is subtracted from the
test images as well; a test set must not leak into the preprocessing.
"""

from __future__ import annotations

import dataclasses

import numpy

from ..losses import check_labels

__all__ = ["Dataset", "normalize"]


@dataclasses.dataclass(frozen=True, repr=False)
class Dataset:
    """Train and test arrays of one dataset, with where they came from.

    Images are NCHW: float32 and normalised by default, uint8 0-255 with
    ``normalize=False``.  Labels are int64 class indices.
    """

    x_train: numpy.ndarray
    y_train: numpy.ndarray
    x_test: numpy.ndarray
    y_test: numpy.ndarray
    name: str
    source: str  # one line: the files (or bundle) the arrays were read from
    classes: tuple = ()

    def __post_init__(self):  # labels are checked once, here, where they enter (host arrays: no GPU read)
        if self.classes:
            for split, y in (("y_train", self.y_train), ("y_test", self.y_test)):
                check_labels(y, len(self.classes), f"Dataset {self.name!r} {split}")

    def __repr__(self) -> str:  # the default repr would print the arrays
        return (
            f"Dataset({self.name!r}, train {self.x_train.shape} {self.x_train.dtype}, "
            f"test {self.x_test.shape} {self.x_test.dtype}, source={self.source!r})"
        )


def normalize(train: numpy.ndarray, test: numpy.ndarray, per_channel: bool):
    """``(x_train, x_test)`` as float32: uint8 pixels / 255 minus the training mean.

    ``per_channel=False``: one mean over all training pixels (MNIST).
    ``per_channel=True``: one mean per channel (axis 1 of NCHW; CIFAR-10).
    The mean is accumulated in float64 (a float32 sum over 47 million pixels
    loses digits) and subtracted in float32.
    """
    axes = (0, 2, 3) if per_channel else None
    mean = (train.mean(axis=axes, dtype=numpy.float64, keepdims=per_channel) / 255.0).astype(numpy.float32)
    out = []
    for x in (train, test):
        y = x.astype(numpy.float32)
        y /= 255.0  # in place: no float64 temporary the size of the dataset
        y -= mean
        out.append(y)
    return out[0], out[1]
