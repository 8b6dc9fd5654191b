"""The one aMC core over K rows (minirso.optim.amc_core) and aMC's loss contract (minirso.optim.amc_loss).

Independent truths: AMC and AMCChains must be the same code with K = 1 and K rows (one validation,
the same trajectory bit for bit where no batched forward pass rounds differently); a loss is asked
for what it records only through its own interface (a loss that refuses outside attribute writes
still works), and a loss without what a configuration needs is refused by name.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import minirso
from minirso.models import mlp
from minirso.optim import AMC, AMCChains, ChainsLoss, Metropolis, ModelLoss
from minirso.optim.amc_core import AMCCore, check_settings
from minirso.optim.amc_loss import AMCLoss, MinibatchLoss, RecordingLoss

_np = minirso.to_numpy


def rosenbrock_rows(thetas):
    """Batched 2-D Rosenbrock (aMC Fig. 3, eq. 6), one value per row: (K, 2) -> (K,)."""
    x, y = thetas[:, 0], thetas[:, 1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock(p) -> float:
    x, y = float(p[0]), float(p[1])
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def data(n=40, d=5, classes=3, seed=7):
    r = np.random.default_rng(seed)
    x = (r.normal(size=(n, d)) * np.linspace(0.3, 2.0, d)).astype(np.float32)
    y = np.argmax(x @ r.normal(size=(d, classes)), axis=1).astype(np.int64)
    return minirso.asarray(x), minirso.asarray(y)


# ---- one validation --------------------------------------------------------------------------------


def _build(kind, **hp):
    if kind == "AMC":
        return AMC(minirso.asarray(np.array([0.5, -0.5])), rosenbrock, seed=3, **hp)
    return AMCChains(minirso.asarray(np.array([[0.5, -0.5], [1.0, 0.2]])), rosenbrock_rows, seeds=3, **hp)


@pytest.mark.parametrize(
    "hp",
    [
        dict(sigma0=np.float32(0.01), epsilon=np.float32(0.1), n_s=np.int64(7), decay=np.float32(0.9)),
        dict(sigma0=np.float64(0.01), epsilon=np.float64(0.1), n_s=np.int32(7), decay=np.float64(0.9)),
        dict(sigma0=0.01, epsilon=0, n_s=np.float64(np.inf), decay=0.5),
    ],
)
def test_both_faces_accept_numpy_hyperparameters_alike(hp):
    """NumPy numbers are hyperparameters like Python ones, for one chain and for K; both record the same values
    (as Python numbers: a checkpoint of either holds no NumPy scalar)."""
    one, many = _build("AMC", **hp), _build("AMCChains", **hp)
    for key in ("sigma0", "epsilon", "n_s", "decay"):
        assert one.hyperparameters[key] == many.hyperparameters[key], key
        assert type(one.hyperparameters[key]) is type(many.hyperparameters[key]), key
        assert type(one.hyperparameters[key]) in (int, float), key
    assert one.hyperparameters["epsilon"] == float(hp["epsilon"])
    one.run(30)
    many.run(30)
    assert one.step_count == many.step_count == 30


@pytest.mark.parametrize(
    "bad",
    [
        dict(sigma0=0.0),
        dict(sigma0=-1e-3),
        dict(sigma0=math.nan),
        dict(sigma0=np.float32(-1)),
        dict(sigma0="1e-3"),
        dict(epsilon=math.inf),
        dict(epsilon=np.float32(np.nan)),
        dict(epsilon=True),
        dict(epsilon="0.1"),
        dict(n_s=0),
        dict(n_s=-3),
        dict(n_s=2.5),
        dict(n_s=np.float64(4.0)),
        dict(n_s=True),
        dict(decay=0.0),
        dict(decay=1.0),
        dict(decay=np.float32(1.5)),
        dict(decay=math.inf),
    ],
)
def test_both_faces_reject_the_same_values_with_the_same_message(bad):
    """One validation (check_settings): AMC and AMCChains refuse the same bad hyperparameter with the same
    ValueError text, which names the hyperparameter."""
    messages = []
    for kind in ("AMC", "AMCChains"):
        with pytest.raises(ValueError) as info:
            _build(kind, **bad)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert next(iter(bad)) in messages[0]


# ---- one core --------------------------------------------------------------------------------------


def test_amc_and_chains_are_the_one_core():
    """AMC is the core's K = 1 case; AMCChains with one row on the same batched function follows AMC bit for bit
    (params, mu, sigma, decisions), and both keep their checkpoint layouts: scalars for AMC, (K,) for AMCChains."""
    hp = dict(sigma0=0.05, epsilon=0.1, n_s=5, decay=0.9)
    p = minirso.asarray(np.array([-1.2, 1.0]))
    one = AMC(p, rosenbrock, seed=11, **hp)
    rows = AMCChains(minirso.asarray(np.array([[-1.2, 1.0]])), rosenbrock_rows, seeds=[11], **hp)
    assert isinstance(one, AMCCore) and isinstance(rows, AMCCore) and one.chains == rows.chains == 1
    for n in range(300):
        a, b = one.step(), rows.step()
        assert a["accepted"] == bool(b["accepted"][0]) and a["sigma"] == b["sigma"][0], n
    np.testing.assert_array_equal(_np(p), _np(rows.params[0]))
    np.testing.assert_array_equal(_np(one.mu), _np(rows.mu[0]))
    assert (one.accepted, one.rejected, one.n_cr, one.loss) == (
        rows.accepted[0],
        rows.rejected[0],
        rows.n_cr[0],
        rows.loss[0],
    )
    assert one.sigma < 0.05  # decays happened
    s1, sk = one.state_dict()["state"], rows.state_dict()["state"]
    assert type(s1["sigma"]) is float and type(s1["accepted"]) is int and s1["mu"].shape == (2,)
    assert sk["sigma"].shape == (1,) and sk["accepted"].shape == (1,) and sk["mu"].shape == (1, 2)


def test_options_for_one_row_are_refused_for_k_rows():
    """Temperature, minibatches, signal norm and progressive batching are one row's options (AMC)."""
    thetas = minirso.asarray(np.zeros((3, 2)))
    for extra in (dict(temperature=0.1), dict(signal_norm=True), dict(batch_size=2), dict(progressive=True)):
        settings = check_settings(sigma0=0.1, epsilon=0.0, n_s=5, decay=0.95, **extra)
        with pytest.raises(ValueError, match="one row"):
            AMCCore(thetas, rosenbrock_rows, (1, 2, 3), settings)


# ---- the loss contract -----------------------------------------------------------------------------


def test_the_library_losses_implement_the_protocols():
    net = mlp([5, 6, 3], seed=3)
    x, y = data()
    ml = ModelLoss(net, x, y)
    assert isinstance(ml, AMCLoss) and isinstance(ml, MinibatchLoss) and isinstance(ml, RecordingLoss)
    cl = ChainsLoss(net, x, y)
    assert isinstance(cl, AMCLoss) and not isinstance(cl, MinibatchLoss)
    assert isinstance(rosenbrock, AMCLoss) and not isinstance(rosenbrock, RecordingLoss)


class SealedLoss:
    """A RecordingLoss + MinibatchLoss on a linear least-squares problem that refuses attribute writes from outside:
    an optimizer can configure it only through ``configure``, which it records."""

    def __init__(self, n=30, p=4, seed=2):
        r = np.random.default_rng(seed)
        object.__setattr__(self, "a", r.normal(size=(n, p)))
        object.__setattr__(self, "b", r.normal(size=n))
        object.__setattr__(self, "configured", [])
        object.__setattr__(self, "_rows", None)
        object.__setattr__(self, "_flags", (False, False))

    def __setattr__(self, name, value):
        raise AttributeError(f"SealedLoss is configured through configure(), not by setting {name!r}")

    @property
    def num_samples(self):
        return self.a.shape[0]

    def select(self, rows):
        object.__setattr__(self, "_rows", None if rows is None else _np(rows))

    def configure(self, *, signal_stats=False, track_error=False):
        self.configured.append((signal_stats, track_error))
        object.__setattr__(self, "_flags", (signal_stats, track_error))

    def __call__(self, params):
        rows = slice(None) if self._rows is None else self._rows
        return float(np.mean((self.a[rows] @ _np(params) - self.b[rows]) ** 2))

    def lambdas(self):
        assert self._flags[0], "lambdas() without configure(signal_stats=True)"
        return minirso.asarray(np.linspace(0.5, 2.0, self.a.shape[1]))

    @property
    def last_error(self):
        return 0.0 if self._flags[1] else None  # "classified perfectly": every step doubles the batch


def test_amc_configures_its_loss_through_the_protocol_only():
    """AMC asks a loss for what its hyperparameters need with ONE configure() call in its constructor and writes
    no attribute of it; a configuration that needs nothing leaves the loss untouched."""
    loss = SealedLoss()
    opt = AMC(minirso.asarray(np.zeros(4)), loss, sigma0=0.1, signal_norm=True, progressive=True, batch_size=2, seed=1)
    assert loss.configured == [(True, True)]
    opt.run(5)
    assert opt.lam is not None and opt.batch == 30  # lambdas read, the batch doubled 2 -> 4 -> ... -> 30
    plain = SealedLoss()
    AMC(minirso.asarray(np.zeros(4)), plain, sigma0=0.1, batch_size=5, seed=1).run(3)
    Metropolis(minirso.asarray(np.zeros(4)), plain, sigma=0.1).run(3)
    assert plain.configured == []


class SubsetLoss:
    """A MinibatchLoss only: no configure, lambdas or last_error."""

    num_samples = 10

    def select(self, rows):
        pass

    def __call__(self, params):
        return float((_np(params) ** 2).sum())


@pytest.mark.parametrize(
    "option,name", [(dict(signal_norm=True), "signal_norm=True"), (dict(progressive=True), "progressive=True")]
)
def test_a_loss_without_what_a_configuration_needs_is_refused_by_name(option, name):
    with pytest.raises(ValueError) as info:
        AMC(minirso.asarray(np.zeros(3)), SubsetLoss(), **option)
    msg = str(info.value)
    assert name in msg and "RecordingLoss" in msg and "SubsetLoss lacks configure, lambdas, last_error" in msg
    with pytest.raises(ValueError, match=r"batch_size .*MinibatchLoss.*function lacks num_samples, select"):
        AMC(minirso.asarray(np.zeros(2)), rosenbrock, batch_size=3)


def test_model_loss_is_configured_at_construction_or_by_configure():
    """ModelLoss(..., signal_stats=True) gives lambdas after a plain evaluation (no optimizer); the flags are
    read-only attributes, changed only through configure()."""
    net = mlp([5, 6, 3], seed=3)
    x, y = data()
    ml = ModelLoss(net, x, y, signal_stats=True, track_error=True)
    ml(net.params)
    lam = _np(ml.lambdas())
    assert lam.shape == (net.num_params,) and np.any(lam != 1)
    assert ml.last_error is not None and 0 <= ml.last_error <= 1
    with pytest.raises(AttributeError):
        ml.signal_stats = False
    ml.configure()
    assert not ml.signal_stats and not ml.track_error
    with pytest.raises(RuntimeError, match="configure"):
        ml.lambdas()
