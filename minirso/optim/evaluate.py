"""How an RSO candidate's loss is computed: the plain evaluator, kept apart from the search policy.

RSO decides WHAT to try and whether to keep it; an evaluator decides HOW the
loss of a candidate is computed (docs/design.md, "policy vs. evaluator").
:class:`CachedEvaluator` is the plain reference a reader can check by eye; a
fast evaluator (:class:`minirso.optim.IncrementalEvaluator`) must return the
same numbers, and the tests run the two against each other.

:class:`CachedEvaluator` answers RSO's question "the losses of these values
of parameters ``sl`` on rows ``rows`` of the pool": it caches the input of
the layer being optimised over the whole pool (RSO paper sec. 4.7) and runs
``model.forward(start=layer)`` once per candidate.  aMC's loss, U(x) of the
current parameters, is :class:`minirso.optim.ModelLoss`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy

from ..losses import LOSSES, check_labels, resolve_loss

__all__ = ["RSOEvaluator", "CachedEvaluator", "check_class_labels"]


@runtime_checkable
class RSOEvaluator(Protocol):
    """What RSO asks of an evaluator (:class:`CachedEvaluator`, :class:`~minirso.optim.IncrementalEvaluator`,
    or a user's own).

    ``prepare(layer, x, y, keep=())`` is called before each tensor's trials: the inputs of layer ``layer``
    for the pool ``x`` (labels ``y``) are computed with the model in eval mode; ``keep`` lists later layers
    whose inputs, passed on the way, stay valid until their turn (an evaluator may ignore it).
    ``losses(sl, candidates, rows)`` returns the float64 losses (K,) of ``params[sl] = candidates[k]`` on pool
    rows ``rows`` and leaves ``params`` as it found them.  ``loss_name`` names the loss (``"custom"`` for one
    given as a callable).
    """

    loss_name: str

    def prepare(self, layer: int, x, y, keep=()) -> None: ...

    def losses(self, sl: slice, candidates, rows) -> numpy.ndarray: ...


def check_class_labels(model, x, y, loss_name: str, who: str):
    """Integer labels of a built-in loss must index the model's outputs: checked once, where the data enter.

    The number of outputs is read off one sample's forward pass.  One host read on a GPU
    (:func:`minirso.losses.check_labels`); custom losses and float targets are the caller's business.
    """
    if loss_name not in LOSSES or getattr(y, "dtype", None) is None or y.dtype.kind not in "iu" or x.shape[0] == 0:
        return
    check_labels(y, int(model.forward(x[:1]).shape[-1]), who)


class CachedEvaluator:
    """RSO's plain evaluator: one ``forward(start=layer)`` per candidate, from cached layer inputs.

    ``prepare(layer, x, y)`` caches the input of ``model.layers[layer]`` for the
    whole pool ``x`` (chunks of ``chunk_size``) in the model's current mode: RSO
    puts the model in eval mode with freshly set running statistics, as the
    authors' code caches (so BatchNorm normalises every row alike and the chunking
    does not matter); in training mode each chunk would use its own statistics.  When the
    previous cache was for an earlier layer p <= layer, the new one continues
    from it (RSO guarantees that layers < p have not changed since); the result is bit-identical
    to computing it from ``x``, so a resumed run rebuilds the same cache.

    ``keep`` saves recomputation when RSO sweeps backwards: the forward pass
    that reaches ``layer`` passes the inputs of every earlier layer on the way,
    and those listed in ``keep`` are held for a later ``prepare`` instead of
    being recomputed from ``x`` (one pass over the pool per cycle instead of
    one per layer).  The caller promises that no parameter below a kept layer
    changes before that layer is prepared; held inputs not named in the next
    call's ``keep`` are dropped.  The values are the same chunked forward
    either way, so the cache is bit-identical with or without ``keep``.  The
    price is memory: for the paper's MNIST net on 60,000 images the held
    inputs take about 5 GB (float32) at the start of a cycle, against 3 GB
    for the largest single cache; ``hold_inputs=False`` turns holding off.
    """

    def __init__(self, model, loss="cross_entropy", chunk_size: int = 2000, hold_inputs: bool = True):
        self.model = model
        self.loss_name, self.loss_fn = resolve_loss(loss)
        self.chunk_size = int(chunk_size)
        self.hold_inputs = bool(hold_inputs)
        self.layer, self.inputs, self.labels = None, None, None
        self.held = {}  # layer -> its inputs for the pool, computed on the way to a later layer

    def prepare(self, layer: int, x, y, keep=()):
        """Cache the inputs of layer ``layer`` for the pool ``x`` (its labels ``y``); hold those of ``keep``."""
        m = self.model
        keep = keep if self.hold_inputs else ()
        held = self.held if self.labels is y else {}
        new = {}
        if layer in held:
            inputs = held[layer]
        elif layer == 0:
            inputs = x
        else:
            if self.layer is not None and self.layer <= layer and self.labels is y:
                start, inputs = self.layer, self.inputs  # continue from the previous cache
            else:
                start, inputs = 0, x
            for stop in sorted({int(k) for k in keep if start < k < layer}) + [layer]:
                inputs = m.layer_inputs(inputs, stop, self.chunk_size, start=start)  # (N, ...) at layer `stop`
                new[stop], start = inputs, stop
        kept = {**held, **new}
        self.held = {k: kept[k] for k in keep if k in kept and k != layer}
        self.layer, self.inputs, self.labels = layer, inputs, y

    def losses(self, sl: slice, candidates, rows):
        """Loss of the model with ``params[sl] = candidates[k]``, for each k, on pool rows ``rows``.

        ``candidates``: (K, n) values for the n parameters in ``sl``.  Returns a
        NumPy float64 array (K,).  ``params[sl]`` is restored before returning.
        """
        params = self.model.params
        xb, yb = self.inputs[rows], self.labels[rows]  # (B, ...) gathered once for all K candidates
        saved = params[sl].copy()
        out = numpy.empty(len(candidates))
        try:
            for k in range(len(candidates)):
                params[sl] = candidates[k]
                out[k] = float(self.loss_fn(self.model.forward(xb, start=self.layer), yb))  # host sync
        finally:
            params[sl] = saved
        return out
