"""A small MLP's loss after its first product in ONE launch (``mlp_tail.cu``), for aMC's Fig. 1 net.

aMC's step on a GPU is launch-bound: for the Fig. 1 net (13,002 parameters, 60,000 rows) the plain forward is
about 20 launches, most on arrays of a few thousand numbers, while the one large piece of work (the first
product, x W^T over 60,000 x 784 inputs) is a single cuBLAS call.  So everything after the first product is one
kernel, a thread per row: the first bias and activation, the small Dense layers, softmax, the per-row loss and
per-block sums.  :class:`minirso.optim.model_loss.ModelLoss` uses it for chains of Dense layers up to
:data:`MLP_MAX_WIDTH` wide.  It sums in another order than cuBLAS and the plain reductions, so its loss agrees
with the plain forward to float32 rounding.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from .build import Kernel, define, source

__all__ = ["MLP_SOURCE", "MLP_MAX_WIDTH", "MLP_THREADS", "mlp_tail"]

MLP_SOURCE = source("mlp_tail.cu")
MLP_MAX_WIDTH = define(MLP_SOURCE, "MINIRSO_MLP_MAX")  # widest layer after the first product (64)
MLP_THREADS = 256  # rows per block (a power of two: the block sum is a tree)

_KERNEL = Kernel("mlp_tail", lambda xp: xp.RawKernel(MLP_SOURCE, "minirso_mlp_tail"))


def mlp_tail(z1, params, layout, labels, targets, softmax: bool, loss: int):
    """Sum over rows of a small MLP's per-row loss from its first product ``z1``; None if unavailable.

    ``z1`` (N, W) float32 = x W_1^T (the caller's cuBLAS product); ``layout`` an (L, 5) int64 device
    array (see :data:`MLP_SOURCE`); ``labels`` (N,) int64 or ``targets`` (N, C) float32 (the other None);
    ``loss`` 0 (squared error summed over classes) or 1 (cross-entropy).  Returns a 0-d float64 device
    array: the per-block sums added in a fixed order (no atomics, so the same on every run).  Plain twin: the
    loss of ``minirso.optim.model_loss.ModelLoss``'s plain forward, summed over rows (to float32 rounding).
    """
    xp = get_array_module(z1)
    n = z1.shape[0]
    if n == 0 or z1.dtype != numpy.float32 or params.dtype != numpy.float32:
        return None
    z1 = xp.ascontiguousarray(z1)
    blocks = -(-n // MLP_THREADS)
    partial = xp.empty(blocks, dtype=numpy.float64)
    # the kernel never reads the unused one of labels / targets; an array of the slot's own type fills it
    # (int64 ``layout`` for ``long long *labels``, float32 ``z1`` for ``float *targets``): no allocation
    # on this hot path, and no pointer of one type passed where the kernel declares another
    lab = layout if labels is None else xp.ascontiguousarray(labels, dtype=numpy.int64)
    tgt = z1 if targets is None else xp.ascontiguousarray(targets, dtype=numpy.float32)
    args = (
        z1,
        params,
        layout,
        lab,
        tgt,
        partial,
        numpy.int32(n),
        numpy.int32(layout.shape[0]),
        numpy.int32(bool(softmax)),
        numpy.int32(loss),
        numpy.int32(targets is not None),
    )
    ok, _ = _KERNEL.launch(xp, (blocks,), (MLP_THREADS,), args, shared_mem=8 * MLP_THREADS)
    if not ok:
        return None
    return partial.sum()
