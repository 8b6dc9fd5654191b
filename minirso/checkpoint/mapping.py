"""Where each part of a run lives in the file: the model, the optimizer's state, the history, the metadata.

::

    /model/architecture.json      Sequential.architecture() as JSON; from_architecture rebuilds the model
    /model/conv1/weight           one dataset per parameter tensor, in its natural shape (a group per layer)
    /model/bn1/running_mean       BatchNorm statistics (model.buffers()) beside the layer's parameters
    /optimizer/type               the optimizer's state_dict(): its class name,
    /optimizer/hyperparameters.json   its hyperparameters as exact JSON,
    /optimizer/state              and its state, a group of values (codec.py)
    /history                      the training history, a group of values (absent if none)
    /meta.json                    the run's metadata as JSON
    root attributes               format, versions of minirso / NumPy / CuPy / h5py / HDF5 / Python, created, ...

:func:`write_run` writes all of it through the integrity layer's Writer; :func:`decode` reads it back
from a verified tree into a :class:`Checkpoint`.  The flat ``model.params`` buffer is not stored: the
model is rebuilt from its architecture and each tensor is copied into its slice, bit-identical.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib.util
import json
import os
import platform
import sys

import h5py
import numpy

from ..backend import get_array_module, to_numpy
from ..nn.sequential import Sequential
from .codec import exact_json, plain_text, read_value, text, write_value
from .errors import CheckpointError
from .integrity import FORMAT, FORMAT_VERSION

__all__ = ["Checkpoint", "optimizer_state", "root_attributes", "write_run", "decode"]

_INT64 = (-(2**63), 2**63 - 1)


@dataclasses.dataclass
class Checkpoint:
    """What :func:`minirso.checkpoint.load` returns.

    ``model``: a :class:`~minirso.nn.Sequential` on the active backend, parameters and BatchNorm
    statistics bit-identical to the saved ones, in **eval mode** (``model.training`` is False): ready for
    inference (``model.predict(x)``), BatchNorm using the saved running statistics, so a row's output does
    not depend on its batch.  To continue training it yourself call ``model.train()`` first (RSO does
    that itself, :class:`~minirso.train.Trainer` copies the weights into its own model);
    ``optimizer``: the saved ``state_dict()`` (or None),
    ready for ``optimizer.load_state_dict``; ``history``: as saved (or None); ``meta``: the JSON
    metadata (``{}`` if none); ``attrs``: the file's root attributes (versions, creation time, ...).
    """

    path: str
    model: Sequential
    optimizer: dict | None
    history: dict | None
    meta: dict
    attrs: dict


# ================================================================================================
# writing
# ================================================================================================
def optimizer_state(optimizer):
    """The ``{"type", "hyperparameters", "state"}`` dict of an optimizer or state_dict, or None."""
    if optimizer is None:
        return None
    sd = optimizer.state_dict() if callable(getattr(optimizer, "state_dict", None)) else optimizer
    keys = {"type", "hyperparameters", "state"}
    if not isinstance(sd, dict) or set(sd) != keys:
        raise TypeError(
            f"optimizer must be a minirso Optimizer or its state_dict() (a dict with keys "
            f"{sorted(keys)}), got {type(sd).__name__}"
        )
    if not (isinstance(sd["type"], str) and plain_text(sd["type"])) or not isinstance(sd["state"], dict):
        raise TypeError("optimizer state_dict: 'type' must be a str and 'state' a dict")
    return sd


def write_run(w, model, state, history, meta):
    """Model, optimizer ``state`` (from :func:`optimizer_state`), history and meta through the Writer ``w``."""
    _write_model(w, model)
    if state is not None:
        w.group("/optimizer")
        w.dataset("/optimizer/type", state["type"])
        w.dataset("/optimizer/hyperparameters.json", exact_json(state["hyperparameters"], "optimizer hyperparameters"))
        write_value(w, "/optimizer/state", state["state"])
    if history is not None:
        write_value(w, "/history", history)
    w.dataset("/meta.json", _lenient_json(meta if meta is not None else {}))


def root_attributes(model) -> dict:
    """Who wrote the file, when, with what: for people (``h5ls``, ``minirso inspect``); checksummed too."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "minirso_version": getattr(sys.modules.get("minirso"), "__version__", "unknown"),
        "numpy_version": numpy.__version__,
        "cupy_version": _cupy_version(),
        "h5py_version": h5py.version.version,
        "hdf5_version": h5py.version.hdf5_version,
        "python_version": platform.python_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": model.seed if _INT64[0] <= model.seed <= _INT64[1] else str(model.seed),
        "backend": "cupy" if get_array_module(model.params) is not numpy else "numpy",
    }


@functools.lru_cache(maxsize=1)
def _cupy_version() -> str:
    """CuPy's version without importing it (an import can take seconds); "none" if it is not installed."""
    if "cupy" in sys.modules:
        return str(getattr(sys.modules["cupy"], "__version__", "unknown"))
    if importlib.util.find_spec("cupy") is None:
        return "none"
    from importlib import metadata

    dists = metadata.packages_distributions().get("cupy", [])
    return metadata.version(dists[0]) if dists else "unknown"


def _model_path(name: str) -> str:
    """Parameter or buffer name -> dataset path: ``res2.conv2.weight`` -> ``/model/res2/conv2/weight``."""
    return "/model/" + name.replace(".", "/")


def _write_model(w, model):
    """``/model/architecture.json`` and one dataset per parameter tensor and BatchNorm statistic."""
    # "architecture.json" cannot clash with a layer group: layer names contain no "."
    w.dataset("/model/architecture.json", exact_json(model.architecture(), "model architecture"))
    layers = {p: layer for p, layer, _ in model.named_layers()}
    flat = to_numpy(model.params)  # (P,) on the host: one copy for all tensors
    tensors = [(g.name, flat[g.slice].reshape(g.shape)) for g in model.param_groups]
    tensors += [(name, to_numpy(b)) for name, b in model.buffers().items()]
    for name, array in tensors:
        parts = name.split(".")
        for i in range(1, len(parts)):  # a group per layer path, labelled with the layer's class name (for people)
            layer_path = ".".join(parts[:i])
            if _model_path(layer_path) not in w:
                w.group(_model_path(layer_path), type=type(layers[layer_path]).__name__)
        w.dataset(_model_path(name), numpy.ascontiguousarray(array))


def _lenient_json(meta) -> str:
    """``meta`` as JSON; NumPy scalars and arrays become Python numbers and lists (documented)."""
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")

    def default(o):
        if isinstance(o, (numpy.generic, numpy.ndarray)):
            return o.tolist()
        raise TypeError(f"cannot store a {type(o).__name__} in meta (it must be JSON-able)")

    return json.dumps(meta, default=default)


# ================================================================================================
# reading
# ================================================================================================
def decode(tree, path) -> Checkpoint:
    """The :class:`Checkpoint` held by a verified :class:`~minirso.checkpoint.integrity.Tree`."""
    optimizer = None
    if "/optimizer" in tree:
        optimizer = {
            "type": text(tree.value("/optimizer/type")),
            "hyperparameters": json.loads(text(tree.value("/optimizer/hyperparameters.json"))),
            "state": read_value(tree, "/optimizer/state"),
        }
    return Checkpoint(
        path=os.fspath(path),
        model=_read_model(tree, path),
        optimizer=optimizer,
        history=read_value(tree, "/history") if "/history" in tree else None,
        meta=json.loads(text(tree.value("/meta.json"))),
        attrs=dict(tree.nodes["/"].attrs),
    )


def _read_model(tree, path) -> Sequential:
    """Rebuild from the architecture, then set every parameter tensor and buffer from its dataset."""
    arch = json.loads(text(tree.value("/model/architecture.json")))
    try:
        model = Sequential.from_architecture(arch)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(path, f"architecture mismatch: {e}") from e
    flat = numpy.empty(model.num_params, model.params.dtype)  # (P,) assembled on the host
    for g in model.param_groups:
        flat[g.slice] = _tensor(tree, path, g.name, g.shape, model.params.dtype).reshape(-1)
    xp = get_array_module(model.params)
    model.params[...] = xp.asarray(flat)  # in place: the layers' views stay bound
    for name, current in model.buffers().items():  # in place: same shape and dtype (checked by _tensor)
        current[...] = xp.asarray(_tensor(tree, path, name, current.shape, current.dtype))
    expected = {_model_path(n) for n in [g.name for g in model.param_groups] + list(model.buffers())}
    extra = sorted(
        p
        for p, n in tree.nodes.items()
        if p.startswith("/model/") and n.type == "dataset" and p not in expected and p != "/model/architecture.json"
    )
    if extra:
        raise CheckpointError(path, f"architecture mismatch: dataset {extra[0]} is not part of the architecture")
    return model.eval()  # loaded for inference: BatchNorm uses the saved running statistics (see Checkpoint)


def _tensor(tree, path, name, shape, dtype):
    p = _model_path(name)
    if p not in tree or tree.nodes[p].type != "dataset":
        raise CheckpointError(path, f"architecture mismatch: no dataset {p} for the architecture's {name}")
    a = numpy.asarray(tree.value(p))
    if a.shape != tuple(shape) or a.dtype != dtype:
        raise CheckpointError(
            path,
            f"architecture mismatch: dataset {p} is {a.dtype} {a.shape}, the "
            f"architecture needs {numpy.dtype(dtype)} {tuple(shape)}",
        )
    return a
