"""The training loop (minirso.train): exact resume after real signals, fallback, evaluation, errors, output.

A run is interrupted the way a user interrupts it: a SIGINT raised from inside the optimizer (its
callback, or a wrapped step), so the trainer's real handler runs, and ``fit()`` must raise
KeyboardInterrupt after saving; then FRESH model, optimizer and trainer objects restore the checkpoint
and finish.  The result must equal an uninterrupted run bit for bit: params, BatchNorm buffers, optimizer
state, history and the metrics log (``wall_time`` fields excepted).
"""

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from functools import partialmethod

import numpy as np
import pytest
from tqdm import tqdm

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


def stopped(t, exc=KeyboardInterrupt):
    """``t.fit()`` must save and raise ``exc`` (what the signal raises without a handler); returns it."""
    with pytest.raises(exc) as info:
        t.fit()
    assert t.interrupted
    return info.value


def read_log(path):
    """The metrics log as a list of dicts; strict JSON (NaN or Infinity in the file is an error)."""
    def no_constants(name):
        raise ValueError(f"{path}: {name} is not JSON")
    with open(path) as f:
        return [json.loads(line, parse_constant=no_constants) for line in f]


def as_lines(rows, kind):
    """History rows as the metrics log must hold them: ``kind`` added, NaN as None."""
    return [{"kind": kind, **{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}}
            for r in rows]


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
def rso_ref(tmp_path_factory):
    """The uninterrupted run: no checkpoints (writing them must not change anything either), but a metrics log."""
    t = rso_trainer(metrics_log=tmp_path_factory.mktemp("ref") / "ref.jsonl")
    t.fit()
    return t


def without_wall_time(lines):
    return [{k: v for k, v in line.items() if k != "wall_time"} for line in lines]


def test_rso_history_layout(rso_ref):
    h, opt = rso_ref.history, rso_ref.optimizer
    assert [(r["cycle"], r["trials"]) for r in h["eval"]] == [(1, 242), (2, 484)]
    assert set(h["eval"][0]) == {"cycle", "trials", "wall_time", "test_accuracy", "test_loss", "train_accuracy",
                                 "train_loss", "acceptance", "sigma"}
    assert len(h["layers"]) == 2 * len(opt.units) and h["layers"][0]["name"] == "fc.weight"
    assert all(r["acceptance"] == (r["plus"] + r["minus"]) / r["trials"] for r in h["layers"])
    # cycles count from 1 in both tables: the "layers" rows of cycle 2 are the ones the eval row of cycle 2 sums
    assert [r["cycle"] for r in h["layers"]] == [1] * len(opt.units) + [2] * len(opt.units)
    assert [r["cycle"] for r in opt.records] == [0] * len(opt.units) + [1] * len(opt.units)  # the optimizer's own
    c2 = [r for r in h["layers"] if r["cycle"] == 2]
    assert h["eval"][1]["acceptance"] == sum(r["plus"] + r["minus"] for r in c2) / 242
    # the annealing factor of the authors' recipe, by hand: 0.1 + 0.9 * (2 - c) / 2 for c = 0, 1
    assert [r["sigma"] for r in h["eval"]] == [1.0, pytest.approx(0.55)]
    assert h["eval"][0]["wall_time"] < h["eval"][1]["wall_time"]
    # losses per sample: the optimizer's summed cross-entropy over a batch of 16, divided by 16
    assert "mean_loss" not in h["layers"][0]
    for row, rec in zip(h["layers"], opt.records):
        assert row["batch_loss"] == pytest.approx(rec["mean_loss"] / 16, rel=1e-12)
        assert 1.0 < row["batch_loss"] < 4.0  # about ln 10 = 2.3 for 10 classes, like test_loss; summed: ~37
    assert 1.0 < h["eval"][0]["test_loss"] < 4.0


def test_metrics_log_is_the_history_line_by_line_while_the_run_goes_on(tmp_path):
    """Read the log the way ``tail -f`` does, at trials 100 and 300 of a running fit() and after it: it holds
    every row made so far, in order (the 18 tensors of cycle 1, then cycle 1's evaluation, then cycle 2's)."""
    path = tmp_path / "runs" / "run.h5"
    t = rso_trainer(str(path))
    log = Path(str(path) + ".metrics.jsonl")  # the default: beside the checkpoint
    seen = {}

    def tail(event, info):
        if event == "trial" and t.optimizer.trial in (100, 300):
            seen[t.optimizer.trial] = (read_log(log), len(t.history["layers"]), len(t.history["eval"]))

    t.optimizer.callback = tail
    t.fit()
    units = len(t.optimizer.units)
    for trial, (lines, n_layers, n_eval) in seen.items():
        assert n_layers > 0 and lines == as_lines(t.history["layers"][:n_layers], "layers")[: units] \
            + as_lines(t.history["eval"][:n_eval], "eval") + as_lines(t.history["layers"][units:n_layers], "layers")
    assert seen[100][2] == 0 and seen[300][2] == 1  # the evaluation after cycle 1 came between
    lines = read_log(log)
    assert [(x["kind"], x["cycle"]) for x in lines] == \
        [("layers", 1)] * units + [("eval", 1)] + [("layers", 2)] * units + [("eval", 2)]
    assert lines == as_lines(t.history["layers"][:units], "layers") + as_lines(t.history["eval"][:1], "eval") \
        + as_lines(t.history["layers"][units:], "layers") + as_lines(t.history["eval"][1:], "eval")


@pytest.mark.parametrize("stop", [37, 20, 242, 300], ids=["mid-layer", "tensor-end", "cycle-end", "trial-ckpt"])
def test_rso_resume_after_sigint_equals_uninterrupted(tmp_path, rso_ref, stop):
    """Stopped inside a tensor, at a tensor's end, at a cycle's end (where an evaluation and a checkpoint are
    due too), and where a trial-level checkpoint is due: the resumed run is the uninterrupted one."""
    path = str(tmp_path / "run.h5")
    before = signal.getsignal(signal.SIGINT)
    t = rso_trainer(path, interrupt_at=stop)
    error = stopped(t)  # fit() saved, then raised KeyboardInterrupt: a script does not run on
    assert t.stop_signal == signal.SIGINT and t.optimizer.trial == stop
    where = {37: "trial 37 (cycle 1 of 2)", 20: "trial 20 (cycle 1 of 2)", 242: "trial 242 (end of cycle 1 of 2)",
             300: "trial 300 (cycle 2 of 2)"}[stop]
    assert str(error) == f"stopped by SIGINT at {where}; checkpoint saved to {path}"
    assert checkpoint.load(path).meta["trainer"]["position"]["trials"] == stop
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are fit()'s only
    resumed = resume(lambda p: rso_trainer(p, model_seed=99), path)
    assert_same_run(resumed, rso_ref)
    # the metrics log of the two fit() calls is the uninterrupted run's, line for line
    assert without_wall_time(read_log(path + ".metrics.jsonl")) == without_wall_time(read_log(rso_ref.metrics_log))
    # a finished run resumed again does nothing more
    again = resume(lambda p: rso_trainer(p, model_seed=99), path)
    assert_same_run(again, rso_ref)


def test_rso_crash_resumes_from_the_last_trial_checkpoint(tmp_path, rso_ref):
    path = str(tmp_path / "run.h5")
    with pytest.raises(RuntimeError, match="power cut"):
        rso_trainer(path, crash_at=139).fit()  # no signal: whatever was saved last must do
    crashed = read_log(path + ".metrics.jsonl")
    t = rso_trainer(path)
    assert t.restore(path) and t.optimizer.trial == 100  # checkpoint_every_trials=100
    assert len(crashed) == len(t.history["layers"]) + 2  # conv4.weight and bn4.beta ended after the checkpoint
    t.fit()
    assert_same_run(t, rso_ref)
    # ... which the resumed run made again: they are in the log once, as in the uninterrupted run's
    assert without_wall_time(read_log(path + ".metrics.jsonl")) == without_wall_time(read_log(rso_ref.metrics_log))


def test_fallback_to_previous_checkpoint_when_newest_is_damaged(tmp_path, rso_ref):
    path = str(tmp_path / "run.h5")
    stopped(rso_trainer(path, interrupt_at=130))  # newest: trial 130 (the signal); previous: trial 100
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
        assert str(stopped(t)) == f"stopped by SIGINT at step {stop} of 150; checkpoint saved to {path}"
        assert t.optimizer.step_count == stop
    assert_same_run(resume(lambda p: amc_trainer(p, amc=amc), path), ref)
    assert without_wall_time(read_log(path + ".metrics.jsonl")) == without_wall_time(read_log(ref.metrics_log))
    lines = read_log(ref.metrics_log)  # at steps 25 and 175 ... : the "steps" row (every 7) before the evaluation
    assert [(x["kind"], x["step"]) for x in lines[:5]] == [("steps", 7), ("steps", 14), ("steps", 21),
                                                           ("eval", 25), ("steps", 28)]
    assert lines == sorted(as_lines(ref.history["steps"], "steps") + as_lines(ref.history["eval"], "eval"),
                           key=lambda x: (x["step"], x["kind"] == "eval"))


CHILD = [sys.executable, str(REPO / "tests" / "_train_child.py")]


def child_env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def test_real_sigterm_in_a_subprocess(tmp_path):
    """A training script with no signal handling of its own gets SIGTERM mid-run: it stops there (the rest of
    the script does not run), exits quietly with 143, the checkpoint loads, and running the script again
    finishes with the params of an uninterrupted run."""
    env = child_env()
    ref = subprocess.Popen(CHILD + [str(tmp_path / "ref.h5"), str(tmp_path / "ref.npy")], env=env)
    run = subprocess.Popen(CHILD + [str(tmp_path / "run.h5"), str(tmp_path / "run.npy"), "--slow"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().strip() == "ready"
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 128 + signal.SIGTERM and out == "", (out, err)  # no "all done": it stopped
        assert err == ""  # a quiet exit: SystemExit(143) prints no traceback, and progress=False prints nothing
        ck = checkpoint.load(str(tmp_path / "run.h5"))
        assert ck.meta["trainer"]["kind"] == "rso" and 30 <= ck.meta["trainer"]["position"]["trials"] < 484
        assert not (tmp_path / "run.npy").exists()
        done = subprocess.run(CHILD + [str(tmp_path / "run.h5"), str(tmp_path / "run.npy")], env=env, timeout=120)
        assert done.returncode == 0 and ref.wait(timeout=120) == 0
    finally:
        for p in (ref, run):
            if p.poll() is None:
                p.kill()
    np.testing.assert_array_equal(np.load(tmp_path / "run.npy"), np.load(tmp_path / "ref.npy"))


def test_ctrl_c_stops_a_script_that_loops_over_configurations(tmp_path):
    """The issue's user: a script runs three configurations one after another; Ctrl-C (SIGINT) during the
    first must end the script, like Ctrl-C anywhere else in Python, after the checkpoint is saved: the second
    configuration never starts.  While it runs, the metrics log beside the checkpoint already holds the
    finished tensors (what ``tail -f`` shows)."""
    run = subprocess.Popen(CHILD + [str(tmp_path / "run.h5"), str(tmp_path / "out.npy"), "--slow", "--configs", "3"],
                           env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run-0.h5.metrics.jsonl"
    try:
        assert [run.stdout.readline().strip() for _ in range(2)] == ["config 0", "ready"]  # at trial 30
        first = read_log(log)[0]  # fc.weight (20 trials) has finished: its line is on disk already
        assert (first["kind"], first["cycle"], first["name"], first["trials"]) == ("layers", 1, "fc.weight", 20)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    # Python's end for an uncaught KeyboardInterrupt: killed by SIGINT, which a shell shows as exit status 130
    assert run.returncode == -signal.SIGINT, (run.returncode, out, err)
    assert out == "", out  # neither "config 1" nor "all done"
    last = err.rstrip().splitlines()[-1]
    ck = checkpoint.load(str(tmp_path / "run-0.h5"))
    trials = ck.meta["trainer"]["position"]["trials"]
    assert 30 <= trials < 484 and last.startswith(f"KeyboardInterrupt: stopped by SIGINT at trial {trials} (cycle ")
    assert last.endswith(f"checkpoint saved to {tmp_path / 'run-0.h5'}")
    assert not (tmp_path / "run-1.h5").exists() and not (tmp_path / "out-0.npy").exists()
    h = ck.history  # the log holds exactly the checkpoint's history, each evaluation after its cycle's tensors
    assert read_log(log) == sorted(as_lines(h["layers"], "layers") + as_lines(h["eval"], "eval"),
                                   key=lambda x: (x["cycle"], x["kind"] == "eval"))


def test_second_sigint_raises_keyboard_interrupt():
    t = rso_trainer()

    def impatient(event, info):  # Ctrl-C twice within one trial: the second does not wait for the trial
        if t.optimizer.trial == 10:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    t.optimizer.callback = impatient
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        t.fit()
    assert signal.getsignal(signal.SIGINT) is before and t.stop_signal == signal.SIGINT
    assert not t.interrupted and str(info.value) == ""  # raised at once, mid-trial: no checkpoint was taken


def test_evaluation_matches_a_direct_computation_and_changes_nothing(rso_ref):
    t = rso_trainer(interrupt_at=60)
    stopped(t)
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
    # the summed cross-entropy (RSO's training loss) is reported per sample too: the same numbers
    summed = Trainer(model, opt, eval_data=(XE, YE), train_eval_data=(X[:32], Y[:32]), bn_data=X[:32], eval_batch=16,
                     loss="cross_entropy").evaluate()
    assert summed["test_loss"] == pytest.approx(result["test_loss"], rel=1e-6)
    assert summed["train_loss"] == pytest.approx(result["train_loss"], rel=1e-6)
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
    stopped(rso_trainer(path, interrupt_at=30))
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


def bar_values(err, key):
    return [float(v) for v in re.findall(rf"\b{key}=([-+.\deE]+)", err)]


def test_progress_bars_print_and_progress_false_is_silent(capsys, monkeypatch):
    monkeypatch.setattr(tqdm, "__init__", partialmethod(tqdm.__init__, mininterval=0))  # every update is drawn
    amc_trainer(steps=60, progress=True).fit()
    err = capsys.readouterr().err
    assert "aMC" in err and "60/60" in err and "sigma=" in err and "accept=" in err and "batch_loss=" in err
    assert not re.search(r"\bacc=|\bloss=", err)  # the acceptance rate is never "acc", no loss without its kind
    stopped(rso_trainer(interrupt_at=45, progress=True))
    err = capsys.readouterr().err
    assert "RSO" in err and "conv6.weight" in err and "stopped by SIGINT at trial 45 (cycle 1 of 2)" in err
    assert not re.search(r"\bacc=|\bloss=", err)
    accept, loss = bar_values(err, "accept"), bar_values(err, "batch_loss")
    assert accept and all(0 <= a <= 1 for a in accept)
    assert loss and all(1.0 < v < 4.0 for v in loss)  # per sample, like test_loss (about ln 10); summed: ~37
    stopped(rso_trainer(interrupt_at=45))
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
    stopped(t)
    assert t.optimizer.at_batch_start and t.optimizer.trial == -(-stop // 4) * 4
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


def test_amc_batch_loss_is_per_sample_for_a_summed_loss():
    """aMC on the summed cross-entropy: the "steps" rows and the bar report U divided by the rows it was
    computed on (the minibatch, or all 64 rows), which is the mean cross-entropy of those rows."""
    for batch, rows in ((16, 16), (None, 64)):
        model = models.mlp([4, 5, 3], seed=2)
        opt = AMC(model.params, ModelLoss(model, XA, YA, "cross_entropy"), sigma0=0.05, batch_size=batch, seed=3)
        t = Trainer(model, opt, steps=14, log_every=7, progress=False)
        summed = {}
        step = opt.step
        opt.step = lambda: summed.setdefault(opt.step_count + 1, step()["loss"])
        t.fit()
        assert [r["step"] for r in t.history["steps"]] == [7, 14]
        for r in t.history["steps"]:
            assert r["batch_loss"] == pytest.approx(summed[r["step"]] / rows, rel=1e-12)
            assert 0.5 < r["batch_loss"] < 2.0  # about ln 3 = 1.1 for 3 classes


def test_metrics_log_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t = amc_trainer(steps=14, log_every=7, eval_every=7)  # no checkpoint: no log
    t.fit()
    assert t.metrics_log is None and list(tmp_path.iterdir()) == []
    t = amc_trainer("run.h5", steps=14, log_every=7, eval_every=7, metrics_log=False)
    t.fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]
    t = amc_trainer(steps=14, log_every=7, eval_every=7, metrics_log=tmp_path / "logs" / "m.jsonl")  # a new folder
    t.fit()
    assert [(x["kind"], x["step"]) for x in read_log(tmp_path / "logs" / "m.jsonl")] == \
        [("steps", 7), ("eval", 7), ("steps", 14), ("eval", 14)]
    (tmp_path / "file").write_text("")
    t = amc_trainer(steps=14, metrics_log=tmp_path / "file" / "m.jsonl")
    with pytest.raises(OSError, match="cannot write the metrics log .*file/m.jsonl.*metrics_log=False"):
        t.fit()
    assert t.optimizer.step_count == 0


def test_a_checkpoint_path_that_cannot_be_written_fails_before_training(tmp_path):
    """``checkpoint="results.txt/run.h5"`` where results.txt is a file: CheckpointError naming the folder
    before the first trial, not an OSError at the first save 100 trials (a cycle, in a real run) later."""
    (tmp_path / "results.txt").write_text("")
    t = rso_trainer(str(tmp_path / "results.txt" / "run.h5"))
    with pytest.raises(checkpoint.CheckpointError, match="results.txt"):
        t.fit()
    assert t.optimizer.trial == 0


def test_inspect_counts_cycles_as_the_trainer_does(tmp_path):
    """Stopped at trial 300, in the second cycle: ``minirso inspect`` (as a user runs it) shows the layers rows
    of cycle 2, the evaluation after cycle 1, and the optimizer's counter marked as cycles completed."""
    path = str(tmp_path / "run.h5")
    assert "(cycle 2 of 2)" in str(stopped(rso_trainer(path, interrupt_at=300)))
    done = subprocess.run([sys.executable, "-m", "minirso", "inspect", path], capture_output=True, text=True,
                          env=child_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^\s+cycle\s+1  \(cycles completed\)$", out, re.M), out
    assert re.search(r"^\s+eval\s+table, 1 rows, last cycle 1$", out, re.M), out
    assert re.search(r"^\s+layers\s+table, \d+ rows, last cycle 2$", out, re.M), out
