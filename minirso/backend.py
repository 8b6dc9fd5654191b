"""The one seam between NumPy and CuPy.

Every other module writes its math once against an *array module* ``xp``
(``numpy`` or ``cupy``), the way Chainer does.  This file is the only one that
imports CuPy, and it decides, once, which module new arrays live on:

1. ``minirso.use_backend("numpy" | "cupy")`` if the program called it;
2. else the environment variable ``MINIRSO_BACKEND`` (``numpy`` or ``cupy``);
3. else CuPy when it imports AND a CUDA device answers, NumPy otherwise.

Asking for CuPy where it cannot run is an error (never a silent fall-back):
a user who wrote ``MINIRSO_BACKEND=cupy`` wants to know the GPU is not used.

Functions that receive arrays use :func:`get_array_module` on them instead
of the global choice, so a layer computes on whatever device its input is.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy

if TYPE_CHECKING:
    from types import ModuleType

    from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "Array",
    "BackendError",
    "use_backend",
    "backend_name",
    "array_module",
    "xp",
    "get_array_module",
    "cupy_available",
    "asarray",
    "to_numpy",
    "synchronize",
]

_ENV = "MINIRSO_BACKEND"
_CHOICES = ("numpy", "cupy")
_active = None  # the chosen module; None until first asked (chosen once)

#: the arrays minirso computes on: numpy.ndarray or cupy.ndarray (CuPy is optional, so no import)
Array = Any


class BackendError(ValueError):
    """A backend was asked for that is unknown or cannot run here."""


def _import_cupy():
    """Return the cupy module if it imports and a CUDA device is usable, else the reason it is not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return None, f"cupy does not import ({type(exc).__name__}: {exc})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "cupy imports but sees no CUDA device"
        cupy.zeros(1).sum().item()  # a real allocation and kernel launch: drivers can fail only here
    except Exception as exc:
        return None, f"cupy imports but CUDA is not usable ({type(exc).__name__}: {exc})"
    return cupy, None


def cupy_available() -> bool:
    """True when CuPy imports and a CUDA device runs a kernel."""
    return _import_cupy()[0] is not None


def use_backend(name: str) -> ModuleType:
    """Choose the array module for new arrays: ``"numpy"`` or ``"cupy"``; returns the module.

    Arrays made earlier stay where they are; models have ``model.to(name)`` to move.
    """
    global _active
    if not isinstance(name, str):
        raise BackendError(f"unknown backend {name!r}: choose one of {_CHOICES}")
    _active = array_module(name.lower())
    return _active


def xp() -> ModuleType:
    """The active array module (choosing it on first call, see the module docstring)."""
    if _active is None:
        env = os.environ.get(_ENV, "").strip()
        if env:
            try:
                use_backend(env)
            except BackendError as exc:
                raise BackendError(f"{_ENV}={env!r}: {exc}") from None
        else:
            cupy, _ = _import_cupy()
            use_backend("cupy" if cupy is not None else "numpy")
    return _active


def array_module(name: str) -> ModuleType:
    """The module for backend ``name`` (``"numpy"`` or ``"cupy"``) without changing the active choice."""
    if name == "numpy":
        return numpy
    if name == "cupy":
        cupy, why = _import_cupy()
        if cupy is None:
            raise BackendError(f"backend 'cupy' was asked for but cannot run here: {why}")
        return cupy
    raise BackendError(f"unknown backend {name!r}: choose one of {_CHOICES}")


def backend_name() -> str:
    """``"numpy"`` or ``"cupy"``: the active backend's name."""
    return "cupy" if xp() is not numpy else "numpy"


def get_array_module(*arrays: Array) -> ModuleType:
    """The module (numpy or cupy) that owns ``arrays``; the active one when none is given.

    Like ``cupy.get_array_module`` but safe to call where CuPy is not installed.
    """
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy

            return cupy
    return numpy if arrays else xp()


def asarray(a: ArrayLike | Array, dtype: DTypeLike = None) -> Array:
    """``a`` as an array of the active backend (copies host<->device only when needed)."""
    return xp().asarray(a, dtype=dtype)


def to_numpy(a: ArrayLike | Array) -> numpy.ndarray:
    """``a`` as a NumPy array on the host.  Forces a host sync when ``a`` is on the GPU."""
    if type(a).__module__.startswith("cupy"):
        return a.get()  # host sync
    return numpy.asarray(a)


def synchronize() -> None:
    """Wait for queued GPU work (a no-op on NumPy); use before reading wall-clock times."""
    if backend_name() == "cupy":
        xp().cuda.get_current_stream().synchronize()  # host sync
