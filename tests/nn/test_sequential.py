"""Sequential: flat-buffer views, partial forward from cached activations, BatchNorm re-estimation, names."""

import numpy as np
import pytest

import minirso
from minirso import models
from minirso.nn import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dense,
    LayerNorm,
    ReLU,
    Residual,
    Sequential,
    Tanh,
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
    np.testing.assert_allclose(
        minirso.to_numpy(from4), minirso.to_numpy(model.layer_inputs(x, 9)), rtol=1e-6, atol=1e-6
    )
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
        "conv2d0.weight",
        "conv2d0.bias",
        "batchnorm2d1.gamma",
        "batchnorm2d1.beta",
        "residual3.body0.weight",
        "residual3.body0.bias",
    ]


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


# ---- inference: predict / predict_proba ------------------------------------------------------------


def _host_softmax(z):
    """Softmax over the last axis in float64 on the host: the reference for predict_proba."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _trained_looking_bn_net(xp, rng):
    """rso_mnist with running statistics re-estimated from data, as a trainer leaves it (random statistics
    can let one class win every row), in training mode."""
    model = models.rso_mnist(seed=1, channels=4, global_pool="avg")  # max: one class for all rows at init
    model.reestimate_batchnorm(_input(xp, rng, (64, 1, 28, 28)))
    return model


def _snapshot(model):
    """Everything predict must leave alone: params, buffers, modes, signal-norm flags and records."""

    def raw(a):
        return minirso.to_numpy(a).tobytes()

    layers = [l for _, l, _ in model.named_layers()]
    return (
        raw(model.params),
        {k: raw(v) for k, v in model.buffers().items()},
        model.training,
        [(l.training, l.recording, {k: raw(v) for k, v in l._stat_sum.items()}, dict(l._stat_count)) for l in layers],
    )


@pytest.mark.parametrize("training", [True, False])
def test_predict_is_eval_mode_per_row_and_changes_nothing(training, xp, rng):
    """A BatchNorm net in training mode (as RSO leaves it): predict gives every row the class of the eval-mode
    forward pass, one row at a time or all at once, and leaves mode, params, statistics and records alone."""
    model = _trained_looking_bn_net(xp, rng).train(training)
    x = _input(xp, rng, (13, 1, 28, 28))
    model.eval()
    logits = minirso.to_numpy(model(x))  # the reference: one eval-mode pass over the whole batch
    model.train(training)
    with model.signal_stats():  # recording on: predict must not add to the records either
        before = _snapshot(model)
        whole, single, chunks = model.predict(x), model.predict(x, batch_size=1), model.predict(x, batch_size=5)
        proba = model.predict_proba(x, batch_size=4)
        assert _snapshot(model) == before
    for p in (whole, single, chunks):
        assert minirso.get_array_module(p) is xp and p.dtype == np.int64 and p.shape == (13,)
        np.testing.assert_array_equal(minirso.to_numpy(p), logits.argmax(axis=1))
    assert minirso.get_array_module(proba) is xp and proba.dtype == np.float32 and proba.shape == (13, 10)
    np.testing.assert_allclose(minirso.to_numpy(proba), _host_softmax(logits), rtol=1e-5, atol=1e-7)
    assert len(set(logits.argmax(axis=1).tolist())) > 1  # a net that predicts one class for all would prove little


def test_training_mode_forward_is_what_predict_fixes(xp, rng):
    """The user's symptom, for the record: in training mode one row at a time disagrees with the batch."""
    model = _trained_looking_bn_net(xp, rng)
    x = _input(xp, rng, (16, 1, 28, 28))
    batch = minirso.to_numpy(model(x).argmax(axis=1))
    one = np.array([int(model(x[i : i + 1]).argmax()) for i in range(16)])
    assert (batch != one).any()
    np.testing.assert_array_equal(minirso.to_numpy(model.predict(x, batch_size=1)), minirso.to_numpy(model.predict(x)))


def test_predict_proba_does_not_apply_softmax_twice(xp, rng):
    model = models.mlp([5, 7, 4], output="softmax", seed=3)
    x = _input(xp, rng, (9, 5))
    p = minirso.to_numpy(model.predict_proba(x))
    np.testing.assert_array_equal(p, minirso.to_numpy(model(x)))  # the net's own probabilities, unchanged
    # (in chunks BLAS may round a row differently: a matrix-vector product is not a matrix product)
    np.testing.assert_allclose(minirso.to_numpy(model.predict_proba(x, batch_size=2)), p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    assert p.max() > 0.3  # (a second softmax of probabilities would squeeze every row towards 1/4)
    np.testing.assert_array_equal(minirso.to_numpy(model.predict(x)), p.argmax(axis=1))


def test_predict_takes_host_data_and_returns_on_its_backend(xp, rng):
    """Host (NumPy) data for a model on either backend: the result comes back as NumPy, the same classes."""
    model = models.mlp([6, 8, 3], seed=4)
    x = _input(xp, rng, (11, 6))
    host = minirso.to_numpy(x)
    p, q = model.predict(host, batch_size=3), model.predict_proba(host)
    assert type(p) is np.ndarray and type(q) is np.ndarray
    np.testing.assert_array_equal(p, minirso.to_numpy(model.predict(x)))
    np.testing.assert_array_equal(q, minirso.to_numpy(model.predict_proba(x)))
    assert model.predict(host[:0]).shape == (0,) and model.predict_proba(host[:0]).shape == (0, 3)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            model.predict(host, batch_size=bad)
