"""Checkpoints: a model, its optimizer's state, the training history and metadata in one HDF5 file.

::

    from minirso import checkpoint
    checkpoint.save("run.h5", model, optimizer, history, meta={"cycle": 3}, keep_previous=True)
    ck = checkpoint.load("run.h5", fallback=True)   # ck.model, ck.optimizer, ck.history, ck.meta, ck.attrs
    ck.model.predict(x)                              # the model comes back in eval mode, ready for inference
    checkpoint.load("run.h5", verify="data")         # also accept attributes added later, e.g. with h5py
    checkpoint.verify("run.h5")                      # every checksum, without building a model
    checkpoint.check_writable("runs/run.h5")         # before a long run: fail now, not at its first save

The file is plain HDF5 that h5py alone can read (layout: ``docs/checkpoint-format.md``).  What this
module adds are two promises, and the reason they need work is that HDF5 makes neither:

**The path always holds a complete checkpoint, even if the process is killed mid-save.**  HDF5 promises
nothing about a file that was being written when its process died: it may be unreadable, or readable
with garbage.  So :func:`save` never writes the target.  It writes a uniquely named temporary file in
the same directory (``.run.h5.tmp-<pid>-<random>``), seals it (below), fsyncs it, reads it back, and
only then renames it onto the target with ``os.replace``.  A rename within one file system is atomic:
a reader sees the old file or the new one, never a mixture.  Then the directory is fsynced so that the
rename itself survives a power cut.  A killed save leaves only its temporary, which nobody reads and
the next save in that directory deletes.  ``keep_previous=True`` first hard-links the old file to a
temporary name and renames that onto ``run.h5.prev``: at no instant is ``run.h5`` missing.

**A damaged file never loads with changed values.**  HDF5 checksums some of its own metadata but none
of the data, so a flipped bit in a weight loads silently.  Two layers of sha256 guard against that:

1. The first 512 bytes are the HDF5 *user block*, which HDF5 reserves for the application and never
   reads.  We put a short text header there: the format, the file's size and the sha256 of every byte
   after the header.  Truncation and any flipped bit are caught here.
2. Inside the file, a manifest (``/manifest.json``) lists every group and dataset with its attributes,
   and every dataset with the sha256 of its dtype, shape and bytes; the manifest's own sha256 is a root
   attribute.  This second layer says *which* dataset changed, and it is a complete check on its own:
   the tests run both layers separately against thousands of damaged files.

Every problem with a file (missing, not a checkpoint, unknown version, truncated, a checksum, an
architecture that does not fit the weights) and every failure to write one (a folder that is missing,
read-only or full) raises ONE exception type, :class:`CheckpointError`, whose message names the file
and the problem; whatever h5py, json or the OS raised is its ``__cause__``.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import functools
import hashlib
import importlib.util
import io
import json
import math
import os
import platform
import re
import secrets
import shutil
import sys
import warnings

import h5py
import numpy

from .backend import get_array_module, to_numpy
from .nn.sequential import Sequential

__all__ = ["CheckpointError", "CheckpointWarning", "Checkpoint", "save", "load", "verify", "summary",
           "previous_path", "check_writable", "FORMAT", "FORMAT_VERSION"]

FORMAT = "minirso-checkpoint"
FORMAT_VERSION = 1
_HEADER_SIZE = 512  # the HDF5 user block: HDF5 finds its superblock right after it
_LIBVER = ("v110", "v110")  # HDF5 1.10 object format: its metadata carries HDF5's own checksums, and
#                             any HDF5 >= 1.10 (h5py, h5ls, MATLAB, ...) reads it
_INT64 = (-(2**63), 2**63 - 1)

# Everything that reading a damaged file can raise; turned into CheckpointError.  (MemoryError: a
# damaged size field can ask for an absurd allocation.)
_FILE_ERRORS = (OSError, LookupError, ValueError, TypeError, RuntimeError, ArithmeticError, MemoryError)


class CheckpointError(Exception):
    """A checkpoint file cannot be used (missing, not a checkpoint, unknown version, damaged, or not
    fitting its own architecture) or cannot be written (the problem names the folder, the cause and the
    fix).  ``str(err)`` is ONE line, ``"<path>: <problem>"``; ``err.path`` and
    ``err.problem`` hold the parts."""

    def __init__(self, path, problem: str):
        self.path = os.fspath(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever libhdf5 put in its message
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):  # picklable (multiprocessing) although __init__ takes two arguments
        return type(self), (self.path, self.problem)


class CheckpointWarning(UserWarning):
    """``load(..., fallback=True)`` used the previous checkpoint, or ``save`` did not keep a damaged one."""


@dataclasses.dataclass
class Checkpoint:
    """What :func:`load` returns.

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


def previous_path(path) -> str:
    """Where ``save(..., keep_previous=True)`` keeps the checkpoint it replaced: ``path + ".prev"``."""
    return os.fspath(path) + ".prev"


# ================================================================================================
# save
# ================================================================================================
def save(path, model, optimizer=None, history=None, *, meta=None, keep_previous: bool = False):
    """Write a checkpoint of ``model`` (and optionally optimizer state, history and metadata) to ``path``.

    ``optimizer``: an :class:`~minirso.optim.Optimizer`, or a ``state_dict()`` it made, or None.
    ``history``: a dict of 1-D number sequences / arrays and *tables* (lists of flat dicts of
    int / float / bool / str / None), e.g. ``{"eval": [{"cycle": 0, "test_accuracy": 0.71}, ...]}``.
    ``meta``: a JSON-able dict (run configuration, position).  ``keep_previous``: the checkpoint at
    ``path`` (if it verifies) becomes :func:`previous_path` (``path + ".prev"``).

    Values that cannot be stored exactly raise TypeError and leave ``path`` untouched.  A file that
    cannot be written (missing, read-only or full folder, ...) raises :class:`CheckpointError` naming
    the folder, the cause and the fix, and also leaves ``path`` untouched; :func:`check_writable` finds
    most of these before a long run starts.  The folder must exist (:func:`check_writable` can create it).
    """
    path = os.fspath(path)
    state = _optimizer_state(optimizer)
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"history must be a dict or None, got {type(history).__name__}")
    _remove_stale_temporaries(path)
    tmp = _temporary_name(path)
    try:
        _write_hdf5(tmp, model, state, history, meta)
        _seal(tmp)
        verify(tmp)  # a file that does not read back never replaces one that does
        if keep_previous:
            _keep_previous(path)
        os.replace(tmp, path)  # the atomic step: before it readers see the old file, after it the new
    except BaseException as e:  # also KeyboardInterrupt: leave no temporary behind
        _remove_quietly(tmp)
        if isinstance(e, OSError):  # h5py's and the OS's write errors (a raw OSError names the temporary)
            raise _write_error(path, e) from e
        raise
    _fsync_directory(path)


def check_writable(path, *, create_folders: bool = False) -> str:
    """Raise :class:`CheckpointError` now if :func:`save` could not write a checkpoint at ``path``.

    For the start of a long run, so that a bad ``--checkpoint`` fails in a second instead of after the
    first cycle.  ``create_folders=True`` first creates the missing folders of ``path`` (what the
    trainer's saves do).  The test is real: a probe file is created in the folder and removed again
    (permission bits say nothing for root, read-only mounts or full disks with quotas).  ``path`` may
    exist (a save replaces it) but must not be a folder.  Returns the absolute folder.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.basename(path) or os.path.isdir(path):
        raise CheckpointError(path, "is a folder, not a file name: give the checkpoint a file name, e.g. "
                                    f"{os.path.join(path, 'run.h5')}")
    probe = _temporary_name(path)  # the temporaries' pattern: a probe left by a kill is cleaned by the next save
    if create_folders:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise _write_error(path, e, creating=True) from e
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.remove(probe)
    except OSError as e:
        raise _write_error(path, e) from e
    return folder


_FIXES = {  # errno -> what the user can do about it
    errno.ENOENT: "the folder does not exist: create it, or choose another path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a part of the path is a file, not a folder: choose another path",  # (from creating folders)
    errno.EISDIR: "the path is a folder: give the checkpoint a file name, e.g. run.h5",
    errno.EACCES: "no permission to write there: fix the folder's permissions or choose another path",
    errno.EPERM: "the operation is not permitted there: fix the folder's permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose a path on a writable one",
    errno.ENOSPC: "the disk is full: free some space or choose a path on another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose a path on another disk",
}


def _write_error(path, e: OSError, creating: bool = False) -> CheckpointError:
    """The CheckpointError for a failed write (``creating``: of the folder): the folder, the cause, the fix."""
    folder = os.path.dirname(os.path.abspath(path))
    cause = f"{os.strerror(e.errno)} (errno {e.errno})" if e.errno else f"{type(e).__name__}: {e}"
    fix = _FIXES.get(e.errno, "choose a checkpoint path in a folder you can write to")
    if e.errno == errno.ENOENT and (creating or os.path.isdir(folder)):  # e.g. under /proc: no new entries
        fix = "no new files or folders can be made there: choose another path"
    what = "create the folder" if creating else "write a checkpoint in the folder"
    return CheckpointError(path, f"cannot {what} {folder}: {cause}; {fix}")


def _optimizer_state(optimizer):
    """The ``{"type", "hyperparameters", "state"}`` dict of an optimizer or state_dict, or None."""
    if optimizer is None:
        return None
    sd = optimizer.state_dict() if callable(getattr(optimizer, "state_dict", None)) else optimizer
    keys = {"type", "hyperparameters", "state"}
    if not isinstance(sd, dict) or set(sd) != keys:
        raise TypeError(f"optimizer must be a minirso Optimizer or its state_dict() (a dict with keys "
                        f"{sorted(keys)}), got {type(sd).__name__}")
    if not (isinstance(sd["type"], str) and _plain_text(sd["type"])) or not isinstance(sd["state"], dict):
        raise TypeError("optimizer state_dict: 'type' must be a str and 'state' a dict")
    return sd


def _write_hdf5(tmp, model, state, history, meta):
    """The whole file under its temporary name: model, optimizer, history, meta, then the manifest."""
    with h5py.File(tmp, "w-", userblock_size=_HEADER_SIZE, libver=_LIBVER) as f:
        w = _Writer(f)
        _write_model(w, model)
        if state is not None:
            w.group("/optimizer")
            w.dataset("/optimizer/type", state["type"])
            w.dataset("/optimizer/hyperparameters.json", _exact_json(state["hyperparameters"], "optimizer hyperparameters"))
            _write_value(w, "/optimizer/state", state["state"])
        if history is not None:
            _write_value(w, "/history", history)
        w.dataset("/meta.json", _lenient_json(meta if meta is not None else {}))
        w.finish(_root_attributes(model))


class _Writer:
    """Creates groups and datasets, recording each (attributes, and sha256 for datasets) for the manifest."""

    def __init__(self, f):
        self.f = f
        self.objects = {}  # path -> {"type", "attrs", ["sha256"]}, in creation order

    def group(self, path, **attrs):
        self._parents(path)
        g = self.f.create_group(path)
        self._record(g, path, "group", attrs)

    def dataset(self, path, data, **attrs):
        """``data``: a str (stored as fixed-length UTF-8 text) or a NumPy array (see :func:`_text_array`)."""
        self._parents(path)
        ds = self.f.create_dataset(path, data=_fixed_text(data) if isinstance(data, str) else data)
        self._record(ds, path, "dataset", attrs, sha256=_digest(data))

    def _parents(self, path):
        parent = path.rsplit("/", 1)[0]
        if parent and parent not in self.objects:
            self.group(parent)

    def _record(self, obj, path, kind, attrs, **extra):
        for k, v in attrs.items():
            _set_attr(obj, k, v)
        self.objects[path] = {"type": kind, "attrs": attrs, **extra}

    def finish(self, root_attrs):
        """Root attributes, then the manifest of everything written, then the manifest's sha256."""
        self.objects = {"/": {"type": "group", "attrs": root_attrs}, **self.objects}
        text = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "objects": self.objects})
        self.f.create_dataset("/manifest.json", data=_fixed_text(text))
        for k, v in root_attrs.items():
            _set_attr(self.f, k, v)
        _set_attr(self.f, "manifest_sha256", _digest(text))


# Text is stored as FIXED-length UTF-8 strings.  HDF5 keeps variable-length strings (h5py's default) in
# a "global heap", the one structure of the format without a checksum, and the bit-flip tests found
# that libhdf5 can loop forever on a damaged one.  Every other structure of the HDF5 1.10 format that
# libhdf5 parses carries HDF5's own checksum, so a damaged file makes it fail cleanly instead.
def _fixed_text(text: str):
    """``text`` as a 0-d fixed-length UTF-8 string array (h5py reads it back as bytes)."""
    b = text.encode("utf-8")
    return numpy.array(b, dtype=h5py.string_dtype("utf-8", max(1, len(b))))


def _text_array(texts):
    """A 1-D fixed-length UTF-8 string array of ``texts`` (table columns)."""
    encoded = [t.encode("utf-8") for t in texts]
    return numpy.array(encoded, dtype=h5py.string_dtype("utf-8", max([1] + [len(b) for b in encoded])))


def _set_attr(obj, name, value):
    """Attributes are str (fixed-length UTF-8) or int."""
    if isinstance(value, str):
        obj.attrs.create(name, _fixed_text(value))
    else:
        obj.attrs[name] = numpy.int64(value)


def _digest(value) -> str:
    """sha256 over a dataset's dtype, shape and bytes, as written and as h5py reads it back."""
    h = hashlib.sha256()
    if isinstance(value, (str, bytes)):  # a scalar string: written as str, read back as bytes
        h.update(b"string\0")
        h.update(value.encode("utf-8") if isinstance(value, str) else value)
        return h.hexdigest()
    a = numpy.asarray(value)
    if a.dtype == object:
        raise ValueError("variable-length data is not part of the format")
    h.update(f"{a.dtype.str}{a.shape}\0".encode("ascii"))
    h.update(a.tobytes(order="C"))
    return h.hexdigest()


def _root_attributes(model) -> dict:
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


# ---- the model -----------------------------------------------------------------------------------
def _model_path(name: str) -> str:
    """Parameter or buffer name -> dataset path: ``res2.conv2.weight`` -> ``/model/res2/conv2/weight``."""
    return "/model/" + name.replace(".", "/")


def _write_model(w, model):
    """``/model/architecture.json`` and one dataset per parameter tensor and BatchNorm statistic."""
    # "architecture.json" cannot clash with a layer group: layer names contain no "."
    w.dataset("/model/architecture.json", _exact_json(model.architecture(), "model architecture"))
    layers = {p: layer for p, layer, _ in model.named_layers()}
    flat = to_numpy(model.params)
    tensors = [(g.name, flat[g.slice].reshape(g.shape)) for g in model.param_groups]
    tensors += [(name, to_numpy(b)) for name, b in model.buffers().items()]
    for name, array in tensors:
        parts = name.split(".")
        for i in range(1, len(parts)):  # a group per layer path, labelled with the layer's type
            layer_path = ".".join(parts[:i])
            if _model_path(layer_path) not in w.objects:
                w.group(_model_path(layer_path), type=type(layers[layer_path]).__name__)
        w.dataset(_model_path(name), numpy.ascontiguousarray(array))


# ---- optimizer state and history: one encoder for nested values ------------------------------------
# Each stored value carries an attribute "kind" that says how to rebuild the Python value:
#   dict            group; attribute "keys" (JSON list) keeps the key order
#   table           group for a list of flat dicts with the same keys: one column dataset per key,
#                   attributes "columns" (JSON list, the key order) and "rows"
#   ndarray         a NumPy array, any shape and numeric/bool dtype (0-d and empty included)
#   numpy-scalar    a NumPy scalar (np.float32(1.5) comes back as np.float32)
#   int float bool  0-d int64 / float64 / bool;   bigint: an int outside int64, as decimal text
#   none str        0-d uint8 0 / a UTF-8 string
#   list tuple      a sequence of numbers of one type: 1-D int64 / float64 / bool
#   json            anything else that JSON stores exactly (checked at save time)
# Column datasets of a table have kind int / float / bool / str, or json (one JSON text per cell:
# mixed types, None, ints beyond int64).
def _write_value(w, path, value):
    if isinstance(value, dict):
        return _write_dict(w, path, value)
    if isinstance(value, numpy.ndarray) or type(value).__module__.startswith("cupy"):
        return w.dataset(path, _numeric_array(value, path), kind="ndarray")
    if isinstance(value, numpy.generic):
        return w.dataset(path, _numeric_array(numpy.asarray(value), path), kind="numpy-scalar")
    if isinstance(value, (list, tuple)):
        return _write_sequence(w, path, value)
    data, kind = _scalar(value, path)
    return w.dataset(path, data, kind=kind)


def _numeric_array(value, path):
    a = to_numpy(value)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"cannot store the {a.dtype} array at {path}: only bool and numeric arrays")
    return numpy.array(a, order="C")  # a C-ordered copy (numpy.ascontiguousarray would make 0-d 1-d)


def _scalar(value, path):
    """(data, kind) for a Python scalar; exact types only, so that what comes back has the same type."""
    t = type(value)
    if value is None:
        return numpy.asarray(0, numpy.uint8), "none"
    if t is bool:
        return numpy.asarray(value), "bool"
    if t is int:
        return (numpy.asarray(value, numpy.int64), "int") if _INT64[0] <= value <= _INT64[1] else (str(value), "bigint")
    if t is float:
        return numpy.asarray(value, numpy.float64), "float"
    if t is str:
        return (value, "str") if _plain_text(value) else (json.dumps(value), "json")
    raise TypeError(f"cannot store a {t.__name__} at {path}: use numbers, str, None, NumPy arrays, "
                    "lists, tuples and dicts of those, or lists of flat dicts (tables)")


def _plain_text(s: str) -> bool:
    """HDF5 strings are NUL-terminated UTF-8: others (NUL, lone surrogates) are stored as JSON instead."""
    if "\0" in s:
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_name(key) -> bool:
    """A dict key or table column that can be an HDF5 link name."""
    return type(key) is str and key not in ("", ".", "..") and "/" not in key and _plain_text(key)


def _write_dict(w, path, d):
    keys = list(d)
    if not all(_valid_name(k) for k in keys):
        return w.dataset(path, _exact_json(d, path), kind="json")
    w.group(path, kind="dict", keys=json.dumps(keys))
    for k in keys:
        _write_value(w, f"{path}/{k}", d[k])


def _python(v):
    """NumPy scalars inside lists and tables are stored as the Python number they equal."""
    return v.item() if isinstance(v, numpy.generic) else v


def _write_sequence(w, path, seq):
    if seq and isinstance(seq, list) and all(type(r) is dict for r in seq) and _write_table(w, path, seq):
        return
    items = [_python(v) for v in seq]
    column = _number_column(items)
    if column is not None:
        return w.dataset(path, column[0], kind=type(seq).__name__)
    return w.dataset(path, _exact_json(items if isinstance(seq, list) else seq, path), kind="json")


def _number_column(cells):
    """(array, kind) when every cell is a bool, or every one an int64-range int, or every one a float."""
    types = {type(c) for c in cells}
    if types <= {bool}:
        return numpy.asarray(cells, bool), "bool"
    if types == {int} and all(_INT64[0] <= c <= _INT64[1] for c in cells):
        return numpy.asarray(cells, numpy.int64), "int"
    if types == {float}:
        return numpy.asarray(cells, numpy.float64), "float"
    return None


def _table_column(cells):
    """(data, kind) for one table column, or None if a cell is not a flat value."""
    column = _number_column(cells)
    if column is not None:
        return column
    types = {type(c) for c in cells}
    if types == {str} and all(_plain_text(c) for c in cells):
        return _text_array(cells), "str"
    if types <= {int, float, bool, str, type(None)}:  # mixed types, None, big ints: JSON per cell
        return _text_array([json.dumps(c) for c in cells]), "json"
    return None


def _write_table(w, path, rows) -> bool:
    """A list of flat dicts with the same keys in the same order as columns; False if it is not one."""
    keys = list(rows[0])
    if not all(_valid_name(k) for k in keys) or any(list(r) != keys for r in rows):
        return False
    columns = [_table_column([_python(r[k]) for r in rows]) for k in keys]
    if any(c is None for c in columns):
        return False
    w.group(path, kind="table", columns=json.dumps(keys), rows=len(rows))
    for k, (data, kind) in zip(keys, columns):
        w.dataset(f"{path}/{k}", data, kind=kind)
    return True


def _identical(a, b) -> bool:
    """Equal with the same types all the way down (NaN equals NaN): what "stored exactly" means."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _exact_json(value, what) -> str:
    """JSON text that reads back as exactly ``value`` (NaN and infinities included), else TypeError."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store {what}: {e}") from e
    if not _identical(json.loads(text), value):
        raise TypeError(f"cannot store {what} exactly: JSON would change it (tuples, non-str keys, "
                        "NumPy scalars?); convert it to lists, str keys and Python numbers")
    return text


def _lenient_json(meta) -> str:
    """``meta`` as JSON; NumPy scalars and arrays become Python numbers and lists (documented)."""
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")

    def default(o):
        if isinstance(o, (numpy.generic, numpy.ndarray)):
            return o.tolist()
        raise TypeError(f"cannot store a {type(o).__name__} in meta (it must be JSON-able)")

    return json.dumps(meta, default=default)


# ---- sealing and replacing -----------------------------------------------------------------------
def _header(size: int, sha256: str) -> bytes:
    """The 512-byte text header in the HDF5 user block (``head -c 512 run.h5`` shows it)."""
    text = (f"{FORMAT} {FORMAT_VERSION}\nsize {size}\nsha256 {sha256}\n"
            f"An HDF5 file follows this {_HEADER_SIZE}-byte header: open it with h5py; "
            "see minirso docs/checkpoint-format.md\n")
    return text.encode("ascii").ljust(_HEADER_SIZE, b"\0")


def _seal(tmp):
    """Write the header (size and sha256 of everything after it) into the user block, then fsync."""
    with open(tmp, "r+b") as fh:
        fh.seek(_HEADER_SIZE)
        h, size = hashlib.sha256(), _HEADER_SIZE
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
        fh.seek(0)
        fh.write(_header(size, h.hexdigest()))
        fh.flush()
        os.fsync(fh.fileno())  # the data must be on disk before the rename makes it the checkpoint


def _temporary_name(path) -> str:
    """``.<name>.tmp-<pid>-<random>`` next to ``path``: hidden, unique, and traceable to its writer."""
    d, name = os.path.split(path)
    return os.path.join(d, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _remove_stale_temporaries(path):
    """Delete temporaries of earlier saves to ``path`` whose writing process is gone (killed mid-save)."""
    d, name = os.path.split(path)
    pattern = re.compile(rf"\.{re.escape(name)}\.tmp-(\d+)-[0-9a-f]+\Z")
    try:
        entries = os.listdir(d or ".")
    except OSError:
        return  # the save itself will report a missing directory
    for entry in entries:
        m = pattern.match(entry)
        if m and not _process_alive(int(m.group(1))):
            _remove_quietly(os.path.join(d, entry))


def _process_alive(pid: int) -> bool:
    """Could process ``pid`` still be writing its temporary?  (Only this host's processes are known.)"""
    if pid == os.getpid() or os.name == "nt":  # another thread of ours; Windows: no safe probe, keep it
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _fsync_directory(path):
    """fsync the directory holding ``path``: makes renames in it durable (POSIX; a no-op on Windows)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # an unreadable directory: the rename is atomic all the same, only less durable
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _keep_previous(path):
    """Make the checkpoint at ``path`` (if any, and if it verifies) ``path.prev``, keeping ``path`` in place.

    A hard link gives the same file a second name without copying; linking to a temporary name and
    renaming that over ``path.prev`` keeps every step atomic.  A damaged file is not kept: it would
    push out the good previous checkpoint that :func:`load` falls back to.
    """
    if not os.path.exists(path):
        return
    prev = previous_path(path)
    try:
        verify(path)
    except CheckpointError as err:
        warnings.warn(f"{err}; it is replaced and not kept as {prev}", CheckpointWarning, stacklevel=3)
        return
    link = _temporary_name(path)
    try:
        try:
            os.link(path, link)
        except OSError:  # a file system without hard links: copy
            shutil.copyfile(path, link)
            with open(link, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(link, prev)
    except BaseException:
        _remove_quietly(link)
        raise
    _fsync_directory(prev)


# ================================================================================================
# load and verify
# ================================================================================================
_VERIFY_LEVELS = ("all", "data")


def load(path, *, fallback: bool = False, verify: str = "all") -> Checkpoint:
    """Read a checkpoint written by :func:`save`, checking every checksum; see :class:`Checkpoint`.

    Any problem with the file raises :class:`CheckpointError` (a missing file too, with "no such
    file").  ``fallback=True``: if ``path`` fails, load :func:`previous_path` instead, with a
    :class:`CheckpointWarning` naming both files and the reason; if that fails too, the error names both.

    ``verify="all"`` (the default): the file must be byte for byte what :func:`save` wrote.
    ``verify="data"``: everything minirso wrote must be intact (every dataset's sha256, every attribute
    it wrote, the set of groups and datasets), but attributes added later (e.g. a note added with h5py)
    are accepted and ignored, and so is the whole-file sha256 that any such edit changes.
    """
    _check_level(verify)
    try:
        return _load(path, verify)
    except CheckpointError as first:
        if not fallback:
            raise
        prev = previous_path(path)
        try:
            ckpt = _load(prev, verify)
        except CheckpointError as second:
            raise CheckpointError(path, f"{first.problem}; the previous checkpoint {prev} failed too: "
                                        f"{second.problem}") from first
        warnings.warn(f"{first}; loaded the previous checkpoint {prev} instead", CheckpointWarning, stacklevel=2)
        return ckpt


def verify(path, *, verify: str = "all") -> dict:
    """Check format, version, header and every checksum without building a model.

    Returns a summary ``{"path", "format_version", "created", "size", "datasets", "groups"}``;
    raises :class:`CheckpointError`.  ``verify``: "all" or "data", as for :func:`load`.
    """
    _check_level(verify)
    data = _read_bytes(path)
    tree = _verified_tree(data, path, verify=verify)
    kinds = [n.type for n in tree.nodes.values()]
    return {"path": os.fspath(path), "format_version": FORMAT_VERSION, "created": tree.nodes["/"].attrs.get("created"),
            "size": len(data), "datasets": kinds.count("dataset"), "groups": kinds.count("group")}


def summary(path) -> str:
    """What ``minirso inspect`` prints: versions, layers with parameter counts, optimizer, history."""
    from .cli import describe  # the text layout lives with the command line

    return describe(load(path))


def _check_level(verify):
    if verify not in _VERIFY_LEVELS:
        raise ValueError(f"verify must be 'all' (the whole file as saved) or 'data' (what minirso wrote; "
                         f"attributes added later are accepted), got {verify!r}")


def _load(path, verify="all") -> Checkpoint:
    return _load_bytes(_read_bytes(path), path, verify=verify)


def _load_bytes(data: bytes, path, check_header: bool = True, verify: str = "all") -> Checkpoint:
    """Verify and decode a file's bytes.  ``check_header=False`` skips the whole-file sha256 and
    relies on the manifest alone (the tests use it to check that layer on its own)."""
    tree = _verified_tree(data, path, check_header, verify)
    try:
        return _decode(tree, path)
    except CheckpointError:
        raise
    except _FILE_ERRORS as e:
        raise CheckpointError(path, f"malformed checkpoint ({type(e).__name__}: {e})") from e


def _read_bytes(path) -> bytes:
    """The whole file: the checksum is computed over exactly the bytes HDF5 then parses."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError as e:
        raise CheckpointError(path, "no such file") from e
    except OSError as e:
        raise CheckpointError(path, f"cannot read the file ({e.strerror or e})") from e


def _verified_tree(data: bytes, path, check_header: bool = True, verify: str = "all") -> "_Tree":
    """Header first (cheap, and catches truncation before libhdf5 parses anything), then the manifest.

    When the file's sha256 or size does not match its header, the HDF5 pass still runs, to say which
    dataset changed; if it finds nothing, the damage is in bytes outside the datasets.  With
    ``verify="data"`` the whole-file size and sha256 are not compared (an attribute added with h5py
    changes both) and added attributes are accepted: the manifest pass alone decides.
    """
    damage = _check_header(data, path, whole_file=verify == "all") if check_header else None
    try:
        tree, added = _read_tree(data, path)
    except CheckpointError as err:
        if damage is None:
            raise
        raise CheckpointError(path, f"{err.problem} ({damage})") from err
    if added and verify == "all":  # (this also explains a header mismatch: the edit changed the file)
        raise CheckpointError(path, _added_problem(added))
    if damage is not None:
        raise CheckpointError(path, f"{damage}: bytes outside the datasets changed after it was written")
    return tree


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_header(data: bytes, path, whole_file: bool = True):
    """Raise for "not a checkpoint", unknown version, truncation, a damaged header.  Return None if
    size and sha256 match the header (or ``whole_file`` is False), else what differs (the HDF5 pass
    then looks for the damage)."""
    if not data:
        raise CheckpointError(path, "empty file (0 bytes): not a minirso checkpoint")
    m = re.fullmatch(rb"minirso-checkpoint (\d+)", data[:64].split(b"\n", 1)[0])
    if m is None:
        magic = f"{FORMAT} {FORMAT_VERSION}\n".encode("ascii")
        if len(data) < len(magic) and magic.startswith(data):
            raise CheckpointError(path, f"truncated: only {len(data)} bytes")
        hdf5 = any(data[i : i + 8] == _HDF5_SIGNATURE for i in (0, 512, 1024, 2048))
        raise CheckpointError(path, "not a minirso checkpoint (" + ("an HDF5 file without the minirso header)"
                                                                    if hdf5 else "not an HDF5 file)"))
    if int(m.group(1)) != FORMAT_VERSION:
        raise CheckpointError(path, f"unknown format version {int(m.group(1))} (this minirso reads version "
                                    f"{FORMAT_VERSION}; a newer minirso wrote it?)")
    if len(data) < _HEADER_SIZE:
        raise CheckpointError(path, f"truncated: only {len(data)} bytes, less than the {_HEADER_SIZE}-byte header")
    m = re.match(rb"minirso-checkpoint 1\nsize (\d{1,20})\nsha256 ([0-9a-f]{64})\n", data)
    if m is None or data[:_HEADER_SIZE] != _header(int(m.group(1)), m.group(2).decode()):
        raise CheckpointError(path, f"damaged header (the first {_HEADER_SIZE} bytes)")
    size = int(m.group(1))
    if len(data) < size:
        raise CheckpointError(path, f"truncated: the file has {len(data)} bytes, it was written with {size}")
    if not whole_file:
        return None
    if len(data) > size:
        return f"the file has {len(data)} bytes, it was written with {size}"
    if hashlib.sha256(memoryview(data)[_HEADER_SIZE:]).hexdigest() != m.group(2).decode():
        return "the file's sha256 does not match its header"
    return None


# ---- the manifest pass ---------------------------------------------------------------------------
@dataclasses.dataclass
class _Node:
    type: str  # "group" or "dataset"
    attrs: dict
    value: object = None  # a dataset's value as h5py read it (ndarray, or bytes for a string)


class _Tree:
    """The verified content of a file, in memory: decoding never touches h5py again."""

    def __init__(self, nodes: dict):
        self.nodes = nodes
        self.children = {p: [] for p, n in nodes.items() if n.type == "group"}
        for p in nodes:
            if p != "/":
                self.children[p.rsplit("/", 1)[0] or "/"].append(p.rsplit("/", 1)[1])

    def __contains__(self, p):
        return p in self.nodes

    def value(self, p):
        return self.nodes[p].value


def _read_tree(data: bytes, path):
    """Open the HDF5 image; check format, version, manifest, and every object against the manifest.

    Returns the tree and the attributes minirso did not write, ``[(object path, name), ...]`` (added
    later, e.g. with h5py): only their names are read, never their values (h5py writes a str as a
    variable-length string, in the global heap that HDF5 does not checksum; see :func:`_fixed_text`).
    """
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            _check_identity(f, path)
            manifest = _read_manifest(f, path)
            added = [("/manifest.json", k) for k in f["manifest.json"].attrs]  # minirso writes none there
            nodes = _check_objects(f, manifest, path, added)
            return _Tree(nodes), added
    except CheckpointError:
        raise
    except _FILE_ERRORS as e:
        raise CheckpointError(path, f"unreadable or truncated HDF5 data ({type(e).__name__}: {e})") from e


def _check_identity(f, path):
    fmt = _attr(f.attrs.get("format"))
    if fmt != FORMAT:
        raise CheckpointError(path, f"not a minirso checkpoint (root attribute format is {fmt!r})")
    version = _attr(f.attrs.get("format_version"))
    if version != FORMAT_VERSION:
        raise CheckpointError(path, f"unknown format version {version!r} (this minirso reads version {FORMAT_VERSION})")


def _read_manifest(f, path) -> dict:
    if "manifest.json" not in f:
        raise CheckpointError(path, "missing dataset /manifest.json")
    text = f["manifest.json"][()]
    if not isinstance(text, bytes) or _digest(text) != _attr(f.attrs.get("manifest_sha256")):
        raise CheckpointError(path, "checksum mismatch in dataset /manifest.json")
    manifest = json.loads(text)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, "the manifest is not for this format version")
    return manifest["objects"]


def _check_objects(f, manifest: dict, path, added: list) -> dict:
    """Every object is in the manifest and vice versa, attributes equal, dataset checksums match.
    Attributes not in the manifest are appended to ``added`` as ``(object path, name)``."""
    found = _objects(f)
    missing = [p for p in manifest if p not in found]
    if missing:
        entry = manifest[missing[0]]
        what = entry.get("type", "object") if isinstance(entry, dict) else "object"
        raise CheckpointError(path, f"missing {what} {missing[0]} (listed in the manifest)")
    extra = [p for p in found if p not in manifest]
    if extra:
        raise CheckpointError(path, f"unexpected object {extra[0]} (not in the manifest)")
    return {p: _checked_node(p, found[p], entry, path, added) for p, entry in manifest.items()}


def _objects(f) -> dict:
    """Path -> h5py group or dataset, for everything in the file but the manifest itself."""
    found = {"/": f}

    def collect(name, obj):  # (returning a value would stop the visit)
        found["/" + name] = obj

    f.visititems(collect)
    found.pop("/manifest.json", None)
    return found


def _checked_node(p, obj, entry, path, added: list) -> _Node:
    """Read one object, checking it against its manifest entry (attributes not in it go to ``added``)."""
    kind = "dataset" if isinstance(obj, h5py.Dataset) else "group"
    if kind != entry["type"]:
        raise CheckpointError(path, f"{p} is a {kind}, the manifest says {entry['type']}")
    expected = entry["attrs"]
    ours = set(expected) | ({"manifest_sha256"} if p == "/" else set())  # (the root's is checked with the manifest)
    names = list(obj.attrs)
    added += [(p, k) for k in names if k not in ours]
    attrs = {k: _attr(obj.attrs[k]) for k in names if k in expected}
    for k in expected:
        if k not in attrs:
            raise CheckpointError(path, f"attributes of {p} differ from the manifest (attribute {k!r} is missing)")
        if json.dumps(attrs[k]) != json.dumps(expected[k]):  # types count too: 1 is not "1"
            raise CheckpointError(path, f"attributes of {p} differ from the manifest (attribute {k!r} changed)")
    if kind == "group":
        return _Node(kind, attrs)
    value = obj[()]
    if _digest(value) != entry["sha256"]:
        raise CheckpointError(path, f"checksum mismatch in dataset {p}")
    return _Node(kind, attrs, value)


def _added_problem(added) -> str:
    """The strict load's message for attributes minirso did not write: which, and how to accept them."""
    (p, name), more = added[0], len(added) - 1
    others = f" (and {more} more)" if more else ""
    return (f"attribute {name!r} of {p}{others} was not written by minirso (added after saving, e.g. with h5py), "
            "so the file is not byte for byte as saved; everything minirso wrote is intact: "
            "load(path, verify=\"data\") or `minirso inspect --data-only` accepts added attributes")


def _attr(v):
    """An attribute as a plain Python value (h5py gives NumPy scalars, and sometimes bytes)."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, (numpy.generic, numpy.ndarray)):
        return v.tolist()
    return v


# ---- decoding the verified tree ------------------------------------------------------------------
def _decode(tree: _Tree, path) -> Checkpoint:
    optimizer = None
    if "/optimizer" in tree:
        optimizer = {"type": _text(tree.value("/optimizer/type")),
                     "hyperparameters": json.loads(_text(tree.value("/optimizer/hyperparameters.json"))),
                     "state": _read_value(tree, "/optimizer/state")}
    return Checkpoint(
        path=os.fspath(path),
        model=_read_model(tree, path),
        optimizer=optimizer,
        history=_read_value(tree, "/history") if "/history" in tree else None,
        meta=json.loads(_text(tree.value("/meta.json"))),
        attrs=dict(tree.nodes["/"].attrs),
    )


def _read_model(tree: _Tree, path) -> Sequential:
    """Rebuild from the architecture, then set every parameter tensor and buffer from its dataset."""
    arch = json.loads(_text(tree.value("/model/architecture.json")))
    try:
        model = Sequential.from_architecture(arch)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(path, f"architecture mismatch: {e}") from e
    flat = numpy.empty(model.num_params, model.params.dtype)  # (P,) assembled on the host
    for g in model.param_groups:
        flat[g.slice] = _tensor(tree, path, g.name, g.shape, model.params.dtype).reshape(-1)
    xp = get_array_module(model.params)
    model.params[...] = xp.asarray(flat)  # in place: the layers' views stay bound
    layers = {p: layer for p, layer, _ in model.named_layers()}
    for name, current in model.buffers().items():
        layer_path, attr = name.rsplit(".", 1)
        setattr(layers[layer_path], attr, xp.asarray(_tensor(tree, path, name, current.shape, current.dtype)))
    expected = {_model_path(n) for n in [g.name for g in model.param_groups] + list(model.buffers())}
    extra = sorted(p for p, n in tree.nodes.items() if p.startswith("/model/") and n.type == "dataset"
                   and p not in expected and p != "/model/architecture.json")
    if extra:
        raise CheckpointError(path, f"architecture mismatch: dataset {extra[0]} is not part of the architecture")
    return model.eval()  # loaded for inference: BatchNorm uses the saved running statistics (see Checkpoint)


def _tensor(tree, path, name, shape, dtype):
    p = _model_path(name)
    if p not in tree or tree.nodes[p].type != "dataset":
        raise CheckpointError(path, f"architecture mismatch: no dataset {p} for the architecture's {name}")
    a = numpy.asarray(tree.value(p))
    if a.shape != tuple(shape) or a.dtype != dtype:
        raise CheckpointError(path, f"architecture mismatch: dataset {p} is {a.dtype} {a.shape}, the "
                                    f"architecture needs {numpy.dtype(dtype)} {tuple(shape)}")
    return a


def _read_value(tree: _Tree, p):
    """The Python value stored at ``p`` (see the table of kinds above :func:`_write_value`)."""
    node = tree.nodes[p]
    kind = node.attrs.get("kind")
    if kind == "dict":
        keys = json.loads(node.attrs["keys"])
        _same_members(tree, p, keys)
        return {k: _read_value(tree, f"{p}/{k}") for k in keys}
    if kind == "table":
        return _read_table(tree, p, node)
    if kind not in _SCALAR_READERS:
        raise ValueError(f"{p} has unknown kind {kind!r}")
    return _SCALAR_READERS[kind](node.value)


def _same_members(tree, p, keys):
    if sorted(tree.children.get(p, ())) != sorted(keys):
        raise ValueError(f"the members of group {p} do not match its keys attribute")


def _zero_d(dtype_kind):
    """Reader of a 0-d dataset of one dtype kind as the Python scalar it holds."""

    def read(value):
        a = numpy.asarray(value)
        if a.shape != () or a.dtype.kind != dtype_kind:
            raise ValueError(f"expected a 0-d dataset of dtype kind {dtype_kind!r}, got {a.dtype} {a.shape}")
        return a.item()

    return read


def _sequence(kind):
    def read(value):
        a = numpy.asarray(value)
        if a.ndim != 1:
            raise ValueError(f"expected a 1-D dataset, got shape {a.shape}")
        return a.tolist() if kind is list else tuple(a.tolist())

    return read


def _numeric(value):
    a = numpy.asarray(value)
    if a.dtype.kind not in "biufc":
        raise ValueError(f"expected a numeric dataset, got {a.dtype}")
    return a


def _numpy_scalar(value):
    a = _numeric(value)
    if a.shape != ():
        raise ValueError(f"expected a 0-d dataset, got shape {a.shape}")
    return a[()]


def _text(value) -> str:
    """A string dataset's value (h5py reads UTF-8 strings as bytes)."""
    if not isinstance(value, bytes):
        raise ValueError(f"expected a string dataset, got {type(value).__name__}")
    return value.decode("utf-8")


def _texts(value) -> list:
    """A 1-D string dataset's values."""
    a = numpy.asarray(value)
    if a.ndim != 1 or a.dtype.kind != "S":
        raise ValueError(f"expected a 1-D string dataset, got {a.dtype} {a.shape}")
    return [b.decode("utf-8") for b in a.tolist()]


def _cells(dtype_kind):
    def read(value):
        a = numpy.asarray(value)
        if a.ndim != 1 or a.dtype.kind != dtype_kind:
            raise ValueError(f"expected a 1-D column of dtype kind {dtype_kind!r}, got {a.dtype} {a.shape}")
        return a.tolist()

    return read


_SCALAR_READERS = {
    "ndarray": _numeric,
    "numpy-scalar": _numpy_scalar,
    "none": lambda v: None,
    "bool": _zero_d("b"),
    "int": _zero_d("i"),
    "float": _zero_d("f"),
    "bigint": lambda v: int(_text(v)),
    "str": _text,
    "json": lambda v: json.loads(_text(v)),
    "list": _sequence(list),
    "tuple": _sequence(tuple),
}

_CELL_READERS = {
    "bool": _cells("b"),
    "int": _cells("i"),
    "float": _cells("f"),
    "str": _texts,
    "json": lambda v: [json.loads(t) for t in _texts(v)],
}


def _read_table(tree, p, node):
    keys, rows = json.loads(node.attrs["columns"]), node.attrs["rows"]
    _same_members(tree, p, keys)
    columns = []
    for k in keys:
        col = tree.nodes[f"{p}/{k}"]
        cells = _CELL_READERS[col.attrs["kind"]](col.value)
        if len(cells) != rows:
            raise ValueError(f"column {p}/{k} has {len(cells)} cells, the table {rows} rows")
        columns.append(cells)
    return [dict(zip(keys, cells)) for cells in zip(*columns)] if keys else [{} for _ in range(rows)]
