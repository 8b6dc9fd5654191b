"""Nested Python values (an optimizer's state, the training history) as HDF5 groups and datasets, exactly.

:func:`write_value` stores a value under a path; :func:`read_value` gives back an equal value of the
same type, bit for bit (NaN, -0.0, big ints, NumPy dtypes and key order included).  Each stored value
carries an attribute ``kind`` that names how it was stored.  Every kind is one writer and one reader,
side by side below, and one line in :data:`KINDS`:

=============  ==================================================================================
kind           Python value -> how it is stored
=============  ==================================================================================
dict           a dict with str keys -> a group; attribute ``keys`` (JSON list) keeps the key order
ndarray        a NumPy (or CuPy) array of bool or numeric dtype, any shape, 0-d and empty too
numpy-scalar   a NumPy scalar -> 0-d dataset of its dtype (``np.float32(1.5)`` comes back as one)
table          a list of flat dicts with the same keys -> a group with one column dataset per key;
               attributes ``columns`` (JSON list, the key order) and ``rows``
list, tuple    a list / tuple of numbers of one type -> 1-D int64, float64 or bool
none           None -> 0-d uint8 0
bool           bool -> 0-d bool
int            an int within int64 -> 0-d int64
bigint         an int beyond int64 -> its decimal text
float          float -> 0-d float64 (NaN, infinities and -0.0 exact)
str            str -> fixed-length UTF-8 text
json           anything else that JSON stores exactly (checked when writing): a dict whose keys
               cannot be HDF5 names, a mixed list, a str with NUL or a lone surrogate -> JSON text
=============  ==================================================================================

Scalars and sequences are taken by their exact type, so that what comes back has the type that went
in (except that a dict subclass comes back as a dict, and NumPy scalars inside lists and tables come
back as the Python numbers they equal).  A value that none of the
writers takes raises TypeError when it is written, never later.  Readers raise ValueError for
data that does not fit its kind; :func:`minirso.checkpoint.load` turns that into a CheckpointError.
To remove a kind, delete its writer, its reader and its line in :data:`KINDS`: files holding it then
fail to load with "unknown kind".
"""

from __future__ import annotations

import json
import math

import numpy

from ..backend import to_numpy
from .integrity import text_array

__all__ = ["write_value", "read_value", "KINDS", "exact_json", "plain_text", "text"]

_INT64 = (-(2**63), 2**63 - 1)


def write_value(w, path, value):
    """Store ``value`` at ``path`` through the :class:`~minirso.checkpoint.integrity.Writer` ``w``."""
    for write, _ in KINDS.values():
        if write(w, path, value):
            return
    raise TypeError(
        f"cannot store a {type(value).__name__} at {path}: use numbers, str, None, NumPy arrays, "
        "lists, tuples and dicts of those, or lists of flat dicts (tables)"
    )


def read_value(tree, path):
    """The Python value stored at ``path`` of the verified :class:`~minirso.checkpoint.integrity.Tree`."""
    kind = tree.nodes[path].attrs.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{path} has unknown kind {kind!r}")
    return KINDS[kind][1](tree, path)


# Each kind: ``write_<kind>(w, path, value) -> bool`` stores the value and returns True, or returns False
# when the value is not of its kind (write_value then tries the next); ``read_<kind>(tree, path)`` rebuilds it.
# ---- dict ----------------------------------------------------------------------------------------
def write_dict(w, path, value) -> bool:
    if not isinstance(value, dict) or not all(_valid_name(k) for k in value):
        return False  # (keys that cannot be HDF5 names: json)
    w.group(path, kind="dict", keys=json.dumps(list(value)))
    for k in value:
        write_value(w, f"{path}/{k}", value[k])
    return True


def read_dict(tree, path):
    keys = json.loads(tree.nodes[path].attrs["keys"])
    _same_members(tree, path, keys)
    return {k: read_value(tree, f"{path}/{k}") for k in keys}


# ---- ndarray -------------------------------------------------------------------------------------
def write_ndarray(w, path, value) -> bool:
    if not (isinstance(value, numpy.ndarray) or type(value).__module__.startswith("cupy")):
        return False
    w.dataset(path, _numeric_array(value, path), kind="ndarray")
    return True


def read_ndarray(tree, path):
    return _numeric(tree.value(path))


# ---- numpy-scalar --------------------------------------------------------------------------------
def write_numpy_scalar(w, path, value) -> bool:
    if not isinstance(value, numpy.generic):
        return False
    w.dataset(path, _numeric_array(numpy.asarray(value), path), kind="numpy-scalar")
    return True


def read_numpy_scalar(tree, path):
    a = _numeric(tree.value(path))
    if a.shape != ():
        raise ValueError(f"expected a 0-d dataset, got shape {a.shape}")
    return a[()]


def _numeric_array(value, path):
    a = to_numpy(value)
    if a.dtype.kind not in "biufc":
        raise TypeError(f"cannot store the {a.dtype} array at {path}: only bool and numeric arrays")
    return numpy.array(a, order="C")  # a C-ordered copy (numpy.ascontiguousarray would make 0-d 1-d)


def _numeric(value):
    a = numpy.asarray(value)
    if a.dtype.kind not in "biufc":
        raise ValueError(f"expected a numeric dataset, got {a.dtype}")
    return a


# ---- table: a list of flat dicts with the same keys in the same order, one column per key -----------
def write_table(w, path, value) -> bool:
    if not (type(value) is list and value and all(type(r) is dict for r in value)):
        return False
    keys = list(value[0])
    if not all(_valid_name(k) for k in keys) or any(list(r) != keys for r in value):
        return False
    columns = [_column([_python(r[k]) for r in value]) for k in keys]
    if any(c is None for c in columns):
        return False
    w.group(path, kind="table", columns=json.dumps(keys), rows=len(value))
    for k, (data, kind) in zip(keys, columns):
        w.dataset(f"{path}/{k}", data, kind=kind)
    return True


def read_table(tree, path):
    attrs = tree.nodes[path].attrs
    keys, rows = json.loads(attrs["columns"]), attrs["rows"]
    _same_members(tree, path, keys)
    columns = []
    for k in keys:
        col = tree.nodes[f"{path}/{k}"]
        cells = _CELL_READERS[col.attrs["kind"]](col.value)
        if len(cells) != rows:
            raise ValueError(f"column {path}/{k} has {len(cells)} cells, the table {rows} rows")
        columns.append(cells)
    return [dict(zip(keys, cells)) for cells in zip(*columns)] if keys else [{} for _ in range(rows)]


def _column(cells):
    """(data, column kind) for one table column, or None if a cell is not a flat value.  A column is
    int / float / bool (see :func:`_number_column`), str, or json: one JSON text per cell (mixed types,
    None, ints beyond int64)."""
    column = _number_column(cells)
    if column is not None:
        return column
    types = {type(c) for c in cells}
    if types == {str} and all(plain_text(c) for c in cells):
        return text_array(cells), "str"
    if types <= {int, float, bool, str, type(None)}:
        return text_array([json.dumps(c) for c in cells]), "json"
    return None


def _cells(dtype_kind):
    def read(value):
        a = numpy.asarray(value)
        if a.ndim != 1 or a.dtype.kind != dtype_kind:
            raise ValueError(f"expected a 1-D column of dtype kind {dtype_kind!r}, got {a.dtype} {a.shape}")
        return a.tolist()

    return read


def _texts(value) -> list:
    """A 1-D string dataset's values."""
    a = numpy.asarray(value)
    if a.ndim != 1 or a.dtype.kind != "S":
        raise ValueError(f"expected a 1-D string dataset, got {a.dtype} {a.shape}")
    return [b.decode("utf-8") for b in a.tolist()]


_CELL_READERS = {  # column kind -> reader of its cells
    "bool": _cells("b"),
    "int": _cells("i"),
    "float": _cells("f"),
    "str": _texts,
    "json": lambda v: [json.loads(t) for t in _texts(v)],
}


# ---- list and tuple of numbers of one type --------------------------------------------------------
def _number_sequence(seq_type):
    def write(w, path, value) -> bool:
        if type(value) is not seq_type:
            return False
        column = _number_column([_python(v) for v in value])
        if column is None:
            return False  # (json)
        w.dataset(path, column[0], kind=seq_type.__name__)
        return True

    def read(tree, path):
        a = numpy.asarray(tree.value(path))
        if a.ndim != 1:
            raise ValueError(f"expected a 1-D dataset, got shape {a.shape}")
        return seq_type(a.tolist())

    return write, read


write_list, read_list = _number_sequence(list)
write_tuple, read_tuple = _number_sequence(tuple)


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


def _python(v):
    """NumPy scalars inside lists and tables are stored as the Python number they equal."""
    return v.item() if isinstance(v, numpy.generic) else v


# ---- Python scalars: none, bool, int, bigint, float, str --------------------------------------------
def _scalar(kind, accepts, data, dtype_kind):
    """The writer and reader of a 0-d dataset of ``dtype_kind`` holding an ``accepts``-ed Python scalar."""

    def write(w, path, value) -> bool:
        if not accepts(value):
            return False
        w.dataset(path, data(value), kind=kind)
        return True

    def read(tree, path):
        a = numpy.asarray(tree.value(path))
        if a.shape != () or a.dtype.kind != dtype_kind:
            raise ValueError(f"expected a 0-d dataset of dtype kind {dtype_kind!r}, got {a.dtype} {a.shape}")
        return None if kind == "none" else a.item()

    return write, read


write_none, read_none = _scalar("none", lambda v: v is None, lambda v: numpy.asarray(0, numpy.uint8), "u")
write_bool, read_bool = _scalar("bool", lambda v: type(v) is bool, numpy.asarray, "b")
write_int, read_int = _scalar(
    "int", lambda v: type(v) is int and _INT64[0] <= v <= _INT64[1], lambda v: numpy.asarray(v, numpy.int64), "i"
)
write_float, read_float = _scalar("float", lambda v: type(v) is float, lambda v: numpy.asarray(v, numpy.float64), "f")


def write_bigint(w, path, value) -> bool:
    if type(value) is not int:  # (after write_int: only ints beyond int64 get here)
        return False
    w.dataset(path, str(value), kind="bigint")
    return True


def read_bigint(tree, path):
    return int(text(tree.value(path)))


def write_str(w, path, value) -> bool:
    if type(value) is not str or not plain_text(value):
        return False  # (json)
    w.dataset(path, value, kind="str")
    return True


def read_str(tree, path):
    return text(tree.value(path))


def text(value) -> str:
    """A string dataset's value (h5py reads UTF-8 strings as bytes)."""
    if not isinstance(value, bytes):
        raise ValueError(f"expected a string dataset, got {type(value).__name__}")
    return value.decode("utf-8")


def plain_text(s: str) -> bool:
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
    return type(key) is str and key not in ("", ".", "..") and "/" not in key and plain_text(key)


def _same_members(tree, path, keys):
    if sorted(tree.children.get(path, ())) != sorted(keys):
        raise ValueError(f"the members of group {path} do not match its keys attribute")


# ---- json: what the kinds above do not take, if JSON stores it exactly -----------------------------
def write_json(w, path, value) -> bool:
    if type(value) is list:
        value = [_python(v) for v in value]  # as in tables: NumPy scalars become Python numbers
    elif not isinstance(value, (dict, tuple, str)):
        return False
    w.dataset(path, exact_json(value, path), kind="json")
    return True


def read_json(tree, path):
    return json.loads(text(tree.value(path)))


def exact_json(value, what) -> str:
    """JSON text that reads back as exactly ``value`` (NaN and infinities included), else TypeError."""
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store {what}: {e}") from e
    if not _identical(json.loads(encoded), value):
        raise TypeError(
            f"cannot store {what} exactly: JSON would change it (tuples, non-str keys, "
            "NumPy scalars?); convert it to lists, str keys and Python numbers"
        )
    return encoded


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


# kind -> (writer, reader).  write_value tries the writers in this order and the first that returns True
# has stored the value, so the catch-alls come last: bigint after int, json after everything.
KINDS = {
    "dict": (write_dict, read_dict),
    "ndarray": (write_ndarray, read_ndarray),
    "numpy-scalar": (write_numpy_scalar, read_numpy_scalar),
    "table": (write_table, read_table),
    "list": (write_list, read_list),
    "tuple": (write_tuple, read_tuple),
    "none": (write_none, read_none),
    "bool": (write_bool, read_bool),
    "int": (write_int, read_int),
    "bigint": (write_bigint, read_bigint),
    "float": (write_float, read_float),
    "str": (write_str, read_str),
    "json": (write_json, read_json),
}
