"""Exact resume (minirso/train/trainer.py): after a real SIGINT or SIGTERM, a crash, a damaged checkpoint;
what a stopped run raises; what restore refuses.  tests/train/helpers.py says how a run is interrupted."""

import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from minirso import checkpoint, models

from .helpers import (
    CHILD,
    amc_trainer,
    as_lines,
    assert_same_run,
    child_env,
    read_log,
    resume,
    rso_trainer,
    stopped,
    without_wall_time,
)


@pytest.mark.parametrize("stop", [37, 20, 242, 300], ids=["mid-layer", "tensor-end", "cycle-end", "trial-ckpt"])
def test_rso_resume_after_sigint_equals_uninterrupted(tmp_path, rso_ref, stop):
    """Stopped inside a tensor, at a tensor's end, at a cycle's end (where an evaluation and a checkpoint are
    due too), and where a trial-level checkpoint is due: the resumed run is the uninterrupted one."""
    path = str(tmp_path / "run.h5")
    before = signal.getsignal(signal.SIGINT)
    t = rso_trainer(path, interrupt_at=stop)
    error = stopped(t)  # fit() saved, then raised KeyboardInterrupt: a script does not run on
    assert t.stop_signal == signal.SIGINT and t.optimizer.trial == stop
    where = {
        37: "trial 37 (cycle 1 of 2)",
        20: "trial 20 (cycle 1 of 2)",
        242: "trial 242 (end of cycle 1 of 2)",
        300: "trial 300 (cycle 2 of 2)",
    }[stop]
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


@pytest.mark.parametrize(
    "amc",
    [
        dict(sigma0=0.05, epsilon=0.1, n_s=5, signal_norm=True, seed=3),
        dict(sigma0=0.05, epsilon=0.2, n_s=4, batch_size=16, temperature=0.01, seed=4),
    ],
    ids=["batch-signal-norm", "minibatch-temperature"],
)
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
    assert [(x["kind"], x["step"]) for x in lines[:5]] == [
        ("steps", 7),
        ("steps", 14),
        ("steps", 21),
        ("eval", 25),
        ("steps", 28),
    ]
    assert lines == sorted(
        as_lines(ref.history["steps"], "steps") + as_lines(ref.history["eval"], "eval"),
        key=lambda x: (x["step"], x["kind"] == "eval"),
    )


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


def test_real_sigterm_in_a_subprocess(tmp_path):
    """A training script with no signal handling of its own gets SIGTERM mid-run: it stops there (the rest of
    the script does not run), exits quietly with 143, the checkpoint loads, and running the script again
    finishes with the params of an uninterrupted run."""
    env = child_env()
    ref = subprocess.Popen(CHILD + [str(tmp_path / "ref.h5"), str(tmp_path / "ref.npy")], env=env)
    run = subprocess.Popen(
        CHILD + [str(tmp_path / "run.h5"), str(tmp_path / "run.npy"), "--slow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    run = subprocess.Popen(
        CHILD + [str(tmp_path / "run.h5"), str(tmp_path / "out.npy"), "--slow", "--configs", "3"],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    assert read_log(log) == sorted(
        as_lines(h["layers"], "layers") + as_lines(h["eval"], "eval"), key=lambda x: (x["cycle"], x["kind"] == "eval")
    )


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
