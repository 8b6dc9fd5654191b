"""Forward passes of every layer against independent truths.

Three kinds of oracle, none of them minirso code:

1. naive Python loops on tiny inputs (written out here index by index, in float64);
2. PyTorch (CPU) modules with the same weights on moderate random inputs;
3. the documented contract for bad inputs (ValueError naming the layer and the expected shape)
   and for float16 inputs (accepted, computed as the float32 upcast).

Inputs are made on the active backend (``xp`` fixture) and results brought back with
``minirso.to_numpy``, so the file runs unchanged under ``MINIRSO_BACKEND=cupy``.
Data are random and asymmetric (H != W, in != out channels, non-square kernels) so that
swapped indices cannot cancel out.
"""

import math
import re

import numpy as np
import pytest
import torch

import minirso
from minirso import nn as mnn
from minirso.nn import functional as F

# float32 comparisons with an oracle that sums in another order
RTOL, ATOL = 1e-4, 1e-5


# ---- helpers ---------------------------------------------------------------------------------
def rand(xp, rng, shape, scale=1.0, dtype=np.float32):
    """A random input on the active backend."""
    return xp.asarray((scale * rng.standard_normal(shape)).astype(dtype))


def host(a):
    """A backend array (or a layer parameter) as a float64 NumPy array."""
    return np.asarray(minirso.to_numpy(a), dtype=np.float64)


def tt(a):
    """A backend array as a float32 torch tensor (a copy)."""
    return torch.from_numpy(np.array(minirso.to_numpy(a), dtype=np.float32, copy=True))


def build(layers, rng, scale=0.5, seed=3):
    """A Sequential over ``layers`` with EVERY parameter random (biases nonzero, gamma != 1, beta != 0)."""
    model = mnn.Sequential(list(layers), seed=seed)
    xp = minirso.get_array_module(model.params)
    model.params[...] = xp.asarray((scale * rng.standard_normal(model.params.size)).astype(np.float32))
    return model


def run(model, x):
    out = model(x)
    assert out.dtype == np.float32
    return minirso.to_numpy(out)


def set_(tparam, value):
    with torch.no_grad():
        tparam.copy_(tt(value) if not isinstance(value, torch.Tensor) else value)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol
    )


def torch_out(module, x):
    with torch.no_grad():
        return module(tt(x)).numpy()


# ---- naive reference implementations (loops, float64) ----------------------------------------
def loop_conv2d(x, w, b, stride, padding):
    """y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] x[n, c, s_h i + u - p_h, s_w j + v - p_w] (zero outside)."""
    n_, c_, h_, w_ = x.shape
    o_, _, kh, kw = w.shape
    sh, sw = stride
    ph, pw = padding
    ho, wo = (h_ + 2 * ph - kh) // sh + 1, (w_ + 2 * pw - kw) // sw + 1
    y = np.zeros((n_, o_, ho, wo))
    for n in range(n_):
        for o in range(o_):
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0 if b is None else b[o]
                    for c in range(c_):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = sh * i + u - ph, sw * j + v - pw
                                if 0 <= r < h_ and 0 <= s < w_:
                                    acc += w[o, c, u, v] * x[n, c, r, s]
                    y[n, o, i, j] = acc
    return y


def loop_pool2d(x, kernel, stride, padding, mode):
    """avg: sum of in-image values / (kh*kw) (padding counts as zeros); max: max of in-image values."""
    n_, c_, h_, w_ = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    ho, wo = (h_ + 2 * ph - kh) // sh + 1, (w_ + 2 * pw - kw) // sw + 1
    y = np.zeros((n_, c_, ho, wo))
    for n in range(n_):
        for c in range(c_):
            for i in range(ho):
                for j in range(wo):
                    vals = []
                    for u in range(kh):
                        for v in range(kw):
                            r, s = sh * i + u - ph, sw * j + v - pw
                            if 0 <= r < h_ and 0 <= s < w_:
                                vals.append(x[n, c, r, s])
                    y[n, c, i, j] = sum(vals) / (kh * kw) if mode == "avg" else max(vals)
    return y


def loop_batchnorm(x, gamma, beta, eps, mean=None, var=None):
    """Per channel (axis 1); batch statistics (biased variance) when mean/var are None."""
    c_ = x.shape[1]
    y = np.zeros_like(x)
    for c in range(c_):
        vals = x[:, c].ravel().tolist()
        if mean is None:
            m = sum(vals) / len(vals)
            v = sum((a - m) ** 2 for a in vals) / len(vals)
        else:
            m, v = mean[c], var[c]
        y[:, c] = gamma[c] * (x[:, c] - m) / math.sqrt(v + eps) + beta[c]
    return y


def loop_layernorm(x, gamma, beta, eps):
    """Normalise every sample (leading index) over the trailing gamma.ndim axes."""
    d = gamma.ndim
    lead = x.shape[: x.ndim - d]
    y = np.zeros_like(x)
    for idx in np.ndindex(*lead):
        vals = x[idx].ravel().tolist()
        m = sum(vals) / len(vals)
        v = sum((a - m) ** 2 for a in vals) / len(vals)
        for k in np.ndindex(*gamma.shape):
            y[idx + k] = gamma[k] * (x[idx + k] - m) / math.sqrt(v + eps) + beta[k]
    return y


def loop_dense(x, w, b):
    n_, i_ = x.shape
    o_ = w.shape[0]
    y = np.zeros((n_, o_))
    for n in range(n_):
        for o in range(o_):
            y[n, o] = (0.0 if b is None else b[o]) + sum(w[o, i] * x[n, i] for i in range(i_))
    return y


def _sig(a):
    return 1.0 / (1.0 + math.exp(-a))


def loop_rnn(x, w_ih, w_hh, b):
    """h_t[j] = tanh(sum_i W_ih[j,i] x_t[i] + sum_k W_hh[j,k] h_{t-1}[k] + b[j]); returns (N, T, H)."""
    n_, t_, i_ = x.shape
    h_ = w_hh.shape[0]
    seq = np.zeros((n_, t_, h_))
    for n in range(n_):
        h = [0.0] * h_
        for t in range(t_):
            h = [
                math.tanh(
                    sum(w_ih[j, i] * x[n, t, i] for i in range(i_)) + sum(w_hh[j, k] * h[k] for k in range(h_)) + b[j]
                )
                for j in range(h_)
            ]
            seq[n, t] = h
    return seq


def loop_gru(x, w_ih, w_hh, b_ih, b_hh):
    """PyTorch GRU equations, gate order (r, z, n), one scalar at a time; returns (N, T, H)."""
    n_, t_, i_ = x.shape
    h_ = w_hh.shape[1]
    seq = np.zeros((n_, t_, h_))
    for n in range(n_):
        h = [0.0] * h_
        for t in range(t_):

            def gi(row):
                return sum(w_ih[row, i] * x[n, t, i] for i in range(i_)) + b_ih[row]

            def gh(row):
                return sum(w_hh[row, k] * h[k] for k in range(h_)) + b_hh[row]

            new = []
            for j in range(h_):
                r = _sig(gi(j) + gh(j))
                z = _sig(gi(h_ + j) + gh(h_ + j))
                cand = math.tanh(gi(2 * h_ + j) + r * gh(2 * h_ + j))
                new.append((1.0 - z) * cand + z * h[j])
            h = new
            seq[n, t] = h
    return seq


# =============================================================================================
# 1. naive loops on tiny inputs
# =============================================================================================
@pytest.mark.parametrize(
    "cin, cout, kernel, stride, padding, bias",
    [
        (3, 2, (3, 2), (1, 1), (0, 0), True),
        (3, 4, (3, 2), (2, 1), (1, 0), True),
        (2, 3, (3, 3), (2, 2), (1, 1), False),
        (3, 2, (2, 3), (1, 2), (2, 1), True),
        (2, 3, (1, 1), (1, 1), (0, 0), True),
        # patches larger than 36 (C kh kw) take the row-strip path of F.conv2d at stride 1 with
        # several outputs, the tap loop otherwise; smaller ones im2col
        (9, 3, (3, 3), (2, 1), (1, 0), True),
        (10, 2, (3, 3), (1, 1), (1, 1), False),
        (8, 3, (3, 5), (1, 1), (2, 1), True),
        (7, 4, (4, 2), (1, 1), (0, 1), False),
        (40, 3, (1, 1), (1, 1), (0, 0), True),
        (10, 1, (3, 3), (1, 1), (1, 1), False),
    ],
)
def test_conv2d_matches_loops(xp, rng, cin, cout, kernel, stride, padding, bias):
    model = build([mnn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)], rng)
    conv = model.layers[0]
    x = rand(xp, rng, (2, cin, 6, 5))
    expected = loop_conv2d(host(x), host(conv.weight), host(conv.bias) if bias else None, stride, padding)
    out = run(model, x)
    assert out.shape == expected.shape
    close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride, padding", [((1, 1), (1, 1)), ((2, 1), (0, 2)), ((1, 1), (2, 0))])
def test_conv2d_im2col_tap_and_row_paths_agree(xp, rng, stride, padding):
    """All ways F.conv2d computes a convolution give the same numbers (float32 rounding)."""
    for cin, kernel in [(1, (3, 3)), (5, (3, 3)), (16, (3, 3)), (6, (2, 4))]:
        x = rand(xp, rng, (3, cin, 9, 7))
        w = rand(xp, rng, (4, cin) + kernel)
        a = F._conv2d_im2col(x, w, stride, padding)
        b = F._conv2d_taps(x, w, stride, padding)
        assert a.shape == b.shape
        close(host(a), host(b), rtol=1e-5, atol=1e-5)
        if stride == (1, 1):  # the row strips exist for stride 1 only
            c = F._conv2d_rows(x, w, padding)
            assert c.shape == b.shape
            close(host(c), host(b), rtol=1e-5, atol=1e-5)


def test_conv2d_rows_chunking_is_exact(rng):
    """Row strips over cache-sized chunks give bit-identical results whatever the chunk (NumPy)."""
    x = rng.standard_normal((7, 16, 11, 9)).astype(np.float32)
    w = rng.standard_normal((5, 16, 3, 3)).astype(np.float32)
    whole = F._conv2d_rows(x, w, (1, 1), budget=2**30)  # one chunk
    for budget in (1, 17000, 25000):  # 1, 2 and 3 samples per chunk (8,294 floats each): partial last chunks
        np.testing.assert_array_equal(F._conv2d_rows(x, w, (1, 1), budget=budget), whole)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize(
    "kernel, stride, padding",
    [((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 1)), ((3, 3), (2, 1), (1, 0)), ((2, 3), (1, 1), (1, 1))],
)
def test_pool2d_matches_loops(xp, rng, mode, kernel, stride, padding):
    cls = mnn.AvgPool2d if mode == "avg" else mnn.MaxPool2d
    x = rand(xp, rng, (2, 3, 5, 4))
    if mode == "max":
        x = -xp.abs(x) - 0.5  # all negative: zero padding would win the max if it were used
    out = minirso.to_numpy(cls(kernel, stride=stride, padding=padding)(x))
    expected = loop_pool2d(host(x), kernel, stride, padding, mode)
    assert out.dtype == np.float32 and out.shape == expected.shape
    close(out, expected, rtol=1e-6, atol=1e-6)


def test_global_avg_pool_matches_loops(xp, rng):
    x = rand(xp, rng, (2, 3, 4, 5))
    xn = host(x)
    expected = np.array([[sum(xn[n, c].ravel().tolist()) / 20 for c in range(3)] for n in range(2)])
    out = minirso.to_numpy(mnn.GlobalAvgPool2d()(x))
    assert out.shape == (2, 3)
    close(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(3, 4, 2, 3), (5, 4), (3, 4, 6)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_loops(xp, rng, shape, training):
    cls = mnn.BatchNorm2d if len(shape) == 4 else mnn.BatchNorm1d
    model = build([cls(4, eps=1e-3)], rng)
    bn = model.layers[0]
    mean = rng.standard_normal(4).astype(np.float32)
    var = rng.uniform(0.2, 3.0, 4).astype(np.float32)
    bn.running_mean[...] = xp.asarray(mean)
    bn.running_var[...] = xp.asarray(var)
    model.train(training)
    x = rand(xp, rng, shape, scale=2.0) + 0.7
    out = run(model, x)
    expected = loop_batchnorm(
        host(x),
        host(bn.gamma),
        host(bn.beta),
        1e-3,
        None if training else mean.astype(np.float64),
        None if training else var.astype(np.float64),
    )
    close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_shape, norm_shape", [((3, 5), 5), ((2, 3, 4), (4,)), ((2, 3, 4, 5), (4, 5))])
def test_layernorm_matches_loops(xp, rng, x_shape, norm_shape):
    model = build([mnn.LayerNorm(norm_shape, eps=1e-4)], rng)
    ln = model.layers[0]
    x = rand(xp, rng, x_shape, scale=3.0) - 1.0
    expected = loop_layernorm(host(x), host(ln.gamma), host(ln.beta), 1e-4)
    close(run(model, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_dense_matches_loops(xp, rng, bias):
    model = build([mnn.Dense(5, 3, bias=bias)], rng)
    d = model.layers[0]
    assert (d.bias is None) == (not bias)
    x = rand(xp, rng, (4, 5))
    expected = loop_dense(host(x), host(d.weight), host(d.bias) if bias else None)
    close(run(model, x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_rnn_matches_loops(xp, rng, return_sequences):
    model = build([mnn.RNN(3, 5, return_sequences=return_sequences)], rng)
    r = model.layers[0]
    x = rand(xp, rng, (2, 4, 3))
    seq = loop_rnn(host(x), host(r.weight_ih), host(r.weight_hh), host(r.bias))
    expected = seq if return_sequences else seq[:, -1]
    out = run(model, x)
    assert out.shape == expected.shape
    close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_gru_matches_loops(xp, rng, return_sequences):
    model = build([mnn.GRU(3, 4, return_sequences=return_sequences)], rng, scale=0.8)
    g = model.layers[0]
    x = rand(xp, rng, (2, 4, 3))
    seq = loop_gru(host(x), host(g.weight_ih), host(g.weight_hh), host(g.bias_ih), host(g.bias_hh))
    expected = seq if return_sequences else seq[:, -1]
    out = run(model, x)
    assert out.shape == expected.shape
    close(out, expected, rtol=1e-5, atol=1e-6)


def test_elementwise_and_shape_layers_match_loops(xp, rng):
    x = rand(xp, rng, (3, 2, 4), scale=2.0)
    xn = host(x)
    flat = xn.ravel().tolist()
    relu = minirso.to_numpy(mnn.ReLU()(x))
    tanh = minirso.to_numpy(mnn.Tanh()(x))
    close(relu.ravel(), [a if a > 0 else 0.0 for a in flat], rtol=0, atol=0)
    close(tanh.ravel(), [math.tanh(a) for a in flat], rtol=1e-6, atol=1e-7)
    sm = minirso.to_numpy(mnn.Softmax()(x))
    expected = np.zeros_like(xn)
    for n in range(3):
        for c in range(2):
            e = [math.exp(a) for a in xn[n, c]]
            expected[n, c] = [v / sum(e) for v in e]
    close(sm, expected, rtol=1e-5, atol=1e-7)
    fl = minirso.to_numpy(mnn.Flatten()(x))
    assert fl.shape == (3, 8)
    for n in range(3):
        for c in range(2):
            for k in range(4):
                assert fl[n, c * 4 + k] == xn[n, c, k]
    ident = minirso.to_numpy(mnn.Identity()(x))
    np.testing.assert_array_equal(ident, xn.astype(np.float32))


# =============================================================================================
# 2. PyTorch as an oracle
# =============================================================================================
CONV_CASES = [
    # cin, cout, kernel, stride, padding, bias
    (3, 5, 1, 1, 0, True),
    (3, 5, 1, 2, 0, False),
    (3, 4, 3, 1, 0, True),
    (3, 4, 3, 1, 1, False),
    (2, 6, 3, 2, 1, True),
    (2, 6, 3, 2, 0, True),
    (4, 3, 5, 1, 2, True),
    (4, 3, 5, 2, 2, False),
    (3, 5, 5, 1, 0, True),
    (3, 5, (3, 2), 1, 1, True),
    (3, 5, (3, 2), 2, (1, 0), True),
    (2, 4, (1, 3), (2, 1), (0, 1), False),
    (2, 3, 2, 3, 0, True),  # stride larger than the kernel
]


@pytest.mark.parametrize("cin, cout, kernel, stride, padding, bias", CONV_CASES)
def test_conv2d_matches_torch(xp, rng, cin, cout, kernel, stride, padding, bias):
    model = build([mnn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)], rng)
    conv = model.layers[0]
    ref = torch.nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)
    set_(ref.weight, conv.weight)
    if bias:
        set_(ref.bias, conv.bias)
    x = rand(xp, rng, (4, cin, 9, 11))
    expected = torch_out(ref, x)
    out = run(model, x)
    assert out.shape == expected.shape
    close(out, expected)


def test_non_contiguous_inputs_match_torch(xp, rng):
    """Strided / transposed views (e.g. slices of a cached activation array) give the same results."""
    model = build([mnn.Conv2d(3, 4, 3, padding=1)], rng)
    conv = model.layers[0]
    ref = torch.nn.Conv2d(3, 4, 3, padding=1)
    _copy_conv(ref, conv)
    big = rand(xp, rng, (4, 3, 10, 18))
    x = big[:, :, ::2, ::-2]  # (4, 3, 5, 9), not contiguous
    assert not x.flags.c_contiguous
    close(run(model, x), torch_out(ref, xp.ascontiguousarray(x)))
    for conv_ in (model, build([mnn.Conv2d(3, 4, 2)], rng)):  # padding 0: the input itself is reshaped
        c = conv_.layers[0]
        r = torch.nn.Conv2d(3, 4, c.kernel_size, padding=c.padding)
        _copy_conv(r, c)
        xt = rand(xp, rng, (4, 3, 9, 7)).transpose(0, 1, 3, 2)  # (4, 3, 7, 9)
        close(run(conv_, xt), torch_out(r, xp.ascontiguousarray(xt)))
    dmodel = build([mnn.Dense(5, 3)], rng)
    dref = _with(torch.nn.Linear(5, 3), weight=dmodel.layers[0].weight, bias=dmodel.layers[0].bias)
    xd = rand(xp, rng, (5, 7)).T[:, :5]  # (7, 5), transposed view
    close(run(dmodel, xd), torch_out(dref, xp.ascontiguousarray(xd)))
    rmodel = build([mnn.GRU(3, 4, return_sequences=True)], rng)
    rref = _torch_rnn(torch.nn.GRU, rmodel.layers)
    xr = rand(xp, rng, (3, 8, 4)).transpose(0, 2, 1)[:, ::-1, :][:, :, :3]  # (N=3, T=4, I=3), permuted view
    close(run(rmodel, xr), _torch_seq(rref, xp.ascontiguousarray(xr))[0], SEQ_RTOL, SEQ_ATOL)


def test_conv2d_padding_makes_small_input_valid(xp, rng):
    """An input smaller than the kernel is fine once padding makes it large enough."""
    model = build([mnn.Conv2d(2, 3, 3, padding=1)], rng)
    conv = model.layers[0]
    ref = torch.nn.Conv2d(2, 3, 3, padding=1)
    set_(ref.weight, conv.weight)
    set_(ref.bias, conv.bias)
    x = rand(xp, rng, (2, 2, 1, 2))
    close(run(model, x), torch_out(ref, x))


POOL_CASES = [
    # kernel, stride, padding
    (2, None, 0),
    (2, 2, 1),
    (3, 1, 1),
    (3, 2, 1),
    (3, 2, 0),
    ((3, 2), (2, 1), (1, 0)),
    ((2, 3), 1, (1, 1)),
    (2, 3, 0),  # stride larger than the window
]


@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_avgpool2d_matches_torch(xp, rng, kernel, stride, padding):
    x = rand(xp, rng, (4, 3, 9, 8))
    ref = torch.nn.AvgPool2d(kernel, stride=stride, padding=padding, count_include_pad=True)
    out = minirso.to_numpy(mnn.AvgPool2d(kernel, stride=stride, padding=padding)(x))
    expected = torch_out(ref, x)
    assert out.shape == expected.shape
    close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
@pytest.mark.parametrize("negative", [False, True])
def test_maxpool2d_matches_torch(xp, rng, kernel, stride, padding, negative):
    x = rand(xp, rng, (4, 3, 9, 8))
    if negative:
        x = -xp.abs(x) - 1.0  # padding must never win
    ref = torch.nn.MaxPool2d(kernel, stride=stride, padding=padding)
    out = minirso.to_numpy(mnn.MaxPool2d(kernel, stride=stride, padding=padding)(x))
    expected = torch_out(ref, x)
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)  # a max is exact


def test_global_avg_pool_matches_torch(xp, rng):
    x = rand(xp, rng, (5, 6, 7, 9))
    expected = torch.nn.functional.adaptive_avg_pool2d(tt(x), 1).flatten(1).numpy()
    out = minirso.to_numpy(mnn.GlobalAvgPool2d()(x))
    assert out.shape == (5, 6)
    close(out, expected, rtol=1e-5, atol=1e-6)


def _torch_bn(ref, bn, mean=None, var=None):
    set_(ref.weight, bn.gamma)
    set_(ref.bias, bn.beta)
    if mean is not None:
        set_(ref.running_mean, torch.from_numpy(mean))
        set_(ref.running_var, torch.from_numpy(var))
    return ref


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_batchnorm2d_train_matches_torch(xp, rng, eps):
    model = build([mnn.BatchNorm2d(6, eps=eps)], rng)
    bn = model.layers[0]
    before = (minirso.to_numpy(bn.running_mean).copy(), minirso.to_numpy(bn.running_var).copy())
    ref = _torch_bn(torch.nn.BatchNorm2d(6, eps=eps), bn).train()
    x = rand(xp, rng, (5, 6, 7, 9), scale=3.0) + 2.0
    model.train()
    close(run(model, x), torch_out(ref, x))
    # documented: training mode normalises with batch statistics and changes nothing
    np.testing.assert_array_equal(minirso.to_numpy(bn.running_mean), before[0])
    np.testing.assert_array_equal(minirso.to_numpy(bn.running_var), before[1])


def test_batchnorm2d_eval_matches_torch(xp, rng):
    model = build([mnn.BatchNorm2d(6)], rng)
    bn = model.layers[0]
    mean = (2.0 * rng.standard_normal(6)).astype(np.float32)
    var = rng.uniform(0.1, 4.0, 6).astype(np.float32)
    bn.running_mean[...] = xp.asarray(mean)
    bn.running_var[...] = xp.asarray(var)
    ref = _torch_bn(torch.nn.BatchNorm2d(6), bn, mean, var).eval()
    x = rand(xp, rng, (4, 6, 7, 9), scale=2.0)
    model.eval()
    close(run(model, x), torch_out(ref, x))
    # eval with one sample works too (no batch statistics needed)
    close(run(model, x[:1]), torch_out(ref, x[:1]))


@pytest.mark.parametrize("shape", [(8, 5), (6, 5, 7)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm1d_matches_torch(xp, rng, shape, training):
    model = build([mnn.BatchNorm1d(5)], rng)
    bn = model.layers[0]
    mean = rng.standard_normal(5).astype(np.float32)
    var = rng.uniform(0.1, 4.0, 5).astype(np.float32)
    bn.running_mean[...] = xp.asarray(mean)
    bn.running_var[...] = xp.asarray(var)
    ref = _torch_bn(torch.nn.BatchNorm1d(5), bn, mean, var).train(training)
    model.train(training)
    x = rand(xp, rng, shape, scale=2.0) - 1.0
    close(run(model, x), torch_out(ref, x))


@pytest.mark.parametrize(
    "x_shape, norm_shape",
    [((8, 7), 7), ((4, 6, 7), 7), ((4, 6, 7), (6, 7)), ((3, 4, 5, 6), (4, 5, 6)), ((2, 3, 5, 6), (5, 6))],
)
def test_layernorm_matches_torch(xp, rng, x_shape, norm_shape):
    model = build([mnn.LayerNorm(norm_shape)], rng)
    ln = model.layers[0]
    ref = torch.nn.LayerNorm(norm_shape)
    set_(ref.weight, ln.gamma)
    set_(ref.bias, ln.beta)
    x = rand(xp, rng, x_shape, scale=2.0) + 0.5
    close(run(model, x), torch_out(ref, x))


@pytest.mark.parametrize(
    "layer, x_shape, axes, param_shape",
    [
        (lambda: mnn.BatchNorm2d(2), (84, 2, 28, 28), (0, 2, 3), (1, 2, 1, 1)),  # N H W = 65,856
        (lambda: mnn.BatchNorm1d(3), (65_600, 3), (0,), (1, 3)),
        (lambda: mnn.LayerNorm((4, 128, 128)), (2, 4, 128, 128), (1, 2, 3), (1, 4, 128, 128)),  # 65,536 per row
    ],
)
def test_norm_layers_stay_float32_when_the_count_passes_65536(xp, rng, layer, x_shape, axes, param_shape):
    """A float32 input gives a float32 output whatever the reduced count.  CuPy 13 casts a Python int by
    its value (CuPy v13.6.0 _kernel.pyx, _min_scalar_type: 65,536 is a uint32, and float32 / uint32 is
    float64), so dividing by the count as a Python int made these float64 there, and the next layer
    rejects float64.  Checked in both modes on the CuPy stand-in (MINIRSO_STANDIN_CUPY=13 / 14)."""
    model = build([layer()], rng)
    x = rand(xp, rng, x_shape, scale=1.5) + 0.25
    model.eval()
    assert model(x).dtype == np.float32
    model.train()
    out = run(model, x)  # asserts float32
    ref = host(x)
    z = (ref - ref.mean(axis=axes, keepdims=True)) / np.sqrt(ref.var(axis=axes, keepdims=True) + 1e-5)
    gamma, beta = (host(p).reshape(param_shape) for p in (model.layers[0].gamma, model.layers[0].beta))
    close(out, z * gamma + beta)


def _torch_rnn(cls, layers, **kw):
    """A torch RNN/GRU with batch_first and the weights of minirso layers (one per torch layer)."""
    first = layers[0]
    ref = cls(first.input_size, first.hidden_size, num_layers=len(layers), batch_first=True, **kw)
    for k, lay in enumerate(layers):
        set_(getattr(ref, f"weight_ih_l{k}"), lay.weight_ih)
        set_(getattr(ref, f"weight_hh_l{k}"), lay.weight_hh)
        if cls is torch.nn.GRU:
            set_(getattr(ref, f"bias_ih_l{k}"), lay.bias_ih)
            set_(getattr(ref, f"bias_hh_l{k}"), lay.bias_hh)
        else:
            set_(getattr(ref, f"bias_ih_l{k}"), lay.bias)
            set_(getattr(ref, f"bias_hh_l{k}"), torch.zeros(lay.hidden_size))
    return ref


def _torch_seq(ref, x):
    with torch.no_grad():
        out, h_n = ref(tt(x))
    return out.numpy(), h_n.numpy()


# RNN/GRU tolerances: 25 steps of float32 recurrence compound rounding (each step ~1e-7 relative,
# fed back through W_hh), so atol is 1e-5 -> 2e-5 with rtol 1e-4.
SEQ_RTOL, SEQ_ATOL = 1e-4, 2e-5


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize(
    "cell, ours, theirs, n_in, hidden, scale",
    [
        ("rnn", mnn.RNN, torch.nn.RNN, 4, 12, 0.3),
        ("gru", mnn.GRU, torch.nn.GRU, 5, 9, 0.5),
    ],
)
def test_recurrent_layer_matches_torch(xp, rng, return_sequences, cell, ours, theirs, n_in, hidden, scale):
    model = build([ours(n_in, hidden, return_sequences=return_sequences)], rng, scale=scale)
    ref = _torch_rnn(theirs, model.layers)
    x = rand(xp, rng, (6, 25, n_in))
    seq, h_n = _torch_seq(ref, x)
    out = run(model, x)
    if return_sequences:
        assert out.shape == (6, 25, hidden)
        close(out, seq, SEQ_RTOL, SEQ_ATOL)
    else:
        assert out.shape == (6, hidden)
        close(out, h_n[0], SEQ_RTOL, SEQ_ATOL)


def test_rnn_bias_is_sum_of_torch_biases(xp, rng):
    """minirso's one bias equals PyTorch's b_ih + b_hh (both nonzero in torch)."""
    model = build([mnn.RNN(3, 8)], rng, scale=0.4)
    r = model.layers[0]
    ref = torch.nn.RNN(3, 8, batch_first=True)
    set_(ref.weight_ih_l0, r.weight_ih)
    set_(ref.weight_hh_l0, r.weight_hh)
    # ref's biases stay torch's own random ones; minirso gets their sum
    r.bias[...] = minirso.asarray((ref.bias_ih_l0 + ref.bias_hh_l0).detach().numpy())
    assert float(ref.bias_hh_l0.detach().abs().sum()) > 0
    x = rand(xp, rng, (5, 20, 3))
    _, h_n = _torch_seq(ref, x)
    close(run(model, x), h_n[0], SEQ_RTOL, SEQ_ATOL)


def test_stacked_rnn_matches_torch_two_layers(xp, rng):
    model = build([mnn.RNN(2, 10, return_sequences=True), mnn.RNN(10, 10)], rng, scale=0.35)
    ref = _torch_rnn(torch.nn.RNN, model.layers)
    x = rand(xp, rng, (7, 30, 2))
    seq, h_n = _torch_seq(ref, x)
    out = run(model, x)
    assert out.shape == (7, 10)
    close(out, h_n[1], SEQ_RTOL, SEQ_ATOL)
    close(out, seq[:, -1], SEQ_RTOL, SEQ_ATOL)
    # the first layer alone gives torch's layer-0 final state
    first = minirso.to_numpy(model.forward(x, stop=1))
    close(first[:, -1], h_n[0], SEQ_RTOL, SEQ_ATOL)


def test_stacked_gru_matches_torch_two_layers(xp, rng):
    model = build([mnn.GRU(3, 6, return_sequences=True), mnn.GRU(6, 6, return_sequences=True)], rng)
    ref = _torch_rnn(torch.nn.GRU, model.layers)
    x = rand(xp, rng, (4, 15, 3))
    seq, _ = _torch_seq(ref, x)
    close(run(model, x), seq, SEQ_RTOL, SEQ_ATOL)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_in, n_out", [(7, 3), (3, 11)])
def test_dense_matches_torch(xp, rng, bias, n_in, n_out):
    model = build([mnn.Dense(n_in, n_out, bias=bias)], rng)
    d = model.layers[0]
    ref = torch.nn.Linear(n_in, n_out, bias=bias)
    set_(ref.weight, d.weight)
    if bias:
        set_(ref.bias, d.bias)
    x = rand(xp, rng, (8, n_in))
    close(run(model, x), torch_out(ref, x))


def test_mlp_matches_torch(xp, rng):
    model = build([mnn.Flatten(), mnn.Dense(12, 9), mnn.Tanh(), mnn.Dense(9, 4), mnn.Softmax()], rng)
    ref = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 9), torch.nn.Tanh(), torch.nn.Linear(9, 4), torch.nn.Softmax(dim=-1)
    )
    for k in (1, 3):
        set_(ref[k].weight, model.layers[k].weight)
        set_(ref[k].bias, model.layers[k].bias)
    x = rand(xp, rng, (6, 3, 4))
    close(run(model, x), torch_out(ref, x))


@pytest.mark.parametrize("shape, scale", [((6, 10), 1.0), ((3, 4, 7), 3.0), ((5, 8), 400.0)])
def test_softmax_matches_torch(xp, rng, shape, scale):
    """Softmax over the last axis; scale 400 would overflow exp() in float32 without max-subtraction."""
    x = rand(xp, rng, shape, scale=scale)
    out = minirso.to_numpy(mnn.Softmax()(x))
    assert np.all(np.isfinite(out))
    close(out, torch.softmax(tt(x), dim=-1).numpy(), rtol=1e-5, atol=1e-6)
    close(out.sum(axis=-1), np.ones(shape[:-1]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 10), (3, 4, 5, 2)])
def test_activations_match_torch(xp, rng, shape):
    x = rand(xp, rng, shape, scale=3.0)
    np.testing.assert_array_equal(minirso.to_numpy(mnn.ReLU()(x)), torch.relu(tt(x)).numpy())
    close(minirso.to_numpy(mnn.Tanh()(x)), torch.tanh(tt(x)).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(minirso.to_numpy(mnn.Flatten()(x)), torch.flatten(tt(x), 1).numpy())
    np.testing.assert_array_equal(minirso.to_numpy(mnn.Identity()(x)), tt(x).numpy())


def _copy_conv(ref, conv):
    set_(ref.weight, conv.weight)
    if conv.bias is not None:
        set_(ref.bias, conv.bias)


def _copy_bn(ref, bn):
    set_(ref.weight, bn.gamma)
    set_(ref.bias, bn.beta)
    set_(ref.running_mean, bn.running_mean)
    set_(ref.running_var, bn.running_var)


class _TorchResidual(torch.nn.Module):
    def __init__(self, body, shortcut):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("projection", [False, True])
def test_residual_matches_torch(xp, rng, projection, training):
    cout, stride = (6, 2) if projection else (4, 1)
    body = [
        mnn.Conv2d(4, cout, 3, stride=stride, padding=1),
        mnn.BatchNorm2d(cout),
        mnn.ReLU(),
        mnn.Conv2d(cout, cout, 3, padding=1, bias=False),
    ]
    shortcut = [mnn.Conv2d(4, cout, 1, stride=stride, bias=False), mnn.BatchNorm2d(cout)] if projection else None
    model = build([mnn.Conv2d(3, 4, 3, padding=1), mnn.Residual(body, shortcut), mnn.ReLU()], rng, scale=0.4)
    res = model.layers[1]
    for bn in [l for l in res.body + res.shortcut if isinstance(l, mnn.BatchNorm2d)]:
        bn.running_mean[...] = xp.asarray(rng.standard_normal(cout).astype(np.float32))
        bn.running_var[...] = xp.asarray(rng.uniform(0.2, 3.0, cout).astype(np.float32))

    tbody = torch.nn.Sequential(
        torch.nn.Conv2d(4, cout, 3, stride=stride, padding=1),
        torch.nn.BatchNorm2d(cout),
        torch.nn.ReLU(),
        torch.nn.Conv2d(cout, cout, 3, padding=1, bias=False),
    )
    _copy_conv(tbody[0], res.body[0])
    _copy_bn(tbody[1], res.body[1])
    _copy_conv(tbody[3], res.body[3])
    if projection:
        tshort = torch.nn.Sequential(torch.nn.Conv2d(4, cout, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(cout))
        _copy_conv(tshort[0], res.shortcut[0])
        _copy_bn(tshort[1], res.shortcut[1])
    else:
        tshort = torch.nn.Identity()
    stem = torch.nn.Conv2d(3, 4, 3, padding=1)
    _copy_conv(stem, model.layers[0])
    ref = torch.nn.Sequential(stem, _TorchResidual(tbody, tshort), torch.nn.ReLU()).train(training)

    model.train(training)
    assert all(l.training == training for l in res.body + res.shortcut)
    x = rand(xp, rng, (4, 3, 8, 10))
    out = run(model, x)
    expected = torch_out(ref, x)
    assert out.shape == ((4, 6, 4, 5) if projection else (4, 4, 8, 10))
    close(out, expected)


def test_residual_shape_mismatch_raises(xp, rng):
    model = build([mnn.Residual([mnn.Conv2d(4, 6, 3, padding=1)], name="block1")], rng)
    with pytest.raises(ValueError, match="block1.*projection shortcut"):
        model(rand(xp, rng, (2, 4, 5, 6)))


# =============================================================================================
# 3. bad inputs: ValueError naming the layer and the expected shape
# =============================================================================================
def _msg(name, expect):
    return re.escape(name) + ".*" + re.escape(expect)


BAD_INPUT_CASES = [
    # layer factory, expected-shape text, a good input shape, wrong shapes (ndim and size)
    (
        lambda: mnn.Conv2d(16, 8, 3, name="conv1"),
        "(N, 16, H, W)",
        (2, 16, 5, 6),
        [(16, 5, 6), (2, 16, 5, 6, 1), (2, 15, 5, 6), (2, 6, 5, 16)],
    ),
    (lambda: mnn.Dense(10, 3, name="fc1"), "(N, 10)", (4, 10), [(10,), (4, 2, 10), (4, 9), (10, 4)]),
    (lambda: mnn.BatchNorm2d(6, name="bn1"), "(N, 6, H, W)", (3, 6, 4, 5), [(3, 6, 4), (3, 5, 4, 5), (3, 4, 5, 6)]),
    (lambda: mnn.BatchNorm1d(5, name="bn2"), "(N, 5) or (N, 5, L)", (3, 5), [(5,), (3, 5, 2, 2), (3, 4), (3, 4, 5)]),
    (lambda: mnn.LayerNorm((4, 5), name="ln1"), "(N, ..., 4, 5)", (3, 4, 5), [(4, 5), (3, 5, 4), (3, 4, 6), (5,)]),
    (lambda: mnn.LayerNorm(7, name="ln2"), "(N, ..., 7)", (3, 7), [(7,), (3, 6), (3, 7, 2)]),
    (lambda: mnn.RNN(3, 8, name="rnn1"), "(N, T, 3)", (2, 5, 3), [(5, 3), (2, 5, 3, 1), (2, 5, 4), (2, 3, 5)]),
    (lambda: mnn.GRU(3, 8, name="gru1"), "(N, T, 3)", (2, 5, 3), [(5, 3), (2, 5, 2), (2, 3, 5)]),
    (lambda: mnn.MaxPool2d(2, name="pool1"), "(N, C, H, W)", (2, 3, 4, 4), [(3, 4, 4), (2, 3, 4, 4, 1)]),
    (lambda: mnn.AvgPool2d(2, name="pool2"), "(N, C, H, W)", (2, 3, 4, 4), [(3, 4, 4)]),
    (lambda: mnn.GlobalAvgPool2d(name="gap"), "(N, C, H, W)", (2, 3, 4, 4), [(2, 3), (2, 3, 4)]),
    (lambda: mnn.ReLU(name="act1"), "(N, ...)", (2, 3), []),
    (lambda: mnn.Tanh(name="act2"), "(N, ...)", (2, 3), []),
    (lambda: mnn.Softmax(name="probs"), "(N, ..., classes)", (2, 3), []),
    (lambda: mnn.Identity(name="skip"), "(N, ...)", (2, 3), []),
    (lambda: mnn.Flatten(name="flat"), "(N, ...)", (2, 3, 4), []),
    (lambda: mnn.Residual([mnn.Identity()], name="res1"), "(N, ...)", (2, 3), []),
]


def _bad_cases():
    """One pytest param per (layer, bad input): each wrong shape in float32, then the good shape in float64 / int32."""
    for factory, expect, good, wrong in BAD_INPUT_CASES:
        name = factory().name
        for shape in wrong:
            yield pytest.param(factory, expect, good, shape, np.float32, id=f"{name}-shape{shape}")
        for dtype in (np.float64, np.int32):
            yield pytest.param(factory, expect, good, good, dtype, id=f"{name}-{np.dtype(dtype).name}")


@pytest.mark.parametrize("factory, expect, good, shape, dtype", list(_bad_cases()))
def test_bad_input_raises_value_error_naming_layer_and_shape(xp, rng, factory, expect, good, shape, dtype):
    layer = factory()
    name = layer.name
    model = build([layer], rng)
    assert model.layers[0] is layer and layer.name == name  # the model keeps the given name
    layer(rand(xp, rng, good))  # sanity: the good shape in float32 is accepted
    if np.dtype(dtype).kind == "f":
        bad = rand(xp, rng, shape, dtype=dtype)
    else:
        bad = xp.asarray(rng.integers(-3, 4, shape).astype(dtype))
    with pytest.raises(ValueError, match=_msg(name, expect)):
        layer(bad)
    if dtype is not np.float32:  # a dtype complaint says which dtype it got
        with pytest.raises(ValueError, match=np.dtype(dtype).name):
            layer(bad)


@pytest.mark.parametrize("factory", [lambda: mnn.Dense(3, 2, name="fc1"), lambda: mnn.ReLU(name="act1")])
def test_non_array_input_raises(rng, factory):
    layer = factory()
    build([layer], rng)
    with pytest.raises(ValueError, match=re.escape(layer.name)):
        layer([[1.0, 2.0, 3.0]])


def test_zero_dim_input_raises(xp):
    with pytest.raises(ValueError, match="act"):
        mnn.Tanh(name="act")(xp.asarray(np.float32(1.0)))


@pytest.mark.parametrize(
    "factory, shape",
    [
        (lambda: mnn.Conv2d(2, 3, 3, name="conv1"), (1, 2, 2, 5)),  # H < kh
        (lambda: mnn.Conv2d(2, 3, (2, 4), name="conv1"), (1, 2, 5, 3)),  # W < kw
        (lambda: mnn.Conv2d(2, 3, 5, padding=1, name="conv1"), (1, 2, 2, 6)),  # padded H 4 < 5
        (lambda: mnn.MaxPool2d(3, name="pool1"), (1, 2, 2, 4)),
        (lambda: mnn.AvgPool2d((2, 3), name="pool1"), (1, 2, 4, 2)),
        (lambda: mnn.AvgPool2d(4, padding=1, name="pool1"), (1, 2, 1, 5)),
    ],
)
def test_input_smaller_than_kernel_raises(xp, rng, factory, shape):
    layer = factory()
    build([layer], rng)
    with pytest.raises(ValueError, match=re.escape(layer.name) + ".*smaller"):
        layer(rand(xp, rng, shape))


def test_bad_layer_arguments_raise():
    with pytest.raises(ValueError):
        mnn.Conv2d(2, 3, 0)
    with pytest.raises(ValueError):
        mnn.Conv2d(2, 3, 3, stride=0)
    with pytest.raises(ValueError):
        mnn.Conv2d(2, 3, 3, padding=-1)
    with pytest.raises(ValueError, match="at most half"):
        mnn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="at most half"):
        mnn.AvgPool2d((3, 2), padding=(1, 2))


# =============================================================================================
# 4. float16 inputs: accepted, result is the float32 result of the upcast input
# =============================================================================================
def _torch_rnn_last(cls, layer):
    ref = _torch_rnn(cls, [layer])
    return lambda t: ref(t)[1][0]


FP16_CASES = [
    # minirso layer, torch module builder (given the bound minirso layer), input shape
    (
        "conv",
        lambda: mnn.Conv2d(3, 4, (3, 2), stride=2, padding=1),
        lambda l: _with(torch.nn.Conv2d(3, 4, (3, 2), stride=2, padding=1), weight=l.weight, bias=l.bias),
        (3, 3, 7, 6),
    ),
    ("dense", lambda: mnn.Dense(6, 4), lambda l: _with(torch.nn.Linear(6, 4), weight=l.weight, bias=l.bias), (5, 6)),
    (
        "bn2d",
        lambda: mnn.BatchNorm2d(3),
        lambda l: _with(torch.nn.BatchNorm2d(3), weight=l.gamma, bias=l.beta),
        (4, 3, 5, 6),
    ),
    ("bn1d", lambda: mnn.BatchNorm1d(3), lambda l: _with(torch.nn.BatchNorm1d(3), weight=l.gamma, bias=l.beta), (6, 3)),
    (
        "ln",
        lambda: mnn.LayerNorm((4, 5)),
        lambda l: _with(torch.nn.LayerNorm((4, 5)), weight=l.gamma, bias=l.beta),
        (3, 4, 5),
    ),
    ("avgpool", lambda: mnn.AvgPool2d(3, 2, 1), lambda l: torch.nn.AvgPool2d(3, 2, 1), (2, 3, 7, 6)),
    ("maxpool", lambda: mnn.MaxPool2d(3, 2, 1), lambda l: torch.nn.MaxPool2d(3, 2, 1), (2, 3, 7, 6)),
    ("gap", lambda: mnn.GlobalAvgPool2d(), lambda l: lambda t: t.mean(dim=(2, 3)), (2, 3, 7, 6)),
    ("relu", lambda: mnn.ReLU(), lambda l: torch.nn.ReLU(), (4, 5)),
    ("tanh", lambda: mnn.Tanh(), lambda l: torch.nn.Tanh(), (4, 5)),
    ("softmax", lambda: mnn.Softmax(), lambda l: torch.nn.Softmax(dim=-1), (4, 5)),
    ("flatten", lambda: mnn.Flatten(), lambda l: torch.nn.Flatten(), (4, 2, 3)),
    ("identity", lambda: mnn.Identity(), lambda l: torch.nn.Identity(), (4, 5)),
    ("rnn", lambda: mnn.RNN(3, 5), lambda l: _torch_rnn_last(torch.nn.RNN, l), (2, 6, 3)),
    ("gru", lambda: mnn.GRU(3, 5), lambda l: _torch_rnn_last(torch.nn.GRU, l), (2, 6, 3)),
]


def _with(module, **params):
    for k, v in params.items():
        set_(getattr(module, k), v)
    return module


@pytest.mark.parametrize("name, factory, torch_builder, shape", FP16_CASES, ids=[c[0] for c in FP16_CASES])
def test_float16_input_gives_float32_result_of_upcast(xp, rng, name, factory, torch_builder, shape):
    layer = factory()
    build([layer], rng)
    x16 = rand(xp, rng, shape, dtype=np.float16)
    out = layer(x16)
    assert out.dtype == np.float32
    x32 = x16.astype(np.float32)  # exact: every float16 is a float32
    with torch.no_grad():
        expected = torch_builder(layer)(tt(x32)).numpy()
    close(minirso.to_numpy(out), expected)
    # and exactly what the layer gives for the upcast input itself
    np.testing.assert_allclose(minirso.to_numpy(out), minirso.to_numpy(layer(x32)), rtol=1e-6, atol=1e-7)


def test_foreign_array_types_get_a_value_error():
    """A torch tensor (or a list) is not silently interpreted: the error names the layer and the type."""
    with pytest.raises(ValueError, match=r"ReLU 'a'.*NumPy or CuPy array.*torch"):
        mnn.ReLU(name="a")(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"Dense 'fc'.*\(N, 3\).*list"):
        mnn.Dense(3, 2, name="fc")([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("shape", [(24, 3, 12, 12), (256, 16, 7, 7), (7, 5, 3, 3), (30, 4), (9, 6, 11)])
def test_batch_norm_train_one_channel_alone_is_bit_identical(rng, shape):
    """F.batch_norm_train of channel c alone gives bit for bit what channel c gets among all channels:
    RSO's incremental evaluator recomputes one channel and must match the full layer exactly (NumPy)."""
    x = (rng.standard_normal(shape) * 2 + 0.3).astype(np.float32)
    g = rng.standard_normal(shape[1]).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    full, mean, var = F.batch_norm_train(x, g, b, 1e-5)
    axes = (0,) + tuple(range(2, x.ndim))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=axes), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, x64.var(axis=axes), rtol=1e-5)
    for c in range(shape[1]):
        for xc in (x[:, c : c + 1], np.ascontiguousarray(x[:, c : c + 1])):  # a strided view and a copy
            one = F.batch_norm_train(xc, g[c : c + 1], b[c : c + 1], 1e-5)[0]
            np.testing.assert_array_equal(one, full[:, c : c + 1])
