"""The layer registry (minirso.nn.layer): qualified keys, a user's layer beside minirso's of the same name, and
architectures with the bare names that earlier checkpoints hold."""

import numpy as np
import pytest

import minirso
from minirso import checkpoint, models
from minirso.nn import Sequential, layer


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry for one test: the layer classes a test defines are gone after it."""
    monkeypatch.setattr(layer, "LAYER_TYPES", dict(layer.LAYER_TYPES))
    return layer.LAYER_TYPES


def _bare(value):
    """An architecture with every layer type written as a bare class name, as earlier minirso versions did."""
    if isinstance(value, dict):
        return {k: v.rsplit(".", 1)[-1] if k == "type" else _bare(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bare(v) for v in value]
    return value


def _types(arch):
    """Every layer type named in an architecture, nested blocks included."""
    if isinstance(arch, dict):
        return ([arch["type"]] if "type" in arch else []) + [t for v in arch.values() for t in _types(v)]
    if isinstance(arch, list):
        return [t for v in arch for t in _types(v)]
    return []


def test_keys_are_module_and_qualified_class_names():
    assert layer.LAYER_TYPES["minirso.nn.dense.Dense"] is minirso.nn.Dense
    assert layer.LAYER_TYPES["minirso.nn.conv.Conv2d"] is minirso.nn.Conv2d
    for key, cls in layer.LAYER_TYPES.items():
        assert key == f"{cls.__module__}.{cls.__qualname__}" == layer.type_name(cls)
    assert minirso.nn.Dense(3, 2).to_dict()["type"] == "minirso.nn.dense.Dense"
    types = _types(models.rso_cifar(10).architecture())  # nested blocks too
    assert "minirso.nn.residual.Residual" in types and "minirso.nn.conv.Conv2d" in types
    assert all(t.startswith("minirso.nn.") and t in layer.LAYER_TYPES for t in types)


def test_a_users_layer_named_dense_does_not_replace_minirsos(registry, tmp_path):
    class Dense(minirso.nn.Dense):  # the user's own layer, with minirso's class name
        pass

    assert registry["minirso.nn.dense.Dense"] is minirso.nn.Dense
    assert registry[layer.type_name(Dense)] is Dense and layer.type_name(Dense) != "minirso.nn.dense.Dense"
    ours = models.mlp([3, 2], seed=1)
    theirs = Sequential(Dense(3, 2, name="fc1"), seed=1)
    for model, cls in ((ours, minirso.nn.Dense), (theirs, Dense)):
        assert type(Sequential.from_architecture(model.architecture()).layers[0]) is cls
        checkpoint.save(tmp_path / "run.h5", model)
        loaded = checkpoint.load(tmp_path / "run.h5").model
        assert type(loaded.layers[0]) is cls
        assert np.array_equal(minirso.to_numpy(loaded.params), minirso.to_numpy(model.params))
    # a bare "Dense" (earlier checkpoints) is minirso's, even with the user's Dense registered
    assert layer.layer_type("Dense") is minirso.nn.Dense


def test_architectures_with_bare_names_still_load(registry, tmp_path, monkeypatch, rng):
    """A checkpoint as earlier minirso versions wrote it (format 1, bare layer names) loads, bit for bit."""

    class BatchNorm2d(minirso.nn.BatchNorm2d):  # a user's layer with a minirso name must not capture it
        pass

    model = models.rso_cifar(10, seed=4)  # residual blocks: nested layer dicts
    model.params[...] = minirso.asarray(rng.normal(0, 0.5, model.num_params).astype(np.float32))
    old = _bare(model.architecture())
    assert "Residual" in _types(old) and all("." not in t for t in _types(old))
    monkeypatch.setattr(model, "architecture", lambda: old)
    checkpoint.save(tmp_path / "old.h5", model)
    loaded = checkpoint.load(tmp_path / "old.h5").model
    monkeypatch.undo()
    assert loaded.architecture() == model.architecture()  # minirso's classes, written with qualified names now
    assert [type(x) for _, x, _ in loaded.named_layers()] == [type(x) for _, x, _ in model.named_layers()]
    assert np.array_equal(minirso.to_numpy(loaded.params), minirso.to_numpy(model.params))


def test_a_minirso_layer_found_after_its_module_moved():
    assert layer.layer_type("minirso.nn.layers_of_old.Dense") is minirso.nn.Dense


def test_names_that_are_not_minirsos_layers(registry):
    class Block(minirso.nn.Identity):
        pass

    assert layer.layer_type("Block") is Block  # the one registered layer of that bare name
    with pytest.raises(ValueError, match="unknown layer type 'mymodule.Dense'"):
        layer.layer_type("mymodule.Dense")  # a user's qualified name is never read as minirso's
    with pytest.raises(ValueError, match="unknown layer type 'minirso.nn.dense.NoSuchLayer'"):
        layer.layer_type("minirso.nn.dense.NoSuchLayer")

    def other():
        class Block(minirso.nn.Identity):
            pass

        return Block

    second = other()
    assert layer.layer_type(layer.type_name(second)) is second and layer.layer_type(layer.type_name(Block)) is Block
    with pytest.raises(ValueError, match="'Block' is ambiguous"):
        layer.layer_type("Block")
