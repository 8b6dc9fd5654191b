"""Sequential: flat-buffer views, partial forward from cached activations, BatchNorm re-estimation, names."""

import numpy as np
import pytest

import minirso
from minirso import models
from minirso.nn import (
    BatchNorm1d, BatchNorm2d, Conv2d, Dense, LayerNorm, ReLU, Residual, Sequential, Tanh,
)


def _nets():
    """(name, model, input shape) for nets covering every layer family, residual blocks included."""
    return [
        ("rso_mnist", models.rso_mnist(seed=3), (6, 1, 28, 28)),
        ("rso_cifar10", models.rso_cifar(10, seed=4), (5, 3, 32, 32)),
        ("mlp_ln", models.mlp([7, 9, 5, 3], layer_norm=True, seed=5), (6, 7)),
        ("rnn", models.amc_rnn_classifier(hidden_size=6, seed=6), (4, 9, 2)),
        ("gru", models.amc_rnn_classifier(hidden_size=5, cell="gru", seed=7), (4, 8, 2)),
    ]


def _input(xp, rng, shape):
    return xp.asarray(rng.standard_normal(shape).astype(np.float32))


def _randomise_bn(model, xp, rng):
    """Non-trivial gamma/beta and running statistics so eval-mode tests see every parameter."""
    for g in model.param_groups:
        if g.kind in ("bn_scale", "bn_shift", "ln_scale", "ln_shift", "bias"):
            model.params[g.slice] = xp.asarray(rng.uniform(0.5, 1.5, g.size).astype(np.float32))
    for name, buf in model.buffers().items():
        lo, hi = (0.5, 2.0) if name.endswith("var") else (-0.3, 0.3)
        buf[...] = xp.asarray(rng.uniform(lo, hi, buf.shape).astype(np.float32))


# ---- the flat buffer ------------------------------------------------------------------------------


@pytest.mark.parametrize("i", range(5))
def test_every_group_is_a_view_of_the_buffer(i, xp):
    _, model, _ = _nets()[i]
    groups = model.param_groups
    assert model.params.ndim == 1 and model.params.dtype == np.float32
    assert groups[0].slice.start == 0 and groups[-1].slice.stop == model.params.size
    for a, b in zip(groups, groups[1:]):
        assert a.slice.stop == b.slice.start  # contiguous, no gaps, no overlap
    # write distinct values through the buffer and read them back through each layer attribute
    model.params[...] = xp.arange(model.params.size, dtype=xp.float32)
    owners = {p: l for p, l, _ in model.named_layers()}
    for g in groups:
        path, attr = g.name.rsplit(".", 1)
        view = getattr(owners[path], attr)
        assert tuple(view.shape) == g.shape
        expect = np.arange(g.slice.start, g.slice.stop, dtype=np.float32).reshape(g.shape)
        np.testing.assert_array_equal(minirso.to_numpy(view), expect)
        if xp is np:
            assert np.shares_memory(view, model.params)
        # and the other way: a write through the view lands in the buffer
        view[(0,) * view.ndim] = -7.0
        assert float(model.params[g.slice.start]) == -7.0


def test_write_through_buffer_changes_output_for_every_group(xp, rng):
    model = models.rso_cifar(10, seed=1)
    _randomise_bn(model, xp, rng)
    model.eval()
    x = _input(xp, rng, (2, 3, 32, 32))
    base = minirso.to_numpy(model(x))
    for g in model.param_groups:
        # perturb the whole tensor: a single element can sit behind a ReLU-dead channel of this random net
        old = model.params[g.slice].copy()
        model.params[g.slice] += xp.asarray(rng.uniform(0.2, 0.5, g.size).astype(np.float32))
        changed = minirso.to_numpy(model(x))
        model.params[g.slice] = old
        assert np.abs(changed - base).max() > 1e-6, f"writing params[{g.slice}] ({g.name}) did not change the output"
    np.testing.assert_array_equal(minirso.to_numpy(model(x)), base)  # restored exactly


def test_param_group_metadata():
    model = models.rso_cifar(10)
    by_name = {g.name: g for g in model.param_groups}
    conv = by_name["conv1.weight"]
    assert (conv.shape, conv.kind, conv.fan_in, conv.layer) == ((16, 3, 3, 3), "weight", 27, 0)
    inner = by_name["res4.conv5.weight"]  # a conv inside a residual block belongs to the block's index
    assert model.layers[inner.layer].name == "res4"
    assert (inner.shape, inner.fan_in) == ((32, 32, 3, 3), 32 * 9)
    proj = by_name["res4.proj.weight"]
    assert (proj.shape, proj.fan_in) == ((32, 16, 1, 1), 16)
    assert by_name["bn1.gamma"].kind == "bn_scale" and by_name["bn1.beta"].kind == "bn_shift"
    assert by_name["fc.weight"].fan_in == 32 and "fc.bias" not in by_name
    rnn = {g.name: g for g in models.amc_rnn_classifier().param_groups}
    assert rnn["rnn1.weight_ih"].fan_in == 2 + 64 and rnn["rnn2.weight_hh"].fan_in == 64 + 64


def test_to_numpy_rebinds_views(xp, rng):
    model = models.mlp([4, 3, 2], seed=2)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    before = minirso.to_numpy(model(xp.asarray(x)))
    model.to("numpy")
    np.testing.assert_array_equal(model(x), before)
    model.params[0] += 1.0  # the layers still see the (new) buffer
    assert not np.array_equal(model(x), before)
    assert np.shares_memory(model.layers[0].weight, model.params)


# ---- partial forward and the activation cache -----------------------------------------------------


@pytest.mark.parametrize("i", range(5))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forward_from_cached_inputs_equals_full_forward(i, mode, xp, rng):
    name, model, shape = _nets()[i]
    _randomise_bn(model, xp, rng)
    model.train(mode == "train")
    x = _input(xp, rng, shape)
    full = minirso.to_numpy(model(x))
    for k in range(len(model.layers) + 1):
        # train mode: BatchNorm uses batch statistics, so the cache must be built from the same batch
        chunk = 2 if mode == "eval" else shape[0]
        cached = model.layer_inputs(x, k, chunk_size=chunk)
        out = minirso.to_numpy(model.forward(cached, start=k))
        np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-5, err_msg=f"{name}: start={k}")


def test_layer_inputs_equals_direct_layer_by_layer_computation(xp, rng):
    model = models.rso_mnist(seed=8).eval()
    _randomise_bn(model, xp, rng)
    x = _input(xp, rng, (7, 1, 28, 28))
    a = x
    for k, layer in enumerate(model.layers):
        cached = model.layer_inputs(x, k, chunk_size=3)  # 3 chunks: 3 + 3 + 1 samples
        np.testing.assert_allclose(minirso.to_numpy(cached), minirso.to_numpy(a), rtol=1e-6, atol=1e-6)
        a = layer(a)
    # a cache can itself be the start: inputs of layer 9 computed from the inputs of layer 4
    from4 = model.layer_inputs(model.layer_inputs(x, 4), 9, start=4, chunk_size=2)
    np.testing.assert_allclose(minirso.to_numpy(from4), minirso.to_numpy(model.layer_inputs(x, 9)), rtol=1e-6, atol=1e-6)
    half = model.layer_inputs(x, 3, dtype=np.float16)
    assert half.dtype == np.float16 and half.shape == (7, 16, 28, 28)


def test_forward_range_is_checked(xp, rng):
    model = models.mlp([3, 2])
    x = _input(xp, rng, (2, 3))
    with pytest.raises(ValueError, match="start"):
        model.forward(x, start=5)
    with pytest.raises(ValueError, match="layer_inputs"):
        model.layer_inputs(x, 7)
    with pytest.raises(ValueError, match="chunk_size"):
        model.layer_inputs(x, 1, chunk_size=0)


# ---- BatchNorm running statistics -----------------------------------------------------------------


def test_reestimate_batchnorm_makes_eval_equal_train_on_that_batch(xp, rng):
    model = models.rso_cifar(10, seed=9)
    x = _input(xp, rng, (12, 3, 32, 32)) * 2.0 + 0.5
    train_out = minirso.to_numpy(model.train()(x))
    model.eval().reestimate_batchnorm(x)
    assert not model.training  # mode restored
    np.testing.assert_allclose(minirso.to_numpy(model(x)), train_out, rtol=2e-3, atol=2e-4)


def test_reestimate_batchnorm_first_layer_statistics_by_hand(xp, rng):
    model = models.rso_mnist(seed=10)
    x = _input(xp, rng, (10, 1, 28, 28)) + 0.3
    model.reestimate_batchnorm(x, chunk_size=4)  # chunks 4 + 4 + 2: the first BN sees the raw conv output
    conv = minirso.to_numpy(model.forward(x, stop=1)).astype(np.float64)  # (10, 16, 28, 28)
    bn1 = model.layers[1]
    np.testing.assert_allclose(minirso.to_numpy(bn1.running_mean), conv.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(minirso.to_numpy(bn1.running_var), conv.var(axis=(0, 2, 3)), rtol=1e-4)
    # BN1d on a plain (N, C) input too
    m = Sequential([Dense(3, 4, name="fc"), BatchNorm1d(4, name="bn")])
    z = _input(xp, rng, (9, 3))
    m.reestimate_batchnorm(z)
    h = minirso.to_numpy(m.forward(z, stop=1)).astype(np.float64)
    np.testing.assert_allclose(minirso.to_numpy(m.layers[1].running_var), h.var(axis=0), rtol=1e-5)


def test_train_mode_forward_never_touches_running_statistics(xp, rng):
    model = models.rso_mnist(seed=11)
    before = {k: minirso.to_numpy(v).copy() for k, v in model.buffers().items()}
    model.train()(_input(xp, rng, (3, 1, 28, 28)))
    for k, v in model.buffers().items():
        np.testing.assert_array_equal(minirso.to_numpy(v), before[k])


# ---- construction errors --------------------------------------------------------------------------


def test_layer_names_must_be_unique_and_plain():
    with pytest.raises(ValueError, match="duplicate layer names.*'a'"):
        Sequential([Dense(2, 2, name="a"), Tanh(name="a")])
    with pytest.raises(ValueError, match="no '.'"):
        Sequential([Dense(2, 2, name="a.b")])
    with pytest.raises(ValueError, match="duplicate layer names in block"):
        Sequential([Residual([Dense(2, 2, name="x"), ReLU(name="x")])])
    with pytest.raises(TypeError, match="not a minirso Layer"):
        Sequential([Dense(2, 2), "relu"])


def test_default_names_and_parameter_names():
    model = Sequential([Conv2d(1, 2, 3), BatchNorm2d(2), ReLU(), Residual([Conv2d(2, 2, 1)])])
    assert [l.name for l in model.layers] == ["conv2d0", "batchnorm2d1", "relu2", "residual3"]
    assert [g.name for g in model.param_groups] == [
        "conv2d0.weight", "conv2d0.bias", "batchnorm2d1.gamma", "batchnorm2d1.beta",
        "residual3.body0.weight", "residual3.body0.bias"]


def test_invalid_init_scheme():
    with pytest.raises(ValueError, match="init"):
        Sequential([Dense(2, 2)], init="xavier")
    with pytest.raises(ValueError, match="gaussian scale"):
        Sequential([Dense(2, 2)], init=("gaussian", 0.0))


def test_layernorm_model_mode_independent(xp, rng):
    """LayerNorm has no running state: train and eval give the same output."""
    model = Sequential([Dense(5, 6), LayerNorm(6), Tanh()], seed=12)
    x = _input(xp, rng, (4, 5))
    np.testing.assert_array_equal(minirso.to_numpy(model.train()(x)), minirso.to_numpy(model.eval()(x)))
