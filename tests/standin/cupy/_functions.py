"""The ``cupy.*`` functions minirso uses, with CuPy v14.2.0's signatures (file named per function).

Host data reaching the device is one host-to-device copy (``_standin.h2d``); every function that writes
device memory is one launch, except ``empty``/``empty_like`` (uninitialised: garbage, never zeros).
"""

from __future__ import annotations

import numpy

from . import _core, _promotion, _standin, _ufunc
from ._core import _wrap, ndarray


def _is_dev(x):
    return isinstance(x, ndarray)


def _launch(name, res, nbytes=None, flops=0):
    if res.size:
        _standin.launch(name, res.nbytes if nbytes is None else nbytes, flops)
    return _wrap(res)


# ---- cupy/_creation/from_data.py, cupy/_core/core.pyx array() ----
def _from_host(obj, dtype, ndmin=0):
    if isinstance(obj, (list, tuple)) and any(_is_dev(o) for o in obj):
        # core.pyx _array_from_nested_sequence: device arrays in a list are concatenated on the device
        if not all(_is_dev(o) for o in obj):
            raise TypeError("the stand-in models lists of all-cupy or all-host values only")
        res = numpy.stack([o._a for o in obj]).astype(dtype or numpy.result_type(*[o.dtype for o in obj]))
        return _launch("cupy_concatenate", res, 2 * res.nbytes)
    a = numpy.array(obj, dtype=dtype, ndmin=ndmin)
    if a.dtype.kind not in "biufc":
        raise ValueError(f"Unsupported dtype {a.dtype}")  # cupy/_core/_dtype.pyx get_dtype_with_itemsize
    _standin.h2d(a.nbytes)
    return _wrap(a)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if _is_dev(obj):
        a = obj._a
        if not copy and (dtype is None or numpy.dtype(dtype) == a.dtype) and a.ndim >= ndmin:
            return obj
        res = numpy.array(a, dtype=dtype, order=order, ndmin=ndmin)
        return _launch("cupy_copy", res, 2 * res.nbytes)
    return _from_host(obj, dtype, ndmin)


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    if _is_dev(a):
        if copy:
            return array(a, dtype, True, order or "K")
        return a.astype(dtype, copy=False) if dtype is not None else a
    if copy is False:
        raise ValueError("Unable to avoid copy while creating an array from given array.")
    return _from_host(a, dtype)


def ascontiguousarray(a, dtype=None):
    # cupy/_core/core.pyx ascontiguousarray(_ndarray_base a, ...): a cupy array only; a 0-d one comes back 1-d
    if not _is_dev(a):
        raise TypeError(
            f"Argument 'a' has incorrect type (expected cupy._core.core._ndarray_base, got {type(a).__name__})"
        )
    dt = a.dtype if dtype is None else numpy.dtype(dtype)
    if dt == a.dtype and a._a.flags.c_contiguous:
        return _wrap(a._a.reshape(1)) if a.ndim == 0 else a
    res = numpy.array(a._a.reshape(1) if a.ndim == 0 else a._a, dtype=dt, order="C")
    return _launch("cupy_copy", res, a.nbytes + res.nbytes)


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    # cupy/_creation/from_data.py... cupy/__init__.py asnumpy: device arrays via get(), the rest numpy.asarray
    if _is_dev(a):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    if out is None:
        return numpy.asarray(a, order=order)
    out[...] = a
    return out


# ---- cupy/_creation/basic.py ----
def empty(shape, dtype=float, order="C"):
    return _wrap(_core.garbage(shape, dtype, order))


def zeros(shape, dtype=float, order="C"):
    return _launch("cupy_memset", numpy.zeros(shape, dtype=dtype, order=order))


def ones(shape, dtype=float, order="C"):
    return _launch("cupy_fill", numpy.ones(shape, dtype=dtype, order=order))


def full(shape, fill_value, dtype=None, order="C"):
    if dtype is None:
        dtype = fill_value.dtype if _is_dev(fill_value) else numpy.array(fill_value).dtype
    a = _wrap(_core.garbage(shape, dtype, order))
    copyto(a, fill_value, casting="unsafe")
    return a


def _like(a, dtype, order, shape):
    dtype = a.dtype if dtype is None else dtype
    shape = a.shape if shape is None else shape
    order = "F" if order in ("K", "A") and a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    return shape, dtype, order


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    return empty(*_like(prototype, dtype, order, shape))


def zeros_like(a, dtype=None, order="K", subok=None, shape=None):
    return zeros(*_like(a, dtype, order, shape))


def ones_like(a, dtype=None, order="K", subok=None, shape=None):
    return ones(*_like(a, dtype, order, shape))


# ---- cupy/_creation/ranges.py ----
def arange(start, stop=None, step=1, dtype=None):
    if dtype is None:
        # ranges.py: float if any argument is a float kind, else the default int
        kinds = [numpy.dtype(type(v)).kind for v in (start, stop, step) if v is not None]
        dtype = float if "f" in kinds else int
    return _launch("cupy_arange", numpy.arange(start, stop, step, dtype=dtype), flops=0)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    res = numpy.linspace(start, stop, num, endpoint, retstep, dtype=dtype or float, axis=axis)
    if retstep:
        return _launch("cupy_linspace", res[0]), res[1]
    return _launch("cupy_linspace", res)


# ---- cupy/_manipulation ----
def copyto(dst, src, casting="same_kind", where=None):
    # cupy/_manipulation/basic.py copyto
    if not _is_dev(dst):
        raise TypeError("dst must be a cupy.ndarray")
    if type(src) in (bool, int, float, complex):
        numpy.copyto(numpy.empty((), dtype=dst.dtype), src, casting=casting)  # NumPy decides the cast safety
        val = src
    elif isinstance(src, numpy.ndarray):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        if not numpy.can_cast(src, dst.dtype, casting):
            raise TypeError(f"Cannot cast {src} to {dst.dtype} in {casting} casting mode")
        val = src
    elif _is_dev(src):
        if not numpy.can_cast(src.dtype, dst.dtype, casting):
            raise TypeError(f"Cannot cast {src.dtype} to {dst.dtype} in {casting} casting mode")
        val = src._a
    elif numpy.isscalar(src):
        if not numpy.can_cast(src.dtype, dst.dtype, casting):
            raise TypeError(f"Cannot cast {src} to {dst.dtype} in {casting} casting mode")
        val = src
    else:
        raise TypeError(f"Unsupported type {type(src)}")
    w = None
    if where is not None:
        if not _is_dev(where):
            raise TypeError(f"Unsupported type {type(where)}")
        w = where._a
    with numpy.errstate(all="ignore"):
        numpy.copyto(dst._a, val, casting="unsafe", where=True if w is None else w)
    if dst.size:
        _standin.launch("cupy_copy", dst.nbytes * 2)


def broadcast_to(array, shape):
    if not _is_dev(array):
        raise TypeError(f"Unsupported type {type(array)}")
    return _wrap(numpy.broadcast_to(array._a, shape))  # a view (read-only here; CuPy has no read-only flag)


def _all_dev(tup, what):
    for o in tup:
        if not _is_dev(o):
            raise TypeError(f"Only cupy arrays can be {what}")
    return [o._a for o in tup]


def concatenate(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    arrs = _all_dev(tup, "concatenated")  # cupy/_core/_routines_manipulation.pyx concatenate_method
    res = numpy.concatenate(arrs, axis=axis, dtype=dtype, casting=casting)
    return _out(res, out, "cupy_concatenate")


def stack(tup, axis=0, out=None, *, dtype=None, casting="same_kind"):
    arrs = _all_dev(tup, "concatenated")  # cupy/_manipulation/join.py stack = concatenate(expand_dims)
    res = numpy.stack(arrs, axis=axis, dtype=dtype, casting=casting)
    return _out(res, out, "cupy_concatenate")


def _out(res, out, name, flops=0):
    if out is not None:
        if not _is_dev(out):
            raise TypeError("Output argument type must be cupy.ndarray")
        if out.shape != res.shape:
            raise ValueError("Output shape mismatch")
        numpy.copyto(out._a, res, casting="unsafe")
        res = out._a
    if res.size:
        _standin.launch(name, 2 * res.nbytes, flops)
    return out if out is not None else _wrap(res)


def tile(A, reps):
    if not _is_dev(A):
        raise TypeError(f"Unsupported type {type(A)}")
    return _out(numpy.tile(A._a, reps), None, "cupy_copy")


def take_along_axis(a, indices, axis):
    # cupy/_indexing/indexing.py take_along_axis: fancy indexing, so indices wrap around as in a[...]
    if not (_is_dev(a) and _is_dev(indices)):
        raise TypeError("`a` and `indices` must be cupy.ndarray")
    if axis is None:
        a_, axis = a._a.ravel(), 0
    else:
        a_ = a._a
    idx = numpy.mod(indices._a, a_.shape[axis]) if a_.shape[axis] else indices._a
    return _out(numpy.take_along_axis(a_, idx, axis), None, "cupy_take")


# ---- cupy/_sorting/search.py where ----
def where(condition, x=None, y=None):
    missing = (x is None, y is None).count(True)
    if missing == 1:
        raise ValueError("Must provide both 'x' and 'y' or neither.")
    if missing == 2:
        raise NotImplementedError("the stand-in does not model cupy.where(condition) (nonzero)")
    if not hasattr(condition, "astype"):
        raise AttributeError(f"{type(condition).__name__!r} object has no attribute 'astype'")
    # v13.6.0 casts with a copy (astype('?')), v14.2.0 with astype('?', copy=False)
    cond = condition.astype("?", copy=_promotion.mode() == "13")
    return _ufunc.call("where", cond, x, y)


# ---- cupy/linalg/_product.py matmul, cupy/linalg/_einsum.py einsum ----
def matmul(x1, x2, out=None, **kwargs):
    for x in (x1, x2):
        if not _is_dev(x):
            raise TypeError(f"Unsupported type {type(x)}")  # _core.matmul(_ndarray_base a, _ndarray_base b)
        if x.ndim == 0:
            raise ValueError("Scalar operands are not allowed, use '*' instead")
    dt = kwargs.pop("dtype", None) or numpy.promote_types(x1.dtype, x2.dtype)  # _routines_linalg.pyx
    if kwargs:
        raise TypeError(f"the stand-in's matmul models out= and dtype= only, got {sorted(kwargs)}")
    a, b = x1._a.astype(dt, copy=False), x2._a.astype(dt, copy=False)
    res = numpy.matmul(a, b)
    k = a.shape[-1]
    flops = 2 * res.size * k
    if out is not None:
        if not _is_dev(out):
            raise TypeError("Output argument type must be cupy.ndarray")
        if out.shape != res.shape:
            raise ValueError("Out shape is mismatched")
        numpy.copyto(out._a, res, casting="unsafe")
    if res.size:
        _standin.launch("cupy_matmul", a.nbytes + b.nbytes + res.nbytes, flops)
    return out if out is not None else _wrap(res)


def einsum(*operands, **kwargs):
    subscripts, arrs = operands[0], list(operands[1:])
    if not isinstance(subscripts, str):
        raise TypeError("the stand-in models einsum('subscripts', *arrays) only")
    arrs = [asarray(x) for x in arrs]  # cupy/linalg/_einsum.py: cupy.asarray on every operand
    dtype = kwargs.pop("dtype", None) or numpy.result_type(*[x.dtype for x in arrs])
    kwargs.pop("optimize", None)
    if kwargs:
        raise TypeError(f"the stand-in's einsum models dtype= and optimize= only, got {sorted(kwargs)}")
    ins = [x._a.astype(dtype, copy=False) for x in arrs]
    res = numpy.asarray(numpy.einsum(subscripts, *ins))
    extents = {}
    for sub, a in zip(subscripts.split("->")[0].split(","), ins):
        for c, n in zip(sub.replace("...", ""), a.shape[-len(sub.replace("...", "")) :] if sub else ()):
            extents[c] = n
    flops = 2 * int(numpy.prod(list(extents.values()) or [1]))
    if res.size:
        _standin.launch("cupy_einsum", sum(a.nbytes for a in ins) + res.nbytes, flops)
    return _wrap(res)


def get_array_module(*args):
    # cupy/_core/... cupy/__init__.py get_array_module: cupy when any argument is a cupy array
    return _core._package() if any(_is_dev(a) for a in args) else numpy
