"""Signal norm (aMC paper, sec. III B, eqs. 17-18) against hand computations.

For a weight x_i feeding neuron j:

    lambda_i = ( N_data^-1 sum_alpha sum_{i' -> j} (S_i'^alpha)^2 )^(-1/2),

lambda = 0 when every input of the neuron is zero over the data, lambda = 1 for
biases / normalisation shifts.  Every expected value below is computed in the
test with explicit loops or plain NumPy (float64), never with minirso's
functional helpers.  Inputs are made on the active backend (``xp`` fixture) so
the file also runs under MINIRSO_BACKEND=cupy.
"""

import math

import numpy as np
import pytest

import minirso
from minirso.nn import (
    GRU,
    RNN,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    LayerNorm,
    ReLU,
    Sequential,
    Tanh,
)

RTOL = 1e-5


# ---- helpers -------------------------------------------------------------------------------------
def collect_lambda(model, *batches):
    """Run ``batches`` (each one forward pass) inside one signal_stats block; return lambda as NumPy."""
    with model.signal_stats():
        for b in batches:
            model(b)
    lam = model.signal_norm_lambda()
    assert lam.shape == model.params.shape
    assert lam.dtype == np.float32
    assert minirso.get_array_module(lam) is minirso.get_array_module(model.params)
    return minirso.to_numpy(lam)


def part(model, lam, name):
    """The slice of the flat lambda array that belongs to parameter tensor ``name``, in its shape."""
    for g in model.param_groups:
        if g.name == name:
            return lam[g.slice].reshape(g.shape)
    raise KeyError(f"{name!r} not in {[g.name for g in model.param_groups]}")


def param(model, name):
    """A parameter tensor as float64 NumPy (a copy)."""
    for g in model.param_groups:
        if g.name == name:
            return minirso.to_numpy(model.params[g.slice]).reshape(g.shape).astype(np.float64)
    raise KeyError(name)


def set_param(model, name, value, xp):
    for g in model.param_groups:
        if g.name == name:
            model.params[g.slice] = xp.asarray(np.asarray(value, dtype=np.float32).reshape(-1))
            return
    raise KeyError(name)


def on(xp, a):
    return xp.asarray(np.asarray(a, dtype=np.float32))


def lam_from_q(q):
    """Eq. (17) with the paper's regularisation, elementwise on a float64 array of data-averaged q_j."""
    q = np.asarray(q, dtype=np.float64)
    out = np.zeros_like(q)
    pos = q > 0
    out[pos] = 1.0 / np.sqrt(q[pos])
    return out


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


# ---- Dense ---------------------------------------------------------------------------------------
def test_dense_paper_example(xp):
    """Inputs [[1, 2], [3, 0]]: q per sample is 1+4=5 and 9+0=9, mean 7, lambda = 1/sqrt(7)."""
    model = Sequential(Dense(2, 3), seed=0)
    lam = collect_lambda(model, on(xp, [[1.0, 2.0], [3.0, 0.0]]))
    np.testing.assert_allclose(part(model, lam, "dense0.weight"), np.full((3, 2), 1 / math.sqrt(7.0)), rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "dense0.bias"), np.ones(3, np.float32))


def test_dense_matches_explicit_loops(xp):
    x = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.75], [-2.5, 1.5, 0.0], [0.1, 0.2, 4.0]], np.float32)  # (4, 3)
    model = Sequential(Dense(3, 2), seed=3)
    lam = collect_lambda(model, on(xp, x))
    w_lam = part(model, lam, "dense0.weight")
    for j in range(2):  # neuron j
        total = 0.0
        for a in range(4):  # data
            for i in range(3):  # inputs feeding j
                total += float(x[a, i]) ** 2
        expected = (total / 4) ** -0.5
        for i in range(3):
            assert w_lam[j, i] == pytest.approx(expected, rel=RTOL)
    np.testing.assert_array_equal(part(model, lam, "dense0.bias"), np.ones(2, np.float32))


def test_dense_without_bias_and_lambda_does_not_depend_on_weights(xp):
    x = on(xp, [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    model = Sequential(Dense(3, 4, bias=False), seed=1)
    lam1 = collect_lambda(model, x)
    model.params[...] = model.params * 7.0 - 1.0  # lambda depends on the signals only, not on this layer's weights
    lam2 = collect_lambda(model, x)
    expected = ((1 + 4 + 0.25 + 0 + 9 + 1) / 2) ** -0.5
    np.testing.assert_allclose(lam1, np.full(12, expected), rtol=RTOL)
    np.testing.assert_array_equal(lam1, lam2)


# ---- Conv2d --------------------------------------------------------------------------------------
def conv_expected_q(x, kernel, stride, padding):
    """Mean over samples and output positions of the zero-padded patch's sum of squares (explicit loops)."""
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    total, count = 0.0, 0
    for a in range(n):
        for oi in range(ho):
            for oj in range(wo):
                s = 0.0
                for ch in range(c):
                    for u in range(kh):
                        for v in range(kw):
                            r, col = oi * sh + u - ph, oj * sw + v - pw  # position in the unpadded image
                            if 0 <= r < h and 0 <= col < w:  # outside: zero padding, contributes 0
                                s += float(x[a, ch, r, col]) ** 2
                total += s
                count += 1
    return total / count, (ho, wo)


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (2, 1), (1, 0)), ((2, 2), (1, 1), (0, 0))],
)
def test_conv2d_matches_explicit_patch_loops(xp, rng, kernel, stride, padding):
    x = (rng.standard_normal((2, 2, 3, 4)) * np.array([1.0, 3.0])[None, :, None, None] + 0.5).astype(np.float32)
    conv = Conv2d(2, 3, kernel, stride=stride, padding=padding)
    model = Sequential(conv, seed=0)
    q, (ho, wo) = conv_expected_q(x, kernel, stride, padding)
    lam = collect_lambda(model, on(xp, x))
    assert model(on(xp, x)).shape == (2, 3, ho, wo)
    np.testing.assert_allclose(part(model, lam, "conv2d0.weight"), np.full((3, 2) + kernel, q**-0.5), rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "conv2d0.bias"), np.ones(3, np.float32))


def test_conv2d_padding_counts_as_zero_inputs(xp):
    """A 1x1 image of value 2, kernel 3, padding 1: one position, one non-zero tap -> q = 4 (not 4 * 9/1 or 36)."""
    model = Sequential(Conv2d(1, 2, 3, padding=1), seed=0)
    lam = collect_lambda(model, on(xp, np.full((1, 1, 1, 1), 2.0)))
    np.testing.assert_allclose(part(model, lam, "conv2d0.weight"), np.full((2, 1, 3, 3), 0.5), rtol=RTOL)


def test_conv2d_hand_example_stride_two(xp):
    """1 channel, 2x2 image [[1, 2], [3, 4]], kernel 2, padding 1, stride 2 -> 2x2 outputs, each patch one pixel:
    q = mean(1, 4, 9, 16) = 7.5."""
    model = Sequential(Conv2d(1, 1, 2, stride=2, padding=1), seed=0)
    lam = collect_lambda(model, on(xp, [[[[1.0, 2.0], [3.0, 4.0]]]]))
    np.testing.assert_allclose(part(model, lam, "conv2d0.weight"), np.full((1, 1, 2, 2), 7.5**-0.5), rtol=RTOL)


# ---- two-layer net -------------------------------------------------------------------------------
def test_second_layer_uses_previous_activations(xp, rng):
    x = (rng.standard_normal((5, 3)) * np.array([0.5, 2.0, 1.0]) + np.array([0.0, 1.0, -0.5])).astype(np.float32)
    model = Sequential(Dense(3, 4), Tanh(), Dense(4, 2), seed=11)
    lam = collect_lambda(model, on(xp, x))

    w1, b1 = param(model, "dense0.weight"), param(model, "dense0.bias")
    s = np.empty((5, 4))  # tanh outputs: the signals S_i' feeding layer 2
    for a in range(5):
        for j in range(4):
            pre = b1[j]
            for i in range(3):
                pre += w1[j, i] * float(x[a, i])
            s[a, j] = math.tanh(pre)
    q1 = sum(float(x[a, i]) ** 2 for a in range(5) for i in range(3)) / 5
    q2 = sum(s[a, i] ** 2 for a in range(5) for i in range(4)) / 5

    np.testing.assert_allclose(part(model, lam, "dense0.weight"), np.full((4, 3), q1**-0.5), rtol=RTOL)
    np.testing.assert_allclose(part(model, lam, "dense2.weight"), np.full((2, 4), q2**-0.5), rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "dense0.bias"), np.ones(4, np.float32))
    np.testing.assert_array_equal(part(model, lam, "dense2.bias"), np.ones(2, np.float32))
    assert q1 != pytest.approx(q2, rel=1e-2)  # the two layers really see different signals


# ---- recurrent layers ----------------------------------------------------------------------------
def test_rnn_sums_input_and_recurrent_signals_over_batch_and_time(xp, rng):
    n, t_len, ni, nh = 3, 4, 2, 3
    x = (rng.standard_normal((n, t_len, ni)) * np.array([1.0, 2.5]) + 0.3).astype(np.float32)
    model = Sequential(RNN(ni, nh, return_sequences=True), seed=5)
    out = minirso.to_numpy(model(on(xp, x)))
    lam = collect_lambda(model, on(xp, x))

    w_ih, w_hh, b = param(model, "rnn0.weight_ih"), param(model, "rnn0.weight_hh"), param(model, "rnn0.bias")
    total = 0.0
    hs = np.zeros((n, t_len, nh))
    for a in range(n):
        h = np.zeros(nh)  # h_0 = 0
        for t in range(t_len):
            xt = x[a, t].astype(np.float64)
            total += float(xt @ xt) + float(h @ h)  # inputs x_t and h_{t-1} of every hidden neuron
            h = np.tanh(w_ih @ xt + w_hh @ h + b)
            hs[a, t] = h
    np.testing.assert_allclose(out, hs, rtol=1e-4, atol=1e-6)  # my loop is the layer's recurrence
    expected = (total / (n * t_len)) ** -0.5
    np.testing.assert_allclose(part(model, lam, "rnn0.weight_ih"), np.full((nh, ni), expected), rtol=RTOL)
    np.testing.assert_allclose(part(model, lam, "rnn0.weight_hh"), np.full((nh, nh), expected), rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "rnn0.bias"), np.ones(nh, np.float32))


def test_stacked_rnn_second_layer_sees_first_layer_sequence(xp, rng):
    n, t_len = 2, 3
    x = rng.standard_normal((n, t_len, 2)).astype(np.float32)
    model = Sequential(RNN(2, 3, return_sequences=True), RNN(3, 2), seed=2)
    seq = minirso.to_numpy(model(on(xp, x), stop=1)).astype(np.float64)  # (N, T, 3): layer 2's inputs
    lam = collect_lambda(model, on(xp, x))
    w_ih, w_hh, b = param(model, "rnn1.weight_ih"), param(model, "rnn1.weight_hh"), param(model, "rnn1.bias")
    total = 0.0
    for a in range(n):
        h = np.zeros(2)
        for t in range(t_len):
            total += float(seq[a, t] @ seq[a, t]) + float(h @ h)
            h = np.tanh(w_ih @ seq[a, t] + w_hh @ h + b)
    np.testing.assert_allclose(part(model, lam, "rnn1.weight_ih"), np.full((2, 3), (total / 6) ** -0.5), rtol=RTOL)
    np.testing.assert_allclose(part(model, lam, "rnn1.weight_hh"), np.full((2, 2), (total / 6) ** -0.5), rtol=RTOL)


def test_gru_n_gate_scales_recurrent_signal_by_reset_gate(xp, rng):
    n, t_len, ni, nh = 3, 4, 2, 3
    x = (rng.standard_normal((n, t_len, ni)) * np.array([1.5, 0.5]) - 0.2).astype(np.float32)
    model = Sequential(GRU(ni, nh, return_sequences=True), seed=9)
    # non-zero biases so the gates are not symmetric around 0.5
    set_param(model, "gru0.bias_ih", np.linspace(-0.8, 0.9, 3 * nh), xp)
    set_param(model, "gru0.bias_hh", np.linspace(0.5, -0.6, 3 * nh), xp)
    out = minirso.to_numpy(model(on(xp, x)))
    lam = collect_lambda(model, on(xp, x))

    w_ih, w_hh = param(model, "gru0.weight_ih"), param(model, "gru0.weight_hh")
    b_ih, b_hh = param(model, "gru0.bias_ih"), param(model, "gru0.bias_hh")
    q = np.zeros(3 * nh)  # per neuron, gate order r, z, n
    hs = np.zeros((n, t_len, nh))
    for a in range(n):
        h = np.zeros(nh)
        for t in range(t_len):
            xt = x[a, t].astype(np.float64)
            gi, gh = w_ih @ xt + b_ih, w_hh @ h + b_hh
            r = sigmoid(gi[:nh] + gh[:nh])
            z = sigmoid(gi[nh : 2 * nh] + gh[nh : 2 * nh])
            cand = np.tanh(gi[2 * nh :] + r * gh[2 * nh :])
            for j in range(nh):
                q[j] += float(xt @ xt) + float(h @ h)  # r gate
                q[nh + j] += float(xt @ xt) + float(h @ h)  # z gate
                q[2 * nh + j] += float(xt @ xt) + r[j] ** 2 * float(h @ h)  # n gate: h reaches it through r_j
            h = (1.0 - z) * cand + z * h
            hs[a, t] = h
    np.testing.assert_allclose(out, hs, rtol=1e-4, atol=1e-6)  # my loop is the layer's recurrence (PyTorch order)
    expected = lam_from_q(q / (n * t_len))
    assert not np.allclose(expected[2 * nh :], expected[0])  # the r scaling matters in this case
    np.testing.assert_allclose(part(model, lam, "gru0.weight_ih"), np.repeat(expected[:, None], ni, 1), rtol=RTOL)
    np.testing.assert_allclose(part(model, lam, "gru0.weight_hh"), np.repeat(expected[:, None], nh, 1), rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "gru0.bias_ih"), np.ones(3 * nh, np.float32))
    np.testing.assert_array_equal(part(model, lam, "gru0.bias_hh"), np.ones(3 * nh, np.float32))


def test_gru_matches_torch_forward(xp, rng):
    """Sanity check that the hand loop above follows PyTorch's GRU (the gate convention the spec names)."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    model = Sequential(GRU(2, 3), seed=4)
    set_param(model, "gru0.bias_ih", np.linspace(-0.5, 0.5, 9), xp)
    set_param(model, "gru0.bias_hh", np.linspace(0.3, -0.3, 9), xp)
    ref = torch.nn.GRU(2, 3, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.from_numpy(param(model, "gru0.weight_ih").astype(np.float32)))
        ref.weight_hh_l0.copy_(torch.from_numpy(param(model, "gru0.weight_hh").astype(np.float32)))
        ref.bias_ih_l0.copy_(torch.from_numpy(param(model, "gru0.bias_ih").astype(np.float32)))
        ref.bias_hh_l0.copy_(torch.from_numpy(param(model, "gru0.bias_hh").astype(np.float32)))
        _, h = ref(torch.from_numpy(x))
    np.testing.assert_allclose(minirso.to_numpy(model(on(xp, x))), h[0].numpy(), rtol=1e-5, atol=1e-6)


# ---- normalisation layers ------------------------------------------------------------------------
def test_batchnorm2d_gamma_train_mode(xp, rng):
    x = (rng.standard_normal((3, 2, 2, 3)) * np.array([0.01, 5.0])[None, :, None, None] + 1.0).astype(np.float32)
    eps = 1e-3  # large enough that var/(var+eps) differs clearly from 1 for the small-variance channel
    model = Sequential(BatchNorm2d(2, eps=eps), seed=0)
    lam = collect_lambda(model, on(xp, x))
    xd = x.astype(np.float64)
    expected = np.empty(2)
    for c in range(2):
        vals = xd[:, c].ravel()
        mean = vals.sum() / vals.size
        var = ((vals - mean) ** 2).sum() / vals.size  # biased: what train mode normalises with
        xhat2 = sum(((v - mean) / math.sqrt(var + eps)) ** 2 for v in vals) / vals.size
        assert xhat2 == pytest.approx(var / (var + eps), rel=1e-9)
        expected[c] = xhat2**-0.5
    assert expected[0] > 1.01  # the eps effect is visible, so a lambda of 1 would fail
    np.testing.assert_allclose(part(model, lam, "batchnorm2d0.gamma"), expected, rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "batchnorm2d0.beta"), np.ones(2, np.float32))


def test_batchnorm_eval_mode_uses_running_statistics(xp):
    x = np.array([[1.0, -2.0], [3.0, 0.0], [-1.0, 4.0]], np.float32)  # (N=3, C=2)
    bn = BatchNorm1d(2, eps=0.0)
    model = Sequential(bn, seed=0)
    bn.running_mean[...] = on(xp, [0.5, 1.0])
    bn.running_var[...] = on(xp, [4.0, 0.25])
    model.eval()
    lam = collect_lambda(model, on(xp, x))
    q0 = ((1 - 0.5) ** 2 + (3 - 0.5) ** 2 + (-1 - 0.5) ** 2) / 4.0 / 3  # (x - mean)^2 / var, averaged
    q1 = ((-2 - 1) ** 2 + (0 - 1) ** 2 + (4 - 1) ** 2) / 0.25 / 3
    np.testing.assert_allclose(part(model, lam, "batchnorm1d0.gamma"), [q0**-0.5, q1**-0.5], rtol=RTOL)


def test_batchnorm1d_sequence_input_averages_over_batch_and_length(xp, rng):
    x = (rng.standard_normal((2, 3, 4)) * np.array([1.0, 0.02, 3.0])[None, :, None]).astype(np.float32)
    eps = 1e-3
    model = Sequential(BatchNorm1d(3, eps=eps), seed=0)
    lam = collect_lambda(model, on(xp, x))
    xd = x.astype(np.float64)
    var = np.array([xd[:, c].var() for c in range(3)])
    np.testing.assert_allclose(part(model, lam, "batchnorm1d0.gamma"), (var / (var + eps)) ** -0.5, rtol=RTOL)


def test_layernorm_gamma(xp, rng):
    """normalized_shape (2, 3) on input (N=2, 4, 2, 3): each gamma element averages xhat^2 over the 8 rows."""
    x = (rng.standard_normal((2, 4, 2, 3)) * np.linspace(0.01, 3.0, 6).reshape(2, 3) + 0.7).astype(np.float32)
    x[0, 0] = 5.0  # one constant row: xhat = 0 there, pulls the average down unevenly
    eps = 1e-2
    model = Sequential(LayerNorm((2, 3), eps=eps), seed=0)
    lam = collect_lambda(model, on(xp, x))
    q = np.zeros((2, 3))
    rows = 0
    for a in range(2):
        for k in range(4):
            row = x[a, k].astype(np.float64)
            mean = row.sum() / 6
            var = ((row - mean) ** 2).sum() / 6
            q += ((row - mean) / math.sqrt(var + eps)) ** 2
            rows += 1
    np.testing.assert_allclose(part(model, lam, "layernorm0.gamma"), lam_from_q(q / rows), rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "layernorm0.beta"), np.ones((2, 3), np.float32))


# ---- regularisation: zero inputs -> lambda 0 -----------------------------------------------------
def test_dense_all_zero_input_gives_zero_lambda(xp):
    model = Sequential(Dense(3, 2), seed=0)
    lam = collect_lambda(model, xp.zeros((4, 3), dtype=xp.float32))
    assert np.all(np.isfinite(lam))
    np.testing.assert_array_equal(part(model, lam, "dense0.weight"), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(part(model, lam, "dense0.bias"), np.ones(2, np.float32))


def test_conv_all_zero_input_gives_zero_lambda(xp):
    model = Sequential(Conv2d(2, 3, 3, padding=1), seed=0)
    lam = collect_lambda(model, xp.zeros((2, 2, 3, 4), dtype=xp.float32))
    np.testing.assert_array_equal(part(model, lam, "conv2d0.weight"), np.zeros((3, 2, 3, 3), np.float32))
    np.testing.assert_array_equal(part(model, lam, "conv2d0.bias"), np.ones(3, np.float32))


def test_layer_after_dead_relu_gets_zero_lambda(xp):
    model = Sequential(Dense(2, 3), ReLU(), Dense(3, 2), seed=0)
    set_param(model, "dense0.weight", np.zeros((3, 2)), xp)
    set_param(model, "dense0.bias", [-1.0, -2.0, -0.5], xp)  # ReLU kills everything
    lam = collect_lambda(model, on(xp, [[1.0, 2.0], [3.0, 0.0]]))
    assert np.all(np.isfinite(lam))
    np.testing.assert_allclose(part(model, lam, "dense0.weight"), np.full((3, 2), 7**-0.5), rtol=RTOL)
    np.testing.assert_array_equal(part(model, lam, "dense2.weight"), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(part(model, lam, "dense2.bias"), np.ones(2, np.float32))


def test_zero_lambda_is_per_neuron(xp):
    """BatchNorm channel 1 is constant (xhat = 0 for all data): only its gamma gets 0, channel 0 stays finite."""
    x = np.zeros((4, 2), np.float32)
    x[:, 0] = [1.0, -1.0, 2.0, 0.5]
    x[:, 1] = 3.0
    eps = 1e-5
    model = Sequential(BatchNorm1d(2, eps=eps), seed=0)
    lam = part(model, collect_lambda(model, on(xp, x)), "batchnorm1d0.gamma")
    var0 = x[:, 0].astype(np.float64).var()
    assert lam[1] == 0.0
    assert lam[0] == pytest.approx((var0 / (var0 + eps)) ** -0.5, rel=RTOL)


def test_rnn_zero_input_zero_lambda(xp):
    """Zero input, zero bias: h stays 0, so every neuron's inputs vanish."""
    model = Sequential(RNN(2, 3), seed=0)
    set_param(model, "rnn0.bias", np.zeros(3), xp)
    lam = collect_lambda(model, xp.zeros((2, 4, 2), dtype=xp.float32))
    np.testing.assert_array_equal(part(model, lam, "rnn0.weight_ih"), np.zeros((3, 2), np.float32))
    np.testing.assert_array_equal(part(model, lam, "rnn0.weight_hh"), np.zeros((3, 3), np.float32))


# ---- chunking and resets -------------------------------------------------------------------------
def _chunk_model():
    return Sequential(
        Conv2d(2, 3, 3, padding=1, stride=2),
        Tanh(),
        minirso.nn.Flatten(),
        Dense(3 * 2 * 2, 4),
        Tanh(),
        Dense(4, 2),
        seed=7,
    )


def test_chunks_equal_one_pass(xp, rng):
    x = (rng.standard_normal((7, 2, 3, 4)) + 0.4).astype(np.float32)
    model = _chunk_model()
    whole = collect_lambda(model, on(xp, x))
    chunked = collect_lambda(model, on(xp, x[:2]), on(xp, x[2:3]), on(xp, x[3:]))  # unequal chunk sizes
    np.testing.assert_allclose(chunked, whole, rtol=RTOL)
    # and the hand value for the first layer, to be sure the whole-data value itself is the data average
    q, _ = conv_expected_q(x, (3, 3), (2, 2), (1, 1))
    np.testing.assert_allclose(part(model, chunked, "conv2d0.weight"), np.full((3, 2, 3, 3), q**-0.5), rtol=RTOL)


def test_chunks_equal_one_pass_recurrent(xp, rng):
    x = (rng.standard_normal((5, 4, 2)) + 0.2).astype(np.float32)
    model = Sequential(GRU(2, 3, return_sequences=True), RNN(3, 2), Dense(2, 1), seed=1)
    whole = collect_lambda(model, on(xp, x))
    chunked = collect_lambda(model, on(xp, x[:1]), on(xp, x[1:4]), on(xp, x[4:]))
    np.testing.assert_allclose(chunked, whole, rtol=RTOL)


def test_entering_signal_stats_again_resets(xp):
    model = Sequential(Dense(2, 2), seed=0)
    big, small = on(xp, [[10.0, 10.0]]), on(xp, [[1.0, 2.0], [3.0, 0.0]])
    collect_lambda(model, big)
    lam = collect_lambda(model, small)  # new block: the first block's data must be forgotten
    np.testing.assert_allclose(part(model, lam, "dense0.weight"), np.full((2, 2), 7**-0.5), rtol=RTOL)


def test_forward_outside_block_does_not_record(xp):
    model = Sequential(Dense(2, 2), seed=0)
    lam_ref = collect_lambda(model, on(xp, [[1.0, 2.0], [3.0, 0.0]]))
    model(on(xp, [[100.0, 100.0]]))  # after the block: recording is off
    np.testing.assert_array_equal(minirso.to_numpy(model.signal_norm_lambda()), lam_ref)


# ---- errors --------------------------------------------------------------------------------------
def test_lambda_without_stats_raises():
    model = Sequential(Dense(2, 2), seed=0)
    with pytest.raises(RuntimeError, match="signal_stats"):
        model.signal_norm_lambda()


def test_lambda_with_empty_block_raises():
    model = Sequential(Dense(2, 2), seed=0)
    with model.signal_stats():
        pass
    with pytest.raises(RuntimeError, match="no signal-norm statistics"):
        model.signal_norm_lambda()


def test_lambda_raises_when_a_layer_was_not_reached(xp):
    model = Sequential(Dense(2, 3), Tanh(), Dense(3, 1), seed=0)
    with model.signal_stats():
        model(on(xp, [[1.0, 2.0]]), stop=1)  # the last Dense never runs
    with pytest.raises(RuntimeError, match="dense2"):
        model.signal_norm_lambda()


def test_new_block_discards_stats_of_layers_not_reached(xp):
    """A second block that stops early must not reuse the first block's statistics for the later layers."""
    model = Sequential(Dense(2, 3), Tanh(), Dense(3, 1), seed=0)
    collect_lambda(model, on(xp, [[1.0, 2.0]]))
    with model.signal_stats():
        model(on(xp, [[1.0, 2.0]]), stop=1)
    with pytest.raises(RuntimeError):
        model.signal_norm_lambda()
