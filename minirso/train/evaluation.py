"""Held-out evaluation: accuracy and the loss per sample, BatchNorm statistics re-estimated first.

Evaluation reads the parameters, never the optimizer, and re-estimates BatchNorm running statistics,
which training mode never reads (:mod:`minirso.nn.norm`): so it cannot change a run's trajectory.

**The loss reported.**  The Trainer's ``loss`` (default ``"cross_entropy_mean"``) is one measure for
every optimizer, so that RSO and aMC runs, and PyTorch's ``CrossEntropyLoss``, compare on one scale;
the optimizers keep their papers' losses for training (RSO the summed cross-entropy, aMC's ModelLoss
the MSE), reported per sample in their history rows.  Every loss is reported as a mean per sample:
the registry's summed ``"cross_entropy"`` is divided by the rows (:func:`minirso.optim.base.per_sample`),
a mean is a mean, a custom callable is taken as a mean per sample.

**Nets that end in Softmax** (aMC's): the output is a probability, so accuracy is its arg-max and a
cross-entropy ``loss`` is ``-log p[label]`` (the cross-entropy of ``log p``); ``loss="mse"`` reports
the aMC paper's training loss instead.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ..losses import LOSSES
from ..nn.activation import Softmax

__all__ = ["evaluate", "measure"]


def evaluate(model, data: dict, loss_name: str, loss_fn, bn_data=None, eval_batch: int = 2000) -> dict:
    """``{"<prefix>_accuracy", "<prefix>_loss"}`` for every ``prefix: (x, y)`` of ``data`` (None skipped).

    BatchNorm statistics are re-estimated on ``bn_data`` first; the model runs in eval mode and goes
    back to its previous mode.  The parameters are not touched.
    """
    xp = get_array_module(model.params)
    was_training = model.training
    if bn_data is not None:
        model.reestimate_batchnorm(xp.asarray(bn_data))  # a no-op for models without BatchNorm
    model.eval()
    try:
        out = {}
        for prefix, pair in data.items():
            if pair is not None:
                out.update(
                    {f"{prefix}_{k}": v for k, v in measure(model, *pair, loss_name, loss_fn, eval_batch).items()}
                )
        return out
    finally:
        model.train(was_training)


def measure(model, x, y, loss_name, loss_fn, eval_batch) -> dict:
    """Accuracy (integer labels only) and the loss per sample on ``(x, y)``, ``eval_batch`` rows at a time."""
    xp = get_array_module(model.params)
    log_p = isinstance(model.layers[-1], Softmax) and loss_name.startswith("cross_entropy")
    summed = loss_fn is LOSSES["cross_entropy"]  # the authors' summed loss; the others are means over rows
    n, correct, total = int(x.shape[0]), 0, 0.0
    for i in range(0, n, eval_batch):
        xb, yb = xp.asarray(x[i : i + eval_batch]), xp.asarray(y[i : i + eval_batch])
        out = model.forward(xb)
        if yb.dtype.kind in "iu" and out.ndim == 2:
            correct += int((out.argmax(axis=1) == yb).sum())  # host sync, once per chunk
        if log_p:  # a probability output: cross-entropy of log p is -log p[label]
            out = xp.log(xp.maximum(out, numpy.finfo(out.dtype).tiny))
        value = float(loss_fn(out, yb))  # host sync
        total += value if summed else value * yb.shape[0]
    result = {"accuracy": correct / n} if y.dtype.kind in "iu" else {}
    result["loss"] = total / n  # per sample, whichever loss
    return result
