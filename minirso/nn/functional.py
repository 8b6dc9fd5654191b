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
    "batch_norm_train",
    "layer_norm",
    "standardize",
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

    Three ways to compute the same sum, chosen by the size of a patch C kh kw,
    the number of outputs O and the stride:

    * small patches (C kh kw <= 36, e.g. the first layer's 1 x 3 x 3, or RSO's
      single-input-channel incremental updates) feeding several outputs: copy
      the patches into a (N, C kh kw, Ho Wo) array (im2col) and do ONE matrix
      product per sample; the copy is small because C is;
    * larger patches, stride 1, several outputs (the papers' 16 -> 16 convs):
      row strips, see :func:`_conv2d_rows`;
    * otherwise (stride > 1, or one output): per tap (u, v) one matrix product
      of the tap's (O, C) slice with the padded input, whose (u, v)-shifted,
      stride-subsampled window is added to the output (:func:`_conv2d_taps`).

    Measured on 2 CPU cores, batch 256, 3x3 kernels, pad 1 (row strips / taps /
    im2col): C = 16 -> 16 at 28x28: 16 / 26 / 61 ms; at 14x14: 4.4 / 7.7 ms; at
    7x7: 1.8 / 3.6 ms; 8 -> 8 at 28x28: 5.9 / 10.7 / 23 ms; C = 1 -> 16: im2col
    2.8 ms (taps 61); C = 16 -> 1 (RSO's one changed output channel): taps 5.6,
    rows 6.2, im2col 70 ms.  (PyTorch's oneDNN: 13 / 1.4 / 0.6 / 2.4 ms.)
    """
    o, c, kh, kw = weight.shape
    if c * kh * kw <= 36 and (o > 1 or c == 1):
        out = _conv2d_im2col(x, weight, pair(stride), pair(padding))
    elif pair(stride) == (1, 1) and o > 1:
        out = _conv2d_rows(x, weight, pair(padding))
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


def _conv2d_rows(x, weight, padding, budget=2**18):
    """Stride-1 convolution as kh products with row strips: K = kw C instead of C per product.

    Flatten each padded image to one line of Hp Wp values.  Then the input
    under tap (u, v) for output position (i, j) sits at flat index
    ``(i + u) Wp + (j + v) = p + u Wp + v`` with ``p = i Wp + j``: every tap
    is a 1-D SHIFT of the flat image.  Computing the output at p for
    j < Wp (the last kw - 1 columns of each row are garbage, dropped at the
    end) turns the sum into

        y[:, p] = sum_u  W_u @ strip[:, p + u Wp],   strip[(v, c), q] = x_flat[c, q + v]

    with W_u = w[:, :, u, :] as an (O, kw C) matrix.  The strip is kw shifted
    copies of the image (contiguous 1-D slices: fast to copy), and each of
    the kh products has kw times the depth of a per-tap product, which is
    what makes the small (O, C) = (16, 16) products of the papers' nets
    efficient; the kh shifted adds are contiguous too.  One spare zero row
    below the padding keeps the last strip inside the array.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ph, pw = padding
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = hp - kh + 1, wp - kw + 1
    ls, lo = hp * wp, ho * wp  # strip length (all padded rows), output length (Ho rows of Wp)
    xpad = xp.zeros((n, c, hp + 1, wp), dtype=x.dtype)  # (N, C, Hp+1, Wp): padding + a spare zero row
    xpad[:, :, ph : ph + h, pw : pw + w] = x
    flat = xpad.reshape(n, c, (hp + 1) * wp)  # (N, C, (Hp+1) Wp), a view
    w_rows = [weight[:, :, u, :].transpose(0, 2, 1).reshape(o, kw * c) for u in range(kh)]  # kh x (O, kw C)
    out = xp.empty((n, o, ho, wo), dtype=x.dtype)  # (N, O, Ho, Wo)
    # Samples in chunks whose strip, product and accumulator (~budget floats) stay in the CPU's cache;
    # a chunk never splits a sample, so the result does not depend on the chunk size.
    if xp is not numpy:
        budget = 2**26  # GPU: whole batches, within ~1 GB of temporaries
    m = max(1, min(n, budget // ((kw * c + 2 * o) * ls)))
    strip = xp.empty((m, kw, c, ls), dtype=x.dtype)  # (m, kw, C, Hp Wp)
    prod = xp.empty((m, o, ls), dtype=x.dtype)  # (m, O, Hp Wp)
    acc = xp.empty((m, o, lo), dtype=x.dtype)  # (m, O, Ho Wp)
    for s in range(0, n, m):
        k = min(m, n - s)
        st, t, a = strip[:k], prod[:k], acc[:k]
        for v in range(kw):
            st[:, v] = flat[s : s + k, :, v : v + ls]
        st2 = st.reshape(k, kw * c, ls)  # (k, kw C, Hp Wp)
        for u in range(kh):
            xp.matmul(w_rows[u], st2, out=t)  # (O, kw C) @ (k, kw C, Hp Wp) -> (k, O, Hp Wp)
            if u == 0:
                a[...] = t[:, :, :lo]
            else:
                a += t[:, :, u * wp : u * wp + lo]
        out[s : s + k] = a.reshape(k, o, ho, wp)[:, :, :, :wo]
    return out


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


def batch_norm_train(x, gamma, beta, eps):
    """Training-mode BatchNorm of x (N, C, ...): each channel normalised with the batch's own statistics.

    Returns ``(y, mean, var)`` with the (C,) mean and biased variance over
    every axis but 1.  The same numbers as ``batch_norm(x, x.mean(axes),
    x.var(axes), ...)`` up to float32 rounding, in two passes fewer: x is
    centred once into the array that becomes y, the variance is a dot product
    of that array with itself (no squared temporary), and the affine map is
    one scale and one shift in place.  Measured on 2 CPU cores, (256, 16, 28,
    28): 5.5 ms against 17.5 ms.
    """
    xp = get_array_module(x)
    n, c = x.shape[0], x.shape[1]
    x3 = x.reshape(n, c, -1)  # (N, C, L), L = the spatial size (1 for (N, C) inputs)
    # the count as the array's own float type: a Python int >= 65,536 would promote float32 to float64 on
    # CuPy 13, which still casts Python scalars by value (a uint32 there); NumPy 2 and CuPy 14 round it to
    # float32 anyway, so the quotient is the same bits everywhere
    count = x.dtype.type(n * x3.shape[2])
    # Sums per (sample, channel) row, then over samples as contiguous (C, N) rows: every channel is
    # summed in the same order whatever C is, so BatchNorm of channel c alone gives bit for bit the
    # values it gets among all C (RSO's incremental evaluator relies on that), and pairwise (accurate).
    mean = xp.ascontiguousarray(x3.sum(axis=2).T).sum(axis=1) / count  # (C,)
    d = x3 - mean[:, None]  # (N, C, L) centred; becomes y in place
    sq = xp.einsum("ncl,ncl->nc", d, d)  # (N, C) row sums of squares, without a squared temporary
    var = xp.ascontiguousarray(sq.T).sum(axis=1) / count  # (C,) biased variance, as PyTorch normalises with
    d *= (gamma / xp.sqrt(var + eps))[:, None]
    d += beta[:, None]
    return d.reshape(x.shape), mean, var


def standardize(x, ndim, eps):
    """``(x - mean) / sqrt(var + eps)`` over the trailing ``ndim`` axes of x, per leading position: LayerNorm's xhat.

    Biased variance, as the paper and PyTorch.  Each row (sample) is reduced
    on its own with einsum, whose row sums do not depend on how many rows
    there are, so K stacked chains (:mod:`minirso.optim.chains`) get bit for
    bit what one chain gets.  A BLAS matrix-vector product would be faster
    for the mean but splits rows differently with their number.
    """
    xp = get_array_module(x)
    f = x.dtype.type(numpy.prod(x.shape[x.ndim - ndim :]))  # as x's float type (see batch_norm_train: CuPy 13)
    x2 = x.reshape(-1, int(f))  # (M, F): one row per sample (and leading position)
    mean = xp.einsum("mf->m", x2) / f  # (M,)
    d = x2 - mean[:, None]  # (M, F) centred once: the only full-size temporary
    var = xp.einsum("mf,mf->m", d, d) / f  # (M,) row sums of squares, without a squared temporary
    d *= (1.0 / xp.sqrt(var + eps))[:, None]  # one division per row, not per element
    return d.reshape(x.shape)


def layer_norm(x, gamma, beta, eps, return_xhat=False):
    """Normalise over the trailing ``gamma.ndim`` axes of every sample (Ba et al. 2016).

    Returns ``(y, xhat)`` like :func:`batch_norm`; xhat is None unless
    ``return_xhat`` (only signal-norm statistics need it; without it y is
    computed in xhat's array, in place).  Measured on 2 CPU cores, (60,000,
    64): 7.6 ms, against 14 ms for mean / var / broadcast arithmetic with
    temporaries.
    """
    xhat = standardize(x, gamma.ndim, eps)
    y = xhat.copy() if return_xhat else xhat
    y *= gamma
    y += beta  # in place: on a CPU every fresh (N, F) temporary costs page faults, more than the arithmetic
    return y, (xhat if return_xhat else None)


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
