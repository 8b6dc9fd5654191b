"""Shared by the Trainer's tests: the tiny RSO and aMC runs, a stop by a real signal, exact comparison.

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
import sys
from pathlib import Path

import numpy as np
import pytest

import minirso
from minirso import models
from minirso.optim import AMC, RSO, ModelLoss
from minirso.train import Trainer

REPO = Path(__file__).resolve().parents[2]


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
    kw = {
        **dict(
            eval_data=(XE, YE),
            train_eval_data=(X[:32], Y[:32]),
            bn_data=X[:32],
            checkpoint=path,
            checkpoint_every_trials=100,
            eval_batch=16,
            progress=False,
        ),
        **kw,
    }
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
    kw = {
        **dict(
            steps=150,
            eval_data=(XAE, YAE),
            train_eval_data=(XA[:20], YA[:20]),
            eval_every=25,
            checkpoint=path,
            checkpoint_every=40,
            log_every=7,
            progress=False,
        ),
        **kw,
    }
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
    return [
        {"kind": kind, **{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}} for r in rows
    ]


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


def without_wall_time(lines):
    return [{k: v for k, v in line.items() if k != "wall_time"} for line in lines]


CHILD = [sys.executable, str(Path(__file__).with_name("train_child.py"))]


def child_env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def bar_values(err, key):
    return [float(v) for v in re.findall(rf"\b{key}=([-+.\deE]+)", err)]
