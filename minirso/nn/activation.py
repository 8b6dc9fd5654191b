"""Parameter-free layers: ReLU, Tanh, Softmax, Identity, Flatten."""

from __future__ import annotations

from ..backend import get_array_module
from . import functional as F
from .layer import Layer

__all__ = ["ReLU", "Tanh", "Softmax", "Identity", "Flatten"]


class ReLU(Layer):
    """max(x, 0), elementwise."""

    def forward(self, x):
        return F.relu(self._check(x, None, "(N, ...)"))


class Tanh(Layer):
    """tanh(x), elementwise (the aMC paper's activation)."""

    def forward(self, x):
        x = self._check(x, None, "(N, ...)")
        return get_array_module(x).tanh(x)


class Softmax(Layer):
    """Softmax over the last axis; the aMC paper's Fig. 1 net ends in one (its loss is MSE on probabilities)."""

    def forward(self, x):
        return F.softmax(self._check(x, None, "(N, ..., classes)"))


class Identity(Layer):
    """Returns its input (a residual block's plain skip path)."""

    def forward(self, x):
        return self._check(x, None, "(N, ...)")


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def forward(self, x):
        x = self._check(x, None, "(N, ...)")
        return x.reshape(x.shape[0], -1)
