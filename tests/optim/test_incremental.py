"""The incremental evaluator returns the plain evaluator's losses, and RSO makes the same decisions with it.

The independent truth is :class:`CachedEvaluator`: a full ``forward(start=layer)``
per candidate.  Every supported kind of parameter (conv weight / bias with
stride and padding, dense weight / bias, BatchNorm gamma / beta in both modes)
is checked on asymmetric random data, and whole RSO runs are compared trial by
trial (both evaluators in lockstep; decisions agree wherever the losses are not a
float32 tie).
"""

import numpy as np
import pytest

import minirso
from minirso import nn as mnn
from minirso.models import rso_cifar, rso_mnist
from minirso.optim import RSO, CachedEvaluator, IncrementalEvaluator
from minirso.optim.rso import decide


def data(n, shape, classes, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n,) + shape).astype(np.float32)
    x[:, ..., : shape[-1] // 2] += 0.6  # lopsided, so swapped axes show
    y = r.integers(0, classes, size=n).astype(np.int64)
    return minirso.asarray(x), minirso.asarray(y)


def mixed_net(seed=3):
    """Conv (stride 2, bias) -> BN -> ReLU -> max pool -> conv (no pad) -> tanh -> GAP -> dense -> BN1d -> ReLU -> dense
    -> LayerNorm (not channel-local: the fallback branch) -> dense."""
    layers = [
        mnn.Conv2d(3, 5, 3, stride=2, padding=1, name="c1"),
        mnn.BatchNorm2d(5, name="bn1"),
        mnn.ReLU(name="r1"),
        mnn.MaxPool2d(2, name="mp"),
        mnn.Conv2d(5, 4, 2, bias=False, name="c2"),
        mnn.Tanh(name="t2"),
        mnn.GlobalAvgPool2d(name="gap"),
        mnn.Dense(4, 6, name="d1"),
        mnn.BatchNorm1d(6, name="bn2"),
        mnn.ReLU(name="r2"),
        mnn.Dense(6, 5, name="d2"),
        mnn.LayerNorm(5, name="ln"),
        mnn.Dense(5, 3, name="out"),
    ]
    model = mnn.Sequential(layers, seed=seed)
    r = np.random.default_rng(seed + 1)
    model.params[...] = minirso.asarray((r.normal(size=model.num_params) * 0.5).astype(np.float32))
    for _, layer, _ in model.named_layers():
        if isinstance(layer, (mnn.BatchNorm1d, mnn.BatchNorm2d)):
            c = layer.num_features
            layer.running_mean[...] = minirso.asarray(r.normal(size=c).astype(np.float32))
            layer.running_var[...] = minirso.asarray(r.uniform(0.5, 2.0, size=c).astype(np.float32))
    return model


def both_losses(model, layer, x, y, i, values, rows):
    sl = slice(i, i + 1)
    cands = minirso.asarray(np.array(values, np.float32).reshape(-1, 1))
    plain = CachedEvaluator(model, "cross_entropy")
    plain.prepare(layer, x, y)
    inc = IncrementalEvaluator(model, "cross_entropy")
    inc.prepare(layer, x, y)
    before = minirso.to_numpy(model.params).copy()
    a = plain.losses(sl, cands, rows)
    b = inc.losses(sl, cands, rows)
    assert np.array_equal(minirso.to_numpy(model.params), before), "evaluators must leave params unchanged"
    return a, b, inc


@pytest.mark.parametrize("training", [True, False])
def test_every_parameter_kind_matches_plain(training):
    model = mixed_net()
    model.train(training)
    x, y = data(40, (3, 10, 9), 3)
    rows = minirso.asarray(np.random.default_rng(7).permutation(40)[:24])
    r = np.random.default_rng(11)
    checked = set()
    for g in model.param_groups:
        for j in r.choice(g.size, size=min(g.size, 4), replace=False):
            i = g.slice.start + int(j)
            w = float(minirso.to_numpy(model.params)[i])
            d = float(r.normal()) * 0.7
            a, b, inc = both_losses(model, g.layer, x, y, i, [w, w + d, w - d], rows)
            np.testing.assert_allclose(b, a, rtol=2e-6, err_msg=g.name)
            assert a[0] == b[0]  # the unchanged candidate: the same forward, bit for bit
            expect_plain = int(g.name.startswith("ln."))  # LayerNorm's own parameters take the plain path
            assert inc.stats["plain"] == expect_plain, g.name
            checked.add(g.name)
    assert len(checked) == len(model.param_groups)


def test_losses_match_on_the_paper_net_at_every_layer():
    model = rso_mnist(seed=2, channels=3)
    x, y = data(48, (1, 12, 12), 10, seed=4)
    rows = minirso.asarray(np.arange(5, 37))
    r = np.random.default_rng(5)
    for g in model.param_groups:
        i = g.slice.start + int(r.integers(g.size))
        w = float(minirso.to_numpy(model.params)[i])
        a, b, _ = both_losses(model, g.layer, x, y, i, [w, w + 0.3, w - 0.3], rows)
        np.testing.assert_allclose(b, a, rtol=2e-6, err_msg=g.name)


def test_residual_blocks_fall_back_to_the_plain_path():
    model = rso_cifar(10, seed=1)
    x, y = data(12, (3, 8, 8), 10)
    g = next(g for g in model.param_groups if g.name.startswith("res2."))
    i = g.slice.start + 3
    w = float(minirso.to_numpy(model.params)[i])
    a, b, inc = both_losses(model, g.layer, x, y, i, [w, w + 0.2, w - 0.2], minirso.asarray(np.arange(8)))
    assert np.array_equal(a, b) and inc.stats["plain"] == 1


def run_rso(model_fn, evaluator, x, y, **kw):
    model = model_fn()
    log = []
    opt = RSO(
        model, x, y, evaluator=evaluator, callback=lambda e, info: log.append(info) if e == "trial" else None, **kw
    )
    opt.run()
    return model, log, opt


class Lockstep(CachedEvaluator):
    """The plain evaluator, which also asks the incremental one every question on the same parameters.

    RSO follows the plain losses, so one float32 tie decided differently cannot send the two
    evaluators down different paths for the rest of the run: every trial is compared.
    """

    def __init__(self, model):
        super().__init__(model, "cross_entropy")
        self.inc = IncrementalEvaluator(model, "cross_entropy")
        self.pairs = []

    def prepare(self, layer, x, y, keep=()):
        super().prepare(layer, x, y, keep)
        self.inc.prepare(layer, x, y, keep)

    def losses(self, sl, cands, rows):
        plain = super().losses(sl, cands, rows)
        self.pairs.append((plain, self.inc.losses(sl, cands, rows)))
        return plain


@pytest.mark.parametrize(
    "trials_per_batch, recipe, pool",
    [(1, "authors", "max"), (5, "authors", "max"), (1, "paper", "max"), (5, "paper", "avg")],
)
def test_rso_decisions_equal_plain(trials_per_batch, recipe, pool):
    """Two cycles of the paper's net (width 3): every trial's losses agree, and so does every decision
    that is not a float32 tie (the plain losses of the two winners within 1e-6 of each other).

    Both recipes and both global pools: the channel of a trial reaches the dense layer through the global
    pool, whose max (unlike the mean) is not linear in the change, so the channel is re-pooled in full."""
    x, y = data(96, (1, 12, 12), 10, seed=9)
    model = rso_mnist(seed=8, channels=3, recipe=recipe, global_pool=pool)
    ev = Lockstep(model)
    RSO(
        model,
        x,
        y,
        cycles=2,
        batch_size=24,
        seed=13,
        trials_per_batch=trials_per_batch,
        evaluator=ev,
        recipe=recipe,
        bn_rows=50,
    ).run()
    assert len(ev.pairs) == 2 * model.num_params
    ties = 0
    for plain, inc in ev.pairs:
        np.testing.assert_allclose(inc, plain, rtol=2e-6)
        bp, bi = decide(plain)[0], decide(inc)[0]
        if bp != bi:
            assert abs(plain[bp] - plain[bi]) <= 1e-6 * abs(plain[bp]), (plain, inc)
            ties += 1
    assert ties <= 0.01 * len(ev.pairs)  # ties are rare; a wrong update would flip far more than 1 %
    st = ev.inc.stats
    assert st["plain"] == 0
    if trials_per_batch == 1:
        assert st["reused"] == 0  # a fresh batch every trial: nothing to reuse
    else:
        # every trial but the first of each batch continues the previous one
        assert st["reused"] > 0.7 * (st["reused"] + st["full"])


def test_reuse_survives_weight_decay_and_is_refused_when_other_parameters_changed():
    """Weight decay rescales the weight of the NEXT trial just before it: the kept activations still hold
    (that weight's candidates are changes from its old value), and the decisions equal the plain path's.
    A change anywhere else makes them stale: a full pass."""
    x, y = data(64, (1, 10, 10), 10, seed=2)
    kw = dict(cycles=1, batch_size=16, seed=3, trials_per_batch=4, weight_decay=0.05, bn_rows=32)
    mp, lp, _ = run_rso(lambda: rso_mnist(seed=1, channels=2), "plain", x, y, **kw)
    mi, li, opt = run_rso(lambda: rso_mnist(seed=1, channels=2), "incremental", x, y, **kw)
    assert [t["decision"] for t in lp] == [t["decision"] for t in li]
    assert np.array_equal(minirso.to_numpy(mp.params), minirso.to_numpy(mi.params))
    st = opt.evaluator.stats
    # 4 trials per batch: every trial but a batch's first reuses (a tensor's last batch may be shorter)
    assert st["full"] == sum(-(-u.trials // 4) for u in opt.units)
    assert st["reused"] == opt.total_trials_per_cycle - st["full"] and st["plain"] == 0

    model = rso_mnist(seed=1, channels=2)
    ev = IncrementalEvaluator(model, "cross_entropy")
    fc = next(g for g in model.param_groups if g.name == "fc.weight")
    ev.prepare(fc.layer, x, y)
    rows = minirso.asarray(np.arange(16))
    p = model.params
    for i, other in ((fc.slice.start, fc.slice.start + 5), (fc.slice.start + 1, fc.slice.start + 6)):
        w = float(p[i])
        ev.losses(slice(i, i + 1), minirso.asarray(np.array([[w], [w + 0.3], [w - 0.3]], np.float32)), rows)
        p[i] = np.float32(w + 0.3)  # kept "plus"
        p[other] = np.float32(float(p[other]) * 0.5)  # a third weight changes: the kept activations are stale
    assert ev.stats == {"full": 2, "reused": 0, "plain": 0}


def test_trials_per_batch_validation():
    x, y = data(32, (1, 8, 8), 10)
    with pytest.raises(ValueError, match="trials_per_batch"):
        RSO(rso_mnist(channels=2), x, y, cycles=1, batch_size=8, trials_per_batch=0)
    with pytest.raises(ValueError, match="trials_per_batch > 1 needs"):
        RSO(rso_mnist(channels=2), x, y, cycles=1, batch_size=8, trials_per_batch=3, sampling="uniform")
    with pytest.raises(ValueError, match="evaluator must be"):
        RSO(rso_mnist(channels=2), x, y, cycles=1, batch_size=8, evaluator="fast")


def test_trials_per_batch_shares_rows():
    """k consecutive trials see one batch: the plain evaluator is asked with equal rows k times in a row."""
    x, y = data(64, (1, 8, 8), 10)
    seen = []

    class Spy(CachedEvaluator):
        def losses(self, sl, cands, rows):
            seen.append(minirso.to_numpy(rows).copy())
            return super().losses(sl, cands, rows)

    model = rso_mnist(seed=0, channels=2)
    opt = RSO(model, x, y, cycles=1, batch_size=8, trials_per_batch=3, evaluator=Spy(model, "cross_entropy"))
    for _ in range(7):  # the fc tensor has 20 weights: trials 0-2, 3-5 share, 6 starts a new batch
        opt.step()
    assert all(np.array_equal(seen[0], s) for s in seen[1:3])
    assert all(np.array_equal(seen[3], s) for s in seen[4:6])
    assert not np.array_equal(seen[0], seen[3]) and not np.array_equal(seen[3], seen[6])
