"""Elementwise kernels of the stand-in: ``cupy.ufunc`` objects and the one function every operator goes through.

Follows ``ufunc.__call__`` of ``cupy/_core/_kernel.pyx`` (v13.6.0 and v14.2.0): arguments pass
``_preprocess_args`` (a ``numpy.ndarray``, even 0-d, or any non-scalar raises ``TypeError('Unsupported type
...')``), the loop comes from ``_promotion.resolve``, scalars are cast to the loop's input type (a C cast),
an ``out=`` array must have the broadcast shape and accept the loop's output type under ``same_kind``, and
the call is one kernel launch (none when the result is empty, as ``_contains_zero(shape)`` returns early).
"""

from __future__ import annotations

import numpy

from . import _core, _promotion, _standin

# NumPy's function computing the loop's operation (operands are already cast to the loop's types).
_NUMPY = {
    "add": numpy.add,
    "subtract": numpy.subtract,
    "multiply": numpy.multiply,
    "true_divide": numpy.true_divide,
    "divide": numpy.true_divide,
    "floor_divide": numpy.floor_divide,
    "remainder": numpy.remainder,
    "power": numpy.power,
    "maximum": numpy.maximum,
    "minimum": numpy.minimum,
    "bitwise_and": numpy.bitwise_and,
    "bitwise_or": numpy.bitwise_or,
    "bitwise_xor": numpy.bitwise_xor,
    "left_shift": numpy.left_shift,
    "right_shift": numpy.right_shift,
    "invert": numpy.invert,
    "negative": numpy.negative,
    "absolute": numpy.absolute,
    "sqrt": numpy.sqrt,
    "exp": numpy.exp,
    "log": numpy.log,
    "tanh": numpy.tanh,
    "sin": numpy.sin,
    "cos": numpy.cos,
    "isfinite": numpy.isfinite,
    "isnan": numpy.isnan,
    "where": numpy.where,
    "greater": numpy.greater,
    "greater_equal": numpy.greater_equal,
    "less": numpy.less,
    "less_equal": numpy.less_equal,
    "equal": numpy.equal,
    "not_equal": numpy.not_equal,
}
_NIN = {
    "invert": 1,
    "negative": 1,
    "absolute": 1,
    "sqrt": 1,
    "exp": 1,
    "log": 1,
    "tanh": 1,
    "sin": 1,
    "cos": 1,
    "isfinite": 1,
    "isnan": 1,
    "where": 3,
}


def preprocess(x):
    """An argument as CuPy's ``_preprocess_arg`` (cupy/_core/_kernel.pyx) takes it: a stand-in array or a
    Python/NumPy scalar; anything else (``numpy.ndarray`` included, 0-d too) is a TypeError."""
    if isinstance(x, _core.ndarray) or _promotion.is_scalar(x):
        return x
    raise TypeError(f"Unsupported type {type(x)}")


def _operand(x, dt):
    if isinstance(x, _core.ndarray):
        return x._a.astype(dt, copy=False)
    if _promotion.mode() == "14" and type(x) in (bool, int, float, complex):
        # v14.2.0 _scalar.pyx CScalar._store_c_value: PyArray_Pack, so an out-of-range Python int raises
        return numpy.asarray(x, dtype=dt)
    # v13.6.0 CScalar.from_numpy_scalar_with_dtype (and v14 for NumPy scalars): a C cast
    with numpy.errstate(all="ignore"):
        return numpy.asarray(x).astype(dt)


def call(name, *args, out=None, dtype=None, casting="same_kind"):
    """Apply ufunc ``name`` (CuPy's ufunc name without ``cupy_``) to ``args``; one launch; returns the result."""
    ins = [preprocess(x) for x in args]
    if out is not None and not isinstance(out, _core.ndarray):
        raise TypeError("Output arguments type must be cupy.ndarray")  # _get_out_args_from_optionals
    in_dts, out_dts = _promotion.resolve(name, ins, dtype)
    ops = [_operand(x, dt) for x, dt in zip(ins, in_dts)]
    shapes = [o.shape for o in ops] + ([out.shape] if out is not None else [])
    shape = numpy.broadcast_shapes(*shapes)
    if out is not None:
        if shape != out.shape:
            raise ValueError("Out shape is mismatched")  # _get_out_args_from_optionals
        _check_cast(name, out_dts[0], out.dtype, casting)
    with numpy.errstate(all="ignore"):
        res = numpy.asarray(_NUMPY[name](*ops)).astype(out_dts[0], copy=False)
    size = int(numpy.prod(shape))
    if size:
        nbytes = sum(x.nbytes for x in ins if isinstance(x, _core.ndarray)) + size * out_dts[0].itemsize
        _standin.launch(f"cupy_{name}", nbytes, size)
    if out is None:
        if res.shape != shape or not res.flags.writeable:
            res = numpy.array(numpy.broadcast_to(res, shape))
        return _core._wrap(res)
    with numpy.errstate(all="ignore"):
        numpy.copyto(out._a, res, casting="unsafe")
    return out


def _check_cast(name, from_dt, to_dt, casting):
    """``_raise_if_invalid_cast`` (v14.2.0 cupy/_core/_dtype.pyx): same-kind passes, else numpy.can_cast."""
    if casting == "same_kind" and from_dt.kind == to_dt.kind:
        return
    if not numpy.can_cast(from_dt, to_dt, casting):
        raise TypeError(
            f"Cannot cast ufunc 'cupy_{name}' output from {from_dt!r} to {to_dt!r} with casting rule {casting!r}"
        )


class ufunc:
    """``cupy.ufunc`` (cupy/_core/_kernel.pyx): ``f(*inputs, out=None, dtype=None, casting='same_kind')``."""

    def __init__(self, name, public_name=None):
        self._name = name
        self.__name__ = public_name or name
        self.nin = _NIN.get(name, 2)
        self.nout = 1
        self.nargs = self.nin + 1

    @property
    def name(self):
        return f"cupy_{self._name}"

    def __repr__(self):
        return f"<ufunc 'cupy_{self._name}'>"

    def __call__(self, *args, out=None, dtype=None, casting="same_kind"):
        if not self.nin <= len(args) <= self.nargs:
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                f"{self.nargs} (with outputs), but given {len(args)}."
            )
        if len(args) > self.nin:
            if out is not None:
                raise ValueError("Cannot specify 'out' as both a positional and keyword argument")
            out = args[self.nin]
        if isinstance(out, tuple):
            if len(out) != 1:
                raise ValueError("The 'out' tuple must have exactly one entry per ufunc output")
            out = out[0]
        return call(self._name, *args[: self.nin], out=out, dtype=dtype, casting=casting)
