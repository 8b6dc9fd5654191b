"""The optimizer protocol (minirso.optim.base.TrainableOptimizer): the Trainer drives AMCChains, Metropolis and a
user's own optimizer through it, checkpoints them and resumes them bit for bit; what it refuses, and why."""

import math
import signal

import numpy as np
import pytest

import minirso
from minirso import checkpoint, get_array_module, models
from minirso.optim import AMC, RSO, AMCChains, ChainsLoss, Metropolis, ModelLoss
from minirso.optim.base import TrainableOptimizer
from minirso.random import normal
from minirso.train import Trainer

from .helpers import XA, XAE, YA, YAE, assert_same_run, read_log, resume, stopped, without_wall_time


def signal_at(opt, steps):
    """Wrap ``opt.step`` so that a SIGINT comes right after the steps in ``steps`` (a user's Ctrl-C)."""
    step = opt.step

    def step_then_maybe_signal():
        info = step()
        if opt.position()["step"] in steps:
            signal.raise_signal(signal.SIGINT)
        return info

    opt.step = step_then_maybe_signal
    return opt


def trainer_for(opt, model, path, **kw):
    kw = {
        **dict(
            steps=60,
            eval_data=(XAE, YAE),
            train_eval_data=(XA[:20], YA[:20]),
            eval_every=20,
            checkpoint=path,
            checkpoint_every=25,
            log_every=10,
            progress=False,
        ),
        **kw,
    }
    return Trainer(model, opt, **kw)


def chains_trainer(path=None, *, interrupt_at=(), **kw):
    """Three aMC chains of one mlp 4-5-3 (Softmax), from the model's init plus a little noise per chain."""
    model = models.mlp([4, 5, 3], output="softmax", seed=2)
    start = np.stack([minirso.to_numpy(model.params) + np.float32(0.02 * c) for c in range(3)])
    opt = AMCChains(
        minirso.asarray(start), ChainsLoss(model, XA, YA, "mse"), seeds=[3, 7, 9], sigma0=0.05, epsilon=0.1, n_s=5
    )
    return trainer_for(signal_at(opt, interrupt_at), model, path, **kw)


def test_the_library_optimizers_implement_the_protocol():
    model = models.mlp([4, 5, 3], seed=2)
    rows = minirso.asarray(np.stack([minirso.to_numpy(model.params)] * 2))
    for opt in (
        RSO(model, XA, YA, cycles=1, batch_size=8),
        AMC(model.params, ModelLoss(model, XA, YA)),
        Metropolis(model.params, ModelLoss(model, XA, YA)),
        AMCChains(rows, ChainsLoss(model, XA, YA)),
    ):
        assert isinstance(opt, TrainableOptimizer), type(opt).__name__


def test_amc_chains_resume_after_sigint_equals_uninterrupted(tmp_path):
    ref = chains_trainer(str(tmp_path / "ref.h5"))
    ref.fit()
    assert [r["step"] for r in ref.history["eval"]] == [20, 40, 60]
    assert [r["step"] for r in ref.history["steps"]] == list(range(10, 61, 10))
    assert 0 < ref.optimizer.accepted.sum() < 180
    # the model holds the best chain (lowest U), which is what was evaluated
    best = ref.history["steps"][-1]["best"]
    assert best == int(np.argmin(ref.optimizer.loss))
    np.testing.assert_array_equal(minirso.to_numpy(ref.model.params), minirso.to_numpy(ref.optimizer.params[best]))
    path = str(tmp_path / "run.h5")
    for stop in (13, 25, 40):  # 25: a checkpoint is due; 40: an evaluation
        t = chains_trainer(path, interrupt_at=(stop,))
        if stop > 13:
            assert t.restore(path)
        assert str(stopped(t)) == f"stopped by SIGINT at step {stop} of 60; checkpoint saved to {path}"
    assert checkpoint.load(path).meta["trainer"]["kind"] == "amc chains"
    done = resume(lambda p: chains_trainer(p), path)
    assert_same_run(done, ref)  # the K rows are in the optimizer state: all chains resume, not only the best
    np.testing.assert_array_equal(minirso.to_numpy(done.optimizer.params), minirso.to_numpy(ref.optimizer.params))
    assert without_wall_time(read_log(path + ".metrics.jsonl")) == without_wall_time(read_log(ref.metrics_log))


def test_metropolis_resume_after_sigint_equals_uninterrupted(tmp_path):
    def make(path, interrupt_at=()):
        model = models.mlp([4, 5, 3], output="softmax", seed=2)
        opt = Metropolis(model.params, ModelLoss(model, XA, YA), sigma=0.05, seed=5)
        return trainer_for(signal_at(opt, interrupt_at), model, path)

    ref = make(str(tmp_path / "ref.h5"))
    ref.fit()
    path = str(tmp_path / "run.h5")
    stopped(make(path, interrupt_at=(31,)))
    assert_same_run(resume(make, path), ref)


class RandomSearch:
    """A user's optimizer, written against the protocol alone (no minirso base class): propose
    ``x + sigma z`` with z ~ N(0, 1) from minirso's counter-based normals (so its state is two counters and the
    last loss), keep it if the loss does not rise."""

    label, schedule, table = "random search", "step", "steps"
    end = None  # no end of its own: the Trainer's steps
    safe_point = True  # every step: nothing is carried from one step to the next but the state

    def __init__(self, model, x, y, *, sigma=0.05, seed=0):
        self.params, self.loss_fn = model.params, ModelLoss(model, x, y, "cross_entropy_mean")
        self.hyperparameters = {"sigma": float(sigma), "seed": int(seed)}
        self.n, self.kept, self.loss = 0, 0, math.nan

    def position(self):
        return {"step": self.n}

    def step(self):
        p, hp = self.params, self.hyperparameters
        if self.n == 0:
            self.loss = float(self.loss_fn(p))
        old = p.copy()
        z = normal(hp["seed"], 77, self.n * p.size, p.size, get_array_module(p), dtype=p.dtype)  # (P,)
        p += p.dtype.type(hp["sigma"]) * z
        u = float(self.loss_fn(p))
        if u <= self.loss:
            self.loss, self.kept = u, self.kept + 1
        else:
            p[...] = old
        self.n += 1
        return {"step": self.n, "loss": self.loss}

    def history_rows(self, every):
        return [{"step": self.n, "batch_loss": self.loss}] if self.n % every == 0 else []

    def report(self):
        return {"tried": self.n, "accepted": self.kept, "batch_loss": self.loss, "sigma": self.hyperparameters["sigma"]}

    def where(self, end):
        return f"proposal {self.n} of {end}"

    def model_params(self):
        return self.params

    def state_dict(self):
        return {
            "type": "RandomSearch",
            "hyperparameters": dict(self.hyperparameters),
            "state": {"n": self.n, "kept": self.kept, "loss": self.loss},
        }

    def load_state_dict(self, sd):
        if sd["hyperparameters"] != self.hyperparameters:
            raise ValueError(f"hyperparameters differ: {sd['hyperparameters']} != {self.hyperparameters}")
        self.n, self.kept, self.loss = sd["state"]["n"], sd["state"]["kept"], sd["state"]["loss"]


def test_a_users_own_optimizer_trains_checkpoints_and_resumes_bit_for_bit(tmp_path):
    def make(path, interrupt_at=(), sigma=0.05):
        model = models.mlp([4, 5, 3], seed=2)
        return trainer_for(
            signal_at(RandomSearch(model, XA, YA, sigma=sigma, seed=4), interrupt_at),
            model,
            path,
            loss="cross_entropy_mean",
        )

    assert isinstance(RandomSearch(models.mlp([4, 5, 3]), XA, YA), TrainableOptimizer)
    ref = make(str(tmp_path / "ref.h5"))
    ref.fit()
    h = ref.history
    assert [r["step"] for r in h["steps"]] == list(range(10, 61, 10)) and [r["step"] for r in h["eval"]] == [20, 40, 60]
    assert all(0 <= r["acceptance"] <= 1 for r in h["steps"]) and ref.optimizer.kept > 0
    assert h["steps"][-1]["batch_loss"] < h["steps"][0]["batch_loss"] or ref.optimizer.kept == 0
    path = str(tmp_path / "run.h5")
    error = stopped(make(path, interrupt_at=(37,)))
    assert str(error) == f"stopped by SIGINT at proposal 37 of 60; checkpoint saved to {path}"
    ck = checkpoint.load(path)
    assert ck.meta["trainer"]["kind"] == "random search" and ck.optimizer["state"]["n"] == 37
    assert_same_run(resume(make, path), ref)
    assert without_wall_time(read_log(path + ".metrics.jsonl")) == without_wall_time(read_log(ref.metrics_log))
    with pytest.raises(ValueError, match="hyperparameters differ"):
        make(path, sigma=0.1).restore(path)


def test_argument_errors():
    model = models.mlp([4, 5, 3], output="softmax")
    opt = AMC(model.params, ModelLoss(model, XA, YA))
    with pytest.raises(ValueError, match="steps"):
        Trainer(model, opt)
    with pytest.raises(ValueError, match="checkpoint_every_trials"):
        Trainer(model, opt, steps=5, checkpoint_every_trials=3)
    with pytest.raises(ValueError, match="eval_every"):
        Trainer(model, opt, steps=5, eval_every=0)
    with pytest.raises(ValueError, match="different model"):
        Trainer(models.mlp([4, 5, 3]), RSO(model, XA, YA, cycles=1, batch_size=4))
    with pytest.raises(TypeError):
        Trainer(model, object())
