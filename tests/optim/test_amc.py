"""aMC / Metropolis (Whitelam et al. 2022) against the paper and independent computations.

Spec: the aMC paper, sec. II C (adaptivity, Fig. 3 Rosenbrock), II E (signal
norm), II F (progressive batching), III A (the algorithm, steps 1-4, eqs. 9-10,
note [60] for T > 0) and III B (signal norm, eqs. 17-18); the reproducibility
contract of ``minirso/optim/amc.py`` (the documented random-number formulas).

Every expected value is computed in this file: a direct loop over the
algorithm of sec. III A, hand-computed lambdas (eq. 17) in float64 NumPy,
scripted losses whose accept/reject sequence is known in advance, or a
binomial bound with a fixed seed.  Arrays are made on the active backend
(``xp`` fixture) and brought back with ``minirso.to_numpy`` before comparison.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import minirso
from minirso.models import mlp
from minirso.optim import AMC, Metropolis, ModelLoss
from minirso.optim.amc import STREAM_ACCEPT, STREAM_DATA, STREAM_PROPOSAL
from minirso.random import normal, uniform

_np = minirso.to_numpy


# ---- helpers ------------------------------------------------------------------------------------


def rosenbrock(p) -> float:
    """The paper's eq. (6): f(x, y) = (1 - x)^2 + 100 (y - x^2)^2 (global minimum 0 at (1, 1))."""
    x, y = float(p[0]), float(p[1])
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def z_of(seed, step, size, like):
    """The documented proposal normals of step ``step``: normal(seed, STREAM_PROPOSAL, step*P, P), as NumPy."""
    xp = minirso.get_array_module(like)
    return _np(normal(seed, STREAM_PROPOSAL, step * size, size, xp, dtype=like.dtype)).astype(np.float64)


def make_data(xp, n=40, d=5, classes=3, seed=7):
    """Asymmetric inputs (per-feature scales and offsets) with labels from a random linear rule."""
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 0.5, 2.0, 0.1, 1.5, 0.7, 1.2][:d])
    x = rng.normal(size=(n, d)) * scale + np.linspace(-0.4, 0.6, d)
    w = rng.normal(size=(d, classes))
    y = np.argmax(x @ w + np.array([0.3, -0.2, 0.1][:classes]), axis=1)
    return xp.asarray(x.astype(np.float32)), xp.asarray(y.astype(np.int64))


class ScriptedLoss:
    """A loss returning a prescribed sequence of values, one per call (so accept/reject is known in advance)."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def __call__(self, params) -> float:
        v = self.values[self.calls]
        self.calls += 1
        return v


class RecordingModelLoss(ModelLoss):
    """ModelLoss that records every select() call as a NumPy copy of the rows."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.selected = []

    def select(self, rows):
        self.selected.append(None if rows is None else _np(rows).copy())
        super().select(rows)


def reference_amc(x0, U, steps, *, sigma0, epsilon=0.0, n_s=math.inf, decay=0.95, T=0.0, seed=0):
    """A direct loop over the paper's sec. III A for batch learning (independent of minirso.optim).

    Returns the per-step list of (params, mu, sigma, n_cr, loss, accepted) as NumPy float64 copies.
    Random numbers follow the documented formulas (the normals drawn on ``x0``'s backend).
    """
    xp = minirso.get_array_module(x0)
    x = _np(x0).astype(np.float64).copy()
    P = x.size
    mu, sigma, ncr = np.zeros(P), sigma0, 0
    u = U(xp.asarray(x))
    out = []
    for n in range(steps):
        z = z_of(seed, n, P, x0)
        e = mu + sigma * z  # eq. (9), lambda = 1
        xn = x + e
        un = U(xp.asarray(xn))
        if not math.isfinite(un):
            acc = False
        elif un <= u:
            acc = True
        elif T > 0:  # note [60]
            xi = float(uniform(seed, STREAM_ACCEPT, n, 1, np)[0])
            acc = xi < math.exp((u - un) / T)
        else:
            acc = False
        if acc:  # step 3
            x, u, ncr = xn, un, 0
            mu = mu + epsilon * (e - mu)  # eq. (10)
        else:  # step 4
            ncr += 1
            if ncr == n_s:
                ncr, sigma, mu = 0, sigma * decay, np.zeros(P)
        out.append((x.copy(), mu.copy(), sigma, ncr, u, acc))
    return out


def hand_lambda_mlp(w1, b1, w2, x):
    """eq. (17)-(18) for a 2-layer tanh MLP, in float64: weights of layer l get (mean_alpha sum_i S_i^2)^(-1/2)."""
    x = x.astype(np.float64)
    h = np.tanh(x @ w1.T + b1)  # outputs S of the hidden neurons
    lam1 = (np.mean(np.sum(x * x, axis=1))) ** -0.5  # every neuron of fc1 sees all inputs x_i
    lam2 = (np.mean(np.sum(h * h, axis=1))) ** -0.5  # every neuron of fc2 sees all hidden outputs
    return lam1, lam2


def groups(model):
    return {g.name: g for g in model.param_groups}


# ---- 1. Fig. 3: adaptivity speeds convergence on the Rosenbrock function -------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_rosenbrock_larger_epsilon_reaches_minimum_faster(xp, seed):
    """Sec. II C, Fig. 3: from (-2, 2) with sigma0 = 1e-3, n_s = 20, the larger epsilon the faster
    the minimum is reached.  Steps until f < 1e-3 are strictly ordered eps=0.1 < eps=0.01 < eps=0
    (eps=0 does not get there within 5000 steps)."""
    limit, threshold = 5000, 1e-3
    first = {}
    for eps in (1e-1, 1e-2, 0.0):
        p = xp.asarray(np.array([-2.0, 2.0]))
        opt = AMC(p, rosenbrock, sigma0=1e-3, n_s=20, epsilon=eps, seed=seed)
        first[eps] = math.inf
        for n in range(limit):
            info = opt.step()
            # the reported loss is f at the current position (an independent evaluation)
            if info["loss"] < threshold:
                assert rosenbrock(_np(p)) == pytest.approx(info["loss"], rel=1e-12, abs=1e-15)
                first[eps] = n
                break
    assert first[1e-1] < 0.6 * first[1e-2], first
    assert first[1e-2] < limit, first
    assert first[0.0] == math.inf, first


# ---- 2. step 4: sigma decay after exactly n_s consecutive rejections ------------------------------


@pytest.mark.parametrize("n_s", [1, 4, 7])
def test_sigma_decays_after_exactly_n_s_consecutive_rejections(xp, n_s):
    """Sec. III A step 4: after n_s consecutive rejections sigma -> 0.95 sigma, mu -> 0, n_cr -> 0.
    U(x) = |x - x0|^2 is 0 at the start, so every proposal is rejected."""
    rng = np.random.default_rng(5)
    x0 = rng.normal(size=6) * np.array([1, 2, 3, 0.5, 0.1, 4.0])
    p = xp.asarray(x0.copy())
    loss = lambda q: float(((_np(q) - x0) ** 2).sum())
    opt = AMC(p, loss, sigma0=0.02, epsilon=0.3, n_s=n_s, seed=3)
    opt.mu[...] = xp.asarray(np.linspace(0.01, 0.06, 6))  # a non-zero centre, to see it reset
    for k in range(1, 3 * n_s + 1):
        info = opt.step()
        assert not info["accepted"]
        decays = k // n_s
        assert opt.sigma == pytest.approx(0.02 * 0.95**decays, rel=1e-15), k
        assert opt.n_cr == k % n_s, k
        if k < n_s:
            assert np.all(_np(opt.mu) != 0), k  # not yet reset after n_s - 1 rejections
        else:
            assert np.all(_np(opt.mu) == 0), k
        np.testing.assert_array_equal(_np(p), x0)  # rejected: x is retained exactly
    assert opt.rejected == 3 * n_s and opt.accepted == 0


def test_acceptance_resets_consecutive_rejection_count():
    """Sec. III A step 3: an accepted move sets n_cr = 0, so n_s - 1 rejections, one accept and
    n_s - 1 rejections do not decay sigma; one more rejection (n_s in a row) does, with a custom decay."""
    n_s, sigma0, decay = 5, 0.1, 0.8
    # first call: U(x0) = 10; then proposals: 4 rejections (11), accept (9), 4 rejections (12), 1 rejection
    script = [10.0] + [11.0] * (n_s - 1) + [9.0] + [12.0] * (n_s - 1) + [9.5]
    p = np.array([0.5, -1.5, 2.0])
    opt = AMC(p, ScriptedLoss(script), sigma0=sigma0, epsilon=0.5, n_s=n_s, decay=decay, seed=1)
    hist = [opt.step() for _ in range(2 * n_s - 1)]
    assert [h["accepted"] for h in hist] == [False] * (n_s - 1) + [True] + [False] * (n_s - 1)
    assert opt.sigma == sigma0 and opt.n_cr == n_s - 1
    mu_after_accept = _np(opt.mu).copy()
    assert np.all(mu_after_accept != 0)  # eq. (10) with epsilon = 0.5 moved mu
    opt.step()  # the n_s-th consecutive rejection
    assert opt.sigma == pytest.approx(sigma0 * decay, rel=1e-15)
    assert opt.n_cr == 0 and np.all(_np(opt.mu) == 0)
    assert opt.loss == 9.0  # U of the current x: the accepted value
    assert (opt.accepted, opt.rejected) == (1, 2 * n_s - 1)
    assert opt.acceptance_rate == pytest.approx(1 / (2 * n_s))


# ---- 3. eq. (9)-(10): the proposal and the mu update by hand -------------------------------------


def test_mu_update_and_params_match_eq_10_by_hand(xp):
    """Eqs. (9)-(10): eps_n = mu + sigma z_n with z_n = normal(seed, STREAM_PROPOSAL, n*P, P);
    accept: x += eps_n, mu += epsilon (eps_n - mu); reject: x and mu unchanged."""
    seed, sigma0, epsilon = 17, 0.1, 0.3
    x0 = np.array([0.3, -1.2, 2.5, 0.07])
    P = x0.size
    p = xp.asarray(x0.copy())
    # U(x0) = 5; step 0 accept (4), step 1 accept (3), step 2 reject (3.5), step 3 accept (3: equal is accepted)
    opt = AMC(p, ScriptedLoss([5.0, 4.0, 3.0, 3.5, 3.0]), sigma0=sigma0, epsilon=epsilon, n_s=10, seed=seed)
    x, mu = x0.copy(), np.zeros(P)
    for n, acc in enumerate([True, True, False, True]):
        z = _np(normal(seed, STREAM_PROPOSAL, n * P, P, np, dtype=np.float64))
        eps = mu + sigma0 * z
        info = opt.step()
        assert info["accepted"] is acc
        if acc:
            x = x + eps
            mu = mu + epsilon * (eps - mu)
        np.testing.assert_allclose(_np(p), x, rtol=0, atol=1e-14)
        np.testing.assert_allclose(_np(opt.mu), mu, rtol=0, atol=1e-14)
    # by hand after the first two accepts: mu1 = 0.3 eps0, mu2 = mu1 + 0.3 (mu1 + 0.1 z1 - mu1) = mu1 + 0.03 z1
    z0, z1 = (_np(normal(seed, STREAM_PROPOSAL, n * P, P, np, dtype=np.float64)) for n in (0, 1))
    mu2 = 0.3 * 0.1 * z0 + 0.03 * z1
    x2 = x0 + 0.1 * z0 + (0.03 * z0 + 0.1 * z1)
    assert not np.allclose(mu2, 0)
    z3 = _np(normal(seed, STREAM_PROPOSAL, 3 * P, P, np, dtype=np.float64))
    eps3 = mu2 + 0.1 * z3
    np.testing.assert_allclose(_np(p), x2 + eps3, atol=1e-14)
    np.testing.assert_allclose(_np(opt.mu), mu2 + 0.3 * (eps3 - mu2), atol=1e-14)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(sigma0=0.05, epsilon=0.1, n_s=20),
        dict(sigma0=0.2, epsilon=0.5, n_s=3, decay=0.7),
        dict(sigma0=0.05, epsilon=0.05, n_s=5, T=2.0),
    ],
)
def test_trajectory_matches_direct_loop_of_section_III_A(xp, cfg):
    """Sec. III A steps 1-4 and note [60], written out as a plain loop in this file (reference_amc):
    the library's positions, mu, sigma, n_cr, loss and decisions agree at every step (float64 params)."""
    x0 = np.array([-1.3, 1.7])
    cfg = dict(cfg)  # the parametrize dict is shared between runs: do not mutate it
    T = cfg.pop("T", 0.0)
    steps = 300
    ref = reference_amc(xp.asarray(x0), rosenbrock, steps, T=T, seed=9, **cfg)
    p = xp.asarray(x0.copy())
    opt = AMC(p, rosenbrock, temperature=T, seed=9, **cfg)
    n_acc = 0
    for n in range(steps):
        info = opt.step()
        x, mu, sigma, ncr, u, acc = ref[n]
        assert info["accepted"] == acc, n
        np.testing.assert_allclose(_np(p), x, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(_np(opt.mu), mu, rtol=1e-12, atol=1e-15)
        assert opt.sigma == pytest.approx(sigma, rel=1e-14)
        assert opt.n_cr == ncr and info["loss"] == pytest.approx(u, rel=1e-12, abs=1e-15)
        n_acc += acc
    n_decay = round(math.log(opt.sigma / cfg["sigma0"]) / math.log(cfg.get("decay", 0.95)))
    assert 0 < n_acc < steps and n_decay >= 1  # both branches of the algorithm were exercised
    if T > 0:  # some uphill moves were accepted
        ups = sum(1 for n in range(1, steps) if ref[n][5] and ref[n][4] > ref[n - 1][4])
        assert ups > 0


# ---- 4. eq. (17)-(18): signal norm sets sigma_i = lambda_i sigma ---------------------------------


def test_signal_norm_step_is_lambda_times_sigma(xp):
    """Sec. II E / III B, eqs. (9), (17), (18): with epsilon = 0 (mu = 0) an accepted move changes
    x_i by lambda_i sigma z_i, lambda_i = (mean over data of sum_{i->j} S_i^2)^(-1/2) for weights,
    computed here in float64 from the CURRENT parameters (the pass before the move), 1 for biases."""
    seed, sigma = 4, 0.1
    model = mlp([3, 4, 2], seed=2)
    x, y = make_data(xp, n=30, d=3, classes=2, seed=11)
    opt = AMC(model.params, ModelLoss(model, x, y), sigma0=sigma, epsilon=0.0, n_s=1000, signal_norm=True, seed=seed)
    g = groups(model)
    xn = _np(x)
    checked, lams = 0, []
    for n in range(40):
        before = _np(model.params).astype(np.float64).copy()
        info = opt.step()
        if not info["accepted"]:
            np.testing.assert_array_equal(_np(model.params), before.astype(np.float32))
            continue
        w1 = before[g["fc1.weight"].slice].reshape(4, 3)
        b1 = before[g["fc1.bias"].slice]
        w2 = before[g["fc2.weight"].slice].reshape(2, 4)
        lam1, lam2 = hand_lambda_mlp(w1, b1, w2, xn)
        lam = np.ones(model.num_params)
        lam[g["fc1.weight"].slice] = lam1
        lam[g["fc2.weight"].slice] = lam2
        z = z_of(seed, n, model.num_params, model.params)
        delta = _np(model.params).astype(np.float64) - before
        np.testing.assert_allclose(delta, lam * sigma * z, rtol=1e-4, atol=2e-7)
        big = np.abs(z) > 0.2
        np.testing.assert_allclose(delta[big] / z[big], (lam * sigma)[big], rtol=1e-4)
        lams.append((lam1, lam2))
        checked += 1
    assert checked >= 3
    # lambda is heterogeneous (not 1) and follows the current parameters (the hidden-layer lambda changes)
    assert abs(lams[0][0] - 1) > 0.05 and abs(lams[0][1] - 1) > 0.05
    assert len({round(l2, 9) for _, l2 in lams}) > 1


def test_signal_norm_minibatch_uses_the_selected_rows(xp):
    """Sec. III A step 1 (minibatch): lambda_i comes from the forward pass on THIS step's minibatch,
    rows floor(N u) with u = uniform(seed, STREAM_DATA, n*N, B); checked by hand for the first layer."""
    seed, sigma, N, B = 6, 0.05, 40, 7
    model = mlp([5, 3, 3], seed=4)
    x, y = make_data(xp, n=N, d=5, seed=12)
    opt = AMC(model.params, ModelLoss(model, x, y), sigma0=sigma, signal_norm=True, batch_size=B, seed=seed)
    xn = _np(x).astype(np.float64)
    g = groups(model)
    found = 0
    for n in range(15):
        before = _np(model.params).astype(np.float64).copy()
        info = opt.step()
        if not info["accepted"]:
            continue
        rows = np.floor(N * _np(uniform(seed, STREAM_DATA, n * N, B, np))).astype(np.int64)
        w1 = before[g["fc1.weight"].slice].reshape(3, 5)
        b1 = before[g["fc1.bias"].slice]
        w2 = before[g["fc2.weight"].slice].reshape(3, 3)
        lam1, lam2 = hand_lambda_mlp(w1, b1, w2, xn[rows])
        lam1_all, _ = hand_lambda_mlp(w1, b1, w2, xn)
        assert abs(lam1 / lam1_all - 1) > 1e-3  # the minibatch value differs from the full-data one
        z = z_of(seed, n, model.num_params, model.params)
        delta = _np(model.params).astype(np.float64) - before
        sl1, sl2, sb = g["fc1.weight"].slice, g["fc2.weight"].slice, g["fc2.bias"].slice
        np.testing.assert_allclose(delta[sl1], lam1 * sigma * z[sl1], rtol=1e-4, atol=2e-7)
        np.testing.assert_allclose(delta[sl2], lam2 * sigma * z[sl2], rtol=1e-4, atol=2e-7)
        np.testing.assert_allclose(delta[sb], sigma * z[sb], rtol=1e-4, atol=2e-7)
        found += 1
    assert found >= 2


# ---- 5. note [60]: Metropolis acceptance at T > 0 -------------------------------------------------


class UphillLoss:
    """Batch-learning loss for which every proposal is uphill by exactly dU: the proposal after
    ``a`` accepted moves costs (a + 1) dU while the current state costs a dU."""

    def __init__(self, dU):
        self.dU, self.opt = dU, None

    def __call__(self, params) -> float:
        if self.opt.loss is None:  # the first evaluation, U(x0)
            return 0.0
        return self.dU * (self.opt.accepted + 1)


@pytest.mark.parametrize("dU,T", [(0.3, 0.5), (1.0, 0.4)])
def test_uphill_acceptance_probability_is_exp_minus_dU_over_T(xp, dU, T):
    """Note [60]: at T > 0 an uphill move is accepted iff xi < exp(-dU/T), xi uniform on (0, 1)
    (documented: uniform(seed, STREAM_ACCEPT, n, 1)); the acceptance fraction over 3000 steps
    lies within 4 binomial standard deviations of exp(-dU/T)."""
    steps, seed = 3000, 21
    loss = UphillLoss(dU)
    p = xp.asarray(np.array([0.2, -0.7, 1.1]))
    opt = AMC(p, loss, sigma0=0.01, n_s=math.inf, temperature=T, seed=seed)
    loss.opt = opt
    pa = math.exp(-dU / T)
    xi = _np(uniform(seed, STREAM_ACCEPT, 0, steps, np))
    decisions = []
    for n in range(steps):
        before = _np(p).copy()
        info = opt.step()
        decisions.append(info["accepted"])
        assert info["accepted"] == bool(xi[n] < pa), n  # the documented uniform decides
        if not info["accepted"]:
            np.testing.assert_array_equal(_np(p), before)
    frac = np.mean(decisions)
    sd = math.sqrt(pa * (1 - pa) / steps)
    assert abs(frac - pa) < 4 * sd, (frac, pa, sd)
    assert opt.loss == pytest.approx(dU * opt.accepted)  # U rose by dU at every accepted move


def test_zero_temperature_never_accepts_uphill(xp):
    """Sec. III A: at T = 0 only moves with U(x') <= U(x) are accepted: none of 500 uphill proposals."""
    loss = UphillLoss(1e-6)
    x0 = np.array([0.2, -0.7, 1.1])
    p = xp.asarray(x0.copy())
    opt = AMC(p, loss, sigma0=0.01, n_s=math.inf, temperature=0.0, seed=21)
    loss.opt = opt
    opt.run(500)
    assert opt.accepted == 0 and opt.rejected == 500
    np.testing.assert_array_equal(_np(p), x0)


# ---- 6. exact resume ----------------------------------------------------------------------------

RESUME_CASES = {
    "full_batch": dict(sigma0=0.05, epsilon=0.2, n_s=3),
    "minibatch": dict(sigma0=0.05, epsilon=0.2, n_s=3, batch_size=16),
    "signal_norm": dict(sigma0=0.05, epsilon=0.2, n_s=3, signal_norm=True),
    "signal_norm_minibatch": dict(sigma0=0.05, epsilon=0.2, n_s=3, signal_norm=True, batch_size=12),
    "progressive": dict(sigma0=0.05, epsilon=0.2, n_s=3, progressive=True, batch_size=2, progressive_threshold=0.3),
    "temperature": dict(sigma0=0.05, epsilon=0.2, n_s=3, temperature=0.02),
    "temperature_minibatch": dict(sigma0=0.05, epsilon=0.1, n_s=4, temperature=0.02, batch_size=10),
}


def _snapshot(opt, model):
    return dict(
        params=_np(model.params).copy(),
        mu=_np(opt.mu).copy(),
        sigma=opt.sigma,
        n_cr=opt.n_cr,
        loss=opt.loss,
        step_count=opt.step_count,
        batch=opt.batch,
        accepted=opt.accepted,
        rejected=opt.rejected,
        nonfinite=opt.nonfinite,
        lam=None if opt.lam is None else _np(opt.lam).copy(),
    )


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_from_state_dict_is_bit_exact(xp, case):
    """Sec. III A with the state (sigma, mu, n_cr, U, lambda, counters) saved after k steps and loaded
    into a freshly built optimizer, model and loss: K - k further steps give the same bits as K
    uninterrupted steps."""
    hp = dict(RESUME_CASES[case], seed=5)
    K, k = 30, 10
    x, y = make_data(xp)

    model_a = mlp([5, 6, 3], seed=3)
    opt_a = AMC(model_a.params, ModelLoss(model_a, x, y), **hp)
    opt_a.run(K)
    full = _snapshot(opt_a, model_a)

    model_b = mlp([5, 6, 3], seed=3)
    opt_b = AMC(model_b.params, ModelLoss(model_b, x, y), **hp)
    opt_b.run(k)
    mid = _snapshot(opt_b, model_b)
    sd = pickle.loads(pickle.dumps(opt_b.state_dict()))  # as if saved to disk
    saved_params = _np(model_b.params).copy()
    opt_b.run(3)  # the live optimizer moves on: the saved state must not alias it

    model_c = mlp([5, 6, 3], seed=3)
    model_c.params[...] = xp.asarray(saved_params)
    opt_c = AMC(model_c.params, ModelLoss(model_c, x, y), **hp)
    opt_c.load_state_dict(sd)
    assert _snapshot(opt_c, model_c)["step_count"] == k
    opt_c.run(K - k)
    res = _snapshot(opt_c, model_c)

    for key in ("params", "mu", "lam"):
        if full[key] is None:
            assert res[key] is None
        else:
            np.testing.assert_array_equal(res[key], full[key], err_msg=key)
    for key in ("sigma", "n_cr", "loss", "step_count", "batch", "accepted", "rejected", "nonfinite"):
        assert res[key] == full[key], key
    # the continuation did something: moves were accepted and rejected after step k
    assert mid["accepted"] < full["accepted"] and mid["rejected"] < full["rejected"]
    assert not np.array_equal(mid["params"], full["params"])
    if hp.get("progressive"):
        assert mid["batch"] < full["batch"]  # a doubling happened after the checkpoint
    if hp.get("signal_norm"):
        assert full["lam"] is not None and np.any(full["lam"] != 1)

    # control: the same fresh optimizer WITHOUT the state does not reproduce the trajectory
    model_d = mlp([5, 6, 3], seed=3)
    model_d.params[...] = xp.asarray(saved_params)
    AMC(model_d.params, ModelLoss(model_d, x, y), **hp).run(K - k)
    assert not np.array_equal(_np(model_d.params), full["params"])


def test_resume_plain_function_metropolis_at_temperature(xp):
    """Exact resume for Metropolis at T > 0 on a plain function (Rosenbrock)."""
    kw = dict(sigma=0.05, temperature=0.5, seed=8)
    a = xp.asarray(np.array([-1.0, 1.5]))
    opt_a = Metropolis(a, rosenbrock, **kw)
    opt_a.run(200)
    b = xp.asarray(np.array([-1.0, 1.5]))
    opt_b = Metropolis(b, rosenbrock, **kw)
    opt_b.run(77)
    sd, saved = opt_b.state_dict(), _np(b).copy()
    c = xp.asarray(saved)
    opt_c = Metropolis(c, rosenbrock, **kw)
    opt_c.load_state_dict(sd)
    opt_c.run(123)
    np.testing.assert_array_equal(_np(c), _np(a))
    assert (opt_c.loss, opt_c.accepted, opt_c.rejected) == (opt_a.loss, opt_a.accepted, opt_a.rejected)
    assert opt_a.accepted > sd["state"]["accepted"]


# ---- 7. seeding -----------------------------------------------------------------------------------


def test_same_seed_same_trajectory_different_seed_differs(xp):
    """All randomness is a function of (seed, stream, counter): same seed -> identical trajectory
    (minibatch, signal norm, eps > 0); a different seed -> different proposals and data."""
    x, y = make_data(xp)

    def run(seed):
        model = mlp([5, 6, 3], seed=3)
        opt = AMC(
            model.params,
            ModelLoss(model, x, y),
            sigma0=0.05,
            epsilon=0.2,
            n_s=3,
            signal_norm=True,
            batch_size=10,
            seed=seed,
        )
        losses = [opt.step()["loss"] for _ in range(20)]
        return _np(model.params).copy(), losses

    pa, la = run(1)
    pb, lb = run(1)
    pc, lc = run(2)
    np.testing.assert_array_equal(pa, pb)
    assert la == lb
    assert not np.array_equal(pa, pc)
    assert la != lc


# ---- 8. validation ------------------------------------------------------------------------------


def _model_loss(xp, n=40):
    model = mlp([5, 6, 3], seed=3)
    x, y = make_data(xp, n=n)
    return model, ModelLoss(model, x, y)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(sigma0=0.0), "sigma0"),
        (dict(sigma0=-1e-3), "sigma0"),
        (dict(sigma0=math.nan), "sigma0"),
        (dict(n_s=0), "n_s"),
        (dict(n_s=-3), "n_s"),
        (dict(temperature=-0.1), "temperature"),
        (dict(decay=0.0), "decay"),
        (dict(decay=1.0), "decay"),
        (dict(decay=1.5), "decay"),
        (dict(batch_size=41), "batch_size"),
        (dict(batch_size=0), "batch_size"),
        (dict(epsilon=math.inf), "epsilon"),
        (dict(seed=-1), "seed"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_them(xp, kwargs, name):
    """Sec. III A hyperparameters: invalid values raise ValueError naming the parameter."""
    model, loss = _model_loss(xp)
    with pytest.raises(ValueError, match=name):
        AMC(model.params, loss, **kwargs)


def test_invalid_params_and_losses_raise_value_error(xp):
    """signal_norm needs a loss with lambdas() (not a plain function); minibatch needs select();
    params must be a 1-D floating-point array."""
    p = xp.asarray(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="signal_norm"):
        AMC(p, rosenbrock, signal_norm=True)
    with pytest.raises(ValueError, match="batch_size"):
        AMC(p, rosenbrock, batch_size=1)
    with pytest.raises(ValueError, match="params"):
        AMC(xp.asarray(np.zeros((2, 3))), rosenbrock)
    with pytest.raises(ValueError, match="params"):
        AMC(xp.asarray(np.array([1, 2])), rosenbrock)
    with pytest.raises(ValueError, match="params"):
        AMC([0.1, 0.2], rosenbrock)
    with pytest.raises(ValueError, match="loss_fn"):
        AMC(p, "rosenbrock")


@pytest.mark.parametrize(
    "changed",
    [
        dict(epsilon=0.2),
        dict(batch_size=8),
        dict(n_s=7),
        dict(seed=4),
        dict(signal_norm=True),
        dict(temperature=0.1),
        dict(decay=0.9),
    ],
)
def test_load_state_dict_with_other_hyperparameters_raises(xp, changed):
    """Resuming with different hyperparameters would silently change the trajectory: ValueError naming it."""
    base = dict(sigma0=0.05, epsilon=0.1, n_s=5, batch_size=16, seed=3)
    model, loss = _model_loss(xp)
    opt = AMC(model.params, loss, **base)
    opt.run(3)
    sd = opt.state_dict()
    model2, loss2 = _model_loss(xp)
    other = AMC(model2.params, loss2, **dict(base, **changed))
    key = next(iter(changed))
    with pytest.raises(ValueError, match=key):
        other.load_state_dict(sd)
    # the unchanged configuration loads fine, and a Metropolis state is refused by AMC
    AMC(model2.params, loss2, **base).load_state_dict(sd)
    with pytest.raises(ValueError, match="Metropolis"):
        AMC(model2.params, loss2, **base).load_state_dict(Metropolis(model2.params, loss2, batch_size=16).state_dict())


# ---- 9. non-finite losses -------------------------------------------------------------------------


def test_nonfinite_proposal_loss_is_rejected_and_counted(xp):
    """A NaN / +inf / -inf proposal loss is always rejected (counted in ``nonfinite``); x is restored
    bit for bit and never holds NaN; n_cr counts these rejections toward the sigma decay."""
    vals = [3.0, 2.5, math.nan, 2.4, math.inf, -math.inf, math.nan, 2.6, 2.0, math.nan]
    accepted = [True, False, True, False, False, False, False, True, False]
    p = xp.asarray(np.array([0.4, -0.9, 1.3], dtype=np.float32))
    opt = AMC(p, ScriptedLoss(vals), sigma0=0.1, epsilon=0.2, n_s=4, seed=2)
    for n, acc in enumerate(accepted):
        before = _np(p).copy()
        info = opt.step()
        assert info["accepted"] is acc, n
        after = _np(p)
        assert np.all(np.isfinite(after))
        if not acc:
            np.testing.assert_array_equal(after, before)
            assert math.isfinite(opt.loss)
        else:
            assert not np.array_equal(after, before)
    assert opt.nonfinite == 5
    assert opt.rejected == 6 and opt.accepted == 3
    assert opt.loss == 2.0
    # steps 3, 4, 5, 6 (0-based) were 4 = n_s consecutive rejections (3 non-finite + 1 uphill): one decay
    assert opt.sigma == pytest.approx(0.1 * 0.95)


def test_nonfinite_initial_loss_accepts_first_finite_proposal(xp):
    """U(x0) = NaN (e.g. an overflowing init): the first finite proposal is an improvement."""
    p = xp.asarray(np.array([0.4, -0.9]))
    opt = AMC(p, ScriptedLoss([math.nan, 7.0, 8.0]), sigma0=0.1, seed=2)
    assert opt.step()["accepted"] and opt.loss == 7.0
    assert not opt.step()["accepted"]
    assert opt.nonfinite == 0


# ---- 10. cost: loss evaluations per step ----------------------------------------------------------


class CountingLoss(ModelLoss):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = 0

    def __call__(self, params):
        self.calls += 1
        return super().__call__(params)


@pytest.mark.parametrize("signal_norm", [False, True])
@pytest.mark.parametrize("batch_size", [None, 10])
def test_loss_evaluations_per_step(xp, monkeypatch, signal_norm, batch_size):
    """Sec. III A: one loss evaluation per move for batch learning (U(x) kept from the previous
    step), two for minibatch learning; signal norm needs no extra forward pass (lambda comes from
    the pass that computes U).  Counted on the plain forward (on a GPU the fused MLP kernel
    replaces ``model.forward``; test_fused_step_budget_on_the_gpu counts that path)."""
    monkeypatch.setenv("MINIRSO_FUSED", "0")
    model = mlp([5, 6, 3], seed=3)
    x, y = make_data(xp)
    forwards = [0]
    orig = model.forward

    def counted_forward(*a, **k):
        forwards[0] += 1
        return orig(*a, **k)

    model.forward = counted_forward
    loss = CountingLoss(model, x, y)
    opt = AMC(model.params, loss, sigma0=0.05, signal_norm=signal_norm, batch_size=batch_size, seed=1)
    forwards[0] = 0  # count the steps' passes only (ModelLoss checks its labels with one sample's pass)
    steps = 12
    opt.run(steps)
    expected = steps + 1 if batch_size is None else 2 * steps
    assert loss.calls == expected
    assert forwards[0] == expected
    assert opt.accepted > 0


# ---- 11. progressive batching (sec. II F) -------------------------------------------------------


def _hand_error(params, g, x, y, rows):
    """Classification error of the 2-layer tanh MLP on rows ``rows``, in float64 from the weights."""
    w1 = params[g["fc1.weight"].slice].reshape(g["fc1.weight"].shape)
    b1 = params[g["fc1.bias"].slice]
    w2 = params[g["fc2.weight"].slice].reshape(g["fc2.weight"].shape)
    b2 = params[g["fc2.bias"].slice]
    out = np.tanh(x[rows] @ w1.T + b1) @ w2.T + b2
    return float(np.mean(np.argmax(out, axis=1) != y[rows]))


def test_progressive_batching_doubles_and_resets(xp):
    """Sec. II F: the minibatch doubles whenever the minibatch classification error falls below the
    threshold, capped at the data size; then sigma -> sigma0 and mu -> 0.  Every step is checked
    against the error computed by hand from the current weights on that step's rows."""
    N, B0, thr, sigma0 = 50, 3, 0.5, 0.08
    model = mlp([5, 6, 3], seed=3)
    x, y = make_data(xp, n=N, seed=31)
    loss = RecordingModelLoss(model, x, y)
    opt = AMC(
        model.params,
        loss,
        sigma0=sigma0,
        epsilon=0.4,
        n_s=2,
        decay=0.5,
        batch_size=B0,
        progressive=True,
        progressive_threshold=thr,
        seed=13,
    )
    xn, yn = _np(x).astype(np.float64), _np(y)
    g = groups(model)
    batches, doublings, resets_seen = [B0], 0, 0
    for n in range(60):
        b, sigma_before = opt.batch, opt.sigma
        opt.step()
        rows = loss.selected[-1]
        assert len(rows) == b  # this step's minibatch has the current size
        err = _hand_error(_np(model.params).astype(np.float64), g, xn, yn, rows)
        if err < thr and b < N:
            assert opt.batch == min(2 * b, N), n
            assert opt.sigma == sigma0 and opt.n_cr == 0 and np.all(_np(opt.mu) == 0), n
            doublings += 1
            resets_seen += sigma_before != sigma0
        else:
            assert opt.batch == b, n
        assert opt.batch <= N
        batches.append(opt.batch)
    assert batches[-1] == N
    assert doublings == 5  # 3 -> 6 -> 12 -> 24 -> 48 -> 50
    assert sorted(set(batches)) == [3, 6, 12, 24, 48, 50]
    assert resets_seen >= 1  # at least one doubling restored a decayed sigma


def test_progressive_batching_starts_at_500(xp):
    """Sec. II F: 'training begins with a minibatch of size 500'; the size never exceeds the data
    (600 samples: one doubling, to 600)."""
    N = 600
    model = mlp([4, 3, 2], seed=1)
    rng = np.random.default_rng(3)
    xh = rng.normal(size=(N, 4)) * np.array([1.0, 0.3, 2.0, 0.8]) + 0.2
    yh = (xh[:, 0] - 0.5 * xh[:, 2] > 0.1).astype(np.int64)
    loss = RecordingModelLoss(model, xp.asarray(xh.astype(np.float32)), xp.asarray(yh))
    opt = AMC(model.params, loss, progressive=True, progressive_threshold=1.0, sigma0=0.01, seed=0)
    assert opt.batch == 500 and opt.hyperparameters["batch_size"] == 500
    info = opt.step()
    assert len(loss.selected[0]) == 500
    assert info["batch"] == 600  # error < 1.0 certainly: doubled, capped at N
    opt.step()
    assert len(loss.selected[-1]) == 600 and opt.batch == 600


# ---- 12. Metropolis is aMC with epsilon = 0, n_s = infinity ------------------------------------


@pytest.mark.parametrize("T,batch_size", [(0.0, None), (0.01, None), (0.0, 12)])
def test_metropolis_equals_amc_with_eps0_ns_inf(xp, T, batch_size):
    """Sec. III A: Metropolis is the limit epsilon = 0, n_s = infinity, lambda = 1 of aMC; the two
    classes follow the same trajectory bit for bit, sigma never changes, mu stays 0."""
    x, y = make_data(xp)
    ma, mb = mlp([5, 6, 3], seed=3), mlp([5, 6, 3], seed=3)
    s = 0.04
    met = Metropolis(ma.params, ModelLoss(ma, x, y), sigma=s, temperature=T, seed=7, batch_size=batch_size)
    amc = AMC(
        mb.params,
        ModelLoss(mb, x, y),
        sigma0=s,
        epsilon=0.0,
        n_s=math.inf,
        temperature=T,
        seed=7,
        batch_size=batch_size,
    )
    for n in range(40):
        ia, ib = met.step(), amc.step()
        assert ia == ib, n
        np.testing.assert_array_equal(_np(ma.params), _np(mb.params))
    assert met.sigma == s and np.all(_np(met.mu) == 0)
    assert 0 < met.accepted and 0 < met.rejected


def test_metropolis_matches_eq_1_direct_loop(xp):
    """Eq. (1): x' = x + N(0, sigma^2) for all i, kept iff U(x') <= U(x): a direct loop, never decays."""
    x0 = np.array([-0.5, 2.0])
    ref = reference_amc(xp.asarray(x0), rosenbrock, 400, sigma0=0.02)
    p = xp.asarray(x0.copy())
    opt = Metropolis(p, rosenbrock, sigma=0.02, seed=0)
    for n in range(400):
        assert opt.step()["accepted"] == ref[n][5], n
        np.testing.assert_allclose(_np(p), ref[n][0], rtol=1e-13, atol=1e-13)
    assert opt.sigma == 0.02 and opt.rejected > 50


# ---- 13. the documented minibatch formula -------------------------------------------------------


@pytest.mark.parametrize("seed,B", [(11, 7), (2**40 + 3, 40)])
def test_minibatch_rows_follow_documented_formula(xp, seed, B):
    """Sec. III A step 1 (select the data): step n uses rows floor(N * uniform(seed, STREAM_DATA, n*N, B)),
    drawn with replacement, and evaluates both U(x) and U(x') on them."""
    N = 40
    model = mlp([5, 6, 3], seed=3)
    x, y = make_data(xp, n=N)
    loss = RecordingModelLoss(model, x, y)
    opt = AMC(model.params, loss, sigma0=0.05, batch_size=B, seed=seed)
    g = groups(model)
    xn, yn = _np(x).astype(np.float64), _np(y)
    steps = 8
    for n in range(steps):
        before = _np(model.params).astype(np.float64).copy()
        info = opt.step()
        rows = loss.selected[-1]
        # U(x) of this step on these rows, by hand (MSE against one-hot targets, mean over all elements)
        cur = _np(model.params).astype(np.float64) if info["accepted"] else before
        w1 = cur[g["fc1.weight"].slice].reshape(6, 5)
        b1 = cur[g["fc1.bias"].slice]
        w2 = cur[g["fc2.weight"].slice].reshape(3, 6)
        b2 = cur[g["fc2.bias"].slice]
        out = np.tanh(xn[rows] @ w1.T + b1) @ w2.T + b2
        assert info["loss"] == pytest.approx(np.mean((out - np.eye(3)[yn[rows]]) ** 2), rel=1e-5), n
    assert len(loss.selected) == steps
    any_repeat = False
    for n, rows in enumerate(loss.selected):
        u = _np(uniform(seed, STREAM_DATA, n * N, B, np))
        expected = np.floor(N * u).astype(np.int64)
        np.testing.assert_array_equal(rows, expected, err_msg=f"step {n}")
        assert rows.min() >= 0 and rows.max() < N
        any_repeat |= len(np.unique(rows)) < B
    assert any_repeat  # with replacement: some minibatch repeats a row
    assert len({tuple(r) for r in loss.selected}) == steps  # a fresh minibatch every step


def test_progressive_batching_on_fewer_than_500_samples_starts_with_all_of_them(xp):
    """Sec. II F's 500 is capped by the data: 40 samples start (and stay) at a batch of 40."""
    net = mlp([2, 3, 2], seed=1)
    x = xp.asarray(np.random.default_rng(0).random((40, 2)), dtype=xp.float32)
    y = xp.asarray((np.arange(40) % 2).astype(np.int64))
    opt = AMC(net.params, ModelLoss(net, x, y), progressive=True, seed=0)
    assert opt.batch == 40
    opt.run(5)
    assert opt.batch == 40


# ---- the GPU's cost, counted on the CuPy stand-in ------------------------------------------------


def test_fused_step_budget_on_the_gpu(standin):
    """One aMC step of the Fig. 1 MLP on full batch, signal norm off, as a GPU runs it (fused kernels on):
    at most 6 launches (the move, the first product, the fused tail, its block sum, then eq. 10 or the
    restore) and exactly 1 host sync (the loss read for the decision), nothing copied to the device.
    Counted by the stand-in for accepted and rejected steps alike."""
    from minirso import kernels

    xp = minirso.backend.xp()
    if not kernels.enabled(xp):
        pytest.skip("the fused kernels are off (MINIRSO_FUSED=0)")
    r = np.random.default_rng(4)
    net = mlp([784, 16, 16, 10], output="softmax", seed=3)
    x = xp.asarray(r.random((500, 784), dtype=np.float32) * np.linspace(0.1, 1.0, 784, dtype=np.float32))
    y = xp.asarray(r.integers(0, 10, 500))
    opt = AMC(net.params, ModelLoss(net, x, y, "mse"), sigma0=0.05, epsilon=0.1, n_s=50, seed=2)
    opt.step()  # the first step also evaluates U of the starting point
    seen = set()
    for _ in range(12):
        with standin.counters.counting() as d:
            info = opt.step()
        seen.add(info["accepted"])
        assert d["launches"] <= 6 and d["syncs"] == 1 and d["h2d"] == 0, (info["accepted"], d)
    assert seen == {True, False}  # both branches were counted
    assert kernels.status() == "on"
