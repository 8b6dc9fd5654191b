"""Tests for minirso.models: the papers' networks.

Truth comes from outside the library: parameter counts written out by hand from
the RSO paper (sec. 4.1, Table 3), the authors' code (train.py, github rohun-tripathi/RSO-gradient-free)
and the aMC paper (Fig. 1: 13,002 parameters; sec. II E; sec. II D); forward
passes re-implemented here with torch.nn.functional from the layers' weights;
initialisation checked statistically.  Inputs are made on the active backend
(``xp`` fixture) so the file also runs under MINIRSO_BACKEND=cupy.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import minirso
from minirso import models
from minirso.nn import (
    GRU,
    RNN,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dense,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    LayerNorm,
    ReLU,
    Residual,
    Sequential,
    Softmax,
    Tanh,
)

EPS = 1e-5  # LayerNorm epsilon (PyTorch's default; minirso's default)
BN_EPS = 1e-3  # the RSO nets' BatchNorm epsilon (MXNet's nd.BatchNorm default, the authors' code)


# ---- helpers ------------------------------------------------------------------------------------


def _np(a):
    return minirso.to_numpy(a)


def weights(model):
    """name -> float64 NumPy copy of every trainable tensor."""
    return {g.name: _np(model.params[g.slice]).reshape(g.shape).astype(np.float64) for g in model.param_groups}


def randomize_norms(model, rng):
    """gamma ~ U(0.5, 1.5), beta ~ N(0, 0.5^2): the init's 1 / 0 would hide a misplaced normalisation."""
    p = _np(model.params).copy()
    for g in model.param_groups:
        if g.kind in ("bn_scale", "ln_scale"):
            p[g.slice] = rng.uniform(0.5, 1.5, g.size)
        elif g.kind in ("bn_shift", "ln_shift"):
            p[g.slice] = rng.normal(0.0, 0.5, g.size)
    model.params[...] = minirso.asarray(p)  # write INTO the buffer (the layers' views follow)


def t(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def bn_train(h, w, name):
    """BatchNorm with the current batch's statistics (biased variance), as the authors' code does in training."""
    return TF.batch_norm(h, None, None, t(w[f"{name}.gamma"]), t(w[f"{name}.beta"]), training=True, eps=BN_EPS)


def global_pool(h, pool):
    """MXNet's ``Pooling(global_pool=True)`` defaults to max (the authors' l.451); "avg" the option."""
    return TF.adaptive_max_pool2d(h, 1).flatten(1) if pool == "max" else h.mean(dim=(2, 3))


def images(xp, rng, n, c, hw):
    return xp.asarray(rng.standard_normal((n, c, hw, hw)).astype(np.float32))


def assert_close(got, want, rtol=2e-4, atol=2e-4):
    np.testing.assert_allclose(_np(got), want.detach().numpy() if torch.is_tensor(want) else want, rtol=rtol, atol=atol)


# ---- independent forwards (reference README / RSO paper, written without minirso) -----------------


def torch_rso_mnist(w, x, pool="max", recipe="authors"):
    """6 x [ReLU (not before the first)] conv3x3 pad 1 no bias -> [avg pool 2 after conv 2, 4] -> BN;
    global max pool WITHOUT ReLU; FC 16 -> 10 without bias.  recipe "paper" (sec. 4.1's text): "every
    second convolution layer is followed by a 2 x 2 average pool" (2, 4, 6) and a ReLU after every BN."""
    h = t(x)
    for i in range(1, 7):
        if i > 1:
            h = TF.relu(h)
        h = TF.conv2d(h, t(w[f"conv{i}.weight"]), padding=1)
        if i in ((2, 4) if recipe == "authors" else (2, 4, 6)):
            h = TF.avg_pool2d(h, 2)
        h = bn_train(h, w, f"bn{i}")
    if recipe == "paper":
        h = TF.relu(h)
    return global_pool(h, pool) @ t(w["fc.weight"]).T


# Depth-10, written like the authors' loop over 9 conv layers (0-based): filters 16,16,16,32,...;
# pool after layer 2 and 4 (conv 3 and conv 5); pre-ReLU output of layer p added to the conv output
# of layer q for (p, q) = (0,2), (2,4), (4,6), (6,8); 1x1 conv + its own BN where channels differ.
CIFAR10_CONV = [
    "conv1",
    "res2.conv2",
    "res2.conv3",
    "res4.conv4",
    "res4.conv5",
    "res6.conv6",
    "res6.conv7",
    "res8.conv8",
    "res8.conv9",
]
CIFAR10_BN = ["bn1", "res2.bn2", "bn3", "res4.bn4", "bn5", "res6.bn6", "bn7", "res8.bn8", "bn9"]
CIFAR10_FILTERS = [16, 16, 16, 32, 32, 32, 32, 32, 32]
CIFAR10_POOL = {2, 4}
CIFAR10_SKIP = {2: 0, 4: 2, 6: 4, 8: 6}
CIFAR10_PROJ = {4: ("res4.proj", "res4.proj_bn")}


def torch_rso_cifar10(w, x, skips=True, pool="max"):
    outs, h = [], t(x)
    for q in range(9):
        inp = h if q == 0 else TF.relu(outs[q - 1])  # ReLU at the start of the next layer
        y = TF.conv2d(inp, t(w[f"{CIFAR10_CONV[q]}.weight"]), padding=1)
        if skips and q in CIFAR10_SKIP:
            s = outs[CIFAR10_SKIP[q]]  # pre-ReLU output of layer p
            if q in CIFAR10_PROJ:
                conv, bn = CIFAR10_PROJ[q]
                s = bn_train(TF.conv2d(s, t(w[f"{conv}.weight"])), w, bn)
            y = y + s
        if q in CIFAR10_POOL:
            y = TF.avg_pool2d(y, 2)
        outs.append(bn_train(y, w, CIFAR10_BN[q]))
    return global_pool(outs[-1], pool) @ t(w["fc.weight"]).T


def torch_plain_cnn(w, x, n_conv, pool_after, pool="max"):
    """Plain RSO net: conv{i} -> [pool] -> bn{i}, ReLU at the start of the next layer, GAP, FC no bias."""
    h = t(x)
    for i in range(1, n_conv + 1):
        if i > 1:
            h = TF.relu(h)
        h = TF.conv2d(h, t(w[f"conv{i}.weight"]), padding=1)
        if i in pool_after:
            h = TF.avg_pool2d(h, 2)
        h = bn_train(h, w, f"bn{i}")
    return global_pool(h, pool) @ t(w["fc.weight"]).T


def torch_mlp(w, x, n_layers, activation, layer_norm, output):
    act = {"tanh": torch.tanh, "relu": TF.relu}[activation]
    h = t(x)
    for i in range(1, n_layers + 1):
        h = TF.linear(h, t(w[f"fc{i}.weight"]), t(w[f"fc{i}.bias"]))
        if i < n_layers:
            if layer_norm:
                h = TF.layer_norm(h, h.shape[-1:], t(w[f"ln{i}.gamma"]), t(w[f"ln{i}.beta"]), eps=EPS)
            h = act(h)
    if output == "softmax":
        h = torch.softmax(h, dim=-1)
    elif output == "tanh":
        h = torch.tanh(h)
    return h


# ---- parameter counts, by hand ------------------------------------------------------------------


def test_rso_mnist_param_count():
    # conv1 1->16 3x3, conv2..6 16->16 3x3 (no biases), 6 BN (gamma, beta) of 16, FC 16 -> 10 no bias
    want = 1 * 16 * 9 + 5 * 16 * 16 * 9 + 6 * 2 * 16 + 16 * 10
    assert want == 12016
    assert models.rso_mnist().num_params == want


def test_rso_mnist_param_count_other_width():
    c = 8
    assert models.rso_mnist(channels=c).num_params == 1 * c * 9 + 5 * c * c * 9 + 6 * 2 * c + c * 10


def test_rso_cifar_param_counts():
    # Depth-3 (Table 3): conv3 3->32, conv4 32->32; 2 BN of 32; FC 32 -> 10
    d3 = 3 * 32 * 9 + 32 * 32 * 9 + 2 * 2 * 32 + 32 * 10
    # Depth-5: 3->16, 16->16, 16->32, 32->32; BN 16, 16, 32, 32; FC 32 -> 10
    d5 = 3 * 16 * 9 + 16 * 16 * 9 + 16 * 32 * 9 + 32 * 32 * 9 + 2 * (16 + 16 + 32 + 32) + 32 * 10
    # Depth-10 (authors' --layers 9): filters 16,16,16,32,32,32,32,32,32
    d10 = (
        3 * 16 * 9
        + 2 * 16 * 16 * 9
        + 16 * 32 * 9
        + 5 * 32 * 32 * 9  # 9 convs
        + 16 * 32 * 1 * 1
        + 2 * 32  # 1x1 projection 16 -> 32 and its own BN
        + 2 * (3 * 16 + 6 * 32)  # one BN per conv
        + 32 * 10
    )  # FC without bias
    assert (d3, d5, d10) == (10528, 17072, 57104)
    assert models.rso_cifar(3).num_params == d3
    assert models.rso_cifar(5).num_params == d5
    assert models.rso_cifar(10).num_params == d10
    assert models.rso_cifar().num_params == d10  # the default is the paper's best net


def test_mlp_amc_fig1_param_count():
    want = (784 * 16 + 16) + (16 * 16 + 16) + (16 * 10 + 10)
    assert want == 13002  # the aMC paper's number (Fig. 1 net)
    assert models.mlp([784, 16, 16, 10], output="softmax").num_params == want
    # LayerNorm adds gamma and beta per hidden neuron
    ln = models.mlp([784, 64, 64, 64, 64, 10], layer_norm=True)
    assert ln.num_params == (784 * 64 + 64) + 3 * (64 * 64 + 64) + (64 * 10 + 10) + 4 * 2 * 64


def _deep_tanh_count(depth):
    # 1 input, depth - 1 hidden layers of 4, one of 10, 1 output; every Dense has a bias
    if depth == 1:
        return (1 * 10 + 10) + (10 * 1 + 1)
    return (1 * 4 + 4) + (depth - 2) * (4 * 4 + 4) + (4 * 10 + 10) + (10 * 1 + 1)


@pytest.mark.parametrize("depth, want", [(1, 31), (2, 69), (4, 109), (16, 349), (128, 2589)])
def test_amc_deep_tanh_param_count(depth, want):
    assert _deep_tanh_count(depth) == want
    assert models.amc_deep_tanh(depth).num_params == want


def test_amc_rnn_classifier_param_counts():
    i, h, c = 2, 64, 2
    # tanh RNN, one bias vector per layer (minirso's documented convention: b = b_ih + b_hh)
    rnn = (h * i + h * h + h) + (h * h + h * h + h) + (h * c + c)
    # GRU: 3 gates, two bias vectors (b_hn sits inside the reset gate)
    gru = (3 * h * i + 3 * h * h + 2 * 3 * h) + (3 * h * h + 3 * h * h + 2 * 3 * h) + (h * c + c)
    assert (rnn, gru) == (12674, 38146)
    assert models.amc_rnn_classifier().num_params == rnn
    assert models.amc_rnn_classifier(cell="gru").num_params == gru
    # cross-check with PyTorch's own counts (PyTorch keeps the redundant second RNN bias)
    t_rnn = sum(p.numel() for p in torch.nn.RNN(i, h, num_layers=2).parameters()) - 2 * h
    t_gru = sum(p.numel() for p in torch.nn.GRU(i, h, num_layers=2).parameters())
    assert (t_rnn + h * c + c, t_gru + h * c + c) == (rnn, gru)


# ---- rso_mnist structure ------------------------------------------------------------------------

MNIST_LAYERS = [
    ("conv1", Conv2d),
    ("bn1", BatchNorm2d),
    ("relu1", ReLU),
    ("conv2", Conv2d),
    ("pool2", AvgPool2d),
    ("bn2", BatchNorm2d),
    ("relu2", ReLU),
    ("conv3", Conv2d),
    ("bn3", BatchNorm2d),
    ("relu3", ReLU),
    ("conv4", Conv2d),
    ("pool4", AvgPool2d),
    ("bn4", BatchNorm2d),
    ("relu4", ReLU),
    ("conv5", Conv2d),
    ("bn5", BatchNorm2d),
    ("relu5", ReLU),
    ("conv6", Conv2d),
    ("bn6", BatchNorm2d),
    ("gmp", GlobalMaxPool2d),
    ("fc", Dense),  # no ReLU between bn6 and the global (max) pool
]


def test_rso_mnist_layer_order():
    model = models.rso_mnist()
    assert [(l.name, type(l)) for l in model.layers] == MNIST_LAYERS
    avg = models.rso_mnist(global_pool="avg")
    assert [(l.name, type(l)) for l in avg.layers] == MNIST_LAYERS[:-2] + [("gap", GlobalAvgPool2d), ("fc", Dense)]
    paper = models.rso_mnist(recipe="paper")  # sec. 4.1: a pool after conv 6 too, and a ReLU after bn6
    assert [(l.name, type(l)) for l in paper.layers] == (
        MNIST_LAYERS[:-3] + [("pool6", AvgPool2d)] + MNIST_LAYERS[-3:-2] + [("relu6", ReLU)] + MNIST_LAYERS[-2:]
    )
    with pytest.raises(ValueError, match="global_pool must be 'max'"):
        models.rso_mnist(global_pool="mean")
    with pytest.raises(ValueError, match="recipe must be one of"):
        models.rso_cifar(recipe="code")
    for layer in model.layers:
        if isinstance(layer, Conv2d):
            assert (layer.kernel_size, layer.padding, layer.stride, layer.use_bias) == ((3, 3), (1, 1), (1, 1), False)
            assert layer.out_channels == 16
        if isinstance(layer, AvgPool2d):
            assert (layer.kernel_size, layer.stride) == ((2, 2), (2, 2))
    fc = model.layers[-1]
    assert (fc.in_features, fc.out_features, fc.use_bias) == (16, 10, False)
    shapes = {g.name: g.shape for g in model.param_groups}
    assert shapes["conv1.weight"] == (16, 1, 3, 3) and shapes["conv6.weight"] == (16, 16, 3, 3)
    assert shapes["fc.weight"] == (10, 16) and "fc.bias" not in shapes


def test_rso_mnist_spatial_sizes(xp, rng):
    model = models.rso_mnist()
    x = images(xp, rng, 3, 1, 28)
    names = [l.name for l in model.layers]
    want = {
        "conv1": (3, 16, 28, 28),
        "conv2": (3, 16, 28, 28),
        "pool2": (3, 16, 14, 14),
        "conv3": (3, 16, 14, 14),
        "conv4": (3, 16, 14, 14),
        "pool4": (3, 16, 7, 7),
        "bn4": (3, 16, 7, 7),
        "conv6": (3, 16, 7, 7),
        "bn6": (3, 16, 7, 7),
        "gmp": (3, 16),
        "fc": (3, 10),
    }
    for name, shape in want.items():
        k = names.index(name) + 1  # forward(x, stop=k) is the OUTPUT of layer k - 1
        assert tuple(model.forward(x, stop=k).shape) == shape, name
    assert tuple(model(x).shape) == (3, 10)


@pytest.mark.parametrize("pool, recipe", [("max", "authors"), ("avg", "authors"), ("max", "paper")])
def test_rso_mnist_forward_matches_independent_torch(xp, rng, pool, recipe):
    model = models.rso_mnist(seed=3, global_pool=pool, recipe=recipe)
    randomize_norms(model, rng)
    x = images(xp, rng, 6, 1, 28)
    want = torch_rso_mnist(weights(model), _np(x), pool, recipe)
    got = model(x)
    assert got.dtype == np.float32
    assert_close(got, want)
    # sensitivity: the other pool changes the output, and so does a ReLU before an average pool (before a max
    # of 49 normalised values it rarely does: the maximum is almost always positive)
    w = weights(model)
    other = torch_rso_mnist(w, _np(x), "avg" if pool == "max" else "max", recipe)
    assert not np.allclose(other.numpy(), _np(got), atol=1e-3)
    if recipe == "authors" and pool == "avg":
        h = t(_np(model.forward(x, stop=len(model.layers) - 2)))
        assert not np.allclose((global_pool(TF.relu(h), pool) @ t(w["fc.weight"]).T).numpy(), _np(got), atol=1e-3)


# ---- rso_cifar structure ------------------------------------------------------------------------


def test_rso_cifar10_forward_matches_independent_torch(xp, rng):
    model = models.rso_cifar(10, seed=1)
    randomize_norms(model, rng)
    w = weights(model)
    for q, name in enumerate(CIFAR10_CONV):  # the reference's filters, 3x3 kernels
        cin = 3 if q == 0 else CIFAR10_FILTERS[q - 1]
        assert w[f"{name}.weight"].shape == (CIFAR10_FILTERS[q], cin, 3, 3), name
    assert w["res4.proj.weight"].shape == (32, 16, 1, 1)
    assert w["fc.weight"].shape == (10, 32) and "fc.bias" not in w
    x = images(xp, rng, 8, 3, 16)
    got = _np(model(x))
    want = torch_rso_cifar10(w, _np(x)).numpy()
    assert got.shape == (8, 10)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    # the skips matter: the same net without them gives a clearly different output
    plain = torch_rso_cifar10(w, _np(x), skips=False).numpy()
    assert np.abs(plain - want).max() > 1e-2


def test_rso_cifar10_spatial_sizes(xp, rng):
    model = models.rso_cifar(10)
    x = images(xp, rng, 2, 3, 32)
    names = [l.name for l in model.layers]
    want = {
        "bn1": (2, 16, 32, 32),
        "res2": (2, 16, 32, 32),
        "pool3": (2, 16, 16, 16),
        "res4": (2, 32, 16, 16),
        "pool5": (2, 32, 8, 8),
        "bn5": (2, 32, 8, 8),
        "res6": (2, 32, 8, 8),
        "bn9": (2, 32, 8, 8),
        "gmp": (2, 32),
        "fc": (2, 10),
    }
    for name, shape in want.items():
        assert tuple(model.forward(x, stop=names.index(name) + 1).shape) == shape, name
    # one projection shortcut only (16 -> 32), with its own BatchNorm
    projs = [(p, l) for p, l, _ in model.named_layers() if isinstance(l, Conv2d) and l.kernel_size == (1, 1)]
    assert len(projs) == 1 and (projs[0][1].in_channels, projs[0][1].out_channels) == (16, 32)
    assert sum(isinstance(l, Residual) for l in model.layers) == 4


@pytest.mark.parametrize("depth, n_conv, pool_after, first", [(3, 2, {1}, 32), (5, 4, {2, 3}, 16)])
def test_rso_cifar_plain_forward_matches_independent_torch(xp, rng, depth, n_conv, pool_after, first):
    # Table 3: pooling after the "conv2" and "conv3" stages; Depth-3 has only the conv3 / conv4 stages
    model = models.rso_cifar(depth, seed=2)
    randomize_norms(model, rng)
    w = weights(model)
    assert w["conv1.weight"].shape == (first, 3, 3, 3)
    assert w[f"conv{n_conv}.weight"].shape == (32, 32, 3, 3)
    x = images(xp, rng, 8, 3, 16)
    np.testing.assert_allclose(
        _np(model(x)), torch_plain_cnn(w, _np(x), n_conv, pool_after).numpy(), rtol=2e-4, atol=2e-4
    )


def test_rso_cifar_bad_depth():
    for depth in (2, 4, 9, 11):
        with pytest.raises(ValueError, match="depth must be 3, 5 or 10"):
            models.rso_cifar(depth)


# ---- mlp, amc_deep_tanh, amc_rnn_classifier -----------------------------------------------------


@pytest.mark.parametrize("output", [None, "softmax", "tanh"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_forward_matches_torch(xp, rng, activation, layer_norm, output):
    sizes = [6, 5, 4, 3]
    model = models.mlp(
        sizes, activation=activation, layer_norm=layer_norm, output=output, seed=4, init=("gaussian", 0.7)
    )
    randomize_norms(model, rng)
    acts = [l for l in model.layers if isinstance(l, (Tanh, ReLU))]
    assert len(acts) == 2 + (output == "tanh")
    assert sum(isinstance(l, LayerNorm) for l in model.layers) == (2 if layer_norm else 0)
    assert isinstance(model.layers[-1], {None: Dense, "softmax": Softmax, "tanh": Tanh}[output])
    x = xp.asarray(rng.standard_normal((9, 6)).astype(np.float32))
    want = torch_mlp(weights(model), _np(x), 3, activation, layer_norm, output).numpy()
    np.testing.assert_allclose(_np(model(x)), want, rtol=1e-5, atol=1e-5)


def test_mlp_amc_fig1_net(xp, rng):
    model = models.mlp([784, 16, 16, 10], output="softmax")
    assert [type(l) for l in model.layers] == [Dense, Tanh, Dense, Tanh, Dense, Softmax]
    y = _np(model(xp.asarray(rng.standard_normal((4, 784)).astype(np.float32))))
    assert y.shape == (4, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    assert (y > 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sizes=[5]), "at least 2 positive"),
        (dict(sizes=[]), "at least 2 positive"),
        (dict(sizes=[3, 0, 2]), "at least 2 positive"),
        (dict(sizes=[3, -1]), "at least 2 positive"),
        (dict(sizes=[3, 2], activation="sigmoid"), "activation"),
        (dict(sizes=[3, 2], output="relu"), "output"),
        (dict(sizes=[3, 2], output="Softmax"), "output"),
        (dict(sizes=[3, 2], init="xavier"), "init"),
        (dict(sizes=[3, 2], init=("gaussian", 0.0)), "gaussian scale"),
    ],
)
def test_mlp_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.mlp(**kwargs)


def test_other_builders_bad_args():
    with pytest.raises(ValueError, match="depth"):
        models.amc_deep_tanh(0)
    with pytest.raises(ValueError, match="cell"):
        models.amc_rnn_classifier(cell="lstm")
    with pytest.raises(ValueError, match="init"):
        models.rso_mnist(init="he")


@pytest.mark.parametrize("depth", [1, 2, 5, 32])
def test_amc_deep_tanh_structure(xp, rng, depth):
    model = models.amc_deep_tanh(depth, seed=depth)
    dense = [l for l in model.layers if isinstance(l, Dense)]
    widths = [dense[0].in_features] + [d.out_features for d in dense]
    assert widths == [1] + [4] * (depth - 1) + [10, 1]  # hidden widths 4, ..., 4, 10
    assert all(d.use_bias for d in dense)
    # "all neurons have tanh activation functions": Dense and Tanh alternate, output included
    assert [type(l) for l in model.layers] == [Dense, Tanh] * (depth + 1)
    # numerically: a tanh after every affine map (a scale big enough that tanh is not linear)
    model = models.amc_deep_tanh(depth, seed=depth, init=("gaussian", 1.0))
    w = weights(model)
    x = xp.asarray(rng.uniform(0, 1, size=(17, 1)).astype(np.float32))
    h = t(_np(x))
    for i in range(1, depth + 2):
        h = torch.tanh(TF.linear(h, t(w[f"fc{i}.weight"]), t(w[f"fc{i}.bias"])))
    got = _np(model(x))
    assert got.shape == (17, 1)
    np.testing.assert_allclose(got, h.numpy(), rtol=1e-5, atol=1e-5)


def test_amc_deep_tanh_default_init_is_gaussian_1e_2():
    model = models.amc_deep_tanh(64)
    p = _np(model.params).astype(np.float64)  # weights AND biases ~ N(0, 1e-4)
    n = p.size
    assert abs(p.std() / 1e-2 - 1) < 5 / math.sqrt(2 * n)
    assert abs(p.mean()) < 5 * 1e-2 / math.sqrt(n)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_amc_rnn_classifier_output_shape(xp, rng, cell):
    model = models.amc_rnn_classifier(cell=cell)
    assert [type(l) for l in model.layers] == [{"rnn": RNN, "gru": GRU}[cell]] * 2 + [Dense]
    x = xp.asarray(np.eye(2, dtype=np.float32)[rng.integers(0, 2, size=(5, 12))])  # one-hot pixels (N, T, 2)
    y = model(x)
    assert tuple(y.shape) == (5, 2)
    assert tuple(model.forward(x, stop=1).shape) == (5, 12, 64)  # first layer returns the sequence
    assert tuple(model.forward(x, stop=2).shape) == (5, 64)  # second layer: last hidden state only


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_amc_rnn_classifier_matches_torch(xp, rng, cell):
    h = 8
    model = models.amc_rnn_classifier(hidden_size=h, cell=cell, seed=5, init=("gaussian", 0.5))
    w = weights(model)
    net = (torch.nn.RNN if cell == "rnn" else torch.nn.GRU)(2, h, num_layers=2, batch_first=True).double()
    with torch.no_grad():
        for k in (0, 1):
            name = f"{cell}{k + 1}"
            getattr(net, f"weight_ih_l{k}").copy_(t(w[f"{name}.weight_ih"]))
            getattr(net, f"weight_hh_l{k}").copy_(t(w[f"{name}.weight_hh"]))
            if cell == "rnn":  # one bias: b = b_ih + b_hh
                getattr(net, f"bias_ih_l{k}").copy_(t(w[f"{name}.bias"]))
                getattr(net, f"bias_hh_l{k}").zero_()
            else:
                getattr(net, f"bias_ih_l{k}").copy_(t(w[f"{name}.bias_ih"]))
                getattr(net, f"bias_hh_l{k}").copy_(t(w[f"{name}.bias_hh"]))
    x = np.eye(2, dtype=np.float32)[rng.integers(0, 2, size=(4, 9))]
    seq, _ = net(t(x))
    want = TF.linear(seq[:, -1], t(w["fc.weight"]), t(w["fc.bias"])).detach().numpy()
    np.testing.assert_allclose(_np(model(xp.asarray(x))), want, rtol=1e-5, atol=1e-5)


# ---- initialisation -----------------------------------------------------------------------------


def _check_normal(values, std, label):
    """values ~ N(0, std^2)? 5-sigma bounds on the sample std, mean and the fraction within 1 std."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = v.size
    assert abs(v.std() / std - 1) < 5 / math.sqrt(2 * n), (label, v.std(), std)
    assert abs(v.mean()) < 5 * std / math.sqrt(n), (label, v.mean())
    inside = np.mean(np.abs(v) < std)  # 0.6827 for a normal (0.577 for a uniform of the same std)
    assert abs(inside - 0.6827) < 5 * math.sqrt(0.6827 * 0.3173 / n) + 1e-3, (label, inside)


def test_kaiming_init_rso_cifar10():
    model = models.rso_cifar(10, seed=7)
    z = []
    for name, w in weights(model).items():
        if name.endswith(".weight"):
            fan_in = int(np.prod(w.shape[1:]))  # in_channels * k * k (conv), in_features (dense)
            std = math.sqrt(2.0 / fan_in)
            assert abs(w.std() / std - 1) < 5 / math.sqrt(2 * w.size), name
            z.append(w.ravel() / std)
        elif name.endswith(".gamma"):
            np.testing.assert_array_equal(w, 1.0)
        elif name.endswith(".beta"):
            np.testing.assert_array_equal(w, 0.0)
        else:
            pytest.fail(f"unexpected tensor {name}")
    _check_normal(np.concatenate(z), 1.0, "pooled z-scores")


def test_kaiming_init_rso_mnist_per_layer():
    w = weights(models.rso_mnist(seed=420))
    _check_normal(w["conv1.weight"], math.sqrt(2 / (1 * 3 * 3)), "conv1")
    for i in range(2, 7):
        _check_normal(w[f"conv{i}.weight"], math.sqrt(2 / (16 * 3 * 3)), f"conv{i}")
    _check_normal(w["fc.weight"], math.sqrt(2 / 16), "fc")  # the reference: FC fan_in = 16


def test_kaiming_init_mlp_zero_biases():
    model = models.mlp([300, 200, 50, 10], layer_norm=True, seed=11)
    w = weights(model)
    for i, fan_in in zip((1, 2, 3), (300, 200, 50)):
        _check_normal(w[f"fc{i}.weight"], math.sqrt(2.0 / fan_in), f"fc{i}")
        np.testing.assert_array_equal(w[f"fc{i}.bias"], 0.0)
    for i in (1, 2):
        np.testing.assert_array_equal(w[f"ln{i}.gamma"], 1.0)
        np.testing.assert_array_equal(w[f"ln{i}.beta"], 0.0)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_kaiming_init_recurrent(cell):
    # documented convention: both matrices of a recurrent layer feed the same neurons, fan_in = input + hidden
    model = models.amc_rnn_classifier(cell=cell, seed=2)
    w = weights(model)
    _check_normal(
        np.concatenate([w[f"{cell}1.weight_ih"].ravel(), w[f"{cell}1.weight_hh"].ravel()]),
        math.sqrt(2.0 / (2 + 64)),
        f"{cell}1",
    )
    _check_normal(
        np.concatenate([w[f"{cell}2.weight_ih"].ravel(), w[f"{cell}2.weight_hh"].ravel()]),
        math.sqrt(2.0 / (64 + 64)),
        f"{cell}2",
    )
    for name, v in w.items():
        if "bias" in name:
            np.testing.assert_array_equal(v, 0.0, err_msg=name)


def test_gaussian_init_weights_and_biases():
    s = 0.05
    model = models.mlp([40, 300, 300, 10], layer_norm=True, init=("gaussian", s), seed=3)
    w = weights(model)
    weights_ = np.concatenate([w[f"fc{i}.weight"].ravel() for i in (1, 2, 3)])
    biases = np.concatenate([w[f"fc{i}.bias"].ravel() for i in (1, 2, 3)])
    _check_normal(weights_, s, "weights")
    _check_normal(biases, s, "biases")  # biases too (aMC: every parameter ~ N(0, sigma^2))
    for i in (1, 2):  # normalisation parameters still start at gamma 1, beta 0
        np.testing.assert_array_equal(w[f"ln{i}.gamma"], 1.0)
        np.testing.assert_array_equal(w[f"ln{i}.beta"], 0.0)


def test_gaussian_init_conv_and_batchnorm():
    model = models.rso_cifar(10, init=("gaussian", 0.3))
    w = weights(model)
    _check_normal(np.concatenate([v.ravel() for k, v in w.items() if k.endswith(".weight")]), 0.3, "weights")
    for k, v in w.items():
        if k.endswith(".gamma"):
            np.testing.assert_array_equal(v, 1.0)
        if k.endswith(".beta"):
            np.testing.assert_array_equal(v, 0.0)


BUILDERS = {
    "rso_mnist": lambda seed, init="kaiming": models.rso_mnist(seed=seed, init=init),
    "rso_cifar3": lambda seed, init="kaiming": models.rso_cifar(3, seed=seed, init=init),
    "rso_cifar5": lambda seed, init="kaiming": models.rso_cifar(5, seed=seed, init=init),
    "rso_cifar10": lambda seed, init="kaiming": models.rso_cifar(10, seed=seed, init=init),
    "mlp": lambda seed, init="kaiming": models.mlp(
        [12, 7, 5, 3], layer_norm=True, output="softmax", seed=seed, init=init
    ),
    "mlp_relu_tanh": lambda seed, init="kaiming": models.mlp(
        [4, 6, 2], activation="relu", output="tanh", seed=seed, init=init
    ),
    "amc_deep_tanh": lambda seed, init=("gaussian", 1e-2): models.amc_deep_tanh(6, seed=seed, init=init),
    "amc_rnn": lambda seed, init="kaiming": models.amc_rnn_classifier(hidden_size=8, seed=seed, init=init),
    "amc_gru": lambda seed, init="kaiming": models.amc_rnn_classifier(hidden_size=8, cell="gru", seed=seed, init=init),
}


def _input_for(name, xp, rng):
    if name.startswith("rso_mnist"):
        return images(xp, rng, 4, 1, 12)
    if name.startswith("rso_cifar"):
        return images(xp, rng, 4, 3, 8)
    if name == "mlp":
        return xp.asarray(rng.standard_normal((4, 12)).astype(np.float32))
    if name == "mlp_relu_tanh":
        return xp.asarray(rng.standard_normal((4, 4)).astype(np.float32))
    if name == "amc_deep_tanh":
        return xp.asarray(rng.uniform(0, 1, (4, 1)).astype(np.float32))
    return xp.asarray(rng.standard_normal((4, 5, 2)).astype(np.float32))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_seed_determinism(name):
    a, b, c = BUILDERS[name](3), BUILDERS[name](3), BUILDERS[name](4)
    np.testing.assert_array_equal(_np(a.params), _np(b.params))
    pa, pc = _np(a.params), _np(c.params)
    random_part = pa != 0  # exclude what is fixed by the scheme (zero biases, gamma 1 / beta 0)
    random_part &= pa != 1
    assert random_part.sum() > 0
    assert np.mean(pa[random_part] != pc[random_part]) > 0.99  # a different seed changes (nearly) every draw


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("init", ["default", ("gaussian", 0.2)], ids=["default-init", "gaussian"])
def test_architecture_json_round_trip(xp, rng, name, init):
    model = BUILDERS[name](9) if init == "default" else BUILDERS[name](9, init=init)
    arch = json.loads(json.dumps(model.architecture()))  # must survive real JSON
    rebuilt = Sequential.from_architecture(arch)
    assert rebuilt.num_params == model.num_params
    assert [(l.name, type(l), l.config()) for l in rebuilt.layers] == [
        (l.name, type(l), l.config()) for l in model.layers
    ]
    assert [(g.name, g.shape, g.slice, g.kind, g.fan_in) for g in rebuilt.param_groups] == [
        (g.name, g.shape, g.slice, g.kind, g.fan_in) for g in model.param_groups
    ]
    np.testing.assert_array_equal(_np(rebuilt.params), _np(model.params))
    x = _input_for(name, xp, rng)
    np.testing.assert_array_equal(_np(rebuilt(x)), _np(model(x)))
    # and the rebuilt model is its own object (not sharing the buffer)
    rebuilt.params[...] = 0
    assert np.any(_np(model.params) != 0)


def test_rso_builders_take_the_batchnorm_epsilon():
    """Default 1e-3, MXNet's nd.BatchNorm default (the authors' code); any other on request."""
    for m, want in (
        (models.rso_mnist(), 1e-3),
        (models.rso_cifar(10), 1e-3),
        (models.rso_mnist(bn_eps=1e-5), 1e-5),
        (models.rso_cifar(5, bn_eps=1e-5), 1e-5),
    ):
        eps = {l.eps for _, l, _ in m.named_layers() if isinstance(l, BatchNorm2d)}
        assert eps == {want}
