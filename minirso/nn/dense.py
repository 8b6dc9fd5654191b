"""Fully connected layer."""

from __future__ import annotations

from ..backend import get_array_module
from ..params import ParamSpec
from . import functional as F
from .layer import Layer

__all__ = ["Dense"]


class Dense(Layer):
    """``y = x W^T + b``: input (N, in_features) -> (N, out_features); ``bias=False`` drops b.

    Signal norm (aMC eq. 17): every output neuron j sees the same inputs, so
    ``q_j = sum_i x_i^2`` per sample, one value shared by all rows of W.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, name: str | None = None):
        super().__init__(name)
        self.in_features, self.out_features, self.use_bias = int(in_features), int(out_features), bool(bias)
        self.weight = None  # (O, I) view into the model's flat buffer, bound by the model
        self.bias = None  # (O,) view, or None

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.use_bias}

    def param_specs(self):
        specs = [ParamSpec("weight", (self.out_features, self.in_features), "weight", self.in_features, stat="in")]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.out_features,), "bias", self.in_features))
        return specs

    def forward(self, x):
        x = self._check(x, 2, f"(N, {self.in_features})", a1=self.in_features)
        if self.recording:
            xp = get_array_module(x)
            # sum over samples of q_j, the same for every j: each row's sum of squares in float32 (784 terms),
            # the N row sums in float64.  8x faster on a CPU than squaring into a temporary and summing
            # everything in float64, and as accurate for the lambda it feeds (eq. 18).
            total = xp.einsum("ij,ij->i", x, x).sum(dtype=xp.float64)
            self._record_shared("in", total, self.out_features, x.shape[0])
        return F.dense(x, self.weight, self.bias)
