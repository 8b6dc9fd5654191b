"""Helpers shared by the checkpoint tests: exact comparisons, random models and images, the standard history."""

import math
from pathlib import Path

import numpy as np
import pytest

import minirso
from minirso import checkpoint
from minirso.checkpoint import CheckpointError


def same(a, b) -> bool:
    """Exactly equal: same types all the way down, arrays with the same dtype, shape and bytes, NaN == NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


def host(a):
    return minirso.to_numpy(a)


def assert_same_model(m, ref):
    assert m.architecture() == ref.architecture()
    assert same(host(m.params), host(ref.params))
    assert list(m.buffers()) == list(ref.buffers())
    for k, v in ref.buffers().items():
        assert same(host(m.buffers()[k]), host(v)), k
    assert minirso.get_array_module(m.params) is minirso.backend.xp()  # on the active backend


def assert_same_checkpoint(ck, ref):
    """Everything load returns equals the reference load (created time and all)."""
    assert_same_model(ck.model, ref.model)
    assert same(ck.optimizer, ref.optimizer)
    assert same(ck.history, ref.history)
    assert same(ck.meta, ref.meta)
    assert same(ck.attrs, ref.attrs)


def perturb(model, rng):
    """Asymmetric random parameters and BatchNorm statistics (a swapped tensor would show)."""
    model.params[...] = minirso.asarray(rng.normal(0.0, 0.5, model.num_params).astype(np.float32))
    for buf in model.buffers().values():
        buf[...] = minirso.asarray(rng.random(buf.shape).astype(np.float32) + 0.5)


def images(rng, n, shape=(1, 28, 28), classes=10):
    x = minirso.asarray(rng.random((n,) + shape, dtype=np.float32))
    y = minirso.asarray(rng.integers(0, classes, n))
    return x, y


def temporaries(directory):
    return sorted(p.name for p in Path(directory).iterdir() if ".tmp-" in p.name)


HISTORY = {
    "eval": [
        {"cycle": 0, "test_accuracy": 0.5, "train_loss": 2.25, "note": None},
        {"cycle": 1, "test_accuracy": 0.625, "train_loss": float("nan"), "note": "lr down"},
        {"cycle": 2, "test_accuracy": 0.75, "train_loss": float("inf"), "note": None},
    ],
    "loss": [2.5, 2.25, 1.75],
    "steps": np.arange(5, dtype=np.int64),
    "sigma": np.linspace(1.0, 0.1, 4),
}


def saved(path, model, *args, **kwargs):
    """``checkpoint.save(path, ...)``, returning ``path``."""
    checkpoint.save(path, model, *args, **kwargs)
    return path


def problem_of(path):
    """The one-line CheckpointError that loading ``path`` raises (it names the file, on one line)."""
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err) and "\n" not in str(err)
    return str(err)
