"""minirso.checkpoint.codec: every kind of value comes back equal and of the same type; what cannot be stored
exactly raises TypeError at save time and writes nothing."""

import h5py
import numpy as np
import pytest

from minirso import checkpoint, models
from minirso.checkpoint import CheckpointError, codec

from .helpers import same, saved, temporaries


def _every_kind():
    """One value of every kind the codec stores (and the edge cases of each), with the kind it is stored as."""
    rng = np.random.default_rng(0)
    values = {
        "int": (7, "int"),
        "negative": (-3, "int"),
        "big": (2**64 + 5, "bigint"),
        "very_negative": (-(2**70), "bigint"),
        "float": (0.1, "float"),
        "nan": (float("nan"), "float"),
        "inf": (float("-inf"), "float"),
        "negative_zero": (-0.0, "float"),
        "true": (True, "bool"),
        "false": (False, "bool"),
        "none": (None, "none"),
        "text": ("sigma σ", "str"),
        "nul_text": ("a\0b", "json"),
        "surrogate": ("\ud800", "json"),
        "f32": (rng.random((3, 2), dtype=np.float32), "ndarray"),
        "f16": (np.arange(4, dtype=np.float16), "ndarray"),
        "i8": (np.int8([-1, 2]), "ndarray"),
        "u64": (np.array([2**64 - 1], np.uint64), "ndarray"),
        "bools": (np.array([True, False]), "ndarray"),
        "c64": (np.array([1 + 2j], np.complex64), "ndarray"),
        "empty": (np.zeros(0, np.float32), "ndarray"),
        "empty2d": (np.zeros((0, 3)), "ndarray"),
        "zero_d": (np.array(2.5), "ndarray"),
        "big_endian": (np.arange(3, dtype=">f4"), "ndarray"),
        "np_scalar": (np.float32(1.5), "numpy-scalar"),
        "np_int": (np.int64(-4), "numpy-scalar"),
        "np_bool": (np.bool_(True), "numpy-scalar"),
        "floats": ([0.5, float("nan")], "list"),
        "ints": ([1, 2], "list"),
        "flags": ((True, False), "tuple"),
        "pair": ((1, 2), "tuple"),
        "no_items": ([], "list"),
        "no_tuple": ((), "tuple"),
        "mixed": ([1, "a", None, [2.5]], "json"),
        "nested": ({"a": {"b": [1.0]}, "c": np.ones(2)}, "dict"),
        "records": (
            [
                {"cycle": 0, "name": "fc.weight", "loss": float("nan"), "ok": True, "maybe": None, "huge": 2**80},
                {"cycle": 1, "name": "conv6.weight", "loss": 1.25, "ok": False, "maybe": 0.5, "huge": 3},
            ],
            "table",
        ),
        "ragged": ([{"a": 1}, {"b": 2}], "json"),
        "empty_rows": ([{}, {}], "table"),
        "np_cells": ([{"acc": np.float64(0.5), "n": np.int64(3)}], "table"),
    }
    return {k: v for k, (v, _) in values.items()}, {k: kind for k, (_, kind) in values.items()}


def test_every_kind_of_value_round_trips_with_its_type(tmp_path):
    state, _ = _every_kind()
    sd = {
        "type": "Custom",
        "hyperparameters": {"seed": 2**64 - 1, "n_s": float("inf"), "batch": None, "flag": True},
        "state": state,
    }
    path = saved(tmp_path / "kinds.h5", models.mlp([2, 2], seed=0), sd, {"h": state}, meta={"k": [1, 2]})
    ck = checkpoint.load(path)
    expected = dict(state, np_cells=[{"acc": 0.5, "n": 3}])  # NumPy scalars in tables become Python numbers
    assert same(ck.optimizer["hyperparameters"], sd["hyperparameters"])
    assert same(ck.optimizer["state"], expected)
    assert same(ck.history["h"], expected)
    assert list(ck.optimizer["state"]) == list(state)  # key order too


def test_each_value_is_stored_as_its_kind(tmp_path):
    """The kind attribute, read with plain h5py, is the one the codec's table (and docs/checkpoint-format.md)
    names; table columns carry their column kind."""
    state, kinds = _every_kind()
    path = saved(tmp_path / "kinds.h5", models.mlp([2, 2], seed=0), None, state)
    with h5py.File(path, "r") as f:
        stored = {k: f[f"history/{k}"].attrs["kind"].decode() for k in state}
        columns = {k: f[f"history/records/{k}"].attrs["kind"].decode() for k in state["records"][0]}
    assert stored == kinds
    assert columns == {"cycle": "int", "name": "str", "loss": "float", "ok": "bool", "maybe": "json", "huge": "json"}
    assert set(kinds.values()) == set(codec.KINDS)  # every kind is exercised


def test_a_removed_kind_fails_to_load_naming_it(tmp_path, monkeypatch):
    """Each kind is one writer/reader pair in codec.KINDS: without its pair, a file holding it says so."""
    path = saved(tmp_path / "big.h5", models.mlp([2, 2], seed=0), None, {"big": 2**70})
    monkeypatch.delitem(codec.KINDS, "bigint")
    with pytest.raises(CheckpointError, match="unknown kind 'bigint'"):
        checkpoint.load(path)
    with pytest.raises(TypeError, match="cannot store a int at /history/big"):
        checkpoint.save(tmp_path / "again.h5", models.mlp([2, 2], seed=0), None, {"big": 2**70})


@pytest.mark.parametrize(
    "bad",
    [
        {"obj": np.array([object()], dtype=object)},
        {"s": {1, 2}},
        {"tuple_mix": (1, "a")},
        {"int_keys": {1: 2}},
        {"unicode_array": np.array(["a"])},
        {"nested_tuple": [(1, 2)]},
    ],
)
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
