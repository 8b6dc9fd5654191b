"""How CuPy picks a ufunc's loop (and so its result dtype) from its inputs: CuPy 13 and CuPy 14.

CuPy does not use NumPy's promotion.  Every ufunc holds an ordered list of loops (``'ff->f'``...) and the
first loop whose input types the operands can be cast to *safely* wins
(``_Ops._guess_routine_from_in_types`` in ``cupy/_core/_kernel.pyx``).  What differs between versions is
what type a scalar operand counts as:

* CuPy 13 (``v13.6.0:cupy/_core/_kernel.pyx``, ``_check_should_use_min_scalar`` / ``_min_scalar_type``):
  Python scalars become NumPy scalars (``int`` -> int64, or uint64 from 2**63; ``float`` -> float64;
  ``_scalar.pyx: _python_scalar_to_numpy_scalar``) and NumPy scalars stay as they are.  When the arrays'
  highest kind (bool < int < float) is at least the scalars' highest kind, every scalar counts as
  ``numpy.min_scalar_type(value)`` (for a non-negative integer: the unsigned OR the same-size signed type,
  whichever casts), else as its own dtype.  So ``float32_array / 65536`` is float64 (uint32/int32 do not
  cast safely to float32) while ``/ 65535`` is float32 (uint16 does) -- not NumPy 1's answer.
* CuPy 14 (``v14.2.0:cupy/_core/_kernel.pyx``, ``_check_should_use_weak_scalar`` and
  ``_guess_routine_from_in_types``; ``_scalar.pyx: numpy_dtype_from_pyscalar``): NEP 50.  Python
  ``int``/``float``/``complex`` are *weak* (bool is not); NumPy scalars are strong.  When the arrays' kind
  is at least the weak scalars' kind, a loop type the scalar cannot safely cast to is still accepted if
  ``numpy.result_type(weak_type(0), loop_type) == loop_type``; else the scalar counts as int64/float64.

The mode is ``_standin.PROMOTION``, read at every call (a test may switch it with monkeypatch).
"""

from __future__ import annotations

import numpy

from . import _standin

# The kind score of _get_kind_score (v13.6.0/v14.2.0 cupy/_core/_kernel.pyx): bool 0, integer 1, inexact 2.
_KIND = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 2}

_INT = ("bb", "BB", "hh", "HH", "ii", "II", "ll", "LL", "qq", "QQ")
_FLT = ("ee", "ff", "dd")
_CPX = ("FF", "DD")


def _same(pairs):
    """Loops 'xx->x' for each pair 'xx'."""
    return tuple(f"{p}->{p[0]}" for p in pairs)


def _unary(chars):
    return tuple(f"{c}->{c}" for c in chars)


# Loop tables, in CuPy's order.  bfloat16 loops (CuPy 14) are left out: the stand-in has no bfloat16 arrays.
# cupy/_core/_routines_math.pyx create_arithmetic (both tags): add, subtract, multiply.
_ARITH = ("??->?",) + _same(_INT + _FLT + _CPX)
# cupy/_core/_routines_binary.pyx _create_bit_op (both tags).
_BIT = ("??->?",) + _same(_INT)
_SHIFT = _same(_INT)
# cupy/_math/ufunc.py create_math_ufunc (both tags): sqrt, exp, log, tanh, sin, cos ...
_MATH1 = _unary("efdFD")
# cupy/_math/misc.py maximum/minimum (both tags).
_MINMAX = ("??->?",) + _same(_INT + _FLT + _CPX)
# cupy/_logic/content.py isfinite/isnan (both tags).
_CONTENT = ("e->?", "f->?", "d->?", "F->?", "D->?")
_WHERE = ("???->?",) + tuple(f"?{p}->{p[0]}" for p in _INT + _FLT + _CPX)  # cupy/_sorting/search.py
_NEG = ("?->?",) + _unary("bBhHiIlLqQefdFD")  # cupy/_core/_routines_math.pyx _negative (bool raises)
_ABS = ("?->?",) + _unary("bBhHiIlLqQefd") + ("F->f", "D->d")  # _routines_math.pyx _absolute
_INVERT = ("?->?",) + _unary("bBhHiIlLqQ")  # _routines_binary.pyx _invert
_POWER = ("??->b",) + _same(_INT + _FLT + _CPX)  # _routines_math.pyx _power
_FLOORDIV = _same(_INT + _FLT)  # _routines_math.pyx _floor_divide / _remainder

TABLES = {
    "13": {
        # v13.6.0: comparisons have one loop per type (cupy/_core/_routines_logic.pyx create_comparison)
        "compare": tuple(f"{p}->?" for p in ("??",) + _INT + _FLT + _CPX),
        # v13.6.0 cupy/_core/_routines_math.pyx _true_divide: every integer pair divides in double
        "true_divide": tuple(f"{p}->d" for p in _INT) + _same(_FLT + _CPX),
    },
    "14": {
        # v14.2.0 _routines_logic.pyx create_comparison: integers compare as int64/uint64
        "compare": ("??->?", "qq->?", "QQ->?", "qQ->?", "Qq->?", "ee->?", "ff->?", "dd->?", "FF->?", "DD->?"),
        # v14.2.0 _routines_math.pyx _true_divide: the qq family stands for every integer pair
        "true_divide": ("qq->d", "qQ->d", "Qq->d", "QQ->d") + _same(_FLT + _CPX),
    },
}

_COMMON = {
    "add": _ARITH,
    "subtract": _ARITH,
    "multiply": _ARITH,
    "power": _POWER,
    "floor_divide": _FLOORDIV,
    "remainder": _FLOORDIV,
    "maximum": _MINMAX,
    "minimum": _MINMAX,
    "bitwise_and": _BIT,
    "bitwise_or": _BIT,
    "bitwise_xor": _BIT,
    "left_shift": _SHIFT,
    "right_shift": _SHIFT,
    "invert": _INVERT,
    "negative": _NEG,
    "absolute": _ABS,
    "sqrt": _MATH1,
    "exp": _MATH1,
    "log": _MATH1,
    "tanh": _MATH1,
    "sin": _MATH1,
    "cos": _MATH1,
    "isfinite": _CONTENT,
    "isnan": _CONTENT,
    "where": _WHERE,
}
_COMPARE = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")

# Loops that CuPy registers only to raise (the error_func loops of create_ufunc), with CuPy's messages.
_ERRORS = {
    # cupy/_core/_routines_math.pyx _subtract_boolean_error / _negative_boolean_error
    ("subtract", "??->?"): "cupy boolean subtract, the `-` operator, is deprecated, use the bitwise_xor, "
    "the `^` operator, or the logical_xor function instead.",
    ("negative", "?->?"): "The cupy boolean negative, the `-` operator, is not supported, use the `~` "
    "operator or the logical_not function instead.",
}


def mode() -> str:
    """``"13"`` or ``"14"``: the CuPy version whose scalar promotion the stand-in follows now."""
    return _standin.PROMOTION


def _loops(name):
    tables = TABLES[mode()]
    if name in _COMPARE:
        return tables["compare"]
    if name in ("true_divide", "divide"):
        return tables["true_divide"]
    return _COMMON[name]


def _dt(char):
    """The dtype of a loop type character, with 'l'/'q' both spelled int64 (and 'L'/'Q' uint64), as CuPy prints."""
    d = numpy.dtype(char)
    return numpy.dtype(f"{d.kind}{d.itemsize}") if d.kind in "iu" else d


def is_scalar(x) -> bool:
    """A Python or NumPy scalar: what ``_scalar.scalar_to_numpy_scalar`` (cupy/_core/_scalar.pyx) accepts."""
    return type(x) in (bool, int, float, complex) or isinstance(x, numpy.generic)


def _pyscalar_dtype(x):
    """The dtype CuPy gives a Python scalar (cupy/_core/_scalar.pyx, both tags)."""
    if isinstance(x, numpy.generic):
        return x.dtype
    t = type(x)
    if t is bool:
        return numpy.dtype(bool)
    if t is float:
        return numpy.dtype(numpy.float64)
    if t is complex:
        return numpy.dtype(numpy.complex128)
    if x >= 0x8000000000000000:
        if x > 0xFFFFFFFFFFFFFFFF:
            raise OverflowError(f"Python int {x} too large to convert to uint64")
        return numpy.dtype(numpy.uint64)
    if x < -0x8000000000000000:
        raise OverflowError(f"Python int {x} too large to convert to int64")
    return numpy.dtype(numpy.int64)


def _min_scalar_types(x):
    """CuPy 13's ``_min_scalar_type``: a tuple of candidate types for a non-negative integer, else one type."""
    v = x.item() if isinstance(x, numpy.generic) else x
    t = numpy.min_scalar_type(v)
    if t.kind == "u":
        signed = numpy.dtype(f"i{t.itemsize}")
        if v <= numpy.iinfo(signed).max:
            return (t, signed)
    return t


def _can_cast(it, ot):
    if isinstance(it, tuple):
        return any(numpy.can_cast(t, ot) for t in it)
    return numpy.can_cast(it, ot)


_RESOLVED = {}  # memo of resolve(): its answer depends only on the key below (the stand-in's own speed-up)


def _memo_key(x):
    """What of an operand ``resolve`` reads: an array's dtype; a scalar's type, CuPy dtype and (13) min types."""
    if not is_scalar(x):
        return x.dtype
    return type(x), _pyscalar_dtype(x), _min_scalar_types(x) if mode() == "13" else None


def resolve(name, ins, dtype=None):
    """Memoised :func:`_resolve` (the same answer for the same dtypes and scalar types)."""
    key = (mode(), name, None if dtype is None else numpy.dtype(dtype), tuple(_memo_key(x) for x in ins))
    hit = _RESOLVED.get(key)
    if hit is None:
        hit = _RESOLVED[key] = _resolve(name, ins, dtype)
    return hit


def _resolve(name, ins, dtype=None):
    """The loop's (input dtypes, output dtypes) CuPy picks for ufunc ``name`` on ``ins``.

    ``ins``: stand-in arrays (anything with ``.dtype`` that is not a scalar) and Python/NumPy scalars.
    ``dtype``: the ufunc's ``dtype=`` (then the first loop whose outputs are all ``dtype`` wins, as in
    ``_guess_routine_from_dtype``).  Raises TypeError as CuPy does when no loop fits.
    """
    loops = _loops(name)
    if dtype is not None:
        dtype = numpy.dtype(dtype)
        for loop in loops:
            ins_, outs = loop.split("->")
            if all(_dt(c) == dtype for c in outs):
                return _checked(name, loop)
        raise TypeError(f"Wrong type ({dtype.type}) of arguments for cupy_{name}")
    scalars = [is_scalar(x) for x in ins]
    types = [_pyscalar_dtype(x) if s else x.dtype for x, s in zip(ins, scalars)]
    arr_kind = max((_KIND[t.kind] for t, s in zip(types, scalars) if not s), default=-1)
    weaks = [False] * len(ins)
    if mode() == "13":
        sc_kind = max((_KIND[t.kind] for t, s in zip(types, scalars) if s), default=-1)
        if sc_kind != -1 and arr_kind != -1 and arr_kind >= sc_kind:
            types = [_min_scalar_types(x) if s else t for x, s, t in zip(ins, scalars, types)]
    else:
        weaks = [s and type(x) in (int, float, complex) for x, s in zip(ins, scalars)]
        sc_kind = max((_KIND[t.kind] for t, w in zip(types, weaks) if w), default=-1)
        arr_kind = max((_KIND[t.kind] for t, w in zip(types, weaks) if not w), default=-1)
        if not (sc_kind != -1 and arr_kind != -1 and arr_kind >= sc_kind):
            weaks = [False] * len(ins)
        elif name in _COMPARE:
            weaks = _promote_weak_int(types, weaks)
    for loop in loops:
        in_chars = loop.split("->")[0]
        for it, c, w, x in zip(types, in_chars, weaks, ins):
            ot = _dt(c)
            if _can_cast(it, ot):
                continue
            # v14.2.0 _guess_routine_from_in_types: a weak scalar may use a loop that does not promote
            if not w or numpy.result_type(type(x)(0), ot) != ot:
                break
        else:
            return _checked(name, loop)
    shown = tuple(t if isinstance(t, tuple) else t.type for t in types)
    raise TypeError(f"Wrong type ({shown}) of arguments for cupy_{name}")


def _promote_weak_int(types, weaks):
    """v14.2.0 cupy/_core/_routines_logic.pyx promote_weak_int: a Python int compared with an integer array is
    strong (int64/uint64), so ``int32_array < 2**40`` compares in int64 rather than failing to convert."""
    if len(types) == 2:
        if weaks[0] and not weaks[1] and types[1].kind in "iu":
            return [False, False]
        if weaks[1] and not weaks[0] and types[0].kind in "iu":
            return [False, False]
    return weaks


def _checked(name, loop):
    msg = _ERRORS.get((name, loop))
    if msg is not None:
        raise TypeError(msg)
    ins, outs = loop.split("->")
    return tuple(_dt(c) for c in ins), tuple(_dt(c) for c in outs)
