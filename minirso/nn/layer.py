"""The base class every layer shares: declared parameters, train/eval mode, input checks, signal-norm bookkeeping.

A layer is forward-only (no autograd anywhere in minirso).  It never owns its
trainable arrays: it *declares* them with :meth:`Layer.param_specs`, and the
model (:class:`minirso.nn.Sequential`) binds views of its flat buffer onto the
layer's attributes (``self.weight`` etc.).

Signal norm (aMC paper, sec. III B): while ``recording`` is on, a layer with
weights adds, for each of its neurons j, the data sum of

    q_j = sum_{i -> j} S_i^2                    (the fan-in sum in eq. 17)

and the number of evaluations, so that after any number of (chunked) forward
passes ``lambda_j = (sum q_j / count)^(-1/2)`` is eq. (17) exactly.

Layer types: every subclass registers itself in :data:`LAYER_TYPES` under its qualified name,
``module.QualName`` (:func:`type_name`, e.g. ``"minirso.nn.dense.Dense"``), which is the ``"type"`` that
:meth:`Layer.to_dict` writes into a model's architecture (and so into checkpoints).  Qualified, so that a
user's own ``class Dense(Layer)`` registers beside minirso's ``Dense`` instead of replacing it when a
checkpoint is rebuilt.  Bare names such as ``"Dense"``, which checkpoints written by earlier minirso
versions hold, still load as minirso's layers (:func:`layer_type`).
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module

__all__ = ["Layer", "LAYER_TYPES", "type_name", "layer_type"]

_FLOAT_INPUTS = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float16))

LAYER_TYPES = {}  # "module.QualName" -> class, filled by Layer.__init_subclass__; rebuilds layers from their dicts


def type_name(cls) -> str:
    """The registry key of a layer class, its qualified name: ``"minirso.nn.dense.Dense"``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def layer_type(name: str) -> type:
    """The layer class registered under ``name`` (see :func:`type_name`); ValueError if there is none.

    Two kinds of names that are not keys still find minirso's own layers, so that saved architectures
    keep loading: a bare class name such as ``"Dense"`` (what earlier minirso versions wrote) means
    minirso's layer of that name, or else the one registered layer of that name from any module; and
    ``"minirso.<module>.Dense"`` for a module that no longer holds it means minirso's ``Dense``, wherever
    it lives now.  A user's qualified name is never read as one of minirso's layers.
    """
    if name in LAYER_TYPES:
        return LAYER_TYPES[name]
    module, _, bare = str(name).rpartition(".")
    same_name = [cls for cls in LAYER_TYPES.values() if cls.__name__ == bare]
    ours = [cls for cls in same_name if type_name(cls).startswith("minirso.")]
    if not module:
        candidates = ours or same_name
    elif module == "minirso" or module.startswith("minirso."):
        candidates = ours
    else:
        candidates = []
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise ValueError(
            f"layer type {name!r} is ambiguous: {sorted(type_name(c) for c in candidates)} all have "
            "that class name; write the qualified name"
        )
    raise ValueError(f"unknown layer type {name!r}; known: {sorted(LAYER_TYPES)}")


class Layer:
    """Base class.  Subclasses implement :meth:`forward` and, if trainable, :meth:`param_specs`."""

    buffer_names = ()  # non-trainable arrays kept as attributes (BatchNorm running statistics)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            LAYER_TYPES[type_name(cls)] = cls  # (a class defined again under the same name replaces its old self)

    def __init__(self, name: str | None = None):
        self.name = name  # the model fills in a default; it prefixes this layer's parameter names
        self.training = True
        self.recording = False  # signal-norm statistics on/off (see module docstring)
        self._stat_sum = {}  # stat key -> float64 array of per-neuron sums of q_j
        self._stat_count = {}  # stat key -> number of evaluations summed

    # ---- structure ---------------------------------------------------------------------------
    def param_specs(self):
        """The trainable tensors this layer needs, as :class:`minirso.params.ParamSpec` (none by default)."""
        return []

    def children(self):
        """Sub-layers (residual blocks have some); their parameters are named under this layer."""
        return []

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the layer (used for architecture JSON)."""
        return {}

    def to_dict(self) -> dict:
        """``{"type", "name", "config"}``: JSON-able, and :meth:`from_dict` rebuilds the layer."""
        return {"type": type_name(type(self)), "name": self.name, "config": self.config()}

    @staticmethod
    def from_dict(d: dict) -> Layer:
        """Rebuild a layer from :meth:`to_dict` output (parameters are bound later by the model)."""
        cls = layer_type(d.get("type"))
        return cls._from_config(dict(d.get("config", {})), d.get("name"))

    @classmethod
    def _from_config(cls, config: dict, name):
        return cls(**config, name=name)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # ---- mode --------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # ---- forward -----------------------------------------------------------------------------
    def forward(self, x):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def _check(self, x, ndim, expect: str, **sizes):
        """Validate an input; return it as float32.

        ``ndim``: the required number of axes (an int, a tuple of allowed ones, or None for any);
        ``expect`` describes the expected shape for the message, e.g. ``"(N, 16, H, W)"``;
        ``sizes`` maps axis numbers (as ``a1=16``: axis 1 must have size 16) to required sizes.
        """
        if not (isinstance(x, numpy.ndarray) or type(x).__module__.startswith("cupy")):
            raise ValueError(
                f"{self._label()}: expected a NumPy or CuPy array of shape {expect}, "
                f"got {type(x).__module__}.{type(x).__name__}"
            )
        shape = x.shape
        ndims = (ndim,) if isinstance(ndim, int) else ndim
        bad_ndim = ndims is not None and len(shape) not in ndims
        if bad_ndim or len(shape) == 0 or any(shape[int(k[1:])] != v for k, v in sizes.items()):
            raise ValueError(f"{self._label()}: expected input of shape {expect}, got {tuple(shape)}")
        if numpy.dtype(x.dtype) not in _FLOAT_INPUTS:
            raise ValueError(
                f"{self._label()}: expected a float32 (or float16) input of shape {expect}, got dtype {x.dtype}"
            )
        return x.astype(numpy.float32, copy=False)

    def _label(self):
        return f"{type(self).__name__} {self.name!r}" if self.name else type(self).__name__

    # ---- signal-norm statistics --------------------------------------------------------------
    def _record(self, key: str, q_sum, count: int):
        """Add per-neuron sums of q_j (see module docstring) over ``count`` evaluations."""
        xp = get_array_module(q_sum)
        q_sum = q_sum.astype(xp.float64)
        old = self._stat_sum.get(key)
        self._stat_sum[key] = q_sum if old is None else old + q_sum
        self._stat_count[key] = self._stat_count.get(key, 0) + int(count)

    def _record_shared(self, key: str, total, neurons: int, count: int):
        """:meth:`_record` for layers whose neurons all see the same inputs (Dense, Conv2d, RNN):
        ``total`` (a 0-d device array, no host sync) is the per-neuron sum for every one of ``neurons``."""
        xp = get_array_module(total)
        self._record(key, xp.zeros(neurons, dtype=xp.float64) + total, count)

    def reset_stats(self):
        self._stat_sum, self._stat_count = {}, {}
        for child in self.children():
            child.reset_stats()

    def mean_stat(self, key: str):
        """Data average of q_j per neuron for stat ``key`` (the bracket of aMC eq. 17), float64."""
        if key not in self._stat_sum or self._stat_count[key] == 0:
            raise RuntimeError(
                f"{self._label()}: no signal-norm statistics recorded; run a forward pass over the data "
                "through the whole model inside `with model.signal_stats():` first"
            )
        return self._stat_sum[key] / self._stat_count[key]
