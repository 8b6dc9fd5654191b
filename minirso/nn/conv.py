"""2-D convolution (cross-correlation), NCHW."""

from __future__ import annotations

from ..backend import get_array_module
from ..params import ParamSpec
from . import functional as F
from .layer import Layer

__all__ = ["Conv2d"]


class Conv2d(Layer):
    """Input (N, in_channels, H, W) -> (N, out_channels, Ho, Wo), Ho = floor((H + 2p - k) / s) + 1.

    Weight (out_channels, in_channels, kh, kw), Kaiming fan-in ``in_channels * kh * kw``.

    Signal norm (aMC eq. 17): each output channel at each output position is
    one neuron evaluation whose inputs are the patch under the kernel (zero
    padding included), so q is the patch's sum of squares, averaged over the
    batch AND the output positions.  All channels see the same patches, so the
    value is shared by all output channels.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, name=None):
        super().__init__(name)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = F.pair(kernel_size), F.pair(stride), F.pair(padding)
        self.use_bias = bool(bias)
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"{self._label()}: kernel_size and stride must be >= 1 and padding >= 0")
        self.weight = None  # (O, C, kh, kw) view
        self.bias = None  # (O,) view or None

    def config(self):
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "bias": self.use_bias,
        }

    def param_specs(self):
        kh, kw = self.kernel_size
        fan_in = self.in_channels * kh * kw
        specs = [ParamSpec("weight", (self.out_channels, self.in_channels, kh, kw), "weight", fan_in, stat="in")]
        if self.use_bias:
            specs.append(ParamSpec("bias", (self.out_channels,), "bias", fan_in))
        return specs

    def forward(self, x):
        x = self._check(x, 4, f"(N, {self.in_channels}, H, W)", a1=self.in_channels)
        h, w = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if h < self.kernel_size[0] or w < self.kernel_size[1]:
            raise ValueError(
                f"{self._label()}: input {tuple(x.shape)} (padded {h}x{w}) is smaller than "
                f"the kernel {self.kernel_size}"
            )
        if self.recording:
            xp = get_array_module(x)
            q = F.patch_sq_sum(x, self.kernel_size, self.stride, self.padding)  # (N, Ho, Wo)
            self._record_shared("in", q.sum(dtype=xp.float64), self.out_channels, q.size)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
