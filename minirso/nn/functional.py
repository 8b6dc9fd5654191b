"""Layer math, written once against the array module of its input (NumPy or CuPy).

Pure functions: arrays in, arrays out, no state.  Layers (the classes in the
other files of this package) validate inputs, hold parameters and call these.
Shapes: batch first; images NCHW; sequences (N, T, features).
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module

__all__ = [
    "pair",
    "out_size",
    "pad2d",
    "dense",
    "conv2d",
    "pool_taps",
    "avg_pool2d",
    "max_pool2d",
    "patch_sq_sum",
    "batch_norm",
    "layer_norm",
    "relu",
    "sigmoid",
    "softmax",
    "log_softmax",
]


def pair(v):
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``."""
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a window sweep: floor((size + 2 padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad2d(x, padding, value=0.0):
    """Pad the last two axes of ``x`` (N, C, H, W) by ``padding = (ph, pw)`` on each side."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)  # (N, C, H+2ph, W+2pw)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def dense(x, weight, bias=None):
    """``y = x W^T + b``: x (N, I), weight (O, I), bias (O,) -> (N, O)."""
    y = x @ weight.T  # (N, O)
    if bias is not None:
        y += bias  # in place: one (N, O) temporary fewer
    return y


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation (what deep-learning libraries call convolution).

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) -> (N, O, Ho, Wo) with
    ``y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] x_pad[n, c, s i + u, s j + v]``.

    Two ways to compute the same sum, chosen by the size of a patch C kh kw
    and the number of outputs O:

    * small patches (C kh kw <= 36, e.g. the first layer's 1 x 3 x 3, or RSO's
      single-input-channel incremental updates) feeding several outputs: copy
      the patches into a (N, C kh kw, Ho Wo) array (im2col) and do ONE matrix
      product per sample; the copy is small because C is;
    * otherwise (larger patches, or one output): no im2col copy.  For each
      tap (u, v) one matrix product of the tap's (O, C) slice with the padded
      input viewed as (N, C, Hp*Wp), then the (u, v)-shifted, stride-
      subsampled window of that product is added to the output.  On a CPU
      samples go in cache-sized chunks; the temporary is one (chunk, O, Hp,
      Wp) buffer reused across taps.  With stride s the product is computed
      at every position and s^2 - 1 of s^2 are discarded: simple, and the
      papers' nets use stride 1.

    Measured on 2 CPU cores, batch 256, 28x28, 3x3 kernels (chunked taps vs
    im2col): C = 1 -> O = 16: 61 vs 2.8 ms; C = 4 -> 16: 19 vs 8 ms; C = 8 -> 8:
    11 vs 23 ms; C = 16 -> 16: 28 vs 61 ms; C = 16 -> 1 (RSO's one changed
    output channel): 6 vs 70 ms.
    """
    o, c, kh, kw = weight.shape
    if c * kh * kw <= 36 and (o > 1 or c == 1):
        out = _conv2d_im2col(x, weight, pair(stride), pair(padding))
    else:
        out = _conv2d_taps(x, weight, pair(stride), pair(padding))
    if bias is not None:
        out += bias.reshape(1, o, 1, 1)
    return out


def _conv2d_im2col(x, weight, stride, padding):
    xp = get_array_module(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    xpad = pad2d(x, (ph, pw))  # (N, C, Hp, Wp)
    cols = xp.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)  # (N, C, kh, kw, Ho, Wo): the patches
    for u in range(kh):
        for v in range(kw):
            cols[:, :, u, v] = xpad[:, :, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw]
    out = xp.matmul(weight.reshape(o, c * kh * kw), cols.reshape(n, c * kh * kw, ho * wo))  # (N, O, Ho*Wo)
    return out.reshape(n, o, ho, wo)


def _conv2d_taps(x, weight, stride, padding, budget=2**18):
    xp = get_array_module(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    xpad = pad2d(x, (ph, pw))  # (N, C, Hp, Wp)
    hp, wp = xpad.shape[2], xpad.shape[3]
    flat = xpad.reshape(n, c, hp * wp)  # (N, C, Hp*Wp), a view
    out = xp.zeros((n, o, ho, wo), dtype=x.dtype)  # (N, O, Ho, Wo)
    # Samples in chunks whose input, product and output (~budget floats, 1 MB) stay in the CPU's cache
    # while the kh*kw taps pass over them: 2.4x faster than whole-batch taps at batch 2,000, 1.3x at 256.
    # Each sample's sum is the same either way (chunking never splits one), so results are identical.
    m = max(1, min(n, budget // ((o + c) * hp * wp + o * ho * wo)))
    if xp is not numpy:
        m = n  # on a GPU one product over the whole batch: a kernel launch costs more than cache misses
    tmp = xp.empty((m, o, hp * wp), dtype=x.dtype)  # (m, O, Hp*Wp), reused per tap and chunk
    for s in range(0, n, m):
        k = min(m, n - s)
        acc, t = out[s : s + k], tmp[:k]
        for u in range(kh):
            for v in range(kw):
                xp.matmul(weight[:, :, u, v], flat[s : s + k], out=t)  # (O, C) @ (k, C, P) -> (k, O, P)
                acc += t.reshape(k, o, hp, wp)[:, :, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw]
    return out


def pool_taps(x, kernel, stride, padding, pad_value=0.0):
    """Yield the kh*kw strided windows of ``x`` (N, C, H, W), each (N, C, Ho, Wo): window (u, v) holds
    ``x_pad[:, :, s i + u, s j + v]`` for every output position (i, j)."""
    kh, kw = kernel
    sh, sw = stride
    n, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, padding[0]), out_size(w, kw, sw, padding[1])
    xpad = pad2d(x, padding, pad_value)
    for u in range(kh):
        for v in range(kw):
            yield xpad[:, :, u : u + sh * (ho - 1) + 1 : sh, v : v + sw * (wo - 1) + 1 : sw]


def avg_pool2d(x, kernel, stride=None, padding=0):
    """Average over each window; zero padding counts in the average (PyTorch's ``count_include_pad=True``)."""
    kernel = pair(kernel)
    stride = pair(stride) if stride is not None else kernel
    taps = pool_taps(x, kernel, stride, pair(padding))
    out = next(taps).copy()  # (N, C, Ho, Wo)
    for t in taps:
        out += t
    return out * (1.0 / (kernel[0] * kernel[1]))


def max_pool2d(x, kernel, stride=None, padding=0):
    """Maximum over each window; padding never wins (pads with -inf)."""
    xp = get_array_module(x)
    kernel = pair(kernel)
    stride = pair(stride) if stride is not None else kernel
    taps = pool_taps(x, kernel, stride, pair(padding), pad_value=-xp.inf)
    out = next(taps).copy()  # (N, C, Ho, Wo)
    for t in taps:
        xp.maximum(out, t, out=out)
    return out


def patch_sq_sum(x, kernel, stride, padding):
    """For each sample and output position of a convolution, the sum of squared inputs in its patch.

    x (N, C, H, W) -> (N, Ho, Wo):  ``sum_{c,u,v} x_pad[n, c, s i + u, s j + v]^2``.
    This is the fan-in sum of eq. (17) of the aMC paper for every output
    channel of a conv layer (all channels see the same patch).
    """
    sq = (x * x).sum(axis=1, keepdims=True)  # (N, 1, H, W): channels summed first, taps second
    taps = pool_taps(sq, pair(kernel), pair(stride), pair(padding))
    out = next(taps).copy()
    for t in taps:
        out += t
    return out[:, 0]  # (N, Ho, Wo)


def batch_norm(x, mean, var, gamma, beta, eps, channel_axis=1):
    """``gamma (x - mean) / sqrt(var + eps) + beta`` with per-channel (N, C, ...) statistics.

    Returns ``(y, xhat)``: xhat is the normalised input (the "input" that gamma multiplies).
    """
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    xhat = (x - mean.reshape(shape)) * (1.0 / get_array_module(x).sqrt(var.reshape(shape) + eps))
    return xhat * gamma.reshape(shape) + beta.reshape(shape), xhat


def layer_norm(x, gamma, beta, eps):
    """Normalise over the trailing ``gamma.ndim`` axes of every sample (Ba et al. 2016).

    Returns ``(y, xhat)`` like :func:`batch_norm`.
    """
    axes = tuple(range(x.ndim - gamma.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    xhat = x - mean  # centred once, used twice
    var = (xhat * xhat).mean(axis=axes, keepdims=True)  # biased, as in the paper and PyTorch
    xhat *= 1.0 / get_array_module(x).sqrt(var + eps)  # one division per sample, not per element
    y = xhat * gamma
    y += beta  # in place: on a CPU every fresh (N, F) temporary costs page faults, more than the arithmetic
    return y, xhat


def relu(x):
    return get_array_module(x).maximum(x, 0)


def sigmoid(x):
    """Logistic function 1 / (1 + e^-x), written with tanh so it never overflows."""
    return 0.5 * (get_array_module(x).tanh(0.5 * x) + 1.0)


def log_softmax(x, axis=-1):
    """``x - logsumexp(x)``, stable: the maximum is subtracted before exponentiating."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x, axis=-1):
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
