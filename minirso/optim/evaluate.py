"""How a candidate's loss is computed: the evaluators, kept apart from the search policies.

RSO and aMC decide WHAT to try and whether to keep it; an evaluator decides
HOW the loss of a candidate is computed (DESIGN.md, "policy vs. evaluator").
The classes here are the plain reference versions a reader can check by eye;
a fast evaluator (fused GPU kernels, incremental trials) must return the same
numbers, and the tests run the two against each other.

* :class:`CachedEvaluator` answers RSO's question "the losses of these values
  of parameters ``sl`` on rows ``rows`` of the pool": it caches the input of
  the layer being optimised over the whole pool (RSO paper sec. 4.7) and runs
  ``model.forward(start=layer)`` once per candidate.
* :class:`ModelLoss` answers aMC's question "the loss U(x) of the model's
  parameters on the current data": a callable ``loss(params) -> float`` that
  also reports the signal-norm lambda_i (aMC eq. 17-18) and the classification
  error of the same forward pass.
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..backend import get_array_module, to_numpy
from ..losses import check_labels, cross_entropy, mse, one_hot
from ..nn import Dense, ReLU, Softmax, Tanh

__all__ = ["CachedEvaluator", "ModelLoss", "resolve_loss", "mlp_layout", "check_class_labels"]


def _ce_sum64(logits, labels):
    return cross_entropy(logits, labels, reduction="sum", dtype=numpy.float64)


def _ce_mean64(logits, labels):
    return cross_entropy(logits, labels, reduction="mean", dtype=numpy.float64)


def _mse_targets(pred, y):
    """MSE against one-hot rows for integer labels (aMC Fig. 1), against ``y`` itself otherwise."""
    target = one_hot(y, pred.shape[1]) if y.dtype.kind in "iu" else y
    return mse(pred, target.reshape(pred.shape).astype(pred.dtype, copy=False))


LOSSES = {
    "cross_entropy": _ce_sum64,        # the authors' RSO code: summed over the batch, in float64
    "cross_entropy_mean": _ce_mean64,  # the same, averaged
    "mse": _mse_targets,               # the aMC paper's mean-squared error
}


def resolve_loss(loss):
    """``(name, fn)`` for a loss given by name (see ``LOSSES``) or as a callable ``fn(outputs, targets)``."""
    if callable(loss):
        return getattr(loss, "__name__", "custom"), loss
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable(outputs, targets), got {loss!r}")
    return loss, LOSSES[loss]


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
    whole pool ``x`` (chunks of ``chunk_size``, training mode: as the authors'
    code, BatchNorm normalises each chunk with its own statistics).  When the
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


class ModelLoss:
    """``U(params)`` of a minirso model on ``(x, y)``: the loss callable aMC needs.

    * ``loss``: ``"mse"`` (default; the aMC paper: one-hot targets for integer
      labels), ``"cross_entropy"`` (summed, float64), ``"cross_entropy_mean"``
      or a callable ``fn(outputs, targets) -> scalar``.
    * ``select(rows)`` restricts the next evaluations to a minibatch (``None``:
      all data); aMC calls it in minibatch mode.
    * With ``signal_stats = True`` every evaluation records the statistics of
      aMC eq. (17) in the same forward pass, and :meth:`lambdas` returns the
      lambda_i of eq. (18) for the last evaluated parameters: no extra pass.
    * ``last_error``: classification error of the last evaluation (integer
      labels only, else None), computed only while ``track_error = True``
      (aMC's progressive batching, sec. II F, turns it on): it costs an argmax
      and a host sync per evaluation that nothing else reads.

    ``loss(params)`` first copies ``params`` into ``model.params`` unless it IS
    that buffer (the usual case: aMC moves the model's buffer in place).
    """

    def __init__(self, model, x, y, loss="mse"):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"ModelLoss: x has {x.shape[0]} samples but y has {y.shape[0]}")
        self.model, self.x, self.y = model, x, y
        self.loss_name, self.loss_fn = resolve_loss(loss)
        check_class_labels(model, x, y, self.loss_name, "ModelLoss")
        self.signal_stats = False
        self.track_error = False
        self.rows, self._batch = None, None
        self.last_error = None
        self._layout = False  # the fused kernel's plan of the net (see _fused): False = not made yet

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def select(self, rows):
        """Evaluate on ``x[rows]`` from now on (``None``: the full data set).

        The rows are gathered here, once: aMC evaluates U(x) and U(x') on the same minibatch.
        """
        self.rows = rows
        self._batch = None if rows is None else (self.x[rows], self.y[rows])  # (B, ...), (B,)

    def __call__(self, params) -> float:
        model = self.model
        if params is not model.params:
            model.params[...] = params
        x, y = (self.x, self.y) if self._batch is None else self._batch
        fused = self._fused(x, y)
        if fused is not None:
            return fused
        if self.signal_stats:
            with model.signal_stats():
                out = model.forward(x)
        else:
            out = model.forward(x)
        if self.track_error and y.dtype.kind in "iu" and out.ndim == 2:
            self.last_error = 1.0 - float((out.argmax(axis=1) == y).mean())  # host sync
        loss = float(self.loss_fn(out, y))  # host sync: the accept/reject decision is made on the host
        return loss

    # the loss code of MLP_SOURCE and what its row sum is divided by, per loss name
    _FUSED_LOSSES = {"mse": (0, "elements"), "cross_entropy": (1, None), "cross_entropy_mean": (1, "rows")}

    def _fused(self, x, y):
        """U from the fused small-MLP kernel (:func:`minirso.kernels.mlp_tail`), or None where it does not apply.

        On a GPU the plain forward of aMC's Fig. 1 net is about 20 launches, each costing more than its
        arithmetic; here it is the first product (cuBLAS) and ONE kernel for everything after it.  Used on
        CuPy for chains of Dense layers with tanh / ReLU / softmax (:func:`mlp_layout`) and the built-in
        losses, while no signal-norm statistics or errors are recorded (those need the plain forward).
        The kernel sums in another order than the plain path: the two agree to float32 rounding.
        """
        xp = get_array_module(x)
        if self.signal_stats or self.track_error or not kernels.enabled(xp) or self.loss_name not in self._FUSED_LOSSES:
            return None
        if self.loss_fn is not LOSSES[self.loss_name]:  # a user's callable that merely shares a built-in's name
            return None
        if self._layout is False:  # not looked at yet: once per ModelLoss (the net does not change shape)
            plan = mlp_layout(self.model)
            self._layout = None if plan is None else (xp.asarray(plan[0]), plan[1], int(plan[0][-1, 3]))
        if self._layout is None:
            return None
        layout, softmax, out_width = self._layout
        first = self.model.layers[0]
        code, divide = self._FUSED_LOSSES[self.loss_name]
        labels = targets = None
        if y.dtype.kind in "iu":
            labels = y
        elif code == 0 and y.size == x.shape[0] * out_width:
            targets = y.reshape(x.shape[0], out_width)
        if (labels is None and targets is None) or x.ndim != 2 or x.dtype != numpy.float32 \
                or x.shape[1] != first.in_features or y.shape[0] != x.shape[0]:
            return None  # the plain path handles (or reports) anything else
        z1 = x @ first.weight.T  # (N, W1): the product Dense.forward makes
        total = kernels.mlp_tail(z1, self.model.params, layout, labels, targets, softmax, code)
        if total is None:
            return None
        n = {"elements": x.shape[0] * out_width, "rows": x.shape[0], None: 1}[divide]
        return float(total) / n  # host sync: the accept/reject decision is made on the host

    def lambdas(self):
        """lambda_i (aMC eq. 18) from the statistics of the last evaluation, aligned with ``model.params``."""
        if not self.signal_stats:
            raise RuntimeError("ModelLoss.lambdas(): set signal_stats = True before evaluating (aMC does this)")
        return self.model.signal_norm_lambda()


def mlp_layout(model):
    """``(layout, softmax)`` of a plain fully connected net for :data:`minirso.kernels.MLP_SOURCE`, else None.

    The net must be Dense layers, each optionally followed by Tanh or ReLU, optionally ending in
    Softmax, with every Dense output at most :data:`minirso.kernels.MLP_MAX_WIDTH` wide (the aMC
    paper's Fig. 1 and Fig. 6 nets).  ``layout`` is an (L, 5) int64 NumPy array, one row per Dense
    layer: weight and bias offsets in ``model.params`` (-1: no bias), inputs, outputs, activation
    (0 none, 1 tanh, 2 relu).
    """
    start = {(id(owner), spec.name): g.slice.start for g, owner, spec in model._bound}
    layers, rows, softmax, i = list(model.layers), [], False, 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Softmax) and i == len(layers) - 1 and rows:
            softmax = True
            break
        if not isinstance(layer, Dense) or layer.out_features > kernels.MLP_MAX_WIDTH:
            return None
        if rows and rows[-1][3] != layer.in_features:
            return None
        act = 0
        if i + 1 < len(layers) and isinstance(layers[i + 1], (Tanh, ReLU)):
            act = 1 if isinstance(layers[i + 1], Tanh) else 2
            i += 1
        rows.append([start[(id(layer), "weight")], start.get((id(layer), "bias"), -1), layer.in_features,
                     layer.out_features, act])
        i += 1
    return (numpy.array(rows, dtype=numpy.int64), softmax) if rows else None
