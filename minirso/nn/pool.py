"""Pooling layers (no parameters): AvgPool2d, MaxPool2d, GlobalAvgPool2d, GlobalMaxPool2d."""

from __future__ import annotations

from . import functional as F
from .layer import Layer

__all__ = ["AvgPool2d", "MaxPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d"]


class _Pool2d(Layer):
    _fn = None

    def __init__(self, kernel_size, stride=None, padding=0, name=None):
        super().__init__(name)
        self.kernel_size = F.pair(kernel_size)
        self.stride = F.pair(stride) if stride is not None else self.kernel_size
        self.padding = F.pair(padding)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{self._label()}: kernel_size and stride must be >= 1 and padding >= 0")
        if self.padding[0] * 2 > self.kernel_size[0] or self.padding[1] * 2 > self.kernel_size[1]:
            raise ValueError(
                f"{self._label()}: padding {self.padding} must be at most half the kernel {self.kernel_size}"
            )

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}

    def forward(self, x):
        x = self._check(x, 4, "(N, C, H, W)")
        h, w = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if h < self.kernel_size[0] or w < self.kernel_size[1]:
            raise ValueError(f"{self._label()}: input {tuple(x.shape)} is smaller than the window {self.kernel_size}")
        return type(self)._fn(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Window average (zero padding counted, as PyTorch's default); stride defaults to the kernel size."""

    _fn = staticmethod(F.avg_pool2d)


class MaxPool2d(_Pool2d):
    """Window maximum; stride defaults to the kernel size."""

    _fn = staticmethod(F.max_pool2d)


class GlobalAvgPool2d(Layer):
    """Mean over all spatial positions: (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        x = self._check(x, 4, "(N, C, H, W)")
        return x.mean(axis=(2, 3))


class GlobalMaxPool2d(Layer):
    """Maximum over all spatial positions: (N, C, H, W) -> (N, C).

    The RSO authors' global pooling: MXNet's ``nd.Pooling(global_pool=True)`` defaults to
    ``pool_type="max"``.  Channel-local, like every pooling here: output channel c reads input channel c only.
    """

    def forward(self, x):
        x = self._check(x, 4, "(N, C, H, W)")
        return x.max(axis=(2, 3))
