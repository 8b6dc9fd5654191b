"""The training loop (minirso.train): exact resume after real signals, fallback, evaluation, errors, output.

A run is interrupted the way a user interrupts it: a SIGINT raised from inside the optimizer (its
callback, or a wrapped step), so the trainer's real handler runs; then FRESH model, optimizer and
trainer objects restore the checkpoint and finish.  The result must equal an uninterrupted run bit
for bit: params, BatchNorm buffers, optimizer state and history (``wall_time`` fields excepted).
"""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minirso
from minirso import checkpoint, models
from minirso.losses import cross_entropy
from minirso.optim import AMC, RSO, ModelLoss
from minirso.train import Trainer

REPO = Path(__file__).resolve().parents[1]


def data(n, shape, classes, seed):
    r = np.random.default_rng(seed)
    x = r.normal(size=(n,) + shape).astype(np.float32)
    x[:, : shape[0] // 2 + 1] += 0.7  # lopsided: asymmetric inputs
    return minirso.asarray(x), minirso.asarray(r.integers(0, classes, size=n))


X, Y = data(64, (1, 8, 8), 10, seed=3)  # RSO training pool
XE, YE = data(40, (1, 8, 8), 10, seed=4)  # held-out
XA, YA = data(64, (4,), 3, seed=5)  # aMC
XAE, YAE = data(30, (4,), 3, seed=6)


def rso_trainer(path=None, *, interrupt_at=None, model_seed=5, crash_at=None, rso=None, model=None, **kw):
    """The tiny RSO run: rso_mnist at width 2 (242 trials per cycle), 2 cycles, batch 16."""
    model = model or models.rso_mnist(seed=model_seed, channels=2)
    box = []

    def callback(event, info):
        if event == "trial" and box[0].trial == interrupt_at:
            signal.raise_signal(signal.SIGINT)  # the trainer's handler runs, as for a Ctrl-C
        if event == "trial" and box[0].trial == crash_at:
            raise RuntimeError("power cut")

    box.append(RSO(model, X, Y, **{**dict(cycles=2, batch_size=16, seed=11), **(rso or {})}, callback=callback))
    kw = {**dict(eval_data=(XE, YE), train_eval_data=(X[:32], Y[:32]), bn_data=X[:32], checkpoint=path,
                 checkpoint_every_trials=100, eval_batch=16, progress=False), **kw}
    return Trainer(model, box[0], **kw)


def amc_trainer(path=None, *, interrupt_at=(), amc=None, **kw):
    """The tiny aMC run: mlp 4-5-3 ending in Softmax, 150 steps."""
    model = models.mlp([4, 5, 3], output="softmax", seed=2)
    opt = AMC(model.params, ModelLoss(model, XA, YA), **(amc or dict(sigma0=0.05, epsilon=0.1, n_s=5, seed=3)))
    step = opt.step

    def step_then_maybe_signal():
        info = step()
        if opt.step_count in interrupt_at:
            signal.raise_signal(signal.SIGINT)
        return info

    opt.step = step_then_maybe_signal
    kw = {**dict(steps=150, eval_data=(XAE, YAE), train_eval_data=(XA[:20], YA[:20]), eval_every=25,
                 checkpoint=path, checkpoint_every=40, log_every=7, progress=False), **kw}
    return Trainer(model, opt, **kw)


def same(a, b, where="run"):
    """Assert ``a == b`` recursively: NaN equals NaN, arrays bit for bit, ``wall_time`` fields skipped."""
    if isinstance(a, dict):
        keys = {k for k in a if "wall_time" not in k}
        assert keys == {k for k in b if "wall_time" not in k}, where
        for k in keys:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            same(u, v, f"{where}[{i}]")
    elif hasattr(a, "shape"):
        a, b = minirso.to_numpy(a), minirso.to_numpy(b)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, where


def assert_same_run(t, ref):
    np.testing.assert_array_equal(minirso.to_numpy(t.model.params), minirso.to_numpy(ref.model.params))
    same(t.model.buffers(), ref.model.buffers(), "buffers")
    same(t.optimizer.state_dict(), ref.optimizer.state_dict(), "optimizer")
    same(t.history, ref.history, "history")


def resume(make, path):
    """Fresh objects (the RSO model with another init seed: restore must overwrite it), restore, finish."""
    t = make(path)
    assert t.restore(path)
    t.fit()
    assert not t.interrupted
    return t


@pytest.fixture(scope="module")
def rso_ref():
    t = rso_trainer()  # no checkpoints: writing them must not change anything either
    t.fit()
    return t


def test_rso_history_layout(rso_ref):
    h, opt = rso_ref.history, rso_ref.optimizer
    assert [(r["cycle"], r["trials"]) for r in h["eval"]] == [(1, 242), (2, 484)]
    assert set(h["eval"][0]) == {"cycle", "trials", "wall_time", "test_accuracy", "test_loss", "train_accuracy",
                                 "train_loss", "acceptance", "sigma"}
    assert len(h["layers"]) == 2 * len(opt.units) and h["layers"][0]["name"] == "fc.weight"
    assert all(r["acceptance"] == (r["plus"] + r["minus"]) / r["trials"] for r in h["layers"])
    c1 = [r for r in h["layers"] if r["cycle"] == 1]
    assert h["eval"][1]["acceptance"] == sum(r["plus"] + r["minus"] for r in c1) / 242
    assert [r["sigma"] for r in h["eval"]] == [1.0, pytest.approx(0.1)]  # the annealing factor
    assert h["eval"][0]["wall_time"] < h["eval"][1]["wall_time"]


@pytest.mark.parametrize("stop", [37, 20, 242, 300], ids=["mid-layer", "tensor-end", "cycle-end", "trial-ckpt"])
def test_rso_resume_after_sigint_equals_uninterrupted(tmp_path, rso_ref, stop):
    """Stopped inside a tensor, at a tensor's end, at a cycle's end (where an evaluation and a checkpoint are
    due too), and where a trial-level checkpoint is due: the resumed run is the uninterrupted one."""
    path = str(tmp_path / "run.h5")
    before = signal.getsignal(signal.SIGINT)
    t = rso_trainer(path, interrupt_at=stop)
    t.fit()
    assert t.interrupted and t.stop_signal == signal.SIGINT and t.optimizer.trial == stop
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are fit()'s only
    resumed = resume(lambda p: rso_trainer(p, model_seed=99), path)
    assert_same_run(resumed, rso_ref)
    # a finished run resumed again does nothing more
    again = resume(lambda p: rso_trainer(p, model_seed=99), path)
    assert_same_run(again, rso_ref)


def test_rso_crash_resumes_from_the_last_trial_checkpoint(tmp_path, rso_ref):
    path = str(tmp_path / "run.h5")
    with pytest.raises(RuntimeError, match="power cut"):
        rso_trainer(path, crash_at=130).fit()  # no signal: whatever was saved last must do
    t = rso_trainer(path)
    assert t.restore(path) and t.optimizer.trial == 100  # checkpoint_every_trials=100
    t.fit()
    assert_same_run(t, rso_ref)


def test_fallback_to_previous_checkpoint_when_newest_is_damaged(tmp_path, rso_ref):
    path = str(tmp_path / "run.h5")
    rso_trainer(path, interrupt_at=130).fit()  # newest: trial 130 (the signal); previous: trial 100
    raw = bytearray(Path(path).read_bytes())
    for i in range(len(raw) // 4, 3 * len(raw) // 4):
        raw[i] ^= 0xFF
    Path(path).write_bytes(bytes(raw))
    t = rso_trainer(path)
    with pytest.warns(Warning):
        assert t.restore(path)
    assert t.optimizer.trial == 100
    with pytest.warns(checkpoint.CheckpointWarning, match="not kept"):  # the damaged file does not become .prev
        t.fit()
    assert_same_run(t, rso_ref)  # the run just repeated 30 trials


@pytest.mark.parametrize("amc", [dict(sigma0=0.05, epsilon=0.1, n_s=5, signal_norm=True, seed=3),
                                 dict(sigma0=0.05, epsilon=0.2, n_s=4, batch_size=16, temperature=0.01, seed=4)],
                         ids=["batch-signal-norm", "minibatch-temperature"])
def test_amc_resume_after_sigint_equals_uninterrupted(tmp_path, amc):
    ref = amc_trainer(str(tmp_path / "ref.h5"), amc=amc)
    ref.fit()
    assert [r["step"] for r in ref.history["eval"]] == [25, 50, 75, 100, 125, 150]
    assert [r["step"] for r in ref.history["steps"]] == list(range(7, 151, 7))
    path = str(tmp_path / "run.h5")
    for stop in (13, 40, 50, 123, 150):  # 40: a checkpoint is due; 50: an evaluation; 150: the last step
        t = amc_trainer(path, interrupt_at=(stop,), amc=amc)
        if stop > 13:
            assert t.restore(path)
        t.fit()
        assert t.interrupted and t.optimizer.step_count == stop
    assert_same_run(resume(lambda p: amc_trainer(p, amc=amc), path), ref)


def test_real_sigterm_in_a_subprocess(tmp_path):
    """A training script gets SIGTERM mid-run: it exits cleanly with 143, the checkpoint loads, and running
    the script again finishes with the params of an uninterrupted run."""
    child = [sys.executable, str(REPO / "tests" / "_train_child.py")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    ref = subprocess.Popen(child + [str(tmp_path / "ref.h5"), str(tmp_path / "ref.npy")], env=env)
    run = subprocess.Popen(child + [str(tmp_path / "run.h5"), str(tmp_path / "run.npy"), "--slow"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "ready"
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 128 + signal.SIGTERM and out.startswith("interrupted at trial"), (out, err)
        assert err == ""  # a clean exit: no traceback, and progress=False prints nothing
        ck = checkpoint.load(str(tmp_path / "run.h5"))
        assert ck.meta["trainer"]["kind"] == "rso" and 30 <= ck.meta["trainer"]["position"]["trials"] < 484
        assert not (tmp_path / "run.npy").exists()
        done = subprocess.run(child + [str(tmp_path / "run.h5"), str(tmp_path / "run.npy")], env=env, timeout=120)
        assert done.returncode == 0 and ref.wait(timeout=120) == 0
    finally:
        for p in (ref, run):
            if p.poll() is None:
                p.kill()
    np.testing.assert_array_equal(np.load(tmp_path / "run.npy"), np.load(tmp_path / "ref.npy"))


def test_second_sigint_raises_keyboard_interrupt():
    t = rso_trainer()

    def impatient(event, info):  # Ctrl-C twice within one trial: the second does not wait for the trial
        if t.optimizer.trial == 10:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    t.optimizer.callback = impatient
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert signal.getsignal(signal.SIGINT) is before and t.stop_signal == signal.SIGINT


def test_evaluation_matches_a_direct_computation_and_changes_nothing(rso_ref):
    t = rso_trainer(interrupt_at=60)
    t.fit()
    model, opt = t.model, t.optimizer
    params, state = minirso.to_numpy(model.params).copy(), opt.state_dict()
    result = t.evaluate()
    assert model.training
    np.testing.assert_array_equal(minirso.to_numpy(model.params), params)
    same(opt.state_dict(), state, "optimizer")
    model.reestimate_batchnorm(X[:32])  # the direct computation: one BN pass, eval mode, whole set at once
    model.eval()
    logits, train_logits = model(XE), model(X[:32])
    model.train()
    yn = minirso.to_numpy(YE)
    assert result["test_accuracy"] == np.mean(minirso.to_numpy(logits).argmax(axis=1) == yn)
    assert result["test_loss"] == pytest.approx(float(cross_entropy(logits, YE, dtype=np.float64)), rel=1e-6)
    assert result["train_loss"] == pytest.approx(float(cross_entropy(train_logits, Y[:32], dtype=np.float64)), rel=1e-6)
    # and evaluating every cycle has not changed the trajectory: the optimizer alone gets the same params
    model = models.rso_mnist(seed=5, channels=2)
    RSO(model, X, Y, cycles=2, batch_size=16, seed=11).run()
    np.testing.assert_array_equal(minirso.to_numpy(model.params), minirso.to_numpy(rso_ref.model.params))


def test_softmax_net_accuracy_is_argmax_and_loss_is_minus_log_p():
    t = amc_trainer(steps=30)
    t.fit()
    p = minirso.to_numpy(t.model(XAE)).astype(np.float64)
    yn = minirso.to_numpy(YAE)
    row = t.history["eval"][-1]
    assert row["step"] == 30 and len(t.history["eval"]) == 2  # step 25, and the final evaluation
    assert row["test_accuracy"] == np.mean(p.argmax(axis=1) == yn)
    assert row["test_loss"] == pytest.approx(-np.mean(np.log(p[np.arange(len(yn)), yn])), rel=1e-5)
    mse = Trainer(t.model, t.optimizer, steps=30, eval_data=(XAE, YAE), loss="mse").evaluate()["test_loss"]
    assert mse == pytest.approx(np.mean((p - np.eye(3)[yn]) ** 2), rel=1e-5)  # the aMC paper's loss


def test_restore_rejects_another_architecture_or_other_hyperparameters(tmp_path):
    path = str(tmp_path / "run.h5")
    rso_trainer(path, interrupt_at=30).fit()
    wide = models.rso_mnist(seed=5, channels=3)
    with pytest.raises(ValueError, match="conv1"):
        rso_trainer(path, model=wide).restore(path)
    other = rso_trainer(path, rso=dict(cycles=2, batch_size=8, seed=11))
    with pytest.raises(ValueError, match="batch_size"):
        other.restore(path)
    amc = amc_trainer(path)
    with pytest.raises(ValueError, match="rso"):
        amc.restore(path)
    fresh = rso_trainer(path)
    assert fresh.restore(str(tmp_path / "missing.h5")) is False and fresh.optimizer.trial == 0


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


def test_progress_bars_print_and_progress_false_is_silent(capsys):
    amc_trainer(steps=60, progress=True).fit()
    err = capsys.readouterr().err
    assert "aMC" in err and "60/60" in err and "sigma=" in err and "acc=" in err
    rso_trainer(interrupt_at=45, progress=True).fit()
    err = capsys.readouterr().err
    assert "RSO" in err and "conv6.weight" in err and "stopped by SIGINT at cycle 0, trials 45" in err
    rso_trainer(interrupt_at=45).fit()
    amc_trainer(steps=60).fit()
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("stop", [37, 101])
def test_incremental_rso_with_shared_batches_resumes_exactly(tmp_path, stop):
    """trials_per_batch=4 with the incremental evaluator: a signal (or a trial checkpoint) inside a batch
    is deferred to the next batch start, and the resumed run equals the uninterrupted one bit for bit."""
    rso = dict(trials_per_batch=4, evaluator="incremental")
    ref = rso_trainer(rso=rso)
    ref.fit()
    path = str(tmp_path / "run.h5")
    t = rso_trainer(path, interrupt_at=stop, rso=rso)
    t.fit()
    assert t.interrupted and t.optimizer.at_batch_start and t.optimizer.trial == -(-stop // 4) * 4
    assert t.optimizer.evaluator.stats["reused"] > 0
    assert_same_run(resume(lambda p: rso_trainer(p, model_seed=99, rso=rso), path), ref)


def test_write_metrics_creates_folders_converts_numpy_and_leaves_no_temp(tmp_path):
    import json

    from minirso.train import write_metrics

    path = tmp_path / "new" / "dir" / "m.json"
    out = write_metrics(path, {"acc": np.float32(0.75), "n": np.int64(3), "name": "x", "list": [1, 2.5]})
    assert out == str(path)
    assert json.loads(path.read_text()) == {"acc": 0.75, "n": 3, "name": "x", "list": [1, 2.5]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json"]


def test_empty_checkpoint_path_means_no_checkpoints(tmp_path, monkeypatch):
    """``--checkpoint ''`` on an example's command line: train, save nothing, no crash."""
    monkeypatch.chdir(tmp_path)
    x = minirso.asarray(np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32))
    y = minirso.asarray((np.arange(40) % 2).astype(np.int64))
    net = models.mlp([3, 4, 2], seed=1)
    opt = AMC(net.params, ModelLoss(net, x, y, "cross_entropy_mean"), sigma0=1e-2, seed=0)
    trainer = Trainer(net, opt, steps=5, eval_data=(x, y), checkpoint="", progress=False)
    trainer.fit()
    assert trainer.checkpoint_path is None and opt.step_count == 5 and list(tmp_path.iterdir()) == []
