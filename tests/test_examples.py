"""The examples run end to end: each in ``--smoke`` mode, as a user would start it.

Every example is run in a subprocess with the same interpreter (``sys.executable``)
and ``--smoke --json PATH``; the test asserts exit status 0, then reads the JSON
file and checks that the required keys are there and the values are sane
(finite, accuracies in [0, 1], the step / cycle counts the smoke mode promises).
The examples built on :class:`minirso.train.Trainer` also get ``--checkpoint``,
and ``python -m minirso inspect`` must describe that checkpoint: its layer names
and total parameter count.  The backend is whatever the environment selects
(``MINIRSO_BACKEND`` is passed through), so the GPU CI runs the same tests on CuPy.

Ctrl-C and SIGTERM are sent for real to a running example (once its metrics log shows that training
has started): it must stop after saving, write its ``--json`` with ``"interrupted": true``, print the
command that continues, and exit 130 / 143; that command, run through a shell, finishes the run.

Smoke runs take seconds each on 2 CPU cores; the whole file well under 90 s.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HAVE_CLI = (ROOT / "minirso" / "cli.py").is_file()
TIMEOUT_S = 120  # per subprocess: a smoke run takes seconds; this only stops a hang


def run(args, timeout=TIMEOUT_S):
    """``python args...`` from the repository root; the completed process (stdout and stderr as text)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_example(name, tmp_path, *extra):
    """Run ``examples/<name>.py --smoke --json <tmp>/<name>.json *extra``; return the JSON (asserts exit 0)."""
    out = tmp_path / "out" / f"{name}.json"  # a directory that does not exist yet: the example makes it
    proc = run([EXAMPLES / f"{name}.py", "--smoke", "--json", out, *extra])
    assert proc.returncode == 0, (
        f"{name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    assert out.is_file(), f"{name} wrote no JSON to {out}\n{proc.stdout}"
    result = json.loads(out.read_text())
    result["_stdout"] = proc.stdout
    return result


def check_common(result, example):
    """Keys every example writes: example, backend, wall_time (finite, positive), smoke."""
    assert result["example"] == example
    assert result["backend"] in ("numpy", "cupy")
    assert math.isfinite(result["wall_time"]) and result["wall_time"] > 0
    assert result["smoke"] is True


def finite(result, *keys):
    for k in keys:
        assert isinstance(result[k], (int, float)) and math.isfinite(result[k]), f"{k} = {result[k]!r}"


def check_accuracy(result, key="test_accuracy"):
    assert 0.0 <= result[key] <= 1.0, f"{key} = {result[key]!r}"


def check_inspect(checkpoint, layer_names, total_params):
    """``python -m minirso inspect`` describes the checkpoint: every layer name and the parameter count."""
    if not HAVE_CLI:
        pytest.skip("minirso/cli.py (the `minirso inspect` command) does not exist yet")
    assert checkpoint.is_file(), f"no checkpoint written at {checkpoint}"
    proc = run(["-m", "minirso", "inspect", checkpoint])
    assert proc.returncode == 0, f"inspect exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    text = proc.stdout
    assert f"model: {total_params} parameters" in text, text
    for name in layer_names:
        assert f" {name} " in text, f"layer {name!r} missing from:\n{text}"
    assert "optimizer:" in text


# ---- aMC, no Trainer: the optimizer on a flat array or a small net ---------------------------------


def test_amc_rosenbrock(tmp_path):
    r = run_example("amc_rosenbrock", tmp_path)
    check_common(r, "amc_rosenbrock")
    finite(r, "final_loss")
    assert r["steps"] == 500
    assert r["final_loss"] >= 0
    assert [run["epsilon"] for run in r["runs"]] == [0.0, 0.01, 0.1]
    # Fig. 3 from (-2, 2), f = 409 there: every run goes downhill (aMC never accepts an increase)
    assert all(0 <= run["final_loss"] < 409 for run in r["runs"])
    assert r["final_loss"] == min(run["final_loss"] for run in r["runs"])


def test_amc_sine(tmp_path):
    r = run_example("amc_sine", tmp_path)
    check_common(r, "amc_sine")
    finite(r, "final_loss", "final_loss_metropolis", "acceptance", "acceptance_metropolis")
    assert r["steps"] == 300
    # U of the N(0, 1e-4) start is about 0.5 (the mean of sin^2); both chains only go down
    assert 0 <= r["final_loss"] < 0.51 and 0 <= r["final_loss_metropolis"] < 0.51
    assert 0 <= r["acceptance"] <= 1 and 0 <= r["acceptance_metropolis"] <= 1


def test_amc_deep_step(tmp_path):
    r = run_example("amc_deep_step", tmp_path, "--compare")
    check_common(r, "amc_deep_step")
    finite(r, "final_loss", "final_loss_signal_norm_off")
    assert (r["steps"], r["depth"], r["signal_norm"]) == (300, 8, True)
    # the best constant output gives U = 0.046875; neither run can be worse than where it started (~0.0625)
    assert 0 <= r["final_loss"] < 0.0626 and 0 <= r["final_loss_signal_norm_off"] < 0.0626


# ---- with the Trainer: progress, evaluation, checkpoints ---------------------------------------


def test_amc_mnist(tmp_path):
    ck = tmp_path / "ck" / "run.h5"
    r = run_example("amc_mnist", tmp_path, "--checkpoint", ck, "--no-progress")
    check_common(r, "amc_mnist")
    finite(r, "test_accuracy", "final_loss", "test_loss", "acceptance", "sigma")
    check_accuracy(r)
    check_accuracy(r, "train_accuracy")
    assert r["steps"] == 40 and r["num_params"] == 13002 and r["batching"] == "full"
    assert 0 < r["final_loss"] < 0.1  # MSE of softmax outputs vs one-hot: 0.09 at the start
    check_inspect(ck, ["fc1", "act1", "fc2", "act2", "fc3", "out"], 13002)
    # --resume on a finished run: restores, takes no step, reports the same numbers
    again = run_example("amc_mnist", tmp_path, "--checkpoint", ck, "--resume", "--no-progress")
    assert "resumed from" in again["_stdout"]
    assert (again["steps"], again["test_accuracy"], again["final_loss"]) == (
        r["steps"],
        r["test_accuracy"],
        r["final_loss"],
    )


@pytest.mark.parametrize("batching", ["minibatch", "progressive"])
def test_amc_mnist_batching(tmp_path, batching):
    r = run_example("amc_mnist", tmp_path, "--batching", batching, "--signal-norm", "off", "--no-progress")
    check_common(r, "amc_mnist")
    check_accuracy(r)
    assert r["batching"] == batching and r["signal_norm"] is False
    assert r["batch"] == (1000 if batching == "minibatch" else 500)  # the smoke data has 1,000 digits


def test_amc_rnn_mnist01(tmp_path):
    ck = tmp_path / "ck" / "rnn.h5"
    r = run_example("amc_rnn_mnist01", tmp_path, "--checkpoint", ck, "--no-progress")
    check_common(r, "amc_rnn_mnist01")
    finite(r, "test_accuracy", "test_loss", "final_loss")
    check_accuracy(r)
    assert r["steps"] == 20 and r["sequence_length"] == 49 and r["num_params"] == 12674
    assert r["final_loss"] >= 0
    check_inspect(ck, ["rnn1", "rnn2", "fc"], 12674)


def test_train_cifar10(tmp_path):
    ck = tmp_path / "ck" / "c10.h5"
    r = run_example("train_cifar10", tmp_path, "--checkpoint", ck, "--no-progress")
    check_common(r, "train_cifar10")
    finite(r, "test_accuracy", "test_loss")
    check_accuracy(r)
    assert r["cycles"] == 1 and r["trials"] == r["num_params"] == 308
    check_inspect(ck, ["conv1", "pool1", "bn1", "relu1", "conv2", "bn2", "gmp", "fc"], 308)


def test_train_cifar10_without_data_fails_clearly(tmp_path):
    """Outside --smoke, missing CIFAR-10 (and no download) is an error with the loader's message, status 1."""
    proc = run([EXAMPLES / "train_cifar10.py", "--data-dir", tmp_path, "--no-download", "--no-progress"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cifar-10" in proc.stderr.lower() and "Traceback" not in proc.stderr


# ---- examples/train_mnist.py: the lead adds its test here ---------------------------------------


def test_train_mnist(tmp_path):
    """The README's example in smoke mode: trains, checkpoints, reports; inspect shows the checkpoint;
    --resume of the finished run changes nothing."""
    ck = tmp_path / "runs" / "mnist.h5"  # a folder that does not exist yet
    r = run_example("train_mnist", tmp_path, "--checkpoint", ck, "--no-progress")
    check_common(r, "train_mnist")
    check_accuracy(r)
    assert r["cycles"] == 1 and r["num_params"] == 844 and r["trials_per_batch"] == 4
    assert r["train_samples"] == 256 and r["test_samples"] == 200
    check_inspect(ck, ["conv1", "bn1", "conv6", "bn6", "gmp", "fc"], 844)
    again = run_example("train_mnist", tmp_path, "--checkpoint", ck, "--no-progress", "--resume")
    assert again["test_accuracy"] == r["test_accuracy"]


# ---- Ctrl-C / SIGTERM: the example stops, reports, and says how to continue ---------------------


def start_and_signal(args, log, sig, timeout=TIMEOUT_S):
    """Start ``python args...``; once ``log`` (the metrics log) has a line, send ``sig``; the finished process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + timeout
        while not (log.is_file() and log.read_text().strip()):  # the first line: fit() is running
            assert proc.poll() is None, f"exited {proc.returncode} before training\n{proc.communicate()}"
            assert time.monotonic() < deadline, "no metrics log line in time"
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.stdout_text, proc.stderr_text = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc


def test_train_mnist_ctrl_c_reports_and_the_printed_command_resumes(tmp_path):
    """The README's example, stopped with Ctrl-C in its first cycle: exit 130, ``"interrupted": true`` in the
    JSON, the resume command on stdout; that command (through a shell) finishes the run with exit 0."""
    ck, out = tmp_path / "runs" / "mnist.h5", tmp_path / "out" / "mnist.json"
    log = pathlib.Path(f"{ck}.metrics.jsonl")
    args = [
        EXAMPLES / "train_mnist.py",
        "--smoke",
        "--cycles",
        "2",
        "--batch-size",
        "16",
        "--no-progress",
        "--checkpoint",
        ck,
        "--json",
        out,
    ]
    proc = start_and_signal(args, log, signal.SIGINT)
    assert proc.returncode == 130, (proc.returncode, proc.stdout_text, proc.stderr_text)
    assert "Traceback" not in proc.stderr_text
    r = json.loads(out.read_text())
    assert r["interrupted"] is True and r["stop_signal"] == "SIGINT" and r["cycles_done"] < 2
    line = next(x for x in proc.stdout_text.splitlines() if x.startswith("interrupted at trial "))
    command = line.split("continue with: ", 1)[1]
    assert command == r["resume"] == shlex.join(["python", str(args[0]), "--checkpoint", str(ck), "--resume"])
    argv = shlex.split(command)
    argv[0] = sys.executable  # "python" as the user types it: this test's interpreter
    done = subprocess.run(
        shlex.join(argv),
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from" in done.stdout
    r = json.loads(out.read_text())
    assert r["interrupted"] is False and r["cycles_done"] == 2 and 0 <= r["test_accuracy"] <= 1
    assert r["batch_size"] == 16  # from the checkpoint: the command does not repeat it
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [(x["kind"], x["cycle"]) for x in lines if x["kind"] == "eval"] == [("eval", 1), ("eval", 2)]
    layers = [(x["cycle"], x["name"], x["trials"]) for x in lines if x["kind"] == "layers"]
    assert len(set(layers)) == len(layers)  # every tensor once per cycle, across the interrupt and the resume
    for c in (1, 2):  # and all of them: one cycle is one trial per parameter
        assert sum(t for cycle, _, t in layers if cycle == c) == r["num_params"] == 844


def test_amc_mnist_sigterm_reports_and_exits_143(tmp_path):
    """A job scheduler's SIGTERM during a long aMC run: checkpoint, JSON with "interrupted": true, exit 143."""
    ck, out = tmp_path / "amc.h5", tmp_path / "amc.json"
    args = [
        EXAMPLES / "amc_mnist.py",
        "--steps",
        "100000",
        "--eval-every",
        "10",
        "--no-progress",
        "--checkpoint",
        ck,
        "--json",
        out,
    ]
    proc = start_and_signal(args, pathlib.Path(f"{ck}.metrics.jsonl"), signal.SIGTERM)
    assert proc.returncode == 143, (proc.returncode, proc.stdout_text, proc.stderr_text)
    assert proc.stderr_text == ""  # no traceback (and no bar: --no-progress)
    r = json.loads(out.read_text())
    assert r["interrupted"] is True and r["stop_signal"] == "SIGTERM" and 10 <= r["steps"] < 100000
    assert r["resume"].endswith("--resume") and f"continue with: {r['resume']}" in proc.stdout_text
    assert 0 <= r["test_accuracy"] <= 1  # the last evaluation's


# ---- --resume rebuilds the run from the checkpoint (issue 16) -----------------------------------


def shell(command):
    """``command`` as the user types it (``python`` is this test's interpreter), through a shell, from the root."""
    argv = shlex.split(command)
    argv[0] = sys.executable if argv[0] == "python" else argv[0]
    return subprocess.run(
        shlex.join(argv),
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def test_train_mnist_resume_takes_the_stored_arguments_and_extends_the_cycles(tmp_path):
    """A run with flags off the preset (channels, batch size, trials per batch), continued by the short
    command ``--resume --checkpoint PATH`` with more cycles: it rebuilds the stored run and runs on to the
    new count; a flag that contradicts the stored run is exit status 2 naming each one with both values."""
    ck, out = tmp_path / "runs" / "mnist.h5", tmp_path / "mnist.json"
    first = run(
        [
            EXAMPLES / "train_mnist.py",
            "--smoke",
            "--channels",
            "2",
            "--cycles",
            "1",
            "--batch-size",
            "64",
            "--trials-per-batch",
            "2",
            "--no-progress",
            "--checkpoint",
            ck,
            "--json",
            out,
        ]
    )
    assert first.returncode == 0, first.stdout + first.stderr
    done = shell(f"python examples/train_mnist.py --resume --checkpoint {shlex.quote(str(ck))} --cycles 2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from" in done.stdout and "Traceback" not in done.stderr
    r = json.loads(out.read_text())  # --json, --no-progress and the smoke data came from the checkpoint too
    assert (r["cycles_done"], r["cycles"], r["channels"], r["batch_size"], r["trials_per_batch"]) == (2, 2, 2, 64, 2)
    assert r["num_params"] == 242 and r["train_samples"] == 256 and r["interrupted"] is False
    lines = [json.loads(x) for x in pathlib.Path(f"{ck}.metrics.jsonl").read_text().splitlines()]
    assert [x["cycle"] for x in lines if x["kind"] == "eval"] == [1, 2]  # the history goes on
    for c in (1, 2):  # every parameter once per cycle, in the first run and in the extension
        assert sum(x["trials"] for x in lines if x["kind"] == "layers" and x["cycle"] == c) == 242
    bad = shell(
        f"python examples/train_mnist.py --resume --checkpoint {shlex.quote(str(ck))} --cycles 1 --seed 5 "
        "--batch-size 64"
    )  # --batch-size as stored: not an error
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "--seed is 72 in the checkpoint, 5 on this command line" in bad.stderr
    assert (
        "--cycles 1 is less than the stored run's 2" in bad.stderr
        and "--batch-size" not in bad.stderr.split("error:")[1]
    )


def test_amc_mnist_resume_takes_the_stored_batch_size_and_extends_the_steps(tmp_path):
    """aMC with --batch-size 300, continued without it and with more steps: the same numbers as one
    uninterrupted run of that many steps; a different --batch-size is exit status 2 naming it."""
    ck, out, whole = tmp_path / "amc.h5", tmp_path / "amc.json", tmp_path / "whole.json"
    common = ["--smoke", "--batching", "minibatch", "--batch-size", "300", "--no-progress"]
    first = run([EXAMPLES / "amc_mnist.py", *common, "--steps", "20", "--checkpoint", ck, "--json", out])
    assert first.returncode == 0, first.stdout + first.stderr
    done = shell(f"python examples/amc_mnist.py --resume --checkpoint {shlex.quote(str(ck))} --steps 40")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from" in done.stdout
    r = json.loads(out.read_text())
    assert (r["steps"], r["batch"], r["batching"]) == (40, 300, "minibatch")
    ref = run([EXAMPLES / "amc_mnist.py", *common, "--steps", "40", "--json", whole])
    assert ref.returncode == 0, ref.stdout + ref.stderr
    w = json.loads(whole.read_text())
    assert (r["final_loss"], r["test_accuracy"], r["acceptance"]) == (
        w["final_loss"],
        w["test_accuracy"],
        w["acceptance"],
    )
    bad = shell(f"python examples/amc_mnist.py --resume --checkpoint {shlex.quote(str(ck))} --batch-size 500")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "--batch-size is 300 in the checkpoint, 500 on this command line" in bad.stderr
