"""Losses and metrics: softmax cross-entropy, mean-squared error, accuracy.

``reduction``: ``"mean"`` (average over samples) or ``"sum"``.  The authors'
RSO code SUMS the cross-entropy over the batch and computes it in float64
(``dtype=numpy.float64`` here); RSO's accept/reject decision does not depend
on the scale, but float64 keeps small loss differences from rounding away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from .backend import Array, get_array_module, to_numpy
from .nn.functional import log_softmax

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from numpy.typing import DTypeLike

__all__ = ["cross_entropy", "mse", "accuracy", "one_hot", "check_labels", "LOSSES", "resolve_loss"]


def _reduce(per_sample, reduction):
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _check_labels(logits, labels, who):
    if getattr(logits, "ndim", None) != 2:
        raise ValueError(f"{who}: expected logits of shape (N, classes), got {getattr(logits, 'shape', type(logits))}")
    if getattr(labels, "shape", None) != (logits.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{who}: expected integer labels of shape ({logits.shape[0]},), got "
            f"{getattr(labels, 'shape', type(labels))} {getattr(labels, 'dtype', '')}"
        )
    # Range check on host arrays only: on a GPU it would be a host sync in every loss evaluation
    # (RSO makes three per weight); the data loaders validate labels once instead.
    if isinstance(labels, numpy.ndarray) and labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(
            f"{who}: labels must be in [0, {logits.shape[1]}), got values in [{labels.min()}, {labels.max()}]"
        )


def check_labels(labels: Array, num_classes: int, who: str) -> None:
    """Raise ValueError unless ``labels`` are integer class indices in ``[0, num_classes)``, naming the bad values.

    Call it ONCE where labels enter (a dataset, an optimizer, a loss object), not in every loss
    evaluation: on a GPU it is a host read.  It matters there most, because CuPy wraps an
    out-of-bounds integer index around instead of raising (CuPy's "Differences between CuPy and
    NumPy"), so a bad label would silently score another class, and ``one_hot`` gives a bad
    label an all-zero row on every backend.
    """
    if getattr(labels, "dtype", None) is None or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{who}: labels must be an integer array of class indices, got "
            f"{getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if labels.size == 0:
        return
    xp = get_array_module(labels)
    lo, hi = (int(v) for v in to_numpy(xp.stack([labels.min(), labels.max()])))  # host sync: once per data set
    if lo < 0 or hi >= num_classes:
        host = to_numpy(labels).reshape(-1)  # only on the error path
        bad = numpy.unique(host[(host < 0) | (host >= num_classes)])
        raise ValueError(
            f"{who}: labels must be class indices in [0, {num_classes}) for {num_classes} outputs, got "
            f"{int(((host < 0) | (host >= num_classes)).sum())} out of range (values "
            f"{', '.join(str(v) for v in bad[:5])}{', ...' if bad.size > 5 else ''}); labels are "
            f"0-based (1-based labels: subtract 1), and the model's last layer needs one output per class"
        )


def cross_entropy(logits: Array, labels: Array, reduction: str = "mean", dtype: DTypeLike = numpy.float32) -> Array:
    """Softmax cross-entropy ``-log softmax(logits)[label]``: logits (N, C), integer labels (N,) -> scalar array.

    Stable for any logits (log-sum-exp with the maximum subtracted).  ``dtype``
    is the precision of the whole computation (float64: the authors' RSO code).
    """
    _check_labels(logits, labels, "cross_entropy")
    xp = get_array_module(logits)
    logp = log_softmax(logits.astype(dtype, copy=False), axis=1)  # (N, C)
    picked = xp.take_along_axis(logp, labels.reshape(-1, 1).astype(xp.int64), axis=1)[:, 0]  # (N,)
    return _reduce(-picked, reduction)


def mse(pred: Array, target: Array, reduction: str = "mean") -> Array:
    """Mean-squared error: the mean (or sum) over ALL elements of ``(pred - target)^2`` (PyTorch's MSELoss).

    The aMC paper's Fig. 1 loss: softmax outputs against one-hot targets (see :func:`one_hot`).
    """
    if getattr(pred, "shape", None) != getattr(target, "shape", None):
        raise ValueError(
            f"mse: pred {getattr(pred, 'shape', None)} and target {getattr(target, 'shape', None)} differ in shape"
        )
    d = pred - target
    return _reduce(d * d, reduction)


def one_hot(labels: Array, num_classes: int, dtype: DTypeLike = numpy.float32) -> Array:
    """Integer labels (N,) -> (N, num_classes) one-hot rows."""
    xp = get_array_module(labels)
    return (labels.reshape(-1, 1) == xp.arange(num_classes)).astype(dtype)


def accuracy(logits: Array, labels: Array) -> float:
    """Fraction of rows whose arg-max equals the label, as a Python float (a host sync on GPU)."""
    _check_labels(logits, labels, "accuracy")
    return float((logits.argmax(axis=1) == labels).mean())  # host sync


# ---- the optimizers' losses by name ----------------------------------------------------------
def _ce_sum64(logits, labels):
    return cross_entropy(logits, labels, reduction="sum", dtype=numpy.float64)


def _ce_mean64(logits, labels):
    return cross_entropy(logits, labels, reduction="mean", dtype=numpy.float64)


def _mse_targets(pred, y):
    """MSE against one-hot rows for integer labels (aMC Fig. 1), against ``y`` itself otherwise."""
    target = one_hot(y, pred.shape[1]) if y.dtype.kind in "iu" else y
    return mse(pred, target.reshape(pred.shape).astype(pred.dtype, copy=False))


LOSSES = {
    "cross_entropy": _ce_sum64,  # the authors' RSO code: summed over the batch, in float64
    "cross_entropy_mean": _ce_mean64,  # the same, averaged
    "mse": _mse_targets,  # the aMC paper's mean-squared error
}


def resolve_loss(loss: str | Callable[[Array, Array], Any]) -> tuple[str, Callable[[Array, Array], Any]]:
    """``(name, fn)`` for a loss given by name (see ``LOSSES``) or as a callable ``fn(outputs, targets)``."""
    if callable(loss):
        return getattr(loss, "__name__", "custom"), loss
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable(outputs, targets), got {loss!r}")
    return loss, LOSSES[loss]
