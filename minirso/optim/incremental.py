"""RSO's fast evaluator: incremental trials that return the same losses as :class:`CachedEvaluator`.

A weight-level RSO trial changes ONE scalar of layer L.  The plain evaluator
runs ``forward(start=L)`` three times.  Most of that work repeats itself:

1. **one channel.**  Changing ``conv.weight[o, c, u, v]`` by delta changes only
   output channel o, by ``delta * x_pad[:, c, u + s i, v + s j]`` (one shifted
   input channel); a Dense weight ``[o, i]`` changes output o by ``delta *
   x[:, i]``; a BatchNorm gamma/beta changes only its channel.
2. **channel-local layers.**  ReLU, tanh, pooling and BatchNorm act on each
   channel separately (BatchNorm's batch statistics are per channel), so the
   change stays in channel o until the next conv or dense layer.
3. **one input channel.**  That next layer sees a change in ONE input channel:
   its new output is the old one plus ``conv(delta_a[:, o], W[:, o])`` (a
   1/C-th of the conv) or, for a dense layer, a rank-1 term.
4. From there on every channel differs, and the rest of the net runs in full.

So a trial costs one full forward from L (the candidate w itself: its loss
IS the unchanged network's) plus, per changed candidate, a cheap channel
update and the layers after the next conv.  RSO paper sec. 4.7 caches layer
inputs; this goes one step further and also reuses the layer's OUTPUT.

**Reusing the batch.**  When a trial uses the same rows as the previous one
and the parameters differ from that trial's only by the decision just taken
(RSO's ``trials_per_batch > 1``), the kept candidate's activations become the
new starting point and even the full forward is skipped.

The numbers equal the plain path's up to float32 rounding (the old output
plus a correction sums in a different order than a fresh conv); the tests
compare both on the same random numbers.  Anything this file does not know
(residual blocks, recurrent layers, joint perturbations) falls back to the
plain path, so the evaluator is always correct and fast where it matters.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module, to_numpy
from ..nn import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    MaxPool2d,
    ReLU,
    Tanh,
)
from ..nn import functional as F
from .evaluate import CachedEvaluator

__all__ = ["IncrementalEvaluator", "make_evaluator"]

# layers whose output channel c reads input channel c only; a global pool is one of them (max included: the
# changed channel is re-pooled in full, nothing assumes the pool is linear in the change)
_CHANNEL_LOCAL = (ReLU, Tanh, AvgPool2d, MaxPool2d, GlobalAvgPool2d, GlobalMaxPool2d, BatchNorm1d, BatchNorm2d)


def _bn_channel(bn, a, c, gamma=None, beta=None):
    """BatchNorm of ONE channel ``a`` (N, 1, ...) of ``bn``'s input: the layer's own math on channel c."""
    xp = get_array_module(a)
    gamma = bn.gamma[c : c + 1] if gamma is None else xp.asarray([gamma], dtype=a.dtype)  # (1,)
    beta = bn.beta[c : c + 1] if beta is None else xp.asarray([beta], dtype=a.dtype)
    if bn.training:
        return F.batch_norm_train(a, gamma, beta, bn.eps)[0]  # this channel's own batch statistics
    mean, var = bn.running_mean[c : c + 1], bn.running_var[c : c + 1]
    return F.batch_norm(a, mean, var, gamma, beta, bn.eps)[0]


def _channel_forward(layer, a, c):
    """Output channel c of a channel-local ``layer`` from its input channel ``a`` (N, 1, ...)."""
    if isinstance(layer, (BatchNorm1d, BatchNorm2d)):
        return _bn_channel(layer, a, c)
    return layer(a)  # ReLU, tanh and (global) pooling act on any number of channels


class IncrementalEvaluator(CachedEvaluator):
    """Drop-in replacement for :class:`CachedEvaluator` (same ``prepare`` / ``losses``), faster.

    ``stats`` counts how each call was served: ``"full"`` (one full forward
    from the layer, then incremental candidates), ``"reused"`` (the previous
    trial's activations reused, no full forward), ``"plain"`` (fallback).
    """

    def __init__(self, model, loss="cross_entropy", chunk_size: int = 2000):
        super().__init__(model, loss, chunk_size)
        self.stats = {"full": 0, "reused": 0, "plain": 0}
        self._targets = self._find_targets(model)
        self._kept = None  # what the last incremental call leaves for the next one (see _reuse)

    @staticmethod
    def _find_targets(model):
        """flat index range -> (top-level layer index, layer, parameter name, shape) for supported tensors."""
        out = []
        for g in model.param_groups:
            owner = model.layers[g.layer]
            prefix, name = g.name.rsplit(".", 1)  # "conv1.weight": a top-level layer's own tensor
            if prefix == owner.name and isinstance(owner, (Conv2d, Dense, BatchNorm1d, BatchNorm2d)):
                out.append((g.slice.start, g.slice.stop, g.layer, owner, name, g.shape))
        return out

    def _target(self, i):
        for start, stop, layer, owner, name, shape in self._targets:
            if start <= i < stop:
                return layer, owner, name, numpy.unravel_index(i - start, shape)
        return None

    def prepare(self, layer, x, y, keep=()):
        super().prepare(layer, x, y, keep)
        self._kept = None

    # ---- the public question -------------------------------------------------------------------
    def losses(self, sl, candidates, rows):
        """Same contract as :meth:`CachedEvaluator.losses`; ``params`` are never modified here."""
        i = sl.start
        target = self._target(i) if sl.stop - i == 1 else None
        if target is None or target[0] != self.layer:
            self._kept = None
            self.stats["plain"] += 1
            return super().losses(sl, candidates, rows)
        params = self.model.params
        rows_h = to_numpy(rows)  # host sync (tiny): the key that tells whether the next trial reuses this batch
        acts, base_loss, w = self._reuse(rows_h, i)  # w: the value of params[i] in the network of `acts`
        if acts is None:
            acts = self._run(self.inputs[rows], self.layer)  # one full forward from the layer
            base_loss = float(self.loss_fn(acts[-1], self.labels[rows]))  # host sync
            w = params.dtype.type(float(params[i]))  # host sync; float() first: CuPy forbids numpy.float32(device)
            self.stats["full"] += 1
        else:
            self.stats["reused"] += 1
        yb = self.labels[rows]
        values = to_numpy(candidates)[:, 0].astype(params.dtype)  # (K,)
        out = numpy.empty(len(values))
        trails = []
        for k, v in enumerate(values):
            if v == w:
                out[k], trail = base_loss, None
            else:
                trail = self._candidate(acts, target, w, v)
                out[k] = float(self.loss_fn(trail[-1][1], yb))  # host sync
            trails.append(trail)
        self._kept = {
            "rows": rows_h,
            "params": params.copy(),
            "i": i,
            "values": values,
            "acts": acts,
            "trails": trails,
            "losses": out,
        }
        return out

    # ---- pieces --------------------------------------------------------------------------------
    def _run(self, a, start):
        """Inputs of layers start..n-1 and the output, as a list indexed by layer (None before ``start``)."""
        acts = [None] * start + [a]
        for layer in self.model.layers[start:]:
            a = layer(a)
            acts.append(a)
        return acts

    def _reuse(self, rows_h, i):
        """``(acts, loss, w)`` left by the previous call if this call continues it, else (None, None, None).

        Continues means: same rows, and ``params`` equal to that call's except at its index, which holds
        one of its candidates (RSO kept it), and at this call's index ``i``, which RSO's weight decay may
        have rescaled just now.  That candidate's activations are then the current network's except at
        ``i``, where their network has ``w`` (this call's candidates are changes from ``w``).
        """
        kept, params = self._kept, self.model.params
        self._kept = None
        if kept is None or not numpy.array_equal(kept["rows"], rows_h):
            return None, None, None
        diff = to_numpy(params != kept["params"]).nonzero()[0]  # host sync
        if not set(diff.tolist()) <= {kept["i"], i} or (i == kept["i"] and diff.size > 1):
            return None, None, None
        v = params.dtype.type(float(params[kept["i"]]))  # host sync
        match = numpy.flatnonzero(kept["values"] == v)
        if match.size == 0:
            return None, None, None
        k = int(match[0])
        w = v if i == kept["i"] else params.dtype.type(float(kept["params"][i]))  # host sync
        trail = kept["trails"][k]
        if trail is None:
            return kept["acts"], float(kept["losses"][k]), w
        acts = list(kept["acts"])
        for j, a in trail:
            if isinstance(a, tuple):  # (channel, values): channel-local stretch, materialise
                c, chan = a
                full = acts[j].copy()
                full[:, c : c + 1] = chan
                acts[j] = full
            else:
                acts[j] = a
        return acts, float(kept["losses"][k]), w

    def _candidate(self, acts, target, w, v):
        """Forward of the network with the target parameter at ``v`` (now ``w``), from the base ``acts``.

        Returns the trail ``[(layer input index j, new value), ...]`` ending with
        the output; channel-local values are ``(c, (N, 1, ...) array)`` tuples.
        """
        L, layer, name, idx = target
        y0 = acts[L + 1]  # (N, C, ...) the layer's current output
        c = int(idx[0])
        if isinstance(layer, Conv2d):
            chan = y0[:, c : c + 1]  # (N, 1, Ho, Wo)
            if name == "weight":
                chan = chan + (v - w) * self._conv_window(layer, acts[L], idx)
            else:
                chan = chan + (v - w)  # bias
        elif isinstance(layer, Dense):
            chan = y0[:, c : c + 1] + ((v - w) * acts[L][:, idx[1] : idx[1] + 1] if name == "weight" else (v - w))
        else:  # BatchNorm gamma / beta: recompute the channel with the candidate value
            a = acts[L][:, c : c + 1]
            chan = _bn_channel(layer, a, c, gamma=v if name == "gamma" else None, beta=v if name == "beta" else None)
        trail = [(L + 1, (c, chan))]
        layers, j = self.model.layers, L + 1
        while j < len(layers) and isinstance(layers[j], _CHANNEL_LOCAL):
            chan = _channel_forward(layers[j], chan, c)
            j += 1
            trail.append((j, (c, chan)))
        if j == len(layers):  # the change reached the output one channel wide
            out = acts[j].copy()
            out[:, c : c + 1] = chan
            return trail[:-1] + [(j, out)]
        nxt = layers[j]
        delta = chan - acts[j][:, c : c + 1]  # (N, 1, ...) the change of input channel c
        if isinstance(nxt, Conv2d):
            a = acts[j + 1] + F.conv2d(delta, nxt.weight[:, c : c + 1], None, nxt.stride, nxt.padding)
        elif isinstance(nxt, Dense) and delta.ndim == 2:
            a = acts[j + 1] + delta * nxt.weight[:, c][None, :]  # (N, O): a rank-1 change of the output
        else:  # anything else: rebuild its full input and run it
            full = acts[j].copy()
            full[:, c : c + 1] = chan
            a = nxt(full)
        trail.append((j + 1, a))
        for k, layer_k in enumerate(layers[j + 1 :], start=j + 1):
            a = layer_k(a)
            trail.append((k + 1, a))
        return trail

    @staticmethod
    def _conv_window(conv, x, idx):
        """``x_pad[:, c, u + s i, v + s j]`` over output positions (i, j): what w[o, c, u, v] multiplies.

        Shape (N, 1, Ho, Wo)."""
        _, c, u, v = (int(t) for t in idx)
        ph, pw = conv.padding
        sh, sw = conv.stride
        xc = F.pad2d(x[:, c : c + 1], (ph, pw))  # (N, 1, H + 2ph, W + 2pw)
        ho = F.out_size(x.shape[2], conv.kernel_size[0], sh, ph)
        wo = F.out_size(x.shape[3], conv.kernel_size[1], sw, pw)
        return xc[:, :, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw]


def make_evaluator(evaluator, model, loss, chunk: int):
    """RSO's ``evaluator`` argument as an object: ``"plain"`` / None (:class:`CachedEvaluator`), ``"incremental"``
    (:class:`IncrementalEvaluator`), or any object meeting :class:`minirso.optim.evaluate.RSOEvaluator`."""
    if evaluator is None or evaluator == "plain":
        return CachedEvaluator(model, loss, chunk_size=chunk)
    if evaluator == "incremental":
        return IncrementalEvaluator(model, loss, chunk_size=chunk)
    if isinstance(evaluator, str):
        raise ValueError(f"evaluator must be 'plain', 'incremental' or an object, got {evaluator!r}")
    return evaluator
