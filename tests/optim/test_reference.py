"""The fast optimizer classes against the papers' plain loops (minirso/optim/reference.py).

RSO (either evaluator) must take every decision of ``rso_reference`` (Algorithm 1) and end at the same
parameters; AMC, Metropolis and AMCChains must follow ``amc_reference`` (aMC sec. III A) step by step.
The problems are small and asymmetric (lopsided inputs, odd channel counts, a dense bias, a
BatchNorm in every net) so that a wrong order, batch or random number changes decisions.
Every RSO is built with explicit keyword arguments for the configuration the reference implements.
"""

from __future__ import annotations

import numpy as np
import pytest

import minirso
from minirso.losses import LOSSES
from minirso.models import mlp, rso_mnist
from minirso.nn import AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Dense, GlobalAvgPool2d, ReLU, Sequential
from minirso.optim import AMC, RSO, AMCChains, Metropolis, ModelLoss
from minirso.optim.reference import amc_reference, anneal_factor, pool_order, rso_reference

_np = minirso.to_numpy


# ---- problems ------------------------------------------------------------------------------------


def conv_bn(seed=4):
    """conv1(2->3, 3x3 pad 1) BN ReLU avgpool(2) conv2(3->4, 2x2) BN ReLU GAP fc(4->3, bias): 131 parameters.

    No bias before a BatchNorm: the normalisation cancels it exactly, so its trials would be float32 ties.
    """
    return Sequential(
        Conv2d(2, 3, 3, padding=1, bias=False, name="conv1"),
        BatchNorm2d(3, name="bn1"),
        ReLU(name="relu1"),
        AvgPool2d(2, name="pool1"),
        Conv2d(3, 4, 2, bias=False, name="conv2"),
        BatchNorm2d(4, name="bn2"),
        ReLU(name="relu2"),
        GlobalAvgPool2d(name="gap"),
        Dense(4, 3, bias=True, name="fc"),
        seed=seed,
    )


def conv_data(n=40, seed=1):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 2, 6, 6)).astype(np.float32)
    x[:, 0, :3] += 0.9  # the top of channel 0 is brighter
    x[:, 1] *= 1.7
    y = r.integers(0, 3, size=n).astype(np.int64)
    y[x[:, 0, 0, 0] > 1.0] = 2  # some signal to learn
    return minirso.asarray(x), minirso.asarray(y)


def paper_net():
    """The RSO paper's MNIST net as the authors built it (global max pooling), 2 filters wide: 242 parameters."""
    return rso_mnist(seed=5, channels=2, global_pool="max", bn_eps=1e-3, recipe="authors")


def image_data(n=40, seed=2):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 1, 8, 8)).astype(np.float32)
    x[:, :, :4] += 0.7  # the top half is brighter
    return minirso.asarray(x), minirso.asarray(r.integers(0, 10, size=n).astype(np.int64))


def mlp_bn(seed=3):
    """Dense(5, 4, no bias) BatchNorm1d ReLU Dense(4, 3): 43 parameters."""
    return Sequential(
        Dense(5, 4, bias=False, name="fc1"),
        BatchNorm1d(4, name="bn1"),
        ReLU(name="relu1"),
        Dense(4, 3, name="fc2"),
        seed=seed,
    )


def mlp_data(n=40, d=5, classes=3, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, d)) * np.linspace(0.3, 2.0, d) + np.linspace(-0.4, 0.6, d)
    y = np.argmax(x @ r.normal(size=(d, classes)) + np.linspace(0.3, -0.2, classes), axis=1)
    return minirso.asarray(x.astype(np.float32)), minirso.asarray(y.astype(np.int64))


def rso_kwargs(cycles, batch_size, seed, recipe, weight_decay, bn_rows, chunk):
    """RSO's configuration that ``rso_reference`` implements, every argument spelled out."""
    return dict(
        cycles=cycles,
        batch_size=batch_size,
        seed=seed,
        recipe=recipe,
        anneal=0.1,
        sigma="kaiming",
        norm_sigma=0.167,
        direction="backward",
        order="output",
        sampling="contiguous",
        shared_batch=True,
        weight_decay=weight_decay,
        bn_rows=bn_rows,
        loss="cross_entropy",
        level="weight",
        parallel=None,
        trials_per_batch=1,
        cache_chunk=chunk,
    )


# ---- RSO: Algorithm 1 -----------------------------------------------------------------------------


@pytest.mark.parametrize("evaluator", ["plain", "incremental"])
@pytest.mark.parametrize(
    "net,data,recipe,cycles,wd,bn_rows,chunk",
    [
        # BatchNorm's running statistics from 16 of the 40 rows; the cache in three chunks
        (conv_bn, conv_data, "authors", 3, 1e-4, 16, 16),
        (paper_net, image_data, "authors", 2, 1e-4, 2000, 2000),
        (mlp_bn, mlp_data, "paper", 3, 1e-2, 2000, 2000),
    ],
    ids=["conv-bn-authors", "paper-net-authors", "mlp-bn-paper"],
)
def test_rso_takes_the_decisions_of_algorithm_1(evaluator, net, data, recipe, cycles, wd, bn_rows, chunk):
    """Batch 8 of 40 rows: 5 batches per shuffle, so a BatchNorm's trials (2 to 4 per tensor) leave the first
    layer's shuffle part-way, and its weights start there in the next cycle."""
    x, y = data()
    ref_model, model = net(), net()
    expected = rso_reference(
        ref_model, x, y, cycles, 8, seed=11, recipe=recipe, weight_decay=wd, bn_rows=bn_rows, chunk_size=chunk
    )
    got = []
    opt = RSO(
        model,
        x,
        y,
        evaluator=evaluator,
        **rso_kwargs(cycles, 8, 11, recipe, wd, bn_rows, chunk),
        callback=lambda event, info: got.append(info["decision"]) if event == "trial" else None,
    )
    opt.run()
    assert len(got) == len(expected) == cycles * model.num_params
    assert got == expected
    np.testing.assert_array_equal(_np(model.params), _np(ref_model.params))
    assert {"keep", "plus", "minus"} <= set(got)  # every branch of the decision was taken
    assert not np.array_equal(_np(model.params), _np(net().params))


def test_rso_extended_to_more_cycles_follows_the_loop_with_the_new_factors():
    """A finished 2-cycle run loaded into RSO(cycles=4): cycles 3 and 4 anneal over 4 cycles (authors:
    0.1 + 0.9 (C - c) / C, so 1, 0.55 for C = 2, then 0.55, 0.325 for C = 4)."""
    x, y = mlp_data(seed=4)
    ref_model, model = mlp_bn(), mlp_bn()
    kw = rso_kwargs(2, 8, 5, "authors", 1e-4, 2000, 2000)
    expected = rso_reference(ref_model, x, y, 4, 8, seed=5, factors=[1.0, 0.55, 0.55, 0.325])
    got = []

    def record(event, info):
        if event == "trial":
            got.append(info["decision"])

    first = RSO(model, x, y, **kw, callback=record)
    first.run()
    longer = RSO(model, x, y, **{**kw, "cycles": 4}, callback=record)
    longer.load_state_dict(first.state_dict())
    longer.run()
    assert got == expected
    np.testing.assert_array_equal(_np(model.params), _np(ref_model.params))


@pytest.mark.parametrize("recipe,factors", [("authors", [1.0, 0.7, 0.4]), ("paper", [1.0, 0.55, 0.1])])
def test_anneal_factor_by_hand(recipe, factors):
    """Three cycles, a = 0.1: the authors' a + 0.9 (3 - c) / 3, the paper's a + 0.9 (2 - c) / 2."""
    assert [anneal_factor(recipe, 0.1, c, 3) for c in range(3)] == pytest.approx(factors, rel=1e-15)
    assert anneal_factor("paper", 0.1, 0, 1) == 1.0


def test_pool_order_is_a_permutation_and_differs_per_key():
    a, b = pool_order(3, 0, 50), pool_order(3, 1, 50)
    assert sorted(a.tolist()) == list(range(50)) and sorted(b.tolist()) == list(range(50))
    assert not np.array_equal(a, b) and not np.array_equal(a, np.arange(50))


# ---- aMC: sec. III A -------------------------------------------------------------------------------


def rosenbrock(p, rows=None) -> float:
    """The aMC paper's eq. (6), minimum 0 at (1, 1)."""
    x, y = float(p[0]), float(p[1])
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def through(model_loss):
    """``U(x, rows)`` for the reference, evaluated by a ModelLoss (the evaluator AMC itself uses)."""

    def U(params, rows):
        model_loss.select(rows)
        return model_loss(params)

    return U


def plain(model, x, y, loss):
    """``U(x, rows)`` and ``lambdas(x, rows)`` (eq. 18) from plain forward passes of ``model``, whose buffer is x."""
    fn = LOSSES[loss]

    def U(params, rows):
        xb, yb = (x, y) if rows is None else (x[rows], y[rows])
        return float(fn(model.forward(xb), yb))

    def lambdas(params, rows):
        with model.signal_stats():
            model.forward(x if rows is None else x[rows])
        return model.signal_norm_lambda()

    return U, lambdas


def assert_same_run(infos, ref, params, ref_params, mu, ref_mu):
    assert len(infos) == len(ref)
    for n, (info, want) in enumerate(zip(infos, ref, strict=True)):
        assert {k: info[k] for k in want} == want, n
    np.testing.assert_array_equal(_np(params), _np(ref_params))
    np.testing.assert_array_equal(_np(mu), _np(ref_mu))


@pytest.mark.parametrize(
    "case", ["mlp-batch", "mlp-minibatch", "mlp-signal-norm", "mlp-signal-norm-minibatch", "conv-bn-minibatch"]
)
def test_amc_follows_section_III_A(case):
    """AMC with a ModelLoss: every step's decision, loss and sigma, then the parameters and mu, bit for bit;
    with signal norm the reference's lambda_i come from a plain forward pass of its own model (eq. 17-18)."""
    steps = 60
    if case.startswith("mlp"):
        net, (x, y), loss = (lambda: mlp([5, 6, 3], seed=3)), mlp_data(), "mse"
    else:
        net, (x, y), loss = conv_bn, conv_data(), "cross_entropy"
    batch = 12 if "minibatch" in case else None
    signal_norm = "signal-norm" in case
    hp = dict(sigma0=0.05, epsilon=0.2, n_s=4, decay=0.8, seed=7)
    ref_model, model = net(), net()
    if signal_norm:  # AMC's ModelLoss then takes the plain forward pass too
        U, lambdas = plain(ref_model, x, y, loss)
    else:
        U, lambdas = through(ModelLoss(ref_model, x, y, loss=loss)), None
    ref, ref_mu = amc_reference(
        U, ref_model.params, steps, lambdas=lambdas, batch_size=batch, num_samples=x.shape[0], **hp
    )
    opt = AMC(model.params, ModelLoss(model, x, y, loss=loss), signal_norm=signal_norm, batch_size=batch, **hp)
    infos = [opt.step() for _ in range(steps)]
    assert_same_run(infos, ref, model.params, ref_model.params, opt.mu, ref_mu)
    accepted = sum(r["accepted"] for r in ref)
    assert 0 < accepted < steps and ref[-1]["sigma"] < hp["sigma0"]  # accepts, rejects and decays all happen


@pytest.mark.parametrize("T,batch", [(0.0, None), (0.02, None), (0.0, 10)])
def test_metropolis_follows_the_loop_with_epsilon_0_and_n_s_inf(T, batch):
    """Sec. III A: Metropolis is aMC with epsilon = 0, n_s = inf, lambda = 1 (note [60] at T > 0)."""
    x, y = mlp_data(seed=5)
    ref_model, model = mlp_bn(seed=2), mlp_bn(seed=2)
    ref, ref_mu = amc_reference(
        through(ModelLoss(ref_model, x, y, loss="mse")),
        ref_model.params,
        60,
        sigma0=0.05,
        temperature=T,
        seed=3,
        batch_size=batch,
        num_samples=x.shape[0],
    )
    opt = Metropolis(
        model.params, ModelLoss(model, x, y, loss="mse"), sigma=0.05, temperature=T, seed=3, batch_size=batch
    )
    infos = [opt.step() for _ in range(60)]
    assert_same_run(infos, ref, model.params, ref_model.params, opt.mu, ref_mu)
    assert all(r["sigma"] == 0.05 for r in ref) and np.all(_np(ref_mu) == 0)
    assert 0 < sum(r["accepted"] for r in ref) < 60


def test_amc_on_a_plain_function_in_float64():
    """Rosenbrock (Fig. 3) at T > 0: positions, mu and sigma bit for bit, uphill moves accepted."""
    hp = dict(sigma0=0.05, epsilon=0.1, n_s=5, decay=0.9, seed=9)
    start = np.array([-1.3, 1.7])
    ref_p, p = minirso.asarray(start.copy()), minirso.asarray(start.copy())
    ref, ref_mu = amc_reference(rosenbrock, ref_p, 300, temperature=2.0, **hp)
    opt = AMC(p, rosenbrock, temperature=2.0, **hp)
    infos = [opt.step() for _ in range(300)]
    assert_same_run(infos, ref, p, ref_p, opt.mu, ref_mu)
    assert any(ref[n]["accepted"] and ref[n]["loss"] > ref[n - 1]["loss"] for n in range(1, 300))
    assert ref[-1]["loss"] < ref[0]["loss"]


def test_each_of_k_chains_follows_the_loop_with_its_seed():
    """AMCChains row k is the reference run with seeds[k] (float64 Rosenbrock rows: no rounding between them)."""
    seeds, steps = [4, 17, 250], 200
    start = np.array([[-1.2, 1.0], [0.5, -0.3], [2.0, 2.5]])
    hp = dict(sigma0=0.05, epsilon=0.1, n_s=5, decay=0.9)

    def rosenbrock_rows(t):  # (K, 2) -> (K,)
        return (1 - t[:, 0]) ** 2 + 100 * (t[:, 1] - t[:, 0] ** 2) ** 2

    chains = AMCChains(minirso.asarray(start.copy()), rosenbrock_rows, seeds=seeds, **hp)
    infos = [chains.step() for _ in range(steps)]
    for k, s in enumerate(seeds):
        p = minirso.asarray(start[k].copy())
        ref, ref_mu = amc_reference(rosenbrock, p, steps, seed=s, **hp)
        assert [bool(i["accepted"][k]) for i in infos] == [r["accepted"] for r in ref]
        assert [float(i["sigma"][k]) for i in infos] == [r["sigma"] for r in ref]
        np.testing.assert_array_equal(_np(chains.params[k]), _np(p))
        np.testing.assert_array_equal(_np(chains.mu[k]), _np(ref_mu))
    assert len(set(chains.sigma.tolist())) > 1  # the chains decayed at different times
