"""Building the fused kernels: the shipped CUDA sources, one memoised build per kernel, one failure flag per kernel.

A :class:`Kernel` is one CuPy kernel object (``ElementwiseKernel`` or ``RawKernel``) under a short name.  It is
built once per array module (``functools.lru_cache``; CuPy compiles it at its first launch and caches the
binary on disk), and it has its own failure flag: if building or launching it raises, it warns once, naming
itself, and from then on :meth:`Kernel.launch` reports it unavailable, so only its caller takes the plain array
code; the other kernels stay on.  :func:`status` reports every kernel's state.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import warnings
from collections.abc import Callable

import numpy

__all__ = ["Kernel", "source", "define", "enabled", "status", "failures", "all_kernels", "compute_capability"]

_KERNELS: dict = {}  # name -> Kernel, in the order they were made


@functools.cache
def source(filename: str) -> str:
    """The text of ``filename`` (``philox.cuh``, ``rnn_tanh.cu``, ...), package data of ``minirso.kernels``."""
    return importlib.resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")


def define(text: str, macro: str) -> int:
    """The integer value of ``#define macro N`` in CUDA source ``text`` (so a size has ONE definition)."""
    m = re.search(rf"^#define {re.escape(macro)} (\d+)\b", text, re.MULTILINE)
    if m is None:
        raise ValueError(f"no '#define {macro} <integer>' in the kernel source")
    return int(m.group(1))


class Kernel:
    """One fused kernel: ``make(xp)`` builds its CuPy object, :meth:`compiled` memoises that per array module,
    and ``failed`` is ``None`` or why building or launching it raised (then only this kernel is off)."""

    def __init__(self, name: str, make: Callable):
        if name in _KERNELS:
            raise ValueError(f"a fused kernel named {name!r} exists already")
        self.name = name
        self.make = make
        self.compiled = functools.lru_cache(maxsize=None)(make)  # xp -> the kernel object, built once
        self.failed = None
        _KERNELS[name] = self

    def launch(self, xp, *args, **kwargs):
        """``(True, what the kernel returns)``, or ``(False, None)`` if it failed now (one warning) or before.

        CuPy compiles at the first launch, so a compile error surfaces here too.  ``stacklevel`` points the
        warning at the code that asked for the fused path.
        """
        if self.failed is not None:
            return False, None
        try:
            return True, self.compiled(xp)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of the optional fast path falls back to the plain one
            self.failed = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"minirso fused GPU kernel {self.name!r} failed ({self.failed}); using the plain array code for it",
                RuntimeWarning,
                stacklevel=3,
            )
            return False, None

    def __repr__(self):
        return f"<minirso fused kernel {self.name!r}: {'on' if self.failed is None else 'failed'}>"


def all_kernels() -> tuple:
    """Every :class:`Kernel` made so far (the package makes all of its own on import)."""
    return tuple(_KERNELS.values())


def failures() -> dict:
    """``{name: reason}`` of the kernels that failed to build or launch (they use the plain path)."""
    return {k.name: k.failed for k in _KERNELS.values() if k.failed is not None}


def enabled(xp) -> bool:
    """True when the fused kernels are used for arrays of module ``xp``: CuPy, and not switched off by
    ``MINIRSO_FUSED=0``.  A kernel that failed is off on its own (its function returns None)."""
    return xp is not numpy and os.environ.get("MINIRSO_FUSED", "1") != "0"


def status() -> str:
    """``"on"``, ``"off (MINIRSO_FUSED=0)"``, or ``"failed: <name> (<reason>); ..."`` naming each kernel that
    failed (those use the plain path; the others stay on)."""
    failed = failures()
    if failed:
        return "failed: " + "; ".join(f"{name} ({why})" for name, why in failed.items())
    return "off (MINIRSO_FUSED=0)" if os.environ.get("MINIRSO_FUSED", "1") == "0" else "on"


def compute_capability(xp) -> int:
    """The current GPU's compute capability as an int (``"90"`` -> 90: an H100); CuPy returns it as a string."""
    return int(xp.cuda.Device().compute_capability)
