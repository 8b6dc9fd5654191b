"""CuPy against NumPy on the same models (run on a CUDA machine: MINIRSO_BACKEND=cupy python -m pytest).

Every other test module also runs on CuPy then (inputs come from the active backend); this one adds the
direct comparison: the same seed gives the same parameters on both backends, and forward passes,
activation caches and signal-norm lambdas agree to float32 rounding.
"""

import numpy as np
import pytest

import minirso
from minirso import models

pytestmark = pytest.mark.gpu


def _pair(build):
    """The same model on CuPy (built there) and on NumPy (built on NumPy, never moved)."""
    gpu = build()
    minirso.use_backend("numpy")
    try:
        cpu = build()
    finally:
        minirso.use_backend("cupy")
    return gpu, cpu


BUILDERS = {
    "rso_mnist": (lambda: models.rso_mnist(seed=5), (16, 1, 28, 28)),
    "rso_cifar10": (lambda: models.rso_cifar(10, seed=6), (8, 3, 32, 32)),
    "mlp_ln": (lambda: models.mlp([784, 64, 64, 10], layer_norm=True, seed=7), (32, 784)),
    "rnn": (lambda: models.amc_rnn_classifier(seed=8), (8, 50, 2)),
    "gru": (lambda: models.amc_rnn_classifier(cell="gru", seed=9), (8, 40, 2)),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_same_model_on_both_backends(name):
    build, shape = BUILDERS[name]
    gpu, cpu = _pair(build)
    assert minirso.get_array_module(gpu.params).__name__ == "cupy"
    # Philox bits are identical; the float64 Box-Muller may round differently by one float32 ulp
    np.testing.assert_allclose(minirso.to_numpy(gpu.params), cpu.params, rtol=2e-7, atol=1e-7)
    gpu.params[...] = minirso.asarray(cpu.params)  # from here on, bit-identical parameters
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xg = minirso.asarray(x)
    for mode in ("train", "eval"):
        gpu.train(mode == "train")
        cpu.train(mode == "train")
        np.testing.assert_allclose(minirso.to_numpy(gpu(xg)), cpu(x), rtol=1e-4, atol=1e-4)
    k = len(cpu.layers) // 2
    np.testing.assert_allclose(
        minirso.to_numpy(gpu.layer_inputs(xg, k, chunk_size=3)),
        cpu.layer_inputs(x, k, chunk_size=3),
        rtol=1e-4,
        atol=1e-4,
    )
    with gpu.signal_stats():
        gpu(xg)
    with cpu.signal_stats():
        cpu(x)
    np.testing.assert_allclose(minirso.to_numpy(gpu.signal_norm_lambda()), cpu.signal_norm_lambda(), rtol=1e-4)


def test_model_moves_between_backends():
    model = models.rso_mnist(seed=1)
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28)).astype(np.float32)
    on_gpu = minirso.to_numpy(model.eval()(minirso.asarray(x)))
    model.to("numpy")
    np.testing.assert_allclose(model(x), on_gpu, rtol=1e-4, atol=1e-4)
    model.to("cupy")
    assert minirso.get_array_module(model.layers[0].weight).__name__ == "cupy"
    assert minirso.get_array_module(model.layers[1].running_mean).__name__ == "cupy"
    with pytest.raises(ValueError, match="numpy array but the model's parameters are cupy"):
        model(x)


def _tiny_digits(n=64):
    r = np.random.default_rng(4)
    x = r.normal(size=(n, 1, 8, 8)).astype(np.float32)
    x[:, :, :4] += 0.7
    return x, r.integers(0, 10, size=n).astype(np.int64)


@pytest.mark.parametrize("evaluator", ["plain", "incremental"])
def test_rso_decisions_agree_on_both_backends(evaluator):
    """One RSO cycle on the paper's net at width 2: the same random numbers drive the same decisions.

    float32 losses differ by rounding between cuBLAS and NumPy, so a near-tie may flip; almost all agree.
    """
    from minirso.optim import RSO

    x, y = _tiny_digits()
    gpu, cpu = _pair(lambda: models.rso_mnist(seed=5, channels=2))
    gpu.params[...] = minirso.asarray(cpu.params)
    decisions = {}
    for name, model, xs, ys in (("gpu", gpu, minirso.asarray(x), minirso.asarray(y)), ("cpu", cpu, x, y)):
        got = decisions[name] = []
        RSO(
            model,
            xs,
            ys,
            cycles=1,
            batch_size=16,
            seed=3,
            evaluator=evaluator,
            callback=lambda ev, info, got=got: got.append(info["decision"]) if ev == "trial" else None,
        ).run()
    agree = np.mean([a == b for a, b in zip(decisions["gpu"], decisions["cpu"])])
    assert len(decisions["gpu"]) == cpu.num_params and agree > 0.97


def test_amc_trajectory_agrees_on_both_backends():
    """aMC with signal norm on an MLP, 200 steps: the same accept decisions and nearly the same parameters."""
    from minirso.optim import AMC, ModelLoss

    r = np.random.default_rng(5)
    x = r.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 3] > 0).astype(np.int64)
    gpu, cpu = _pair(lambda: models.mlp([6, 8, 2], output="softmax", seed=2))
    gpu.params[...] = minirso.asarray(cpu.params)
    runs = {}
    for name, model, xs, ys in (("gpu", gpu, minirso.asarray(x), minirso.asarray(y)), ("cpu", cpu, x, y)):
        opt = AMC(
            model.params,
            ModelLoss(model, xs, ys),
            sigma0=1e-2,
            epsilon=1e-2,
            n_s=10,
            signal_norm=True,
            batch_size=64,
            seed=9,
        )
        runs[name] = [opt.step()["accepted"] for _ in range(200)]
    same = np.array(runs["gpu"]) == np.array(runs["cpu"])
    assert same[:50].all() and same.mean() > 0.97 and 0 < np.sum(runs["cpu"]) < 200
    if same.all():  # one flipped near-tie sends the chains apart; otherwise they stay together
        np.testing.assert_allclose(minirso.to_numpy(gpu.params), cpu.params, rtol=1e-3, atol=1e-4)


def test_fused_kernels_equal_the_plain_path(monkeypatch):
    """minirso.kernels on CuPy: one-launch normals and aMC proposals (one chain, with and without
    lambda; K chains) against the plain array code on the same device and against NumPy."""
    import cupy

    from minirso import kernels
    from minirso import random as mr
    from minirso.optim import AMC, AMCChains

    def both(fn):
        monkeypatch.setenv("MINIRSO_FUSED", "1")
        fused = cupy.asnumpy(fn())
        assert kernels.status() == "on", kernels.status()  # the kernel compiled and ran
        monkeypatch.setenv("MINIRSO_FUSED", "0")
        plain = cupy.asnumpy(fn())
        monkeypatch.setenv("MINIRSO_FUSED", "1")
        # CUDA's float64 log / cos against CuPy's: equal up to a last bit that rarely survives float32
        np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-9)
        assert np.mean(fused == plain) > 0.99
        return fused

    # minirso.random.normal is the plain reference (it imports no GPU code); kernels.normal is its one-launch twin
    z = both(
        lambda: (
            kernels.normal(2**40 + 3, 5, 17, 100003, cupy, np.float32)
            if kernels.enabled(cupy)
            else mr.normal(2**40 + 3, 5, 17, 100003, cupy)
        )
    )
    np.testing.assert_allclose(z, mr.normal(2**40 + 3, 5, 17, 100003, np), rtol=2e-7, atol=1e-7)

    r = np.random.default_rng(8)
    p = cupy.asarray(r.normal(size=13002).astype(np.float32))
    opt = AMC(p, lambda q: float(((q - 0.3) ** 2).sum()), sigma0=1e-2, epsilon=0.1, n_s=5, seed=2**63 + 9)
    for _ in range(20):
        opt.step()
    assert float(cupy.abs(opt.mu).max()) > 0  # a nonzero mu is part of what is checked
    both(lambda: opt.proposal(opt.step_count))
    opt.lam = cupy.asarray(r.uniform(0.5, 2.0, 13002).astype(np.float32))  # signal norm's lambda_i
    both(lambda: opt.proposal(opt.step_count))

    k = 6
    chains = AMCChains(
        cupy.asarray(r.normal(size=(k, 1001)).astype(np.float32)),
        lambda q: ((q - 0.3) ** 2).sum(axis=1),
        seeds=[3, 2**63 + 1, 5, 0, 77, 12],
        sigma0=1e-2,
        epsilon=0.1,
        n_s=3,
    )
    for _ in range(20):
        chains.step()
    both(lambda: chains.proposal(chains.step_count))


def test_fused_rnn_kernel_equals_the_plain_loop(monkeypatch):
    """minirso.kernels.rnn_tanh on CuPy against the plain per-step loop on the same device: the aMC
    RNN classifier (2 layers, hidden 64) over 20 steps, with signal-norm statistics, and a short
    batch that leaves the last block partial."""
    from minirso import kernels

    r = np.random.default_rng(12)
    model = models.amc_rnn_classifier(seed=3)  # built on the active backend (CuPy)
    for n, t_len in ((1500, 20), (7, 33)):
        x = minirso.asarray(
            r.integers(0, 2, size=(n, t_len, 1)).repeat(2, axis=2).astype(np.float32)
            * np.array([1.0, -1.0], np.float32)
            + np.array([0.0, 1.0], np.float32)
        )  # one-hot
        out = {}
        for fused in ("1", "0"):
            monkeypatch.setenv("MINIRSO_FUSED", fused)
            with model.signal_stats():
                logits = minirso.to_numpy(model(x))
            out[fused] = (logits, minirso.to_numpy(model.signal_norm_lambda()))
        monkeypatch.setenv("MINIRSO_FUSED", "1")
        assert kernels.status() == "on", kernels.status()
        np.testing.assert_allclose(out["1"][0], out["0"][0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["1"][1], out["0"][1], rtol=1e-5)


def test_fused_mlp_loss_and_amc_move_equal_the_plain_path(monkeypatch):
    """minirso.kernels on CuPy: the fused small-MLP loss (first product + ONE launch) against the plain
    forward on the same device for the Fig. 1 net (60,000 rows: 235 blocks), a ReLU + cross-entropy
    net and a deep tanh net with float targets; then 300 aMC steps of the Fig. 1 net with every fused
    kernel (move, eq. 10, loss) against the same run with MINIRSO_FUSED=0: the same decisions."""
    import cupy

    from minirso import kernels
    from minirso.optim import AMC, ModelLoss

    r = np.random.default_rng(21)
    nets = [
        (models.mlp([784, 16, 16, 10], output="softmax", seed=1, init=("gaussian", 0.05)), "mse", 60000),
        (models.mlp([30, 64, 7, 5], activation="relu", seed=2), "cross_entropy_mean", 1001),
        (models.amc_deep_tanh(6, seed=3, init="kaiming"), "mse", 777),
    ]
    for net, loss, n in nets:
        net.params[...] += cupy.asarray(r.normal(0, 0.1, net.num_params).astype(np.float32))  # nonzero biases
        d = net.layers[0].in_features
        x = cupy.asarray(r.random((n, d), dtype=np.float32))
        if net.layers[-1].__class__.__name__ == "Tanh" and d == 1:
            y = cupy.tanh(2 * x)
        else:
            y = cupy.asarray(r.integers(0, 10 if loss == "mse" else 5, n))
        ml = ModelLoss(net, x, y, loss)
        monkeypatch.setenv("MINIRSO_FUSED", "1")
        fused = ml(net.params)
        assert kernels.status() == "on" and ml._layout not in (None, False), kernels.status()
        monkeypatch.setenv("MINIRSO_FUSED", "0")
        plain = ml(net.params)
        assert fused == pytest.approx(plain, rel=2e-6), (loss, n)

    x = cupy.asarray(r.random((5000, 784), dtype=np.float32))
    y = cupy.asarray(r.integers(0, 10, 5000))
    runs = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("MINIRSO_FUSED", flag)
        net = models.mlp([784, 16, 16, 10], output="softmax", seed=4, init=("gaussian", 1e-2))
        opt = AMC(net.params, ModelLoss(net, x, y, "mse"), sigma0=1e-2, epsilon=0.1, n_s=5, seed=8)
        runs[flag] = ([opt.step()["accepted"] for _ in range(300)], cupy.asnumpy(net.params), opt.sigma)
    monkeypatch.setenv("MINIRSO_FUSED", "1")
    assert kernels.status() == "on", kernels.status()
    same = np.array(runs["1"][0]) == np.array(runs["0"][0])
    assert same[:100].all() and same.mean() > 0.97 and 10 < sum(runs["0"][0]) < 290
    if same.all():  # no near-tie flipped: the two chains stayed together
        np.testing.assert_allclose(runs["1"][1], runs["0"][1], rtol=1e-4, atol=1e-6)
        assert runs["1"][2] == runs["0"][2]


def test_fused_mlp_loss_only_for_the_builtin_losses(monkeypatch):
    """A user's loss callable that shares a built-in's name (``minirso.losses.cross_entropy`` is a MEAN, the
    built-in ``"cross_entropy"`` a sum) is computed by the callable itself, not by the fused kernel's
    summed cross-entropy: the loss equals the plain forward's, with the fused kernels on."""
    import cupy

    from minirso import kernels, losses
    from minirso.optim import ModelLoss

    r = np.random.default_rng(23)
    net = models.mlp([30, 16, 5], seed=2)
    x = cupy.asarray(r.random((300, 30), dtype=np.float32))
    y = cupy.asarray(r.integers(0, 5, 300))
    monkeypatch.setenv("MINIRSO_FUSED", "1")
    got = ModelLoss(net, x, y, losses.cross_entropy)(net.params)
    assert kernels.status() == "on"
    want = float(losses.cross_entropy(net(x), y))  # the callable on the plain forward: a mean over 300 rows
    assert got == pytest.approx(want, rel=1e-6)
    summed = ModelLoss(net, x, y, "cross_entropy")(net.params)  # the built-in (fused on the GPU): a sum
    assert summed == pytest.approx(300 * want, rel=1e-5)


def test_fused_amc_move_returns_eps(monkeypatch):
    """AMCCore.move_gpu on the device: CuPy's three-output kernel returns (x, saved, eps); move_gpu hands back
    eps, x moved by it and saved the old x, equal to the plain proposal (the same normals up to libm's last bit)."""
    import cupy

    monkeypatch.setenv("MINIRSO_FUSED", "1")
    from minirso import kernels
    from minirso import random as mr
    from minirso.optim.amc_core import AMCCore

    r = np.random.default_rng(13)
    p, seed, offset = 3001, 2**40 + 7, 9 * 3001
    mu = r.normal(size=p).astype(np.float32) * np.float32(1e-3)
    x0 = r.normal(size=p).astype(np.float32)
    lam_sigma = (r.uniform(0.5, 2.0, p) * 0.02).astype(np.float32)
    for scale in (0.0173, lam_sigma):
        x, saved = cupy.asarray(x0), cupy.empty(p, dtype=np.float32)
        eps = AMCCore.move_gpu(
            x, saved, cupy.asarray(mu), scale if np.isscalar(scale) else cupy.asarray(scale), seed, 11, offset
        )
        assert kernels.status() == "on", kernels.status()
        assert isinstance(eps, cupy.ndarray) and eps.shape == (p,) and eps.dtype == np.float32
        e = cupy.asnumpy(eps)
        np.testing.assert_allclose(e, mu + scale * mr.normal(seed, 11, offset, p, np), rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(cupy.asnumpy(saved), x0)
        np.testing.assert_array_equal(cupy.asnumpy(x), x0 + e)


def test_fused_kernels_are_one_launch_each(standin, monkeypatch):
    """On the stand-in: each fused kernel is ONE launch (a custom kernel counts one, as on a GPU)."""
    import cupy

    monkeypatch.setenv("MINIRSO_FUSED", "1")
    from minirso import kernels

    x = cupy.asarray(np.random.default_rng(3).normal(size=(7, 5, 2)).astype(np.float32))
    w_ih, w_hh = cupy.full((4, 2), 0.3, dtype=np.float32), cupy.asarray(np.eye(4, dtype=np.float32) * 0.5)
    with standin.counters.counting() as d:
        z = kernels.normal(3, 1, 0, 1000, cupy, np.float32)
        kernels.rnn_tanh(x, w_ih, w_hh, cupy.zeros(4, dtype=np.float32), True, True)
    assert z.shape == (1000,) and d["by_name"]["minirso_normal"] == 1 and d["by_name"]["minirso_rnn_tanh"] == 1


def test_rnn_kernel_only_from_compute_capability_6(standin, monkeypatch):
    """On an sm_52 GPU (the stand-in told so) the RNN layer takes the plain loop: no RNN kernel launch, no
    failed kernel, the same output (the kernel's float64 atomicAdd needs compute capability 6.0)."""
    from minirso import kernels

    monkeypatch.setenv("MINIRSO_FUSED", "1")
    model = models.amc_rnn_classifier(seed=3)
    x = minirso.asarray(np.random.default_rng(4).normal(size=(5, 9, 2)).astype(np.float32))
    with standin.counters.counting() as d:
        fused = minirso.to_numpy(model(x))
    assert d["by_name"]["minirso_rnn_tanh"] == 2  # two layers, on the stand-in's default sm_90
    monkeypatch.setattr(standin, "compute_capability", "52")
    with standin.counters.counting() as d:
        old = minirso.to_numpy(model(x))
    assert "minirso_rnn_tanh" not in d["by_name"] and kernels.status() == "on"
    np.testing.assert_allclose(old, fused, rtol=1e-4, atol=1e-5)
