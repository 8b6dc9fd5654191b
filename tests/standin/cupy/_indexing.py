"""Indexing of the stand-in's arrays, as ``cupy/_core/_routines_indexing.pyx`` (v14.2.0) does it.

* Basic indices (ints, slices, ``None``, ``...``) give views: no launch.
* Integer-array indices (a device array, or a list / ``numpy.ndarray`` that CuPy copies to the device with
  ``core.array``: one host-to-device copy) WRAP out-of-bounds values around, for reading and writing
  (``cupy.ndarray.__getitem__``/``__setitem__`` docstrings; CuPy docs "Differences between CuPy and NumPy").
  One launch (the gather / scatter kernel).
* A boolean mask needs the number of ``True`` to size the result: ``_prepare_mask_indexing_single`` runs a
  scan and reads ``int(mask_scanned[-1])`` (a host sync), then the mask kernel: two launches and one sync.
* Assignment (``_scatter_op``): a device array is copied with broadcasting; with basic indices anything
  else goes through ``fill``, which accepts only a scalar or a 0-d array, so ``a[:] = numpy_array`` raises
  ``ValueError('non-scalar numpy.ndarray cannot be used for fill')``; with array indices a host value is
  copied to the device first (``core.array(value, dtype=a.dtype)``).
"""

from __future__ import annotations

import numpy

from . import _core, _standin


def _component(s):
    """One index component as NumPy takes it; ``(component, is_array, host_bytes_copied)``."""
    if isinstance(s, _core.ndarray):
        return s._a, True, 0
    if isinstance(s, (list, numpy.ndarray)):
        a = numpy.asarray(s)
        if a.dtype.kind not in "biu" and not (a.size == 0 and isinstance(s, list)):
            raise IndexError(f"arrays used as indices must be of integer or boolean type (actual: {a.dtype.type})")
        if a.size == 0 and a.dtype.kind not in "biu":
            a = a.astype(numpy.intp)
        return a, True, a.nbytes
    if isinstance(s, numpy.integer):
        return int(s), False, 0
    return s, False, 0


_BASIC = (int, slice, type(None), type(Ellipsis))  # index components that are basic whatever their value


def _normalise(a: numpy.ndarray, key):
    """``(numpy key, kind, host bytes copied)`` with kind ``"basic"``, ``"int"`` or ``"mask"``; integer-array
    components are wrapped into range (``% size`` of the axis they index)."""
    key = key if isinstance(key, tuple) else (key,)
    if all(type(s) in _BASIC for s in key):  # the common case, decided without the general walk below
        return key, "basic", 0
    parts = [_component(s) for s in key]
    h2d = sum(p[2] for p in parts)
    if not any(p[1] for p in parts):
        return tuple(p[0] for p in parts), "basic", h2d
    # Axes consumed by each component (bool arrays consume their ndim; None none; ... the rest).
    used = sum(
        p[0].ndim if p[1] and p[0].dtype.kind == "b" else (0 if p[0] is None or p[0] is Ellipsis else 1) for p in parts
    )
    out, axis, kind = [], 0, "int"
    for comp, is_arr, _ in parts:
        if comp is Ellipsis:
            axis += a.ndim - used
        elif comp is None:
            pass
        elif is_arr and comp.dtype.kind == "b":
            kind = "mask"
            axis += comp.ndim
        elif is_arr:
            n = a.shape[axis] if axis < a.ndim else 0
            comp = numpy.mod(comp, n) if n else comp  # CuPy wraps around (mode='wrap')
            axis += 1
        else:
            axis += 1
        out.append(comp)
    return tuple(out), kind, h2d


def _count_advanced(kind, nbytes):
    if kind == "mask":
        _standin.launch("cupy_scan", nbytes)  # the mask's cumulative sum
        _standin.sync()  # int(mask_scanned[-1])
        _standin.d2h(4)
    _standin.launch(f"cupy_{'mask' if kind == 'mask' else 'take'}", nbytes)


def getitem(x, key):
    k, kind, h2d = _normalise(x._a, key)
    if h2d:
        _standin.h2d(h2d)
    res = x._a[k]
    if kind == "basic":
        # a basic index of every axis gives NumPy a scalar: CuPy gives a 0-d view
        return _core._wrap(res if isinstance(res, numpy.ndarray) else x._a[k + (Ellipsis,)])
    _count_advanced(kind, x.nbytes if kind == "mask" else 2 * res.nbytes)
    return _core._wrap(res)


def setitem(x, key, value):
    k, kind, h2d = _normalise(x._a, key)
    if h2d:
        _standin.h2d(h2d)
    if kind == "basic":
        if isinstance(value, _core.ndarray):
            x._a[k] = value._a
        else:
            # _scatter_op -> y.fill(value): only scalars (cupy/_core/core.pyx fill)
            v = numpy.asarray(value, dtype=x.dtype)
            if v.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            x._a[k] = v
        n = numpy.asarray(x._a[k]).nbytes
        if n:
            _standin.launch("cupy_copy", 2 * n)
        return
    if isinstance(value, _core.ndarray):
        v = value._a
    else:
        v = numpy.asarray(value, dtype=x.dtype)  # core.array(value, dtype=a.dtype): to the device
        if v.ndim:
            _standin.h2d(v.nbytes)
    x._a[k] = v
    _count_advanced(kind, 2 * x.nbytes)
