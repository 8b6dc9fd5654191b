"""Checkpoints (minirso.checkpoint): exact round trips, files plain h5py reads, damaged files, crash safety.

The promises under test (see the module docstring of minirso.checkpoint):

* what load returns is bit for bit what was saved, with the same Python types;
* a damaged file raises CheckpointError naming the file and the problem, and NEVER loads with a
  changed value (truncation and bit-flip sweeps, for the whole-file header and for the per-dataset
  manifest on its own);
* the path always holds a loadable checkpoint, even when the writer is SIGKILLed mid-save.

Long variants are marked slow (``--runslow``).
"""

import errno
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import minirso
from minirso import checkpoint, models
from minirso.checkpoint import CheckpointError
from minirso.optim import AMC, RSO, ModelLoss

from ._save_loop import versions


# ---- helpers ------------------------------------------------------------------------------------
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
    "eval": [{"cycle": 0, "test_accuracy": 0.5, "train_loss": 2.25, "note": None},
             {"cycle": 1, "test_accuracy": 0.625, "train_loss": float("nan"), "note": "lr down"},
             {"cycle": 2, "test_accuracy": 0.75, "train_loss": float("inf"), "note": None}],
    "loss": [2.5, 2.25, 1.75],
    "steps": np.arange(5, dtype=np.int64),
    "sigma": np.linspace(1.0, 0.1, 4),
}


# ---- round trips ----------------------------------------------------------------------------------
def test_round_trip_rso_mnist_with_amc_state_and_exact_resume(tmp_path, rng):
    model = models.rso_mnist(seed=3)
    perturb(model, rng)
    x, y = images(rng, 16)
    model.reestimate_batchnorm(x)  # running statistics from data, not the defaults
    opt = AMC(model.params, ModelLoss(model, x, y), sigma0=1e-2, epsilon=1e-2, n_s=3, seed=7)
    opt.run(4)
    path = tmp_path / "run.h5"
    checkpoint.save(path, model, opt, HISTORY, meta={"config": {"lr": 0.1, "tag": "t"}, "cycle": 2})

    ck = checkpoint.load(path)
    assert isinstance(ck, checkpoint.Checkpoint) and ck.path == str(path)
    assert_same_model(ck.model, model)
    assert ck.model.seed == 3
    assert same(ck.optimizer, opt.state_dict())
    assert same(ck.history, HISTORY)
    assert ck.meta == {"config": {"lr": 0.1, "tag": "t"}, "cycle": 2}

    assert not ck.model.training  # loaded for inference; the run trained in training mode (batch statistics)
    ck.model.train()
    fresh = AMC(ck.model.params, ModelLoss(ck.model, x, y), sigma0=1e-2, epsilon=1e-2, n_s=3, seed=7)
    fresh.load_state_dict(ck.optimizer)
    assert same(fresh.state_dict(), opt.state_dict())
    opt.run(3)
    fresh.run(3)  # the resumed run continues on the same trajectory, bit for bit
    assert same(host(ck.model.params), host(model.params))


def test_round_trip_rso_state_and_exact_resume(tmp_path, rng):
    model = models.rso_mnist(channels=2, seed=1)
    x, y = images(rng, 16)
    opt = RSO(model, x, y, cycles=2, batch_size=8, seed=5)
    for _ in range(25):  # past the end of the first tensor (fc, 20 weights): records is not empty
        opt.step()
    assert opt.records
    path = tmp_path / "rso.h5"
    checkpoint.save(path, model, opt, {"eval": [{"cycle": 0, "test_accuracy": 0.1}]})

    ck = checkpoint.load(path)
    assert_same_model(ck.model, model)
    assert same(ck.optimizer, opt.state_dict())
    fresh = RSO(ck.model, x, y, cycles=2, batch_size=8, seed=5)
    fresh.load_state_dict(ck.optimizer)
    assert same(fresh.state_dict(), opt.state_dict())
    for _ in range(6):
        opt.step()
        fresh.step()
    assert same(host(ck.model.params), host(model.params))
    assert same(fresh.state_dict()["state"]["records"], opt.state_dict()["state"]["records"])


def test_a_state_dict_saves_like_its_optimizer(tmp_path, rng):
    model = models.mlp([4, 3, 2], seed=2)
    opt = AMC(model.params, lambda p: float((p ** 2).sum()), sigma0=0.1, seed=1)
    opt.run(3)
    checkpoint.save(tmp_path / "a.h5", model, opt)
    checkpoint.save(tmp_path / "b.h5", model, opt.state_dict())
    a, b = checkpoint.load(tmp_path / "a.h5"), checkpoint.load(tmp_path / "b.h5")
    assert same(a.optimizer, b.optimizer) and same(a.optimizer, opt.state_dict())
    assert a.history is None and a.meta == {}
    none = checkpoint.load(_saved(tmp_path / "c.h5", model))
    assert none.optimizer is None and none.history is None


def _saved(path, model, *args, **kwargs):
    checkpoint.save(path, model, *args, **kwargs)
    return path


@pytest.mark.parametrize("build, nested", [
    (lambda: models.rso_cifar(10, seed=4), "/model/res2/conv2/weight"),
    (lambda: models.amc_rnn_classifier(seed=5), "/model/rnn1/weight_hh"),
])
def test_round_trip_residual_and_recurrent_models(tmp_path, rng, build, nested):
    model = build()
    perturb(model, rng)
    path = _saved(tmp_path / "m.h5", model)
    ck = checkpoint.load(path)
    assert_same_model(ck.model, model)
    with h5py.File(path, "r") as f:  # nested layers are nested groups, tensors in their natural shapes
        name = nested[len("/model/"):].replace("/", ".")
        g = next(g for g in model.param_groups if g.name == name)
        assert f[nested].shape == g.shape
        assert np.array_equal(f[nested][()], host(model.params[g.slice]).reshape(g.shape))


def test_every_kind_of_value_round_trips_with_its_type(tmp_path):
    rng = np.random.default_rng(0)
    state = {
        "int": 7, "negative": -3, "big": 2**64 + 5, "very_negative": -(2**70), "float": 0.1, "nan": float("nan"),
        "inf": float("-inf"), "negative_zero": -0.0, "true": True, "false": False, "none": None,
        "text": "sigma σ", "nul_text": "a\0b", "surrogate": "\ud800",
        "f32": rng.random((3, 2), dtype=np.float32), "f16": np.arange(4, dtype=np.float16), "i8": np.int8([-1, 2]),
        "u64": np.array([2**64 - 1], np.uint64), "bools": np.array([True, False]), "c64": np.array([1 + 2j], np.complex64),
        "empty": np.zeros(0, np.float32), "empty2d": np.zeros((0, 3)), "zero_d": np.array(2.5), "big_endian": np.arange(3, dtype=">f4"),
        "np_scalar": np.float32(1.5), "np_int": np.int64(-4), "np_bool": np.bool_(True),
        "floats": [0.5, float("nan")], "ints": [1, 2], "flags": (True, False), "pair": (1, 2), "no_items": [], "no_tuple": (),
        "mixed": [1, "a", None, [2.5]], "nested": {"a": {"b": [1.0]}, "c": np.ones(2)},
        "records": [{"cycle": 0, "name": "fc.weight", "loss": float("nan"), "ok": True, "maybe": None, "huge": 2**80},
                    {"cycle": 1, "name": "conv6.weight", "loss": 1.25, "ok": False, "maybe": 0.5, "huge": 3}],
        "ragged": [{"a": 1}, {"b": 2}], "empty_rows": [{}, {}], "np_cells": [{"acc": np.float64(0.5), "n": np.int64(3)}],
    }
    sd = {"type": "Custom", "hyperparameters": {"seed": 2**64 - 1, "n_s": float("inf"), "batch": None, "flag": True},
          "state": state}
    path = _saved(tmp_path / "kinds.h5", models.mlp([2, 2], seed=0), sd, {"h": state}, meta={"k": [1, 2]})
    ck = checkpoint.load(path)
    expected = dict(state, np_cells=[{"acc": 0.5, "n": 3}])  # NumPy scalars in tables become Python numbers
    assert same(ck.optimizer["hyperparameters"], sd["hyperparameters"])
    assert same(ck.optimizer["state"], expected)
    assert same(ck.history["h"], expected)
    assert list(ck.optimizer["state"]) == list(state)  # key order too


@pytest.mark.parametrize("bad", [
    {"obj": np.array([object()], dtype=object)}, {"s": {1, 2}}, {"tuple_mix": (1, "a")},
    {"int_keys": {1: 2}}, {"unicode_array": np.array(["a"])}, {"nested_tuple": [(1, 2)]},
])
def test_unstorable_values_raise_type_error_and_write_nothing(tmp_path, bad):
    path = tmp_path / "x.h5"
    with pytest.raises(TypeError):
        checkpoint.save(path, models.mlp([2, 2]), {"type": "T", "hyperparameters": {}, "state": bad})
    assert not path.exists() and temporaries(tmp_path) == []


def test_bad_arguments_raise(tmp_path):
    model = models.mlp([2, 2])
    with pytest.raises(TypeError, match="optimizer"):
        checkpoint.save(tmp_path / "x.h5", model, {"state": {}})
    with pytest.raises(TypeError, match="history"):
        checkpoint.save(tmp_path / "x.h5", model, None, [1, 2])
    with pytest.raises(TypeError, match="meta"):
        checkpoint.save(tmp_path / "x.h5", model, meta={"f": object()})
    with pytest.raises(TypeError, match="hyperparameters"):
        checkpoint.save(tmp_path / "x.h5", model, {"type": "T", "hyperparameters": {"k": (1, 2)}, "state": {}})
    assert temporaries(tmp_path) == [] and not (tmp_path / "x.h5").exists()


# ---- the file, read without minirso ------------------------------------------------------------------
def test_plain_h5py_reads_weights_architecture_and_attributes(tmp_path, rng):
    model = models.rso_mnist(seed=3)
    perturb(model, rng)
    path = _saved(tmp_path / "run.h5", model, None, HISTORY)
    with h5py.File(path, "r") as f:
        w = f["/model/conv1/weight"]
        assert w.shape == (16, 1, 3, 3) and w.dtype == np.float32
        assert np.array_equal(w[()], host(model.params[:144]).reshape(16, 1, 3, 3))
        assert np.array_equal(f["/model/bn1/running_mean"][()], host(model.buffers()["bn1.running_mean"]))
        import json

        assert json.loads(f["/model/architecture.json"][()]) == model.architecture()
        assert f["/history/eval/test_accuracy"][()].tolist() == [0.5, 0.625, 0.75]
        a = {k: v.decode() if isinstance(v, bytes) else v for k, v in f.attrs.items()}  # text is fixed-length UTF-8
        assert a["format"] == "minirso-checkpoint" and a["format_version"] == 1 and a["seed"] == 3
        for k in ("minirso_version", "numpy_version", "cupy_version", "h5py_version", "created", "backend"):
            assert isinstance(a[k], str) and a[k], k
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", a["created"])
    assert open(path, "rb").read(21) == b"minirso-checkpoint 1\n"  # the text header in the user block


def test_verify_returns_a_summary(tmp_path):
    path = _saved(tmp_path / "v.h5", models.rso_mnist(channels=2), None, HISTORY)
    info = checkpoint.verify(path)
    assert info["format_version"] == 1 and info["size"] == path.stat().st_size
    # 19 parameter tensors + 12 BatchNorm statistics + architecture + meta + 7 history datasets
    assert info["datasets"] == 19 + 12 + 1 + 1 + 7
    assert info["groups"] == 1 + 1 + 13 + 2  # /, /model, a group per layer with tensors, /history, /history/eval


# ---- damaged and foreign files ------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small complete checkpoint (model with BatchNorm, RSO state with records, history, meta): (bytes, reference)."""
    rng = np.random.default_rng(5)
    model = models.rso_mnist(channels=2, seed=2)
    x, y = images(rng, 16)
    opt = RSO(model, x, y, cycles=2, batch_size=8, seed=5)
    for _ in range(22):
        opt.step()
    perturb(model, rng)
    path = tmp_path_factory.mktemp("small") / "small.h5"
    checkpoint.save(path, model, opt, HISTORY, meta={"cycle": 1, "config": {"batch": 8}})
    return path.read_bytes(), checkpoint.load(path)


def _problem(path):
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    err = info.value
    assert err.path == str(path) and str(path) in str(err) and "\n" not in str(err)
    return str(err)


def test_missing_file(tmp_path):
    assert "no such file" in _problem(tmp_path / "nope.h5")


@pytest.mark.parametrize("content, problem", [
    (b"", "empty file"),
    (np.random.default_rng(1).bytes(4096), "not a minirso checkpoint (not an HDF5 file)"),
    (b"hello\n", "not a minirso checkpoint"),
    (b"minirso-chec", "truncated"),
])
def test_not_a_checkpoint(tmp_path, content, problem):
    path = tmp_path / "f.h5"
    path.write_bytes(content)
    assert problem in _problem(path)


def test_hdf5_but_not_a_minirso_checkpoint(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.ones(3)
    assert "not a minirso checkpoint (an HDF5 file" in _problem(path)
    with h5py.File(path, "w", userblock_size=512) as f:
        f["weights"] = np.ones(3)
    assert "not a minirso checkpoint" in _problem(path)


def test_unknown_format_version(tmp_path, small):
    data, _ = small
    path = tmp_path / "v2.h5"
    path.write_bytes(data.replace(b"minirso-checkpoint 1\n", b"minirso-checkpoint 2\n", 1))  # a newer writer
    assert "unknown format version 2" in _problem(path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 2
    assert "unknown format version 2" in _problem(path)


def test_checksum_mismatch_names_the_dataset(tmp_path, small):
    data, _ = small
    path = tmp_path / "edited.h5"
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:  # an in-place edit of one weight
        f["model/conv1/weight"][0, 0, 0, 0] += 1.0
    problem = _problem(path)
    assert "checksum mismatch in dataset /model/conv1/weight" in problem
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f["optimizer/state/cycle"][()] = 1
    assert "checksum mismatch in dataset /optimizer/state/cycle" in _problem(path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:  # attributes are covered too (through the manifest)
        f["history/eval"].attrs["rows"] = 2
    assert "attributes of /history/eval differ" in _problem(path)


def test_missing_dataset(tmp_path, small):
    data, _ = small
    path = tmp_path / "cut.h5"
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        del f["model/bn1/running_mean"]
    assert "missing dataset /model/bn1/running_mean" in _problem(path)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f["model/extra"] = np.zeros(2)
    assert "unexpected object /model/extra" in _problem(path)


def test_architecture_that_does_not_fit_the_weights(tmp_path, monkeypatch):
    model = models.rso_mnist(channels=4)
    narrower = models.rso_mnist(channels=2).architecture()
    monkeypatch.setattr(model, "architecture", lambda: narrower)  # a consistent file with a wrong architecture
    problem = _problem(_saved(tmp_path / "a.h5", model))
    assert "architecture mismatch" in problem and "/model/conv1/weight" in problem and "(2, 1, 3, 3)" in problem

    wrong_count = dict(models.rso_mnist(channels=4).architecture(), num_params=999)
    monkeypatch.setattr(model, "architecture", lambda: wrong_count)
    problem = _problem(_saved(tmp_path / "b.h5", model))
    assert "architecture mismatch" in problem and "999 parameters" in problem

    fewer = models.mlp([2, 2]).architecture()
    monkeypatch.setattr(model, "architecture", lambda: fewer)
    problem = _problem(_saved(tmp_path / "c.h5", model))
    assert "architecture mismatch" in problem


def test_error_is_one_picklable_type(tmp_path):
    err = CheckpointError(tmp_path / "x.h5", "bad\nthing")
    assert str(err) == f"{tmp_path / 'x.h5'}: bad thing"
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.path == err.path


def _outcome(data, ref, check_header=True):
    """'error' or 'same' for damaged bytes; anything else (a changed value, another exception) fails."""
    try:
        ck = checkpoint._load_bytes(data, "damaged.h5", check_header=check_header)
    except CheckpointError:
        return "error"
    assert_same_checkpoint(ck, ref)
    return "same"


def _truncation_sweep(small, lengths):
    data, ref = small
    counts = {"error": 0, "same": 0}
    for n in lengths:
        assert _outcome(data[:n], ref) == "error"  # a shorter file always fails the header
        counts[_outcome(data[:n], ref, check_header=False)] += 1  # the manifest alone: fails or is complete
    return counts


def test_truncation_sweep(small):
    data, _ = small
    n = len(data)
    lengths = sorted(set(np.linspace(0, n - 1, 300).astype(int).tolist()) | set(range(n - 40, n)) | {511, 512, 513})
    counts = _truncation_sweep(small, lengths)
    assert counts["error"] >= len(lengths) - 40  # (the manifest alone cannot see cuts in trailing free space)


@pytest.mark.slow
def test_truncation_sweep_every_length(small):
    data, _ = small
    counts = _truncation_sweep(small, range(0, len(data), 7))
    print(f"\n{len(range(0, len(data), 7))} truncations of {len(data)} bytes: {counts}")


def _flip_sweep(small, count, seed):
    data, ref = small
    rng = np.random.default_rng(seed)
    outcomes = {(True, "error"): 0, (True, "same"): 0, (False, "error"): 0, (False, "same"): 0}
    for bit in rng.integers(0, len(data) * 8, count):
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        for header in (True, False):
            outcomes[header, _outcome(bytes(damaged), ref, check_header=header)] += 1
    return outcomes


def test_bit_flip_sweep(small):
    outcomes = _flip_sweep(small, 1000, seed=0)
    # with the header every flip is caught; without it, flips in unused bytes may load, identically
    assert outcomes[True, "same"] == 0 and outcomes[True, "error"] == 1000
    assert outcomes[False, "error"] > 850


@pytest.mark.slow
def test_bit_flip_sweep_long(small):
    outcomes = _flip_sweep(small, 10000, seed=1)
    print(f"\n10000 single-bit flips: {outcomes}")
    assert outcomes[True, "same"] == 0


def test_no_variable_length_data(small, tmp_path):
    """Variable-length strings live in HDF5's global heap, which has no checksum: libhdf5 can hang on a
    damaged one (the bit-flip sweep found it).  All text is fixed-length."""
    path = tmp_path / "s.h5"
    path.write_bytes(small[0])
    with h5py.File(path, "r") as f:
        objects = [f]
        f.visititems(lambda name, obj: objects.append(obj))
        for obj in objects:
            types = [obj.attrs.get_id(k).dtype for k in obj.attrs] + ([obj.dtype] if isinstance(obj, h5py.Dataset) else [])
            for dt in types:
                info = h5py.check_string_dtype(dt)
                assert dt != object and (info is None or info.length is not None), (obj.name, dt)



# ---- attributes added after saving (issue 16): load(..., verify="data") --------------------------
_ANNOTATE = """import sys, h5py
with h5py.File(sys.argv[1], "a") as f:  # what a user types: h5py writes a str as a variable-length string
    f.attrs["note"] = "my run"
    f["model/conv1/weight"].attrs["units"] = "none"
"""


def _annotated(tmp_path, small):
    """The small checkpoint, with two attributes added by h5py in another process (the user's steps)."""
    path = tmp_path / "run.h5"
    path.write_bytes(small[0])
    subprocess.run([sys.executable, "-c", _ANNOTATE, str(path)], check=True, timeout=60)
    return path


def _problem_with(path, **kwargs):
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, **kwargs)
    return info.value.problem


def test_an_attribute_added_with_h5py_loads_with_verify_data_and_the_strict_error_says_so(tmp_path, small):
    path = _annotated(tmp_path, small)
    problem = _problem_with(path)  # the default stays strict: the file is not byte for byte as saved
    assert "attribute 'note' of / (and 1 more) was not written by minirso" in problem
    assert 'verify="data"' in problem and "--data-only" in problem
    with pytest.raises(CheckpointError, match="attribute 'note'"):
        checkpoint.verify(path)
    ck = checkpoint.load(path, verify="data")
    assert_same_checkpoint(ck, small[1])  # the values saved, bit for bit; the user's note is not in ck.attrs
    (tmp_path / "saved.h5").write_bytes(small[0])
    info, saved = checkpoint.verify(path, verify="data"), checkpoint.verify(tmp_path / "saved.h5")
    assert (info["datasets"], info["groups"]) == (saved["datasets"], saved["groups"])
    cli = [sys.executable, "-m", "minirso", "inspect", str(path)]
    strict = subprocess.run(cli + ["--verify"], capture_output=True, text=True, timeout=120)
    assert strict.returncode == 1 and "--data-only" in strict.stderr
    ok = subprocess.run(cli + ["--verify", "--data-only"], capture_output=True, text=True, timeout=120)
    assert (ok.returncode, ok.stdout) == (0, f"OK {path}\n"), ok.stderr
    with pytest.raises(ValueError, match="'all'.*'data'"):
        checkpoint.load(path, verify="none")


def test_damage_to_what_minirso_wrote_is_detected_in_every_mode(tmp_path, small):
    edits = [  # (h5py edit of an annotated file, the problem it must raise)
        (lambda f: f["model/conv1/weight"].__setitem__((0, 0, 0, 0), 2.0),
         "checksum mismatch in dataset /model/conv1/weight"),
        (lambda f: f["history/eval"].attrs.__setitem__("rows", 2),
         "attributes of /history/eval differ from the manifest (attribute 'rows' changed)"),
        (lambda f: f.attrs.__setitem__("created", "2020-01-01T00:00:00+00:00"), "(attribute 'created' changed)"),
        (lambda f: f["model/bn1"].attrs.__delitem__("type"), "(attribute 'type' is missing)"),
        (lambda f: f.__setitem__("model/extra", np.zeros(2)), "unexpected object /model/extra"),
    ]
    for edit, expected in edits:
        path = _annotated(tmp_path, small)
        with h5py.File(path, "r+") as f:
            edit(f)
        for level in ("all", "data"):
            assert expected in _problem_with(path, verify=level), (expected, level)


def test_bit_flips_in_an_annotated_file_never_load_a_changed_value_with_verify_data(tmp_path, small):
    data = _annotated(tmp_path, small).read_bytes()
    rng = np.random.default_rng(2)
    counts = {"error": 0, "same": 0}
    for bit in rng.integers(512 * 8, len(data) * 8, 300):  # past the header (whose damage always fails)
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            ck = checkpoint._load_bytes(bytes(damaged), "damaged.h5", verify="data")
        except CheckpointError:
            counts["error"] += 1
            continue
        assert_same_checkpoint(ck, small[1])
        counts["same"] += 1
    assert counts["error"] > 200, counts  # most bytes are minirso's; flips in unused bytes or the note may load


# ---- keeping the previous checkpoint, falling back to it ------------------------------------------
def test_keep_previous_and_fallback(tmp_path, rng):
    a, b = models.mlp([3, 2], seed=1), models.mlp([3, 2], seed=2)
    path = tmp_path / "run.h5"
    prev = Path(checkpoint.previous_path(path))
    assert str(prev) == str(path) + ".prev"
    checkpoint.save(path, a, meta={"v": "a"}, keep_previous=True)
    assert not prev.exists()  # nothing to keep yet
    checkpoint.save(path, b, meta={"v": "b"}, keep_previous=True)
    assert checkpoint.load(path).meta == {"v": "b"} and checkpoint.load(prev).meta == {"v": "a"}
    checkpoint.save(path, a, meta={"v": "c"})  # keep_previous=False leaves .prev alone
    assert checkpoint.load(prev).meta == {"v": "a"}

    data = bytearray(path.read_bytes())
    data[-100] ^= 4
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    with pytest.warns(checkpoint.CheckpointWarning) as record:
        ck = checkpoint.load(path, fallback=True)
    assert ck.meta == {"v": "a"} and ck.path == str(prev)
    message = str(record[0].message)
    assert str(path) in message and str(prev) in message and "sha256" in message

    prev.write_bytes(b"junk")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, fallback=True)
    assert str(path) in str(info.value) and str(prev) in str(info.value) and "failed too" in str(info.value)
    path.unlink()
    prev.unlink()
    assert "no such file" in str(pytest.raises(CheckpointError, checkpoint.load, path, fallback=True).value)


def test_a_damaged_checkpoint_is_not_kept_as_previous(tmp_path):
    path = tmp_path / "run.h5"
    checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 1}, keep_previous=True)
    checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 2}, keep_previous=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(checkpoint.CheckpointWarning, match="not kept"):
        checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 3}, keep_previous=True)
    assert checkpoint.load(path).meta == {"v": 3}
    assert checkpoint.load(checkpoint.previous_path(path)).meta == {"v": 1}  # the good one survives


def test_stale_temporaries_are_removed_by_the_next_save(tmp_path):
    path = tmp_path / "run.h5"
    dead = 2**31 - 1  # beyond any pid_max: no such process
    stale = [f".run.h5.tmp-{dead}-0badcafe", f".run.h5.tmp-{dead}-1234abcd"]
    keep = [f".run.h5.tmp-{os.getpid()}-00000000",  # a live writer (this process)
            f".other.h5.tmp-{dead}-0badcafe",  # another target's
            "run.h5.tmp-1-0badcafe"]  # not the pattern
    for name in stale + keep:
        (tmp_path / name).write_bytes(b"partial")
    checkpoint.save(path, models.mlp([2, 2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["run.h5"])
    checkpoint.load(path)


# ---- SIGKILL at random moments ---------------------------------------------------------------------
def _kill_loop(tmp_path, kills, seed):
    """Start the saving child, SIGKILL it after a random delay, check the path; ``kills`` times."""
    rng = np.random.default_rng(seed)
    known = versions()
    path = tmp_path / "loop.h5"
    script = Path(__file__).with_name("_save_loop.py")
    counters, mid_save = [], 0
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready", "the saving child did not start"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        mid_save += bool(temporaries(tmp_path))
        for p in (path, Path(checkpoint.previous_path(path))):
            if p == path or p.exists():
                ck = checkpoint.load(p)  # never fails
                model, state, history = known[ck.meta["version"]]
                assert_same_model(ck.model, model)
                assert same(ck.optimizer, state) and same(ck.history, history)
                counters.append(ck.meta["counter"])
    checkpoint.save(path, known[0][0])  # the next save removes the killed saves' temporaries
    assert temporaries(tmp_path) == []
    return counters, mid_save


def test_sigkill_during_saves_never_leaves_a_bad_file(tmp_path):
    counters, mid_save = _kill_loop(tmp_path, kills=20, seed=0)
    assert max(counters) > 0


@pytest.mark.slow
def test_sigkill_during_saves_long(tmp_path):
    counters, mid_save = _kill_loop(tmp_path, kills=200, seed=1)
    print(f"\n200 kills: every load succeeded and matched its version; {mid_save} kills left a temporary "
          f"(killed mid-save); counters up to {max(counters)}")


# ---- loading for inference ------------------------------------------------------------------------
_TRAIN = """
import sys, numpy as np, minirso
from minirso import models
from minirso.optim import RSO
from minirso.train import Trainer
r = np.random.default_rng(3)
x = r.normal(size=(64, 1, 8, 8)).astype(np.float32)
x[:32, :, :4] += 1.0  # two learnable classes
y = (np.arange(64) < 32).astype(np.int64)
np.savez(sys.argv[2], x=x, y=y)
model = models.rso_mnist(seed=5, channels=2, num_classes=2)
opt = RSO(model, minirso.asarray(x), minirso.asarray(y), cycles=1, batch_size=16, seed=11)
trainer = Trainer(model, opt, eval_data=(x, y), bn_data=x[:32], checkpoint=sys.argv[1], progress=False)
print(trainer.fit()["eval"][-1]["test_accuracy"])
"""

_PREDICT = """
import json, sys, numpy as np, minirso
from minirso import checkpoint
data = np.load(sys.argv[2])
x, y = minirso.asarray(data["x"]), data["y"]
model = checkpoint.load(sys.argv[1]).model
batch = minirso.to_numpy(model(x).argmax(axis=1))  # the user's steps: the whole set, then one image at a time
one = [int(model(x[i : i + 1]).argmax()) for i in range(len(y))]
p1, pn = minirso.to_numpy(model.predict(x, batch_size=1)), minirso.to_numpy(model.predict(x))
print(json.dumps({"training": model.training, "agree": float(np.mean(batch == np.array(one))),
                  "same": bool((p1 == pn).all()), "accuracy": float(np.mean(pn == y))}))
"""


def test_a_loaded_model_predicts_each_image_as_in_its_batch_and_as_the_trainer_measured(tmp_path):
    """Issue 16.5, the user's steps: train with the Trainer (one process), load the checkpoint and predict
    (another).  The loaded model is in eval mode: one image at a time agrees with the batch, and
    predict's accuracy is the one the trainer measured before saving (eval mode, re-estimated statistics)."""
    path, data = str(tmp_path / "run.h5"), str(tmp_path / "data.npz")
    run = lambda code: subprocess.run([sys.executable, "-c", code, path, data], capture_output=True, text=True,
                                      timeout=120)
    trained = run(_TRAIN)
    assert trained.returncode == 0, trained.stderr
    measured = float(trained.stdout)
    loaded = run(_PREDICT)
    assert loaded.returncode == 0, loaded.stderr
    out = json.loads(loaded.stdout)
    assert out["training"] is False and out["agree"] == 1.0 and out["same"]
    assert out["accuracy"] == measured and measured > 0.5  # the trainer's number, and better than chance


# ---- writing where it cannot ------------------------------------------------------------------------
def _unwritable(tmp_path):
    """A checkpoint path under a regular FILE: unwritable for root too (a chmod'ed folder is not)."""
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path / "afile" / "run.h5"


def test_save_where_it_cannot_write_raises_checkpoint_error_naming_path_folder_cause_and_fix(tmp_path):
    """Issue 16.7: a raw h5py OSError (naming only the temporary) became a CheckpointError."""
    path = _unwritable(tmp_path)
    with pytest.raises(CheckpointError) as info:
        checkpoint.save(path, models.mlp([3, 2], seed=1))
    err = info.value
    assert err.path == str(path) and str(err).startswith(f"{path}: ")
    assert f"folder {tmp_path / 'afile'}" in err.problem and "Not a directory" in err.problem
    assert "choose another path" in err.problem and ".tmp-" not in str(err)
    assert isinstance(err.__cause__, OSError) and "\n" not in str(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_check_writable_fails_before_any_work_and_creates_folders_on_request(tmp_path):
    bad = _unwritable(tmp_path)
    for create in (False, True):
        with pytest.raises(CheckpointError, match=r"afile.*Not a directory|afile.*File exists") as info:
            checkpoint.check_writable(bad, create_folders=create)
        assert info.value.path == str(bad) and "a part of the path is a file" in info.value.problem
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.check_writable(tmp_path / "runs" / "run.h5")
    with pytest.raises(CheckpointError, match="is a folder"):
        checkpoint.check_writable(tmp_path)
    good = tmp_path / "runs" / "a" / "run.h5"
    assert checkpoint.check_writable(good, create_folders=True) == str(good.parent)
    assert list(good.parent.iterdir()) == []  # the probe is gone
    checkpoint.save(good, models.mlp([3, 2], seed=1))  # what it promised
    assert checkpoint.check_writable(good) == str(good.parent)  # an existing checkpoint is fine: saves replace it


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        for attempt in (lambda p: checkpoint.check_writable(p), lambda p: checkpoint.save(p, models.mlp([2, 2]))):
            with pytest.raises(CheckpointError, match="Permission denied.*permissions"):
                attempt(folder / "run.h5")
    finally:
        folder.chmod(0o700)


def test_a_failure_late_in_save_is_a_checkpoint_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    """A full disk at the final rename (or anywhere else): CheckpointError, the old checkpoint intact."""
    path = tmp_path / "run.h5"
    checkpoint.save(path, models.mlp([3, 2], seed=1), meta={"v": 1})
    before = path.read_bytes()

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "replace", full)
    with pytest.raises(CheckpointError, match=r"run\.h5: cannot write .*No space left on device.*disk is full"):
        checkpoint.save(path, models.mlp([3, 2], seed=2), meta={"v": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before and temporaries(tmp_path) == []
    with pytest.raises(TypeError):  # values that cannot be stored stay a TypeError, as documented
        checkpoint.save(path, models.mlp([3, 2], seed=2), meta={"v": object()})
