"""``cupy.ndarray`` of the stand-in: a NumPy array held by composition (attribute ``_a``), never a subclass.

Each behaviour names the CuPy source it follows (``cupy/_core/core.pyx`` at v14.2.0 unless said otherwise).
Views (basic indexing, reshape/ravel without copy, transpose, ``T``, ``view``, ``squeeze``) launch nothing;
whatever makes or writes device data is one launch (``_standin.launch``); whatever brings data to the host
is one host synchronisation (``_standin.sync``) and a device-to-host copy (``_standin.d2h``).
"""

from __future__ import annotations

import sys
import warnings

import numpy

from . import _indexing, _standin, _ufunc

__all__ = ["ndarray", "_wrap", "_unwrap"]


def _package():
    """This stand-in's top-level package (``cupy``, or the private name tests load it under)."""
    return sys.modules[__name__.rpartition(".")[0]]


def _wrap(a: numpy.ndarray) -> ndarray:
    """The stand-in array holding ``a`` (no copy, nothing counted)."""
    obj = object.__new__(ndarray)
    obj._a = a
    return obj


def _unwrap(x) -> numpy.ndarray:
    """The NumPy array inside stand-in array ``x``; TypeError for anything else."""
    if isinstance(x, ndarray):
        return x._a
    raise TypeError(f"expected a cupy.ndarray (the stand-in's), got {type(x).__module__}.{type(x).__name__}")


def garbage(shape, dtype, order="C"):
    """Uninitialised device memory as ``cupy.empty`` gives it: never zeros (CuPy's memory pool hands back
    freed blocks with old contents).  Floats are NaN so that a read before a write shows; integers 0xA5 bytes."""
    a = numpy.empty(shape, dtype=dtype, order=order)
    if a.dtype.kind in "fc":
        a.fill(numpy.nan)
    elif a.dtype.kind == "b":
        a.fill(True)
    else:
        a.view(numpy.uint8).fill(0xA5)
    return a


def _copied(a: numpy.ndarray, name: str, flops: int = 0) -> ndarray:
    """``a`` (a fresh NumPy array) as the result of one launch that read and wrote it."""
    if a.size:
        _standin.launch(name, 2 * a.nbytes, flops)
    return _wrap(a)


def _view_or_copy(res: numpy.ndarray, src: numpy.ndarray, name: str) -> ndarray:
    """A view when NumPy made one (CuPy's ``_reshape`` copies exactly when no strides fit), else a launch."""
    if res.size and not numpy.shares_memory(res, src):
        _standin.launch(name, 2 * res.nbytes)
    return _wrap(res)


class _Flags:
    """``ndarray.flags`` (cupy/_core/flags.pyx): c_contiguous, f_contiguous, owndata."""

    def __init__(self, a):
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)

    def __getitem__(self, name):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[name]


class _MemoryPointer:
    """``ndarray.data`` (cupy/cuda/memory.pyx MemoryPointer): only ``ptr`` is modelled."""

    def __init__(self, a):
        self.ptr = a.__array_interface__["data"][0]


def _reduction(name, a, np_func, out=None, flops_per_input=1, launches=1, **kw):
    """One reduction kernel (cupy/_core/_reduction.pyx): a 0-d device array when no axis is kept (never a
    NumPy scalar), written to ``out`` when given."""
    with numpy.errstate(all="ignore"):
        res = numpy.asarray(np_func(a._a, **kw))
    if out is not None:
        if not isinstance(out, ndarray):
            raise TypeError("Output argument type must be cupy.ndarray")
        if out.shape != res.shape:
            raise ValueError("Out shape is mismatched")
        numpy.copyto(out._a, res, casting="unsafe")
    for _ in range(launches):
        _standin.launch(f"cupy_{name}", a.nbytes + res.nbytes, a.size * flops_per_input)
    return out if out is not None else _wrap(res)


class ndarray:
    """CuPy's multi-dimensional array on the (modelled) GPU; see the module docstring."""

    __slots__ = ("_a",)
    # cupy/_core/core.pyx: higher than numpy.ndarray's 0, so ``numpy_array + cupy_array`` reaches CuPy
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        # cupy.ndarray(shape, dtype=float, memptr=None, strides=None, order='C'): uninitialised memory
        if memptr is not None or strides is not None:
            raise NotImplementedError("the stand-in models cupy.ndarray(shape, dtype, order) only")
        self._a = garbage(shape, dtype, order)

    # ---- attributes (cupy/_core/core.pyx properties) ----
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: _MemoryPointer(self._a))
    T = property(lambda self: _wrap(self._a.T))  # a view

    # ---- host transfers: each is one sync (cupy/_core/core.pyx get/item/tolist/__float__ call self.get()) ----
    def get(self, stream=None, order="C", out=None, blocking=True):
        """A NumPy copy on the host (one sync, one device-to-host copy)."""
        _standin.sync()
        _standin.d2h(self.nbytes)
        if out is not None:
            if not isinstance(out, numpy.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained fromcupy.ndarray")
            if self.dtype != out.dtype:
                raise TypeError(f"{out.dtype} array cannot be obtained from {self.dtype} array")
            if self.shape != out.shape:
                raise ValueError(f"Shape mismatch. Expected shape: {self.shape}, actual shape: {out.shape}")
            out[...] = self._a
            return out
        return numpy.array(self._a, order="F" if order == "F" else "C")

    def set(self, arr, stream=None):
        """Copy host array ``arr`` (same dtype and shape) into this array: one host-to-device copy."""
        if not isinstance(arr, numpy.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if self.dtype != arr.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        if self.shape != arr.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        _standin.h2d(arr.nbytes)
        self._a[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self.get().item()

    def tolist(self):
        return self.get().tolist()

    def __int__(self):
        return int(self.get())

    def __float__(self):
        return float(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        # cupy/_core/core.pyx __nonzero__: empty warns and is False; size 1 asks the device; else NumPy's error
        if self.size == 0:
            warnings.warn(
                "The truth value of an empty array is ambiguous. Returning False, but in future this "
                "will result in an error. Use `array.size > 0` to check that an array is not empty.",
                DeprecationWarning,
                stacklevel=2,
            )
            return False
        if self.size == 1:
            return bool(self.get())
        raise ValueError("The truth value of an array with more than one element is ambiguous. Use a.any() or a.all()")

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec)

    def __array__(self, dtype=None, copy=None):
        # cupy/_core/core.pyx __array__: no implicit device-to-host conversion
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def __reduce__(self):
        from . import _functions

        return _functions.array, (self.get(order="A"),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # ---- NumPy protocols ----
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """cupy/_core/core.pyx __array_ufunc__: ``numpy.f(cupy_array)`` runs ``cupy.f``; NotImplemented
        (so NumPy raises TypeError) where the stand-in's cupy has no such function."""
        cupy = _package()
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            inputs += out
            kwargs["out"] = out[0]
        if method != "__call__":
            return NotImplemented
        # CuPy has every NumPy ufunc the stand-in computes, exported by name or not (operators use them)
        name = "true_divide" if ufunc.__name__ == "divide" else ufunc.__name__
        func = getattr(cupy, name, None) or (_ufunc.ufunc(name) if name in _ufunc._NUMPY else None)
        if func is None:
            return NotImplemented
        for x in inputs:
            if not (_ufunc._promotion.is_scalar(x) or isinstance(x, (ndarray, numpy.ndarray))):
                return NotImplemented
        inputs = inputs[: ufunc.nin]
        if ufunc.__name__ in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
            inputs = tuple(x.item() if isinstance(x, numpy.ndarray) and x.ndim == 0 else x for x in inputs)
        return func(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        """cupy/_core/core.pyx __array_function__: ``numpy.f(cupy_array)`` runs ``cupy.f`` (looked up by
        module path and name) or returns NotImplemented (NumPy then raises TypeError)."""
        cupy = _package()
        module = cupy
        try:
            for part in func.__module__.split(".")[1:]:
                module = getattr(module, part)
            cupy_func = getattr(module, func.__name__)
        except AttributeError:
            return NotImplemented
        if cupy_func is func:
            return NotImplemented
        if not all(issubclass(t, (ndarray, numpy.ndarray)) for t in types):
            return NotImplemented
        return cupy_func(*args, **kwargs)

    # ---- sequence protocol ----
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        return _indexing.getitem(self, key)

    def __setitem__(self, key, value):
        _indexing.setitem(self, key, value)

    # ---- copies, casts and views ----
    def copy(self, order="C"):
        return _copied(numpy.array(self._a, order=order), "cupy_copy")

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dtype = numpy.dtype(dtype)
        if not copy and dtype == self.dtype:
            return self  # cupy/_core/core.pyx astype: no copy when nothing changes
        with numpy.errstate(all="ignore"):
            return _copied(self._a.astype(dtype, order=order, casting=casting or "unsafe"), "cupy_copy")

    def fill(self, value):
        # cupy/_core/core.pyx fill: a scalar (or 0-d array) only
        if isinstance(value, ndarray):
            if value.shape != ():
                raise ValueError("non-scalar cupy.ndarray cannot be used for fill")
            value = value._a
        else:
            value = numpy.asarray(value, dtype=self.dtype)
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        self._a[...] = value
        if self.size:
            _standin.launch("cupy_fill", self.nbytes)

    def reshape(self, *shape, order="C"):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _view_or_copy(self._a.reshape(shape, order=order), self._a, "cupy_copy")

    def ravel(self, order="C"):
        return _view_or_copy(self._a.ravel(order=order), self._a, "cupy_copy")

    def flatten(self, order="C"):
        return _copied(self._a.flatten(order=order), "cupy_copy")

    def transpose(self, *axes):
        return _wrap(self._a.transpose(*axes))

    def swapaxes(self, axis1, axis2):
        return _wrap(self._a.swapaxes(axis1, axis2))

    def squeeze(self, axis=None):
        return _wrap(self._a.squeeze(axis=axis))

    def view(self, dtype=None):
        return _wrap(self._a.view() if dtype is None else self._a.view(dtype))

    # ---- reductions (cupy/_core/_routines_math.pyx, _routines_statistics.pyx, _routines_logic.pyx) ----
    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduction("sum", self, numpy.sum, out, axis=axis, dtype=dtype, keepdims=keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduction("prod", self, numpy.prod, out, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return _reduction("mean", self, numpy.mean, out, axis=axis, dtype=dtype, keepdims=keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        # _routines_statistics.pyx _var: a mean reduction, then the squared-deviation reduction
        return _reduction("var", self, numpy.var, out, 2, 2, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        return _reduction("std", self, numpy.std, out, 2, 2, axis=axis, dtype=dtype, ddof=ddof, keepdims=keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return _reduction("max", self, numpy.max, out, axis=axis, keepdims=keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return _reduction("min", self, numpy.min, out, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None, out=None, dtype=None, keepdims=False):
        r = _reduction("argmax", self, numpy.argmax, None, axis=axis, keepdims=keepdims)
        return _finish_arg(r, out, dtype)

    def argmin(self, axis=None, out=None, dtype=None, keepdims=False):
        r = _reduction("argmin", self, numpy.argmin, None, axis=axis, keepdims=keepdims)
        return _finish_arg(r, out, dtype)

    def any(self, axis=None, out=None, keepdims=False):
        return _reduction("any", self, numpy.any, out, axis=axis, keepdims=keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return _reduction("all", self, numpy.all, out, axis=axis, keepdims=keepdims)

    def cumsum(self, axis=None, dtype=None, out=None):
        return _reduction("cumsum", self, numpy.cumsum, out, axis=axis, dtype=dtype)

    # ---- operators: cupy/_core/core.pyx, every one a ufunc of _ufunc (numpy.ndarray operands raise) ----
    def __matmul__(self, other):
        from . import _functions

        return _functions.matmul(self, other)

    def __rmatmul__(self, other):
        from . import _functions

        return _functions.matmul(other, self)

    def __imatmul__(self, other):
        from . import _functions

        return _functions.matmul(self, other, out=self)

    def __neg__(self):
        return _ufunc.call("negative", self)

    def __abs__(self):
        return _ufunc.call("absolute", self)

    def __invert__(self):
        return _ufunc.call("invert", self)

    def _compare(self, name, other):
        # cupy/_core/core.pyx __richcmp__: a 0-d numpy.ndarray compares as its item (other arrays raise)
        if isinstance(other, numpy.ndarray) and other.ndim == 0:
            other = other.item()
        return _ufunc.call(name, self, other)

    def __eq__(self, other):
        if other is None or (type(other).__eq__ is object.__eq__ and not isinstance(other, ndarray)):
            return _copied(numpy.zeros(self.shape, dtype=bool), "cupy_zeros")
        return self._compare("equal", other)

    def __ne__(self, other):
        if other is None or (type(other).__eq__ is object.__eq__ and not isinstance(other, ndarray)):
            return _copied(numpy.ones(self.shape, dtype=bool), "cupy_ones")
        return self._compare("not_equal", other)

    __lt__ = lambda self, other: self._compare("less", other)  # noqa: E731
    __le__ = lambda self, other: self._compare("less_equal", other)  # noqa: E731
    __gt__ = lambda self, other: self._compare("greater", other)  # noqa: E731
    __ge__ = lambda self, other: self._compare("greater_equal", other)  # noqa: E731
    __hash__ = None


def _finish_arg(r, out, dtype):
    if dtype is not None:
        r = _wrap(r._a.astype(dtype))
    if out is not None:
        numpy.copyto(_unwrap(out), r._a, casting="unsafe")
        return out
    return r


def _binary(name):
    def op(self, other):
        return _ufunc.call(name, self, other)

    def rop(self, other):
        return _ufunc.call(name, other, self)

    def iop(self, other):
        return _ufunc.call(name, self, other, out=self)

    return op, rop, iop


for _py, _name in (
    ("add", "add"),
    ("sub", "subtract"),
    ("mul", "multiply"),
    ("truediv", "true_divide"),
    ("floordiv", "floor_divide"),
    ("mod", "remainder"),
    ("pow", "power"),
    ("and", "bitwise_and"),
    ("or", "bitwise_or"),
    ("xor", "bitwise_xor"),
    ("lshift", "left_shift"),
    ("rshift", "right_shift"),
):
    _op, _rop, _iop = _binary(_name)
    setattr(ndarray, f"__{_py}__", _op)
    setattr(ndarray, f"__r{_py}__", _rop)
    setattr(ndarray, f"__i{_py}__", _iop)

ndarray.__module__ = "cupy"  # as type(cupy.ndarray) reports; minirso's get_array_module keys on it
