"""K aMC chains in one batched evaluation (minirso.optim.chains).

Independent truths: the single-chain optimizer :class:`AMC` (tested against the
paper elsewhere) run K times with the same seeds, and :class:`ModelLoss`, the
plain one-model forward pass, for the batched losses.
"""

import math

import numpy as np
import pytest

import minirso
from minirso.models import mlp, rso_mnist
from minirso.optim import AMC, AMCChains, ChainsLoss, ModelLoss


def rosenbrock_rows(thetas):
    """Batched 2-D Rosenbrock (aMC Fig. 3), one value per row: (K, 2) -> (K,)."""
    x, y = thetas[:, 0], thetas[:, 1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock(p):
    return float(rosenbrock_rows(p[None, :])[0])


def random_rows(net, k, seed):
    """K asymmetric parameter vectors around the net's initialisation."""
    r = np.random.default_rng(seed)
    base = minirso.to_numpy(net.params)
    rows = base[None, :] * (1 + 0.3 * r.normal(size=(k, base.size))) + 0.05 * r.normal(size=(k, base.size))
    return minirso.asarray(rows.astype(np.float32))


def digits(n, features, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, features)).astype(np.float32)
    x[:, : features // 3] += 0.8  # lopsided columns
    y = r.integers(0, 10, size=n).astype(np.int64)
    return minirso.asarray(x), minirso.asarray(y)


@pytest.mark.parametrize(
    "build,loss",
    [
        (lambda: mlp([20, 16, 16, 10], output="softmax", seed=3), "mse"),  # the Fig. 1 shape, narrower input
        (lambda: mlp([20, 12, 12, 10], layer_norm=True, seed=4), "cross_entropy_mean"),  # the authors' LN example
        (lambda: mlp([20, 8, 10], activation="relu", seed=5), "cross_entropy"),
    ],
)
def test_chains_loss_equals_one_forward_per_chain(build, loss):
    net = build()
    x, y = digits(64, 20)
    thetas = random_rows(net, 4, seed=1)
    got = minirso.to_numpy(ChainsLoss(net, x, y, loss)(thetas))
    one = ModelLoss(net, x, y, loss)
    want = [one(thetas[c].copy()) for c in range(4)]
    np.testing.assert_allclose(got, want, rtol=2e-6)
    assert len(set(np.round(want, 6))) == 4  # the rows really differ


def test_chains_loss_rejects_a_conv_net_by_name():
    net = rso_mnist(channels=2)
    x = minirso.asarray(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="conv1.*Conv2d"):
        ChainsLoss(net, x, minirso.asarray(np.zeros(2, np.int64)))


def test_each_chain_follows_its_single_chain_trajectory_exactly():
    """Rosenbrock in float64: no forward-pass rounding, so chain k must equal AMC(seed=seeds[k]) bit for bit,
    through acceptances, mu updates and sigma decays (n_s = 5 makes them happen)."""
    seeds = [11, 5, 902]
    start = np.array([[-1.2, 1.0], [0.5, -0.3], [2.0, 2.5]])
    hp = dict(sigma0=0.05, epsilon=0.1, n_s=5, decay=0.9)
    chains = AMCChains(minirso.asarray(start.copy()), rosenbrock_rows, seeds=seeds, **hp)
    chains.run(400)
    for c, s in enumerate(seeds):
        p = minirso.asarray(start[c].copy())
        one = AMC(p, rosenbrock, seed=s, **hp)
        one.run(400)
        np.testing.assert_array_equal(minirso.to_numpy(chains.params[c]), minirso.to_numpy(p))
        np.testing.assert_array_equal(minirso.to_numpy(chains.mu[c]), minirso.to_numpy(one.mu))
        assert chains.sigma[c] == one.sigma and chains.n_cr[c] == one.n_cr and chains.loss[c] == one.loss
        assert (chains.accepted[c], chains.rejected[c]) == (one.accepted, one.rejected)
    assert len(set(chains.sigma)) > 1  # the chains decayed at different times: they are independent
    assert chains.rejected.min() > 5  # decays happened


def test_chains_on_an_mlp_take_the_single_chain_decisions():
    """The Fig. 1 MLP (float32): K chains with ChainsLoss against K runs of AMC + ModelLoss."""
    x, y = digits(200, 30, seed=2)
    net = mlp([30, 16, 16, 10], output="softmax", seed=7)
    thetas = random_rows(net, 3, seed=9)
    start = minirso.to_numpy(thetas).copy()
    hp = dict(sigma0=2e-2, epsilon=1e-2, n_s=4)
    chains = AMCChains(thetas, ChainsLoss(net, x, y, "mse"), seeds=40, **hp)
    log = []
    chains.run(150, callback=lambda info: log.append(info["accepted"].copy()))
    for c in range(3):
        net.params[...] = minirso.asarray(start[c])
        one = AMC(net.params, ModelLoss(net, x, y, "mse"), seed=40 + c, **hp)
        decisions = [one.step()["accepted"] for _ in range(150)]
        assert decisions == [bool(a[c]) for a in log]
        np.testing.assert_allclose(
            minirso.to_numpy(chains.params[c]), minirso.to_numpy(net.params), rtol=1e-6, atol=1e-7
        )
        assert chains.sigma[c] == one.sigma
    assert 0 < chains.accepted.sum() < 450


def test_state_dict_resumes_exactly():
    start = np.array([[-1.2, 1.0], [0.5, -0.3]])
    hp = dict(seeds=[3, 4], sigma0=0.05, epsilon=0.1, n_s=5)
    whole = AMCChains(minirso.asarray(start.copy()), rosenbrock_rows, **hp)
    whole.run(120)
    first = AMCChains(minirso.asarray(start.copy()), rosenbrock_rows, **hp)
    first.run(70)
    saved_params, state = minirso.to_numpy(first.params).copy(), first.state_dict()
    again = AMCChains(minirso.asarray(saved_params), rosenbrock_rows, **hp)
    again.load_state_dict(state)
    again.run(50)
    np.testing.assert_array_equal(minirso.to_numpy(again.params), minirso.to_numpy(whole.params))
    np.testing.assert_array_equal(again.sigma, whole.sigma)
    np.testing.assert_array_equal(minirso.to_numpy(again.mu), minirso.to_numpy(whole.mu))
    with pytest.raises(ValueError, match="seeds"):
        AMCChains(minirso.asarray(start.copy()), rosenbrock_rows, seeds=[3, 5]).load_state_dict(state)


def test_bad_input_is_named():
    rows = minirso.asarray(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(K, P\)"):
        AMCChains(minirso.asarray(np.zeros(4)), rosenbrock_rows)
    with pytest.raises(ValueError, match="seeds must differ"):
        AMCChains(rows, rosenbrock_rows, seeds=[1, 1, 2])
    with pytest.raises(ValueError, match="2 given for 3 chains"):
        AMCChains(rows, rosenbrock_rows, seeds=[1, 2])
    bad = AMCChains(rows, lambda t: rosenbrock_rows(t)[:2])
    with pytest.raises(ValueError, match="2 losses for 3 chains"):
        bad.step()
    nan_chain = AMCChains(minirso.asarray(np.array([[0.0, 0.0], [math.nan, 0.0]])), rosenbrock_rows, seeds=[1, 2])
    nan_chain.run(5)
    assert list(nan_chain.nonfinite) == [0, 5] and nan_chain.accepted[1] == 0


def test_step_copies_nothing_to_the_device(standin):
    """A GPU step of K chains reads the K losses once (one host sync) and copies nothing to the device:
    the decisions are taken on the device from the same losses (counted by the CuPy stand-in)."""
    xp = minirso.backend.xp()
    r = np.random.default_rng(6)
    net = mlp([12, 8, 4], output="softmax", seed=1)
    x = xp.asarray(r.standard_normal((40, 12)).astype(np.float32))
    y = xp.asarray(r.integers(0, 4, 40))
    k = 4
    params = xp.asarray(np.tile(minirso.to_numpy(net.params), (k, 1)))
    opt = AMCChains(params, ChainsLoss(net, x, y, "mse"), seeds=11, sigma0=0.05, n_s=2)
    opt.step()  # the first step also evaluates the starting losses and makes the device copies
    for _ in range(6):
        with standin.counters.counting() as d:
            opt.step()
        assert d["h2d"] == 0 and d["syncs"] == 1, d
    assert 0 < opt.accepted.sum() < 7 * k and (opt.sigma < 0.05).any()  # accepts, rejects and decays happened
