"""Normalisation layers: BatchNorm1d / BatchNorm2d and LayerNorm.

BatchNorm and gradient-free training.  With backpropagation, running
statistics are updated as a side effect of training steps.  RSO and aMC run
thousands of *trial* forward passes whose candidates are mostly rejected, so
updating running statistics there would record networks that never existed.
Therefore here:

* training mode normalises with the statistics of the current batch and
  changes nothing (the authors' RSO code does the same);
* eval mode normalises with ``running_mean`` / ``running_var``;
* ``model.reestimate_batchnorm(x)`` sets the running statistics from data
  (the authors reset them from one training-mode pass over 2,000 training
  images before each evaluation).  The running variance is the biased
  (population) variance of that data.

The running statistics are not trainable: they live outside the flat
parameter buffer (``buffer_names``).
"""

from __future__ import annotations

import numpy

from .. import backend
from ..backend import get_array_module
from ..params import ParamSpec
from . import functional as F
from .layer import Layer

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Layer):
    """Shared BatchNorm code; subclasses fix the accepted input ranks."""

    _ndims = ()
    _expect = ""
    buffer_names = ("running_mean", "running_var")

    def __init__(self, num_features: int, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        self.num_features, self.eps = int(num_features), float(eps)
        xp = backend.xp()
        self.running_mean = xp.zeros(self.num_features, dtype=xp.float32)  # (C,)
        self.running_var = xp.ones(self.num_features, dtype=xp.float32)  # (C,)
        self.gamma = None  # (C,) views into the flat buffer, bound by the model
        self.beta = None
        self._estimate = None  # [sum x, sum x^2, count] (float64) while re-estimating running stats

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps}

    def param_specs(self):
        c = (self.num_features,)
        # gamma multiplies one input (xhat_c): a weight of fan-in 1 for signal norm; beta is a bias.
        return [ParamSpec("gamma", c, "bn_scale", 1, stat="xhat"), ParamSpec("beta", c, "bn_shift", 1)]

    def forward(self, x):
        c = self.num_features
        x = self._check(x, self._ndims, self._expect.format(c=c), a1=c)
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))  # everything but the channel axis
        count = x.size // c
        if self.training:
            y, mean, var = F.batch_norm_train(x, self.gamma, self.beta, self.eps)  # (C,) batch statistics
            if self._estimate is not None:
                self._estimate[0] = self._estimate[0] + x.sum(axis=axes, dtype=xp.float64)
                self._estimate[1] = self._estimate[1] + (x.astype(xp.float64) ** 2).sum(axis=axes)
                self._estimate[2] += count
            if self.recording:
                # sum of xhat^2 over a channel = sum (x - mean)^2 / (var + eps) = count var / (var + eps):
                # exact, so the statistic needs no pass over xhat.
                var64 = var.astype(xp.float64)
                self._record("xhat", count * var64 / (var64 + self.eps), count)
            return y
        y, xhat = F.batch_norm(x, self.running_mean, self.running_var, self.gamma, self.beta, self.eps)
        if self.recording:
            self._record("xhat", (xhat * xhat).sum(axis=axes, dtype=xp.float64), count)
        return y

    def begin_estimate(self):
        """Start accumulating the statistics of every training-mode input (see module docstring)."""
        self._estimate = [0.0, 0.0, 0]

    def cancel_estimate(self):
        """Stop accumulating without setting the running statistics (a re-estimate that failed)."""
        self._estimate = None

    def end_estimate(self):
        """Set running_mean / running_var to the mean / biased variance of all inputs seen since begin_estimate."""
        s, ss, n = self._estimate
        self._estimate = None
        if n == 0:
            raise RuntimeError(f"{self._label()}: no data passed through this layer while re-estimating")
        mean = s / n
        self.running_mean[...] = mean
        self.running_var[...] = get_array_module(mean).maximum(ss / n - mean * mean, 0.0)


class BatchNorm2d(_BatchNorm):
    """Per-channel batch normalisation of images (N, C, H, W) (Ioffe & Szegedy 2015)."""

    _ndims = (4,)
    _expect = "(N, {c}, H, W)"


class BatchNorm1d(_BatchNorm):
    """Per-feature batch normalisation of (N, C) or (N, C, L) inputs."""

    _ndims = (2, 3)
    _expect = "(N, {c}) or (N, {c}, L)"


class LayerNorm(Layer):
    """Normalise each sample over its trailing ``normalized_shape`` axes, then scale and shift (Ba et al. 2016).

    Signal norm: each gamma element multiplies one input, xhat, so q = xhat^2
    (averaged over samples and any leading axes).
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, name: str | None = None):
        super().__init__(name)
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, numpy.integer)) else normalized_shape
        self.normalized_shape, self.eps = tuple(int(s) for s in shape), float(eps)
        self.gamma = None
        self.beta = None

    def config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps}

    def param_specs(self):
        s = self.normalized_shape
        return [ParamSpec("gamma", s, "ln_scale", 1, stat="xhat"), ParamSpec("beta", s, "ln_shift", 1)]

    def forward(self, x):
        d = len(self.normalized_shape)
        expect = "(N, ..., " + ", ".join(map(str, self.normalized_shape)) + ")"
        x = self._check(x, None, expect)
        if x.ndim < d + 1 or tuple(x.shape[-d:]) != self.normalized_shape:
            raise ValueError(f"{self._label()}: expected input of shape {expect}, got {tuple(x.shape)}")
        y, xhat = F.layer_norm(x, self.gamma, self.beta, self.eps, return_xhat=self.recording)
        if self.recording:
            xp = get_array_module(x)
            lead = tuple(range(x.ndim - d))
            self._record("xhat", (xhat * xhat).sum(axis=lead, dtype=xp.float64), int(numpy.prod(x.shape[:-d])))
        return y
