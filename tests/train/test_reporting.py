"""What the Trainer reports (minirso/train/): history rows, the metrics log, evaluation, bars, output files."""

import re
import subprocess
import sys
from functools import partialmethod
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

import minirso
from minirso import checkpoint, models
from minirso.losses import cross_entropy
from minirso.optim import AMC, RSO, ModelLoss
from minirso.train import Trainer

from .helpers import (
    XA,
    XAE,
    XE,
    YA,
    YAE,
    YE,
    X,
    Y,
    amc_trainer,
    as_lines,
    bar_values,
    child_env,
    read_log,
    rso_trainer,
    same,
    stopped,
)


def test_rso_history_layout(rso_ref):
    h, opt = rso_ref.history, rso_ref.optimizer
    assert [(r["cycle"], r["trials"]) for r in h["eval"]] == [(1, 242), (2, 484)]
    assert set(h["eval"][0]) == {
        "cycle",
        "trials",
        "wall_time",
        "test_accuracy",
        "test_loss",
        "train_accuracy",
        "train_loss",
        "acceptance",
        "sigma",
    }
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
    for lines, n_layers, n_eval in seen.values():
        assert n_layers > 0 and lines == as_lines(t.history["layers"][:n_layers], "layers")[:units] + as_lines(
            t.history["eval"][:n_eval], "eval"
        ) + as_lines(t.history["layers"][units:n_layers], "layers")
    assert seen[100][2] == 0 and seen[300][2] == 1  # the evaluation after cycle 1 came between
    lines = read_log(log)
    assert [(x["kind"], x["cycle"]) for x in lines] == [("layers", 1)] * units + [("eval", 1)] + [
        ("layers", 2)
    ] * units + [("eval", 2)]
    assert lines == as_lines(t.history["layers"][:units], "layers") + as_lines(
        t.history["eval"][:1], "eval"
    ) + as_lines(t.history["layers"][units:], "layers") + as_lines(t.history["eval"][1:], "eval")


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
    summed = Trainer(
        model,
        opt,
        eval_data=(XE, YE),
        train_eval_data=(X[:32], Y[:32]),
        bn_data=X[:32],
        eval_batch=16,
        loss="cross_entropy",
    ).evaluate()
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
    assert [(x["kind"], x["step"]) for x in read_log(tmp_path / "logs" / "m.jsonl")] == [
        ("steps", 7),
        ("eval", 7),
        ("steps", 14),
        ("eval", 14),
    ]
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
    done = subprocess.run(
        [sys.executable, "-m", "minirso", "inspect", path], capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^\s+cycle\s+1  \(cycles completed\)$", out, re.M), out
    assert re.search(r"^\s+eval\s+table, 1 rows, last cycle 1$", out, re.M), out
    assert re.search(r"^\s+layers\s+table, \d+ rows, last cycle 2$", out, re.M), out
