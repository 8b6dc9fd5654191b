"""The small-MLP kernel (minirso/kernels/mlp_tail.cu, mlp.py) run by the CuPy stand-in's RawKernel on the CPU,
driven by ModelLoss, against ModelLoss's plain forward."""

import numpy as np
import pytest

from minirso import kernels


def _net(kind, seed):
    from minirso import models
    from minirso import nn as mnn

    if kind == "fig1":
        return models.mlp([29, 16, 16, 10], output="softmax", seed=seed), "mse"
    if kind == "relu_ce":
        return models.mlp([13, 64, 7, 5], activation="relu", seed=seed), "cross_entropy_mean"
    if kind == "nobias_ce_sum":
        layers = [mnn.Dense(9, 12, bias=False), mnn.Tanh(), mnn.Dense(12, 6), mnn.Dense(6, 4, bias=False)]
        return mnn.Sequential(layers, seed=seed), "cross_entropy"
    return models.amc_deep_tanh(5, seed=seed, init="kaiming"), "mse"  # float regression targets


@pytest.mark.parametrize(
    "kind, n", [("fig1", 300), ("fig1", 256), ("relu_ce", 37), ("nobias_ce_sum", 513), ("deep_tanh", 301)]
)
def test_fused_mlp_loss_equals_the_plain_forward(fused, monkeypatch, kind, n):
    """ModelLoss with the kernel (first product + ONE launch) against its plain forward on the same
    parameters: Fig. 1 (softmax + MSE on one-hot labels), ReLU + mean cross-entropy at width 64 (the
    kernel's limit), layers without bias and summed float64 cross-entropy, a deep tanh net with float
    targets; N below, at and above a multiple of the 256-row block."""
    from minirso.optim import ModelLoss

    r = np.random.default_rng(n)
    net, loss = _net(kind, seed=n)
    # every parameter random and distinct (the init's zero biases would hide a wrong bias offset)
    spread = net.params * r.uniform(0.5, 3.0, net.num_params) + r.normal(0, 0.2, net.num_params)
    net.params[...] = spread.astype(np.float32)
    d = net.layers[0].in_features
    x = (r.standard_normal((n, d)) * np.linspace(0.2, 2.0, d) + 0.3).astype(np.float32)
    if kind == "deep_tanh":
        y = np.tanh(x * 2.0).astype(np.float32)  # (N, 1) float targets
    else:
        y = r.integers(0, net.layers[-2 if kind == "fig1" else -1].out_features, n).astype(np.int64)
    with monkeypatch.context() as m:
        m.setattr(kernels, "enabled", lambda xp: False)
        plain = ModelLoss(net, x, y, loss)(net.params)
    ml = ModelLoss(net, x, y, loss)
    assert ml._layout is False
    with fused.counting() as c:
        u = ml(net.params)
    assert c["by_name"]["minirso_mlp_tail"] == 1 and ml._layout is not None  # the kernel ran, once
    assert u == pytest.approx(plain, rel=2e-6)
    # moving one weight of the last layer moves both alike (the offsets point at the right parameters)
    net.params[-1] += np.float32(0.25)
    with monkeypatch.context() as m:
        m.setattr(kernels, "enabled", lambda xp: False)
        p2 = ModelLoss(net, x, y, loss)(net.params)
    assert ml(net.params) == pytest.approx(p2, rel=2e-6) and abs(p2 - plain) > 1e-4 * abs(plain)
