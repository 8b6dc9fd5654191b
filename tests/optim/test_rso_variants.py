"""RSO's variants and bookkeeping (Tripathi & Singh 2020, secs. 3, 4.1-4.3, 4.6, 4.7; reference/README.md).

Truth comes from outside the optimizer: unit orders and sigmas written out by
hand, index orders built with nested loops, the random numbers recomputed from
the module docstring's formulas (``normal(seed, STREAM_DELTA, ...)``, the pool
permutation from ``random_bits`` keys, ``floor(N * uniform(...))`` rows), and
direct re-implementations of parallel search (sec. 4.6) that evaluate every
candidate with a plain forward pass from an activation cache computed here.
A wrapper evaluator records what RSO asks for (slices, candidates, rows).
"""

import math
import pickle

import numpy as np
import pytest

import minirso
from minirso.losses import cross_entropy
from minirso.models import rso_mnist
from minirso.nn import BatchNorm1d, BatchNorm2d, Conv2d, Dense, GlobalAvgPool2d, ReLU, Sequential
from minirso.optim import RSO, CachedEvaluator
from minirso.optim.rso import STREAM_DATA, STREAM_DATA_UNIFORM, STREAM_DELTA
from minirso.random import normal, random_bits, uniform

NORM_SIGMA = 0.167  # BatchNorm gamma / beta perturbation std (authors' code, reference/README.md)


# ---- helpers ------------------------------------------------------------------------------------


def _np(a):
    return minirso.to_numpy(a)


def mlp_bn(seed=3):
    """Dense(5, 4) -> BatchNorm1d(4) -> ReLU -> Dense(4, 3): 20 + 4 + 4 + 4 + 12 + 3 = 47 parameters."""
    return Sequential(
        Dense(5, 4, name="fc1"), BatchNorm1d(4, name="bn1"), ReLU(name="relu1"), Dense(4, 3, name="fc2"), seed=seed
    )


# mlp_bn's sweep, written by hand (sec. 3: last layer first; a norm layer's beta before its gamma):
MLP_UNITS = [
    ("fc2.weight", 12),
    ("fc2.bias", 3),
    ("fc1.weight", 20),
    ("fc1.bias", 4),
    ("bn1.beta", 4),
    ("bn1.gamma", 4),
]
MLP_SIGMA = {
    "fc2.weight": math.sqrt(2 / 4),
    "fc2.bias": math.sqrt(2 / 4),
    "fc1.weight": math.sqrt(2 / 5),
    "fc1.bias": math.sqrt(2 / 5),
    "bn1.beta": NORM_SIGMA,
    "bn1.gamma": NORM_SIGMA,
}


def mlp_data(n=48, seed=0):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 5)).astype(np.float32)
    x[:, 0] += 0.8  # lopsided features
    x[:, 2] *= 2.5
    y = r.integers(0, 3, size=n).astype(np.int64)
    y[x[:, 1] > 0.5] = 2  # some signal to learn
    return minirso.asarray(x), minirso.asarray(y)


def tiny_conv(seed=7):
    """conv1(2->3, 3x3 pad 1) BN ReLU conv2(3->3, 2x2, bias) BN ReLU GAP fc(3->4): 117 parameters."""
    return Sequential(
        Conv2d(2, 3, 3, padding=1, bias=False, name="conv1"),
        BatchNorm2d(3, name="bn1"),
        ReLU(name="relu1"),
        Conv2d(3, 3, 2, bias=True, name="conv2"),
        BatchNorm2d(3, name="bn2"),
        ReLU(name="relu2"),
        GlobalAvgPool2d(name="gap"),
        Dense(3, 4, bias=False, name="fc"),
        seed=seed,
    )


# tiny_conv's sweep by hand, with each tensor's Kaiming std (fan-in: conv1 2*3*3, conv2 3*2*2, fc 3)
CONV_UNITS = [
    ("fc.weight", 12),
    ("conv2.weight", 36),
    ("conv2.bias", 3),
    ("bn2.beta", 3),
    ("bn2.gamma", 3),
    ("conv1.weight", 54),
    ("bn1.beta", 3),
    ("bn1.gamma", 3),
]
CONV_SIGMA = {
    "fc.weight": math.sqrt(2 / 3),
    "conv2.weight": math.sqrt(2 / 12),
    "conv2.bias": math.sqrt(2 / 12),
    "conv1.weight": math.sqrt(2 / 18),
    "bn2.beta": NORM_SIGMA,
    "bn2.gamma": NORM_SIGMA,
    "bn1.beta": NORM_SIGMA,
    "bn1.gamma": NORM_SIGMA,
}


def conv_data(n=32, seed=1):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n, 2, 5, 5)).astype(np.float32)
    x[:, 0, :2] += 0.9  # top of channel 0 brighter
    x[:, 1] *= 1.7
    y = r.integers(0, 4, size=n).astype(np.int64)
    y[_np(x)[:, 0, 0, 0] > 1.2] = 3
    return minirso.asarray(x), minirso.asarray(y)


class Recorder:
    """Wraps an evaluator and records every ``losses`` call: slice, candidates, rows, returned losses.

    ``corrupt(call_index, losses) -> losses`` may replace the returned values (NaN tests).
    """

    def __init__(self, inner, corrupt=None):
        self.inner, self.corrupt = inner, corrupt
        self.loss_name = inner.loss_name
        self.calls = []
        self.prepared = []

    def prepare(self, layer, x, y, keep=()):
        self.prepared.append(layer)
        self.inner.prepare(layer, x, y, keep)

    def losses(self, sl, candidates, rows):
        out = np.array(self.inner.losses(sl, candidates, rows), dtype=np.float64)
        if self.corrupt is not None:
            out = np.array(self.corrupt(len(self.calls), out.copy()), dtype=np.float64)
        self.calls.append({"sl": sl, "cands": _np(candidates).copy(), "rows": _np(rows).copy(), "out": out.copy()})
        return out


def pool_perm(seed, cycle, unit, n_units, n):
    """The documented pool order of unit u of cycle c: argsort of 64-bit keys from random_bits (rso.py docstring)."""
    words = _np(random_bits(seed, STREAM_DATA, 2 * n * (cycle * n_units + unit), 2 * n, np)).astype(np.uint64)
    keys = (words[0::2] << np.uint64(32)) | words[1::2]
    return np.argsort(keys, kind="stable")


def pool_owner(names, ui):
    """Index of the weight tensor whose pool order unit ``ui`` reads: itself for a weight, else the last weight
    before it in the sweep (the authors' BatchNorm trials reset their conv's iterator, rso.py item 3)."""
    for v in range(ui, -1, -1):
        if names[v].endswith(".weight"):
            return v
    return ui


def uniform_rows(seed, b, bsz, n):
    """Rows of the b-th uniformly drawn batch: floor(N * uniform(seed, STREAM_DATA_UNIFORM, b B, B))."""
    u = _np(uniform(seed, STREAM_DATA_UNIFORM, b * bsz, bsz, np))
    return np.floor(n * u).astype(np.int64)


def argmin_keep(losses):
    """Algorithm 1's choice: strict improvement only (a tie keeps w); non-finite losses never win."""
    s = [v if np.isfinite(v) else np.inf for v in losses]
    best = 0
    for k in (1, 2):
        if s[k] < s[best]:
            best = k
    return best


def reference_unit(model, x, y, group, sigma, factor, t0, perm, bsz, mode, order, wd=0.0, seed=0, bn_rows=2000):
    """Search every weight of ``group`` once, written out from sec. 3 / 4.6 (no optimizer code).

    mode "sequential": each trial sees the tensor as updated so far (Algorithm 1);
    "layer": every weight is searched against the tensor at the start of the unit;
    "neuron": sequential inside one output neuron, other neurons at their start values.
    Parallel results are merged at the end.  Losses: summed float64 cross-entropy of
    ``forward(cache[rows], start=layer)`` with ``cache = forward(x, stop=layer)`` in eval mode, BatchNorm's
    running statistics set from the first ``bn_rows`` rows (the pool is one chunk).  Weight decay: in
    float64, before w +- Delta is formed.
    Returns (new params as float32 NumPy, list of decisions 0/1/2); the model is left unchanged.
    """
    p0 = _np(model.params).copy()
    s0, size = group.slice.start, group.size
    neuron = size // group.shape[0]
    base = p0[group.slice].copy()
    pending = base.copy()
    cur = p0.copy()
    model.reestimate_batchnorm(x[:bn_rows])
    model.eval()
    cache = model.forward(x, stop=group.layer)
    model.train()
    z = _np(normal(seed, STREAM_DELTA, t0, size, np, dtype=np.float64))
    m = x.shape[0] // bsz
    decisions = []
    try:
        for pos in range(size):
            j = int(order[pos])
            if mode == "sequential":
                state = cur.copy()
            else:
                state = p0.copy()
                if mode == "neuron":
                    r = j // neuron
                    state[s0 + r * neuron : s0 + (r + 1) * neuron] = pending[r * neuron : (r + 1) * neuron]
            w = float(state[s0 + j]) * (1 - wd)  # float64
            delta = sigma * factor * z[pos]
            cands = np.array([w, w + delta, w - delta], dtype=np.float32)
            rows = perm[(pos % m) * bsz : (pos % m) * bsz + bsz]
            losses = []
            for v in cands:
                trial = state.copy()
                trial[s0 + j] = v
                model.params[...] = minirso.asarray(trial)
                out = model.forward(cache[minirso.asarray(rows)], start=group.layer)
                losses.append(float(cross_entropy(out, y[minirso.asarray(rows)], "sum", np.float64)))
            best = argmin_keep(losses)
            decisions.append(best)
            if mode == "sequential":
                cur[s0 + j] = cands[best]
            else:
                pending[j] = cands[best]
    finally:
        model.params[...] = minirso.asarray(p0)
    if mode != "sequential":
        cur = p0.copy()
        cur[group.slice] = pending
    return cur, decisions


def groups_by_name(model):
    return {g.name: g for g in model.param_groups}


def strip_wall(records):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


# ---- 1. sweep order (sec. 3, sec. 4.1, authors' code) ---------------------------------------------


def test_sweep_order_rso_mnist_backward_and_forward():
    """Sec. 3: the layer closest to the labels first; sec. 4.1 / authors' code: after each conv its BN, beta then gamma.

    Every parameter is visited exactly once per cycle.
    """
    model = rso_mnist(seed=0)
    x = minirso.asarray(np.zeros((4, 1, 28, 28), np.float32))
    y = minirso.asarray(np.zeros(4, np.int64))
    expected_backward = [
        "fc.weight",
        "conv6.weight",
        "bn6.beta",
        "bn6.gamma",
        "conv5.weight",
        "bn5.beta",
        "bn5.gamma",
        "conv4.weight",
        "bn4.beta",
        "bn4.gamma",
        "conv3.weight",
        "bn3.beta",
        "bn3.gamma",
        "conv2.weight",
        "bn2.beta",
        "bn2.gamma",
        "conv1.weight",
        "bn1.beta",
        "bn1.gamma",
    ]
    expected_forward = [
        "conv1.weight",
        "bn1.beta",
        "bn1.gamma",
        "conv2.weight",
        "bn2.beta",
        "bn2.gamma",
        "conv3.weight",
        "bn3.beta",
        "bn3.gamma",
        "conv4.weight",
        "bn4.beta",
        "bn4.gamma",
        "conv5.weight",
        "bn5.beta",
        "bn5.gamma",
        "conv6.weight",
        "bn6.beta",
        "bn6.gamma",
        "fc.weight",
    ]
    back = RSO(model, x, y, cycles=1, batch_size=2)
    fwd = RSO(model, x, y, cycles=1, batch_size=2, direction="forward")
    assert [u.name for u in back.units] == expected_backward
    assert [u.name for u in fwd.units] == expected_forward
    # sizes by hand: conv1 16*1*9 = 144, conv2..6 16*16*9 = 2304, BN 16, fc 10*16 = 160
    size = {"conv1.weight": 144, "fc.weight": 160}
    for opt in (back, fwd):
        for u in opt.units:
            assert u.trials == size.get(u.name, 2304 if u.name.startswith("conv") else 16), u.name
            assert u.sl.stop - u.sl.start == u.trials
        assert sum(u.trials for u in opt.units) == 12016 == model.num_params
        assert opt.total_trials_per_cycle == 12016
        covered = np.concatenate([np.arange(u.sl.start, u.sl.stop)[u.order] for u in opt.units])
        assert np.array_equal(np.sort(covered), np.arange(model.num_params))  # each parameter exactly once
    layer_units = RSO(model, x, y, cycles=1, batch_size=2, level="layer").units
    assert [(u.name, u.trials) for u in layer_units] == [(u.name, u.trials) for u in back.units]
    net_units = RSO(model, x, y, cycles=1, batch_size=2, level="network").units
    assert [(u.name, u.trials, u.sl) for u in net_units] == [("network", 12016, slice(0, 12016))]
    layer_of = {l.name: i for i, l in enumerate(model.layers)}
    for u in back.units:  # trials start from the cached input of the tensor's own layer (sec. 4.7)
        assert u.layer == layer_of[u.name.split(".")[0]]


def test_sweep_visits_units_in_order_during_a_cycle():
    """Sec. 3 / 4.7: one cycle visits the tensors in the hand-written order, preparing each tensor's layer cache."""
    model = mlp_bn()
    x, y = mlp_data()
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(model, x, y, cycles=1, batch_size=16, evaluator=rec)
    opt.run()
    g = groups_by_name(model)
    expected_slices = [(g[n].slice.start, g[n].slice.stop) for n, size in MLP_UNITS for _ in range(size)]
    visited = [c["sl"].start for c in rec.calls]
    got_units = [next((s, e) for s, e in expected_slices if s <= i < e) for i in visited]
    assert got_units == expected_slices
    # the layer whose input is cached: fc2 is layer 3, fc1 layer 0, bn1 layer 1
    assert rec.prepared == [3, 3, 0, 0, 1, 1]


# ---- 2. order inside a tensor (sec. 4.3) ----------------------------------------------------------


def _order_net():
    return Sequential(
        Conv2d(2, 3, (2, 3), padding=1, name="conv"),
        BatchNorm2d(3, name="bn"),
        ReLU(name="relu"),
        GlobalAvgPool2d(name="gap"),
        Dense(3, 4, name="fc"),
        seed=2,
    )


@pytest.mark.parametrize("order", ["output", "input"])
def test_order_inside_tensor(order):
    """Sec. 4.3: default output-neuron-major; "inverted" order: all weights of input channel 0 first.

    Conv weight (O=3, C=2, kh=2, kw=3) and dense weight (O=4, I=3): orders built with nested loops, then
    checked both on ``unit.order`` and on the slices RSO actually evaluates during a cycle.
    """
    O, C, KH, KW = 3, 2, 2, 3

    def conv_flat(o, c, i, j):
        return ((o * C + c) * KH + i) * KW + j

    if order == "output":
        conv = [conv_flat(o, c, i, j) for o in range(O) for c in range(C) for i in range(KH) for j in range(KW)]
        fc = [o * 3 + i for o in range(4) for i in range(3)]
    else:
        conv = [conv_flat(o, c, i, j) for c in range(C) for o in range(O) for i in range(KH) for j in range(KW)]
        fc = [o * 3 + i for i in range(3) for o in range(4)]
    expected = {
        "conv.weight": conv,
        "fc.weight": fc,
        "conv.bias": [0, 1, 2],
        "fc.bias": [0, 1, 2, 3],
        "bn.beta": [0, 1, 2],
        "bn.gamma": [0, 1, 2],
    }
    if order == "input":
        assert conv[:4] == [0, 1, 2, 3] and conv[6] == 12  # channel 0 of output 1 follows channel 0 of output 0

    model = _order_net()
    r = np.random.default_rng(11)
    x = minirso.asarray(r.normal(size=(12, 2, 4, 4)).astype(np.float32) + 0.3)
    y = minirso.asarray(r.integers(0, 4, size=12).astype(np.int64))
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(model, x, y, cycles=1, batch_size=6, order=order, evaluator=rec)
    assert [u.name for u in opt.units] == ["fc.weight", "fc.bias", "conv.weight", "conv.bias", "bn.beta", "bn.gamma"]
    for u in opt.units:
        assert list(np.asarray(u.order)) == expected[u.name], u.name
    opt.run()
    visited = [c["sl"].start for c in rec.calls]
    g = groups_by_name(model)
    want = [g[u.name].slice.start + j for u in opt.units for j in expected[u.name]]
    assert visited == want


# ---- 3. sigma and its annealing (sec. 3, 4.1) -----------------------------------------------------


@pytest.mark.parametrize(
    "recipe, five, three",
    [
        # sec. 4.1: from sigma_1 at the first cycle to sigma_1 * anneal (1/10) at the last:
        # a + (1 - a)(E - 1 - c)/(E - 1)
        ("paper", [1.0, 0.775, 0.55, 0.325, 0.1], [1.0, 0.7, 0.4]),
        # train.py l.465: a + (1 - a)(E - c)/E, by hand: 0.1 + 0.9 * (5 - c) / 5 and 0.4 + 0.6 * (3 - c) / 3
        ("authors", [1.0, 0.82, 0.64, 0.46, 0.28], [1.0, 0.8, 0.6]),
    ],
)
def test_sigma_factor_linear_annealing(recipe, five, three):
    """Sigma anneals linearly per cycle; the recipes differ in where it ends."""
    model = mlp_bn()
    x, y = mlp_data()
    opt = RSO(model, x, y, cycles=5, batch_size=16, anneal=0.1, recipe=recipe)
    for c, want in enumerate(five):
        assert opt.sigma_factor(c) == pytest.approx(want, rel=1e-12, abs=1e-12)
    opt3 = RSO(model, x, y, cycles=3, batch_size=16, anneal=0.4, recipe=recipe)
    assert [opt3.sigma_factor(c) for c in range(3)] == pytest.approx(three, rel=1e-12)
    assert RSO(model, x, y, cycles=1, batch_size=16, recipe=recipe).sigma_factor(0) == 1.0
    assert RSO(model, x, y, cycles=50, batch_size=16, recipe=recipe).sigma_factor(49) == pytest.approx(
        0.118 if recipe == "authors" else 0.1, rel=1e-12
    )  # the authors' last cycle: 0.1 + 0.9 / 50


def test_base_sigma_kaiming_norm_and_std():
    """Sec. 3 / authors' code: weights use the Kaiming std sqrt(2 / fan_in), BN gamma and beta 0.167;
    ``sigma="std"``: the std of the initialised tensor (the paper's text); a number overrides the weights' std."""
    model = rso_mnist(seed=4)
    x = minirso.asarray(np.zeros((4, 1, 28, 28), np.float32))
    y = minirso.asarray(np.zeros(4, np.int64))
    opt = RSO(model, x, y, cycles=5, batch_size=2)
    hand = {"conv1.weight": 0.4714045207910317, "fc.weight": 0.3535533905932738}  # sqrt(2/9), sqrt(2/16)
    for u in opt.units:
        if u.name.startswith("bn"):
            want = 0.167
        else:
            want = hand.get(u.name, 0.11785113019775792)  # conv2..6: sqrt(2/144)
        assert u.sigma == pytest.approx(want, rel=1e-12), u.name

    init = {g.name: _np(model.params[g.slice]).astype(np.float64) for g in model.param_groups}
    opt_std = RSO(model, x, y, cycles=5, batch_size=2, sigma="std")
    for u in opt_std.units:
        if u.name.startswith("bn"):
            assert u.sigma == pytest.approx(0.167, rel=1e-12)
        else:
            assert u.sigma == pytest.approx(np.std(init[u.name]), rel=1e-5), u.name
            assert u.sigma != pytest.approx(hand.get(u.name, 0.11785113019775792), rel=1e-4)  # really measured

    opt_num = RSO(model, x, y, cycles=5, batch_size=2, sigma=0.05, norm_sigma=0.3)
    for u in opt_num.units:
        assert u.sigma == pytest.approx(0.3 if u.name.startswith("bn") else 0.05, rel=1e-12), u.name


@pytest.mark.parametrize("recipe, factors", [("paper", (1.0, 0.55, 0.1)), ("authors", (1.0, 0.7, 0.4))])
def test_annealed_sigma_scales_the_perturbations(recipe, factors):
    """Sec. 3 / 4.1: the candidates of trial t are w +- sigma_d * factor(c) * z_t,
    z_t = normal(seed, STREAM_DELTA, t)."""
    model = mlp_bn()
    x, y = mlp_data()
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(model, x, y, cycles=3, batch_size=16, seed=9, evaluator=rec, recipe=recipe)
    opt.run()
    assert len(rec.calls) == 3 * 47
    z = _np(normal(9, STREAM_DELTA, 0, 3 * 47, np, dtype=np.float64))
    names = [n for n, size in MLP_UNITS for _ in range(size)]
    for t, call in enumerate(rec.calls):
        factor = factors[t // 47]
        d = MLP_SIGMA[names[t % 47]] * factor * z[t]
        c = call["cands"][:, 0].astype(np.float64)
        assert call["cands"].shape == (3, 1)
        np.testing.assert_allclose(c[1], np.float32(c[0] + d), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(c[2], np.float32(c[0] - d), rtol=1e-6, atol=1e-7)
    sig = [r["sigma"] for r in opt.records]
    want = [MLP_SIGMA[n] * f for f in factors for n, _ in MLP_UNITS]
    assert sig == pytest.approx(want, rel=1e-9)


# ---- 4./5. parallel search (sec. 4.6) -------------------------------------------------------------


@pytest.mark.parametrize(
    "parallel,wd,order",
    [
        (None, 0.0, "output"),
        ("layer", 0.0, "output"),
        ("layer", 0.05, "output"),
        ("neuron", 0.0, "output"),
        ("neuron", 0.05, "output"),
        ("neuron", 0.0, "input"),
    ],
)
def test_parallel_search_matches_direct_reimplementation(parallel, wd, order):
    """Sec. 4.6: parallel="layer" searches every weight against the tensor's state at the start of the unit;
    parallel="neuron" runs the weights of one output neuron sequentially, neurons independent; both merge
    at the end.  Normalisation and bias tensors stay sequential.  One full cycle of tiny_conv is checked
    unit by unit against ``reference_unit`` (same normals, same contiguous batches)."""
    seed, bsz = 5, 8
    model = tiny_conv()
    x, y = conv_data()
    opt = RSO(model, x, y, cycles=2, batch_size=bsz, seed=seed, parallel=parallel, weight_decay=wd, order=order)
    assert opt.sigma_factor(0) == 1.0
    g = groups_by_name(model)
    assert [u.name for u in opt.units] == [n for n, _ in CONV_UNITS]
    t0 = 0
    for ui, (name, size) in enumerate(CONV_UNITS):
        grp = g[name]
        mode = parallel if (parallel is not None and name.endswith(".weight")) else "sequential"
        if order == "input" and len(grp.shape) >= 2:
            o, c = grp.shape[0], grp.shape[1]
            rest = size // (o * c)
            visit = [(oo * c + cc) * rest + k for cc in range(c) for oo in range(o) for k in range(rest)]
        else:
            visit = list(range(size))
        owner = pool_owner([n for n, _ in CONV_UNITS], ui)
        perm = pool_perm(seed, 0, owner, len(CONV_UNITS), x.shape[0])
        want, decisions = reference_unit(
            model, x, y, grp, CONV_SIGMA[name], 1.0, t0, perm, bsz, mode, visit, wd=wd, seed=seed
        )
        start = _np(model.params).copy()
        if name == "conv2.weight":  # the three semantics really differ here: the comparison can fail
            others = {
                m: reference_unit(model, x, y, grp, CONV_SIGMA[name], 1.0, t0, perm, bsz, m, visit, wd=wd, seed=seed)[0]
                for m in ("sequential", "layer", "neuron")
            }
            assert not np.array_equal(others["sequential"], others["layer"])
            assert not np.array_equal(others["sequential"], others["neuron"])
            assert not np.array_equal(others["layer"], others["neuron"])
            assert set(decisions) == {0, 1, 2}
        for k in range(size):
            assert opt.unit == ui and opt.pos == k
            opt.step()
            if mode != "sequential" and k < size - 1:  # nothing is applied before the merge
                assert np.array_equal(_np(model.params), start)
        got = _np(model.params)
        assert np.array_equal(got, want), f"{name}: max diff {np.abs(got - want).max()}"
        rec = opt.records[-1]
        assert rec["name"] == name
        assert (rec["rejected"], rec["plus"], rec["minus"]) == tuple(decisions.count(k) for k in (0, 1, 2))
        t0 += size
    assert opt.cycle == 1


# ---- 6. joint perturbations (sec. 4.2) ------------------------------------------------------------


def test_layer_level_joint_perturbation():
    """Sec. 4.2: level="layer" perturbs all parameters of one tensor jointly by N(0, (sigma_d / 10)^2),
    with as many trials per cycle as the tensor has parameters; an accepted change is joint_scale * sigma * z."""
    seed, js = 3, 0.1
    model = mlp_bn()
    x, y = mlp_data()
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(
        model, x, y, cycles=2, batch_size=16, seed=seed, level="layer", evaluator=rec, recipe="paper", weight_decay=0
    )
    g = groups_by_name(model)
    assert [(u.name, u.trials) for u in opt.units] == MLP_UNITS
    assert opt.total_trials_per_cycle == model.num_params == 47
    names = [n for n, size in MLP_UNITS for _ in range(size)]
    accepted, offset = 0, 0  # the trials' draws lie end to end: trial t starts where trial t - 1 ended
    for t in range(2 * 47):
        name = names[t % 47]
        sl = g[name].slice
        width = sl.stop - sl.start
        before = _np(model.params).copy()
        info = opt.step()
        after = _np(model.params)
        call = rec.calls[t]
        assert call["sl"] == sl and call["cands"].shape == (3, width)
        factor = 1.0 if t < 47 else 0.1
        z = _np(normal(seed, STREAM_DELTA, offset, width, np, dtype=np.float32))
        offset += width
        s = np.float32(MLP_SIGMA[name] * (js * factor))
        np.testing.assert_array_equal(call["cands"][0], before[sl])
        np.testing.assert_allclose(call["cands"][1], before[sl] + s * z, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(call["cands"][2], before[sl] - s * z, rtol=1e-6, atol=1e-7)
        outside = np.ones(before.size, bool)
        outside[sl] = False
        assert np.array_equal(after[outside], before[outside])
        change = after[sl].astype(np.float64) - before[sl]
        if info["decision"] == "keep":
            assert np.all(change == 0)
        else:
            accepted += 1
            sign = 1.0 if info["decision"] == "plus" else -1.0
            assert np.all(change != 0)  # every element moved: a joint step
            big = np.abs(z) > 0.2
            np.testing.assert_allclose(
                change[big] / (sign * z[big].astype(np.float64)), js * factor * MLP_SIGMA[name], rtol=2e-3
            )
    assert 0 < accepted < 2 * 47
    assert [r["trials"] for r in opt.records] == [size for _, size in MLP_UNITS] * 2


def test_network_level_joint_perturbation():
    """Sec. 4.2: level="network" perturbs every parameter of the network in each trial, per-parameter std
    joint_scale * sigma_d; trials per cycle = the number of parameters."""
    seed, js = 8, 0.1
    model = mlp_bn()
    x, y = mlp_data()
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(
        model, x, y, cycles=1, batch_size=16, seed=seed, level="network", joint_scale=js, evaluator=rec, weight_decay=0
    )
    P = model.num_params
    assert [(u.name, u.trials) for u in opt.units] == [("network", P)]
    g = groups_by_name(model)
    sig = np.empty(P)
    for name, s in MLP_SIGMA.items():
        sig[g[name].slice] = s
    np.testing.assert_allclose(np.asarray(opt.units[0].sigma, dtype=np.float64), sig, rtol=1e-6)
    accepted = 0
    for t in range(P):
        before = _np(model.params).copy()
        info = opt.step()
        after = _np(model.params)
        call = rec.calls[t]
        assert call["sl"] == slice(0, P) and call["cands"].shape == (3, P)
        z = _np(normal(seed, STREAM_DELTA, t * P, P, np, dtype=np.float32)).astype(np.float64)
        np.testing.assert_allclose(call["cands"][1], before + js * sig * z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(call["cands"][2], before - js * sig * z, rtol=1e-5, atol=1e-6)
        if info["decision"] != "keep":
            accepted += 1
            assert np.all(after != before)
            sign = 1.0 if info["decision"] == "plus" else -1.0
            big = np.abs(z) > 0.2
            np.testing.assert_allclose(
                (after - before.astype(np.float64))[big] / (sign * z[big]), js * sig[big], rtol=2e-3
            )
        else:
            assert np.array_equal(after, before)
    assert accepted > 0
    assert opt.done and len(opt.records) == 1 and opt.records[0]["trials"] == P


# ---- 7. mini-batch sampling (sec. 3, authors' code) -----------------------------------------------


class _ConstantEvaluator:
    """An evaluator that scores the candidates by their mean (cheap), so a run can be long and exact."""

    loss_name = "mean"

    def prepare(self, layer, x, y, keep=()):
        pass

    def losses(self, sl, candidates, rows):
        return np.abs(_np(candidates).astype(np.float64)).mean(axis=1)


@pytest.mark.parametrize("level", ["weight", "layer", "network"])
def test_no_two_trials_share_a_normal(monkeypatch, level):
    """Reproducibility: every Delta draw of a run reads its own range of the (seed, STREAM_DELTA) sequence.
    The draws RSO actually makes over two cycles are recorded (not recomputed from its formula) and
    checked pairwise: tensors of six different sizes, so a width-dependent offset would overlap."""
    from minirso import kernels, models
    from minirso.optim import rso as rso_module
    from minirso.optim import rso_variants

    draws = []

    def recording_normal(seed, stream, offset, n, *args, **kwargs):
        if stream == STREAM_DELTA:
            draws.append((offset, offset + n))
        return normal(seed, stream, offset, n, *args, **kwargs)

    fused_normal = kernels.normal

    def recording_fused(seed, stream, offset, n, *args, **kwargs):  # the joint levels' draw on a GPU
        if stream == STREAM_DELTA:
            draws.append((offset, offset + n))
        return fused_normal(seed, stream, offset, n, *args, **kwargs)

    monkeypatch.setattr(rso_module, "normal", recording_normal)  # the weight level's draws
    monkeypatch.setattr(rso_variants, "normal", recording_normal)  # the joint levels'
    monkeypatch.setattr(kernels, "normal", recording_fused)
    model = models.mlp([20, 6, 5, 3], seed=2)  # tensors of 120, 6, 30, 5, 15, 3 parameters
    x = minirso.asarray(np.random.default_rng(1).normal(size=(8, 20)).astype(np.float32))
    y = minirso.asarray(np.arange(8) % 3)
    opt = RSO(model, x, y, cycles=2, batch_size=4, level=level, seed=5, evaluator=_ConstantEvaluator())
    while not opt.done:
        opt.step()
    sizes = (120, 6, 30, 5, 15, 3)
    assert model.num_params == sum(sizes) == 179
    # what each level draws per cycle, by hand: the weight level one normal per weight (each tensor's at
    # its start), the layer level a tensor-sized Delta per trial, the network level a P-sized one
    per_cycle = {"weight": (len(sizes), 179), "layer": (179, sum(s * s for s in sizes)), "network": (179, 179 * 179)}
    calls, normals = per_cycle[level]
    assert len(draws) == 2 * calls and sum(b - a for a, b in draws) == 2 * normals
    ordered = sorted(draws)
    for (a0, b0), (a1, b1) in zip(ordered, ordered[1:]):
        assert b0 <= a1, f"draws [{a0}, {b0}) and [{a1}, {b1}) share normals"


def test_contiguous_batches_are_slices_of_one_permutation():
    """Authors' code: the pool is shuffled once per weight tensor, each trial takes the next contiguous slice
    (batches disjoint, together the whole pool; then they repeat).  A bias or BatchNorm tensor reads the order
    of the weight tensor before it from its first batch (train.py l.228 ``reset()``); the first layer's weight
    continues, from cycle 2 on, where the last tensor sharing its order left the iterator (l.178-180)."""
    seed, n, bsz = 4, 48, 16
    model = mlp_bn()
    x, y = mlp_data(n)
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(model, x, y, cycles=2, batch_size=bsz, seed=seed, evaluator=rec)
    opt.run()
    names = [name for name, _ in MLP_UNITS]
    # by hand: fc1.weight (layer 0) shares its order with fc1.bias, bn1.beta and bn1.gamma; bn1.gamma's 4 trials
    # leave the iterator at batch 4 mod 3 = 1, where fc1.weight starts in cycle 2
    start = {(1, "fc1.weight"): 1}
    t, perms = 0, {}
    for c in range(2):
        for ui, (name, size) in enumerate(MLP_UNITS):
            rows = [rec.calls[t + k]["rows"] for k in range(size)]
            s0 = start.get((c, name), 0)
            first = np.concatenate([rows[(3 - s0 + k) % 3] for k in range(3)])  # batches 0, 1, 2 of the order
            assert np.array_equal(np.sort(first), np.arange(n))  # 3 disjoint slices covering the pool
            for k in range(size):
                assert np.array_equal(rows[k], first[(s0 + k) % 3 * bsz : ((s0 + k) % 3 + 1) * bsz])  # m = 3
            perm = pool_perm(seed, c, pool_owner(names, ui), len(MLP_UNITS), n)
            assert np.array_equal(first, perm)
            perms[c, name] = first
            t += size
    for c in range(2):
        assert np.array_equal(perms[c, "fc2.bias"], perms[c, "fc2.weight"])
        assert all(np.array_equal(perms[c, v], perms[c, "fc1.weight"]) for v in ("fc1.bias", "bn1.beta", "bn1.gamma"))
    own = [perms[c, v] for c in range(2) for v in ("fc2.weight", "fc1.weight")]
    assert all(not np.array_equal(a, b) for i, a in enumerate(own) for b in own[i + 1 :])  # fresh per weight, cycle


def test_contiguous_separate_batches_per_candidate():
    """shared_batch=False: w, w + Delta, w - Delta are each scored on their own batch (batches 3t, 3t+1, 3t+2)."""
    seed, n, bsz = 6, 48, 8  # m = 6 batches per permutation
    model = mlp_bn()
    x, y = mlp_data(n)
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(model, x, y, cycles=1, batch_size=bsz, seed=seed, shared_batch=False, evaluator=rec)
    for _ in range(12):  # the first unit (fc2.weight)
        opt.step()
    assert len(rec.calls) == 36
    perm = pool_perm(seed, 0, 0, len(MLP_UNITS), n)
    for t in range(12):
        trio = rec.calls[3 * t : 3 * t + 3]
        for k, call in enumerate(trio):
            assert call["cands"].shape == (1, 1)
            assert call["sl"] == trio[0]["sl"]
            b = (3 * t + k) % 6
            assert np.array_equal(call["rows"], perm[b * bsz : b * bsz + bsz])
        w = trio[0]["cands"][0, 0]
        assert trio[1]["cands"][0, 0] != w and trio[2]["cands"][0, 0] != w
        np.testing.assert_allclose(trio[1]["cands"][0, 0] - w, w - trio[2]["cands"][0, 0], rtol=1e-5, atol=1e-7)
        assert len({tuple(c["rows"]) for c in trio}) == 3


@pytest.mark.parametrize("shared", [True, False])
def test_uniform_batches(shared):
    """sampling="uniform": batch b (counted over the whole run) is
    floor(N * uniform(seed, STREAM_DATA_UNIFORM, bB, B))."""
    seed, n, bsz = 12, 48, 16
    model = mlp_bn()
    x, y = mlp_data(n)
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(model, x, y, cycles=1, batch_size=bsz, seed=seed, sampling="uniform", shared_batch=shared, evaluator=rec)
    for _ in range(20):  # crosses from fc2.weight (12) into fc2.bias and fc1.weight
        opt.step()
    assert len(rec.calls) == (20 if shared else 60)
    dup = False
    for b, call in enumerate(rec.calls):
        want = uniform_rows(seed, b, bsz, n)
        assert np.array_equal(call["rows"], want), b
        assert call["cands"].shape == ((3, 1) if shared else (1, 1))
        dup |= len(set(want.tolist())) < bsz
    assert dup  # drawn with replacement


# ---- 8. weight decay (authors' code) --------------------------------------------------------------


def test_weight_decay_before_each_trial():
    """Authors' code (train.py l.77, l.103): before each trial, w64 = w * (1 - wd) in float64 (wd = 1e-4 there),
    for EVERY tensor, BatchNorm gamma and beta included; the candidates are float32(w64 +- Delta)."""
    wd, seed = 0.01, 3
    model = mlp_bn()
    x, y = mlp_data()
    rec = Recorder(CachedEvaluator(model))
    opt = RSO(model, x, y, cycles=1, batch_size=16, weight_decay=wd, evaluator=rec, seed=seed)
    names = [n for n, size in MLP_UNITS for _ in range(size)]
    z = _np(normal(seed, STREAM_DELTA, 0, 47, np, dtype=np.float64))
    rounded_apart = 0
    for t in range(47):
        before = _np(model.params).copy()
        info = opt.step()
        call = rec.calls[t]
        i = call["sl"].start
        w64 = np.float64(before[i]) * (1 - wd)
        d = MLP_SIGMA[names[t]] * z[t]  # cycle 1 of 1: factor 1
        assert list(call["cands"][:, 0]) == [np.float32(w64), np.float32(w64 + d), np.float32(w64 - d)], names[t]
        assert call["cands"][0, 0] != before[i] or before[i] == 0  # (BatchNorm beta starts at 0)
        # float32 arithmetic would round differently: w * float32(1 - wd), then + Delta
        w32 = np.float32(before[i]) * np.float32(1 - wd)
        rounded_apart += (np.float32(w32 + np.float32(d)) != call["cands"][1, 0]) or (w32 != call["cands"][0, 0])
        if info["decision"] == "keep":  # a rejected trial keeps the decayed weight
            assert _np(model.params)[i] == call["cands"][0, 0]
    assert rounded_apart > 0  # the test can tell float64 from float32 decay


def test_weight_decay_joint_levels():
    """With level="layer" / "network" the decay multiplies every parameter of the trial's slice, in float64."""
    wd = 0.02
    for level in ("layer", "network"):
        model = mlp_bn()
        x, y = mlp_data()
        rec = Recorder(CachedEvaluator(model))
        opt = RSO(model, x, y, cycles=1, batch_size=16, weight_decay=wd, level=level, evaluator=rec)
        for t in range(15):
            before = _np(model.params).copy()
            opt.step()
            call = rec.calls[t]
            sl = call["sl"]
            want = (before[sl].astype(np.float64) * (1 - wd)).astype(np.float32)
            assert np.array_equal(call["cands"][0], want), (level, t)


# ---- 9. non-finite losses -------------------------------------------------------------------------


def test_nonfinite_candidates_never_accepted():
    """Candidates whose loss is NaN or +-inf are never accepted (a -inf must not win the argmin) and are
    counted in the records' ``nonfinite``; the parameters stay finite."""
    bad = {0: (1, np.nan), 1: (2, -np.inf), 2: (1, np.inf)}

    def corrupt(i, out):
        if i % 5 in bad:
            k, v = bad[i % 5]
            out[k] = v
        if i % 7 == 3:  # both candidates bad: keep
            out[1], out[2] = np.nan, -np.inf
        return out

    model = mlp_bn()
    x, y = mlp_data()
    rec = Recorder(CachedEvaluator(model), corrupt)
    infos = []
    opt = RSO(
        model,
        x,
        y,
        cycles=2,
        batch_size=16,
        evaluator=rec,
        callback=lambda e, info: infos.append(info) if e == "trial" else None,
    )
    opt.run()
    assert len(infos) == len(rec.calls) == 94
    for call, info in zip(rec.calls, infos):
        want = ("keep", "plus", "minus")[argmin_keep(call["out"])]
        assert info["decision"] == want
        if info["decision"] != "keep":
            assert np.isfinite(call["out"][("keep", "plus", "minus").index(info["decision"])])
    t = 0
    for r in opt.records:
        calls = rec.calls[t : t + r["trials"]]
        assert r["nonfinite"] == sum(int(not np.isfinite(v)) for c in calls for v in c["out"][1:])
        assert np.isfinite(r["mean_loss"])
        t += r["trials"]
    assert sum(r["nonfinite"] for r in opt.records) > 30
    assert np.all(np.isfinite(_np(model.params)))


def test_nonfinite_loss_callable():
    """The same through a loss callable: a NaN loss (e.g. an overflowing net) never becomes the new weight."""
    calls = []

    def flaky(logits, labels):
        calls.append(None)
        if len(calls) % 4 == 2:  # hits candidates 1 and 2 of different trials, and some w's
            return float("nan")
        return cross_entropy(logits, labels, "sum", np.float64)

    model = mlp_bn()
    x, y = mlp_data()
    infos = []
    opt = RSO(
        model,
        x,
        y,
        cycles=1,
        batch_size=16,
        loss=flaky,
        callback=lambda e, info: infos.append(info) if e == "trial" else None,
    )
    assert opt.hyperparameters["loss"] == "flaky"
    opt.run()
    assert len(calls) == 3 * 47
    nan_at = [(i // 3, i % 3) for i in range(len(calls)) if (i + 1) % 4 == 2]
    expected_nonfinite = sum(1 for _, k in nan_at if k > 0)
    assert sum(r["nonfinite"] for r in opt.records) == expected_nonfinite
    for t, k in nan_at:
        if k > 0:
            assert infos[t]["decision"] != ("keep", "plus", "minus")[k]
    assert np.all(np.isfinite(_np(model.params)))


# ---- 10. statistics and callback ------------------------------------------------------------------


def test_records_and_callback_events():
    """Per tensor and cycle one record (plus + minus + rejected = trials); the callback sees "trial" events
    (one per weight), then "unit_end" with the record, and "cycle_end" after the last tensor of a cycle."""
    model = mlp_bn()
    x, y = mlp_data()
    events = []
    opt = RSO(
        model,
        x,
        y,
        cycles=2,
        batch_size=16,
        anneal=0.5,
        recipe="paper",
        callback=lambda e, info: events.append((e, info)),
    )
    first = opt.run_cycle()
    assert [r["name"] for r in first] == [n for n, _ in MLP_UNITS] and all(r["cycle"] == 0 for r in first)
    opt.run()
    expected = []
    for c in range(2):
        for ui, (name, size) in enumerate(MLP_UNITS):
            expected += [("trial", c, ui, name, pos, size) for pos in range(size)]
            expected.append(("unit_end", c, name))
        expected.append(("cycle_end", c))
    got = []
    for e, info in events:
        if e == "trial":
            got.append((e, info["cycle"], info["unit"], info["name"], info["position"], info["trials"]))
        elif e == "unit_end":
            got.append((e, info["cycle"], info["name"]))
        else:
            got.append((e, info["cycle"]))
    assert got == expected
    assert len(opt.records) == 12
    unit_ends = [info for e, info in events if e == "unit_end"]
    assert strip_wall(unit_ends) == strip_wall(opt.records)
    trials = [info for e, info in events if e == "trial"]
    t = 0
    for r, (name, size) in zip(opt.records, MLP_UNITS * 2):
        mine = trials[t : t + size]
        assert r["name"] == name and r["trials"] == size
        assert r["plus"] + r["minus"] + r["rejected"] == r["trials"]
        assert r["plus"] == sum(i["decision"] == "plus" for i in mine)
        assert r["minus"] == sum(i["decision"] == "minus" for i in mine)
        assert r["rejected"] == sum(i["decision"] == "keep" for i in mine)
        assert r["nonfinite"] == 0
        assert r["mean_loss"] == pytest.approx(np.mean([i["loss"] for i in mine]), rel=1e-12)
        assert r["sigma"] == pytest.approx(MLP_SIGMA[name] * (1.0 if r["cycle"] == 0 else 0.5), rel=1e-9)
        t += size
    assert sum(r["plus"] + r["minus"] for r in opt.records) > 0
    assert sum(r["rejected"] for r in opt.records) > 0
    with pytest.raises(RuntimeError):
        opt.step()


# ---- 11. invalid hyperparameters ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"batch_size": 49}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"anneal": 0.0}, "anneal"),
        ({"anneal": -0.1}, "anneal"),
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": "xavier"}, "sigma"),
        ({"norm_sigma": 0.0}, "norm_sigma"),
        ({"joint_scale": 0.0}, "joint_scale"),
        ({"level": "neuron"}, "level"),
        ({"order": "random"}, "order"),
        ({"direction": "sideways"}, "direction"),
        ({"sampling": "stratified"}, "sampling"),
        ({"parallel": "network"}, "parallel"),
        ({"parallel": "layer", "level": "layer"}, "parallel"),
        ({"parallel": "neuron", "level": "network"}, "parallel"),
        ({"weight_decay": 1.0}, "weight_decay"),
        ({"weight_decay": 1.5}, "weight_decay"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"cycles": 0}, "cycles"),
        ({"seed": -1}, "seed"),
        ({"cache_chunk": 0}, "cache_chunk"),
        ({"loss": "hinge"}, "loss"),
    ],
)
def test_invalid_hyperparameters(kwargs, name):
    """Every bad hyperparameter raises ValueError naming it (base.py: "ValueError names a bad one")."""
    model = mlp_bn()
    x, y = mlp_data(48)
    args = {"cycles": 2, "batch_size": 16}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        RSO(model, x, y, **args)


def test_cache_chunk_validated_with_custom_evaluator():
    """The docstring: every hyperparameter is checked ("ValueError names a bad one"), and cache_chunk is recorded
    in ``hyperparameters`` (so load_state_dict compares it) even when an evaluator is passed."""
    model = mlp_bn()
    x, y = mlp_data(48)
    with pytest.raises(ValueError, match="cache_chunk"):
        RSO(model, x, y, cycles=1, batch_size=16, evaluator=CachedEvaluator(model), cache_chunk=0)


def test_mismatched_data_raises():
    """x and y must describe the same training pool (sec. 3: (x, l) drawn from X, L)."""
    model = mlp_bn()
    x, y = mlp_data(48)
    with pytest.raises(ValueError):
        RSO(model, x, y[:40], cycles=1, batch_size=16)


@pytest.mark.parametrize(
    "changed",
    [
        {"batch_size": 8},
        {"order": "input"},
        {"parallel": "neuron"},
        {"seed": 1},
        {"level": "layer"},
        {"weight_decay": 0.0},
        {"cycles": 1},
        {"sampling": "uniform"},
        {"anneal": 0.2},
        {"recipe": "paper"},
        {"bn_rows": 100},
    ],
)
def test_load_state_dict_with_other_hyperparameter_raises(changed):
    """A checkpoint is only valid for the hyperparameters it was made with: the error names the one that differs
    (a LARGER cycles extends the run, see test_rso.py; a smaller one is refused)."""
    model = mlp_bn()
    x, y = mlp_data(48)
    base = {"cycles": 2, "batch_size": 16}
    opt = RSO(model, x, y, **base)
    for _ in range(5):
        opt.step()
    sd = opt.state_dict()
    other = RSO(mlp_bn(), x, y, **{**base, **changed})
    (name,) = changed
    with pytest.raises(ValueError, match=name):
        other.load_state_dict(sd)


# ---- 12. resume mid-unit --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"parallel": "neuron"},
        {"parallel": "neuron", "sigma": "std", "order": "input"},
        {"parallel": "layer", "weight_decay": 0.01, "direction": "forward"},
        {"level": "layer"},
        {"level": "layer", "sampling": "uniform", "shared_batch": False, "weight_decay": 0.01},
        {"level": "network", "sigma": "std"},
    ],
    ids=[
        "neuron",
        "neuron-std-input",
        "layer-parallel-forward-wd",
        "layer-level",
        "layer-level-uniform-3batches",
        "network-level-std",
    ],
)
def test_resume_mid_unit_bit_for_bit(kwargs):
    """Resuming from state_dict + params in the middle of a tensor reproduces the uninterrupted run exactly
    (params, records except wall_time, and the final state)."""
    x, y = conv_data()
    args = {"cycles": 2, "batch_size": 8, "seed": 21, "anneal": 0.3, **kwargs}

    ref_model = tiny_conv()
    ref = RSO(ref_model, x, y, **args)
    ref.run()

    model = tiny_conv()
    opt = RSO(model, x, y, **args)
    names = [u.name for u in opt.units]
    target = names.index("conv2.weight") if "conv2.weight" in names else 0
    while not (opt.cycle == 1 and opt.unit == target and opt.pos == 10):  # mid-unit, second cycle
        opt.step()
    sd = pickle.loads(pickle.dumps(opt.state_dict()))  # a plain, saveable object
    saved = _np(model.params).copy()
    records = list(opt.records)  # not state: the first part's log, joined to the resumed part's below
    if "parallel" in kwargs:
        assert sd["state"]["has_parallel"] and sd["state"]["base"].size == 36
    del opt, model

    # a different init, restored from the checkpoint BEFORE the optimizer is built (with sigma="std" the
    # optimizer must not re-measure sigma on these trained weights)
    model2 = tiny_conv(seed=99)
    model2.params[...] = minirso.asarray(saved)
    opt2 = RSO(model2, x, y, **args)
    opt2.load_state_dict(sd)
    opt2.run()

    assert np.array_equal(_np(model2.params), _np(ref_model.params))
    assert strip_wall(records + opt2.records) == strip_wall(ref.records)
    a, b = ref.state_dict()["state"], opt2.state_dict()["state"]
    assert set(a) == set(b) and "records" not in a  # the log is the trainer's history, not state
    for k in a:
        if k == "stat_wall_time":
            continue
        if isinstance(a[k], np.ndarray):
            assert np.array_equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k
    assert not np.array_equal(_np(ref_model.params), _np(tiny_conv().params))  # the run did something
