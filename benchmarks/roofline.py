"""How close to the hardware: FLOPs and bytes per step from the shapes, and the machine's peaks.

The counts are analytic (from the layer shapes, not from counters) and follow ONE simple model, so
that numbers for different implementations of the same step are comparable:

* a layer reads its input once and writes its output once, in float32 (4 bytes), i.e. the traffic of
  an unfused layer-by-layer implementation that keeps nothing in cache between layers;
  BatchNorm and LayerNorm read their input twice (statistics, then normalisation);
* FLOPs: conv ``2 N O Ho Wo C kh kw``; dense ``2 N O I`` (+ ``N O`` for a bias);
  BatchNorm / LayerNorm 7 per element (sum, sum of squares; subtract, scale, scale-and-shift);
  ReLU, tanh, pooling and global pooling 1 per input element; softmax 3 per element;
  losses 3 per logit.  Parameter reads are added as bytes (4 per parameter).

The fraction of peak of a measured time t is ``max(flops / t / peak_flops, bytes / t / peak_bw)``:
whichever resource the step would exhaust first, and which it is (``"F"`` or ``"B"``).

Peaks: on a GPU the published numbers of the device (table below, FP32 without tensor cores),
and also measured ones (a large CuPy float32 matmul; a device-to-device copy).  On a CPU
they are measured: a large NumPy float32 matmul for FLOP/s and a large array copy for bytes/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy

from minirso import nn
from minirso.backend import get_array_module

# name fragment -> (bytes/s, FP32 FLOP/s without tensor cores), from the vendors' data sheets
PUBLISHED_GPU_PEAKS = {
    "H100 SXM": (3.35e12, 67e12),
    "H100 80GB HBM3": (3.35e12, 67e12),  # how the SXM part reports itself
    "H100 PCIe": (2.0e12, 51e12),
    "H100 NVL": (3.9e12, 60e12),
    "H200": (4.8e12, 67e12),
    "A100-SXM4-80GB": (2.039e12, 19.5e12),
    "A100-SXM4-40GB": (1.555e12, 19.5e12),
    "A100-PCIE": (1.555e12, 19.5e12),
}


@dataclass(frozen=True)
class Work:
    """FLOPs and bytes of a piece of work; add them, scale them by a count."""

    flops: float = 0.0
    bytes: float = 0.0

    def __add__(self, other):
        return Work(self.flops + other.flops, self.bytes + other.bytes)

    def __mul__(self, k):
        return Work(self.flops * k, self.bytes * k)

    __rmul__ = __mul__


F32 = 4  # bytes


def fraction(work: Work, seconds: float, peaks: dict) -> dict | None:
    """``{"flop", "byte", "bound", "value"}``: the share of the peaks this time reaches (None without a time)."""
    if work is None or not seconds or seconds != seconds:
        return None
    f = work.flops / seconds / peaks["flops"]
    b = work.bytes / seconds / peaks["bytes"]
    return {"flop": f, "byte": b, "bound": "F" if f >= b else "B", "value": max(f, b)}


# ---- per-layer counts ---------------------------------------------------------------------------
def layer_work(layer, in_shape, out_shape) -> Work:
    """FLOPs and bytes of one minirso layer on an input of ``in_shape`` giving ``out_shape`` (batch included)."""
    n_in, n_out = float(numpy.prod(in_shape)), float(numpy.prod(out_shape))
    params = sum(float(numpy.prod(s.shape)) for s in layer.param_specs())
    traffic = F32 * (n_in + n_out + params)
    if isinstance(layer, nn.Conv2d):
        kh, kw = layer.kernel_size
        return Work(2.0 * n_out * layer.in_channels * kh * kw, traffic)
    if isinstance(layer, nn.Dense):
        flops = 2.0 * n_out * in_shape[-1] + (n_out if getattr(layer, "bias", None) is not None else 0.0)
        return Work(flops, traffic)
    if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
        return Work(7.0 * n_in, traffic + F32 * n_in)
    if isinstance(layer, nn.RNN):
        return rnn_layer_work(in_shape[0], in_shape[1], layer.input_size, layer.hidden_size)
    if isinstance(layer, nn.Softmax):
        return Work(3.0 * n_in, traffic)
    return Work(n_in, traffic)  # ReLU, Tanh, pooling, global pooling, Identity


def rnn_layer_work(n, t_len, i, h) -> Work:
    """One tanh RNN layer over a sequence: per step ``h = tanh([x_t, h] W^T + b)``.

    FLOPs ``T (2 N H (I + H) + 2 N H)`` (product, bias, tanh).  Bytes per step: read ``[x_t, h]``
    (N (I + H)), the weights ((I + H) H + H), write h (N H): what a loop of one product per step
    moves when nothing stays in cache between steps.
    """
    flops = t_len * (2.0 * n * h * (i + h) + 2.0 * n * h)
    per_step = F32 * (n * (i + h) + (i + h) * h + h + n * h)
    return Work(flops, t_len * per_step)


def shapes(model, x_shape, start: int = 0):
    """Input shape of every layer from ``start`` on and the output shape: a list of len(layers) - start + 1.

    Found by running the model on ONE sample (cheap); the batch axis is then replaced by the caller.
    """
    xp = get_array_module(model.params)
    a = xp.zeros((1,) + tuple(x_shape[1:]), dtype=xp.float32)
    out = [tuple(a.shape)]
    was = model.training
    model.train()
    for layer in model.layers[start:]:
        a = layer(a)
        out.append(tuple(a.shape))
    model.train(was)
    return out


def forward_work(model, x_shape, start: int = 0, stop: int | None = None, loss_per_logit: float = 3.0) -> Work:
    """Work of ``model.forward(x, start)`` on a batch of shape ``x_shape`` (the input of layer ``start``),
    plus the loss when the forward reaches the output."""
    n = x_shape[0]
    sh = shapes(model, x_shape, start)
    stop = len(model.layers) if stop is None else stop
    total = Work()
    for k, layer in enumerate(model.layers[start:stop]):
        total = total + layer_work(layer, (n,) + sh[k][1:], (n,) + sh[k + 1][1:])
    if stop == len(model.layers):
        logits = n * float(numpy.prod(sh[-1][1:]))
        total = total + Work(loss_per_logit * logits, F32 * logits)
    return total


# ---- peaks --------------------------------------------------------------------------------------
def _best_time(fn, sync, repeats):
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_peaks(xp, sync, quick: bool) -> dict:
    """Measured float32 matmul FLOP/s and copy bytes/s (read + write) on the module ``xp``'s device.

    Best of a few repeats (the peak, not the typical): an (n x n) @ (n x n) product and a copy of an
    array of ``m`` floats, after one warm-up call each.
    """
    is_gpu = xp is not numpy
    n = 8192 if is_gpu else 2048
    m = (1 << 28) if is_gpu else ((1 << 24) if quick else (1 << 26))  # 1 GiB / 64 MiB / 256 MiB of float32
    a = xp.ones((n, n), dtype=xp.float32)
    b = xp.ones((n, n), dtype=xp.float32)
    c = xp.empty((n, n), dtype=xp.float32)
    xp.matmul(a, b, out=c)
    t_mm = _best_time(lambda: xp.matmul(a, b, out=c), sync, 3 if quick else 5)
    src = xp.ones(m, dtype=xp.float32)
    dst = xp.empty_like(src)
    xp.copyto(dst, src)
    t_cp = _best_time(lambda: xp.copyto(dst, src), sync, 3 if quick else 5)
    return {"flops": 2.0 * n**3 / t_mm, "bytes": 2.0 * F32 * m / t_cp, "matmul_n": n, "copy_floats": m}


def published_gpu_peaks(name: str | None):
    """``(bytes/s, FLOP/s)`` of a known GPU name, else None."""
    if not name:
        return None
    for key, val in PUBLISHED_GPU_PEAKS.items():
        if all(part in name for part in key.split()):
            return val
    return None


def peaks(ctx, gpu_name: str | None) -> dict:
    """The peaks fractions are computed against, with where they came from.

    GPU: the published data-sheet numbers when the device is in the table (else the measured ones);
    CPU: the measured ones.  Both sets are returned for the report.
    """
    from common import synchronize

    measured = measure_peaks(ctx.xp, lambda: synchronize(ctx), ctx.quick)
    published = published_gpu_peaks(gpu_name) if ctx.gpu else None
    if published is not None:
        use = {"bytes": published[0], "flops": published[1], "source": f"published ({gpu_name})"}
    else:
        use = {"bytes": measured["bytes"], "flops": measured["flops"], "source": "measured"}
    return {
        "used": use,
        "measured": measured,
        "published": None if published is None else {"bytes": published[0], "flops": published[1]},
    }
