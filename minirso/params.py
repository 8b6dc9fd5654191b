"""One flat parameter buffer, and the table that says which slice of it is which tensor.

A model owns ONE contiguous 1-D float32 array ``model.params``.  Every trainable
tensor of every layer (``layer.weight``, ``layer.bias``, BatchNorm ``gamma`` /
``beta``, RNN matrices) is a reshaped *view* into it.  So an optimizer that
writes ``params[k] += delta`` changes the network's output with no copying, an
aMC proposal is one fused operation over one array, and a checkpoint is one
array plus this table.

Rule that keeps the views valid: write INTO a view (``layer.weight[...] = w``),
never rebind it (``layer.weight = w`` would detach the layer from the buffer).

Layers declare what they need with :class:`ParamSpec`; the model allocates the
buffer and publishes one :class:`ParamGroup` per tensor in ``model.param_groups``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy

__all__ = ["KINDS", "ParamSpec", "ParamGroup", "allocate"]

# What a tensor is; optimizers choose step sizes and order from this.
KINDS = (
    "weight",  # multiplies an input: Dense / Conv2d kernels, RNN input and recurrent matrices
    "bias",  # added to a neuron's input
    "bn_scale",  # BatchNorm gamma
    "bn_shift",  # BatchNorm beta
    "ln_scale",  # LayerNorm gamma
    "ln_shift",  # LayerNorm beta
)


@dataclass(frozen=True)
class ParamSpec:
    """A layer's declaration of one trainable tensor.

    ``fan_in``: the number of inputs that feed ONE output neuron through this
    tensor's neuron (the ``N_j`` of the aMC paper, eq. 11, and the ``fan_in`` of
    Kaiming initialisation).  For a recurrent layer the input and recurrent
    matrices feed the same neurons, so both report ``input_size + hidden_size``.

    ``stat``: the key of the layer's signal-norm statistic that gives this
    tensor's per-neuron scale (aMC eq. 17), or ``None`` for tensors with
    lambda = 1 (biases and shifts, eq. 18).  Tensors feeding the same neurons
    share a key.  Neurons run along the leading axes of the tensor.
    """

    name: str
    shape: tuple
    kind: str
    fan_in: int
    stat: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"ParamSpec {self.name!r}: unknown kind {self.kind!r}, expected one of {KINDS}")
        if not all(isinstance(s, (int, numpy.integer)) and s > 0 for s in self.shape):
            raise ValueError(f"ParamSpec {self.name!r}: shape must be positive integers, got {self.shape}")


@dataclass(frozen=True)
class ParamGroup:
    """One tensor's place in the flat buffer.

    Attributes: ``name`` (dotted path, e.g. ``"conv1.weight"``), ``layer``
    (index into ``model.layers`` of the top-level layer that owns it: the
    activation-cache point), ``shape``, ``slice`` (into ``model.params``),
    ``kind`` (see :data:`KINDS`), ``fan_in`` (see :class:`ParamSpec`).
    """

    name: str
    layer: int
    shape: tuple
    slice: slice
    kind: str
    fan_in: int

    @property
    def size(self) -> int:
        return self.slice.stop - self.slice.start


def allocate(entries, xp):
    """Allocate the flat buffer for ``entries`` and cut it into views.

    ``entries``: sequence of ``(layer_index, full_name, spec)``.
    Returns ``(buffer, groups, views)``: the 1-D float32 buffer (zeros), one
    :class:`ParamGroup` and one reshaped view per entry, in entry order.
    """
    sizes = [int(numpy.prod(spec.shape)) for _, _, spec in entries]
    buffer = xp.zeros(sum(sizes), dtype=xp.float32)  # (P,)
    groups, views, start = [], [], 0
    for (layer_index, name, spec), size in zip(entries, sizes):
        sl = slice(start, start + size)
        groups.append(ParamGroup(name, layer_index, tuple(int(s) for s in spec.shape), sl, spec.kind, int(spec.fan_in)))
        views.append(buffer[sl].reshape(spec.shape))  # a view: shares memory with buffer
        start += size
    return buffer, groups, views
