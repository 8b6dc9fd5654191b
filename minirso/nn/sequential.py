"""The model: a sequence of layers over one flat parameter buffer.

``Sequential`` does four things a newcomer should look at in this order
(then comes inference: ``predict`` / ``predict_proba``):

1. **binding** (``__init__``): collect every layer's :class:`ParamSpec`,
   allocate ONE float32 buffer ``self.params``, and set each layer attribute
   (``conv.weight`` ...) to a reshaped view of its slice;
2. **partial forward** (``forward(x, start=k)``): run layers k.. from the
   *input* of layer k, the trick behind RSO's activation caching (RSO paper
   sec. 4.7): a trial of a weight in layer k never recomputes layers < k;
3. **activation cache** (``layer_inputs``): the input of layer k for a whole
   dataset, computed in chunks so memory stays bounded;
4. **signal norm** (``signal_stats`` / ``signal_norm_lambda``): the lambda_i of
   aMC eqs. (17)-(18) from statistics gathered during a forward pass.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy

from ..backend import Array, array_module, get_array_module, to_numpy, xp
from ..params import allocate
from . import functional as F
from . import init as _init
from .activation import Softmax
from .layer import Layer
from .norm import BatchNorm1d, BatchNorm2d

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from numpy.typing import DTypeLike

__all__ = ["Sequential"]


def _walk(layer, path):
    """Yield ``(path, layer)`` for ``layer`` and its sub-layers, depth first."""
    yield path, layer
    for child in layer.children():
        yield from _walk(child, f"{path}.{child.name}")


class Sequential:
    """``Sequential(layer, layer, ..., seed=0, init="kaiming")``: layers run in order.

    Attributes: ``layers`` (the list), ``params`` (1-D float32 buffer, every
    trainable tensor is a view into it), ``param_groups`` (one
    :class:`minirso.params.ParamGroup` per tensor, in buffer order), ``seed``
    and ``init`` (how ``params`` was initialised, see :mod:`minirso.nn.init`).
    Layers without a name get ``<type><index>``, e.g. ``dense0``.
    """

    def __init__(self, *layers: Layer | Sequence[Layer], seed: int = 0, init: str | tuple | list = "kaiming") -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a minirso Layer")
            if layer.name is None:
                layer.name = f"{type(layer).__name__.lower()}{i}"
        self.layers = list(layers)
        self._check_names()
        self.training = True
        self.seed, self.init = int(seed), _init.check_scheme(init)

        # 1. binding: one buffer, views onto layer attributes
        entries, owners = [], []
        for i, layer in enumerate(self.layers):
            for path, owner in _walk(layer, layer.name):
                for spec in owner.param_specs():
                    entries.append((i, f"{path}.{spec.name}", spec))
                    owners.append(owner)
        self.params, self.param_groups, views = allocate(entries, xp())
        self._bound = [(g, owner, spec) for g, owner, (_, _, spec) in zip(self.param_groups, owners, entries)]
        self._bind(views)
        _init.initialize(self.params, self.param_groups, self.init, self.seed)

    def _check_names(self):
        scopes = [("model", self.layers)] + [(f"block {p!r}", l.children()) for p, l, _ in self.named_layers()]
        for scope, layers in scopes:
            names = [layer.name for layer in layers]
            for n in names:
                if not isinstance(n, str) or not n or "." in n or "/" in n:
                    raise ValueError(f"layer name {n!r} in {scope}: names must be non-empty and contain no '.' or '/'")
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate layer names in {scope}: {dup}")

    def _bind(self, views):
        for (_, owner, spec), view in zip(self._bound, views):
            setattr(owner, spec.name, view)

    # ---- structure -----------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        return int(self.params.size)

    def named_layers(self) -> Iterator[tuple[str, Layer, int]]:
        """``(path, layer, top_index)`` for every layer and sub-layer, e.g. ``("res1.body0", Conv2d, 3)``."""
        for i, top in enumerate(self.layers):
            for path, layer in _walk(top, top.name):
                yield path, layer, i

    def buffers(self) -> dict:
        """Non-trainable state by name, e.g. ``{"bn1.running_mean": array, ...}`` (BatchNorm statistics)."""
        return {f"{p}.{b}": getattr(l, b) for p, l, _ in self.named_layers() for b in l.buffer_names}

    def architecture(self) -> dict:
        """JSON-able description: ``{"layers": [...], "seed", "init", "num_params"}``; see :meth:`from_architecture`."""
        init = self.init if isinstance(self.init, str) else list(self.init)
        return {
            "layers": [l.to_dict() for l in self.layers],
            "seed": self.seed,
            "init": init,
            "num_params": self.num_params,
        }

    @classmethod
    def from_architecture(cls, arch: dict) -> Sequential:
        """Rebuild a model (freshly initialised with the recorded seed) from :meth:`architecture` output."""
        model = cls(
            [Layer.from_dict(d) for d in arch["layers"]], seed=arch.get("seed", 0), init=arch.get("init", "kaiming")
        )
        if "num_params" in arch and model.num_params != arch["num_params"]:
            raise ValueError(
                f"architecture says {arch['num_params']} parameters, the rebuilt model has {model.num_params}"
            )
        return model

    def summary(self) -> str:
        """A table of parameter tensors: name, kind, shape, count, slice."""
        rows = [f"{'parameter':32s} {'kind':9s} {'shape':18s} {'count':>8s}  slice"]
        for g in self.param_groups:
            rows.append(f"{g.name:32s} {g.kind:9s} {str(g.shape):18s} {g.size:8d}  [{g.slice.start}:{g.slice.stop}]")
        rows.append(f"{'total':32s} {'':9s} {'':18s} {self.num_params:8d}")
        return "\n".join(rows)

    def __repr__(self):
        inner = "\n".join(f"  ({l.name}) {l!r}" for l in self.layers)
        return f"Sequential(\n{inner}\n)  # {self.num_params} parameters"

    # ---- mode and device -----------------------------------------------------------------------
    def train(self, mode: bool = True) -> Sequential:
        """Training mode: BatchNorm uses batch statistics (see :mod:`minirso.nn.norm`), so a row's output
        depends on the other rows of its batch.  A new model is in training mode (RSO and aMC train in
        it); :func:`minirso.checkpoint.load` returns one in eval mode."""
        self.training = mode
        for layer in self.layers:
            layer.train(mode)
        return self

    def eval(self) -> Sequential:
        """Evaluation mode: BatchNorm uses its running statistics; each row's output depends on that row only."""
        return self.train(False)

    def to(self, backend: str) -> Sequential:
        """Move parameters and buffers to ``"numpy"`` or ``"cupy"`` (views are re-bound); returns self."""
        target = array_module(backend)
        self.params = target.asarray(to_numpy(self.params))
        self._bind([self.params[g.slice].reshape(g.shape) for g in self.param_groups])
        for _, layer, _ in self.named_layers():
            for b in layer.buffer_names:
                setattr(layer, b, target.asarray(to_numpy(getattr(layer, b))))
        return self

    # ---- 2. forward ----------------------------------------------------------------------------
    def forward(self, x: Array, start: int = 0, stop: int | None = None) -> Array:
        """Run layers ``start .. stop-1`` on ``x``, which must be the INPUT of layer ``start``.

        ``forward(x)`` is the whole net; ``forward(a, start=k)`` continues from
        cached inputs ``a`` of layer k; ``forward(x, stop=k)`` returns the input of layer k.
        """
        n = len(self.layers)
        stop = n if stop is None else stop
        if not (0 <= start <= stop <= n):
            raise ValueError(f"forward: need 0 <= start <= stop <= {n}, got start={start}, stop={stop}")
        if get_array_module(x) is not get_array_module(self.params):
            raise ValueError(
                f"forward: input is a {type(x).__module__.split('.')[0]} array but the model's parameters are "
                f"{type(self.params).__module__.split('.')[0]}; convert with minirso.backend.asarray / to_numpy"
            )
        for layer in self.layers[start:stop]:
            x = layer(x)
        return x

    __call__ = forward

    # ---- 3. activation cache -------------------------------------------------------------------
    def layer_inputs(
        self, x: Array, layer: int, chunk_size: int = 2000, start: int = 0, dtype: DTypeLike = None
    ) -> Array:
        """The input activations of ``layers[layer]`` for every sample of ``x``, computed ``chunk_size`` at a time.

        ``x`` is the input of layer ``start`` (default: the network input).
        Peak memory: the result plus one chunk's activations.  In training mode
        BatchNorm normalises each chunk with that chunk's statistics, so cached
        values depend on the chunking; in eval mode (running statistics: how
        RSO caches, as the authors' code) they do not.  ``dtype`` (e.g.
        float16) stores the result in a smaller type.
        """
        if not (start <= layer <= len(self.layers)):
            raise ValueError(f"layer_inputs: layer must be in [{start}, {len(self.layers)}], got {layer}")
        if chunk_size < 1:
            raise ValueError(f"layer_inputs: chunk_size must be >= 1, got {chunk_size}")
        xp = get_array_module(self.params)
        n = x.shape[0]
        out = None
        for i in range(0, n, chunk_size):
            a = self.forward(x[i : i + chunk_size], start, layer)
            if out is None:
                out = xp.empty((n,) + a.shape[1:], dtype=dtype or a.dtype)  # (N, ...) the cache
            out[i : i + a.shape[0]] = a
        return out

    def reestimate_batchnorm(self, x: Array, chunk_size: int | None = None) -> None:
        """Set every BatchNorm's running statistics from the data ``x`` (RSO: no gradient step updates them).

        One training-mode pass: each BatchNorm normalises with batch statistics
        and accumulates the mean and (biased) variance of ALL its inputs.  With
        ``chunk_size=None`` the pass is one batch and this is exactly the
        authors' reset from one forward pass (they use the first 2,000 training
        images); smaller chunks bound memory and use per-chunk normalisation
        upstream.  The model's mode is restored afterwards.
        """
        bns = [l for _, l, _ in self.named_layers() if isinstance(l, (BatchNorm1d, BatchNorm2d))]
        if not bns:
            return
        was_training = self.training
        self.train()
        for bn in bns:
            bn.begin_estimate()
        try:
            step = chunk_size or x.shape[0]
            for i in range(0, x.shape[0], step):
                self.forward(x[i : i + step])
            for bn in bns:
                bn.end_estimate()
        finally:
            for bn in bns:
                bn.cancel_estimate()
            self.train(was_training)

    # ---- 4. signal norm ------------------------------------------------------------------------
    @contextlib.contextmanager
    def signal_stats(self) -> Iterator[Sequential]:
        """Inside this block, forward passes record signal-norm statistics (reset on entry).

        Any number of passes (chunks of a dataset) may run inside; the average
        is over all of them.  Then call :meth:`signal_norm_lambda`.
        """
        layers = [l for _, l, _ in self.named_layers()]
        for layer in layers:
            layer.reset_stats()
            layer.recording = True
        try:
            yield self
        finally:
            for layer in layers:
                layer.recording = False

    def signal_norm_lambda(self) -> Array:
        """lambda_i for every parameter, one float32 array aligned with ``params`` (aMC eqs. 17-18).

        Weights feeding neuron j: ``lambda = (<sum_{i->j} S_i^2>_data)^(-1/2)``,
        and 0 where that average is exactly zero (every input to the neuron is
        zero: the paper's regularisation).  Biases and normalisation shifts: 1.
        """
        xp = get_array_module(self.params)
        lam = xp.ones_like(self.params)  # (P,)
        for g, owner, spec in self._bound:
            if spec.stat is None:
                continue
            q = owner.mean_stat(spec.stat)  # (neurons...,) float64
            safe = xp.where(q > 0, q, 1.0)
            lam_neuron = xp.where(q > 0, 1.0 / xp.sqrt(safe), 0.0)
            trailing = (1,) * (len(g.shape) - q.ndim)
            lam[g.slice].reshape(g.shape)[...] = lam_neuron.reshape(q.shape + trailing)
        return lam

    # ---- 5. inference --------------------------------------------------------------------------
    def predict(self, x: Array, batch_size: int = 2000) -> Array:
        """Class indices: the arg-max over the last axis of the output, one per row of ``x``.

        Runs in eval mode ``batch_size`` rows at a time, so a row's class does not depend on the other
        rows or on ``batch_size`` (only a near-tie can: BLAS may round a row's scores in the last bit
        differently in a batch of another size); the model's mode, its
        parameters, running statistics and signal-norm statistics are left as they were.  ``x`` may
        live on either backend; the result is an int64 array of ``x``'s backend, shape ``x.shape[:1]``
        (more output axes before the class axis stay: a (N, T, C) output gives (N, T)).
        """
        out = self._inference(x, batch_size, lambda y: y.argmax(axis=-1))
        return out.astype(numpy.int64, copy=False)

    def predict_proba(self, x: Array, batch_size: int = 2000) -> Array:
        """Class probabilities: the softmax over the last axis of the output, per row of ``x``.

        A model that ends in a :class:`~minirso.nn.Softmax` layer already outputs probabilities:
        they are returned as they are (softmax is not applied twice).  Same conditions as
        :meth:`predict` (eval mode, chunked, no state change, ``x``'s backend); float32.
        """
        ends_in_softmax = isinstance(self.layers[-1], Softmax)
        return self._inference(x, batch_size, (lambda y: y) if ends_in_softmax else F.softmax)

    def _inference(self, x, batch_size, finish):
        """``finish(forward(chunk))`` for every chunk of ``x`` in eval mode, concatenated, on ``x``'s backend."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"predict: batch_size must be an int >= 1, got {batch_size!r}")
        if not hasattr(x, "shape"):
            x = numpy.asarray(x)
        model_xp, x_xp = get_array_module(self.params), get_array_module(x)
        n, out = int(x.shape[0]), None
        with self._inference_mode():
            for i in range(0, max(n, 1), batch_size):  # (one empty chunk when x has no rows)
                y = self.forward(_on(model_xp, x[i : i + batch_size]))
                if y.ndim < 2:
                    raise ValueError(
                        f"predict: the model's output has shape {tuple(y.shape)}; it needs a class axis "
                        "(N, ..., classes)"
                    )
                y = finish(y)
                if out is None:
                    out = model_xp.empty((n,) + y.shape[1:], dtype=y.dtype)  # (N, ...) on the model's backend
                out[i : i + y.shape[0]] = y
        return _on(x_xp, out)  # one transfer at the end, when x lives elsewhere

    @contextlib.contextmanager
    def _inference_mode(self):
        """Eval mode and no signal-norm recording inside; every layer's flags exactly as before afterwards
        (also a layer switched on its own, which ``train(was_training)`` would overwrite)."""
        layers = [l for _, l, _ in self.named_layers()]
        before = self.training, [(l.training, l.recording) for l in layers]
        for layer in layers:
            layer.training, layer.recording = False, False
        self.training = False
        try:
            yield
        finally:
            self.training = before[0]
            for layer, (training, recording) in zip(layers, before[1]):
                layer.training, layer.recording = training, recording


def _on(module, a):
    """``a`` as an array of ``module`` (numpy or cupy): an explicit host<->device copy only when needed."""
    if get_array_module(a) is module:
        return a
    return to_numpy(a) if module is numpy else module.asarray(a)
