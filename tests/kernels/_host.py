"""Helpers of the kernel tests: the host C compiler for ``philox.cuh``, and the CuPy stand-in's kernel classes
run on NumPy arrays (``HOST``), so that minirso's own glue code builds and launches its kernels on the CPU."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from .. import _cupy_standin

U64, I64, F64, P = ctypes.c_uint64, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p


def build(tmp_path_factory, name, source, *flags):
    """Compile ``source`` with the host C compiler into a shared library and load it (skip without one)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no host C compiler to build the kernel source")
    d = tmp_path_factory.mktemp(name)
    src, so = d / f"{name}.c", d / f"{name}.so"
    src.write_text(source)
    subprocess.run(
        [cc, "-O2", *flags, "-shared", "-fPIC", "-o", str(so), str(src), "-lm"], check=True, capture_output=True
    )
    return ctypes.CDLL(str(so))


def ptr(a):
    return a.ctypes.data_as(P)


def c_words(lib, seed, stream, offset, n):
    out = np.empty(n, np.uint32)
    lib.words(seed, stream, offset, n, ptr(out))
    return out


def c_normals(lib, seed, stream, offset, n):
    out = np.empty(n, np.float32)
    lib.normals(seed, stream, offset, n, ptr(out))
    return out


# ---- the CuPy stand-in's kernel classes on NumPy arrays ----------------------------------------------------
# The stand-in (tests/standin/cupy) compiles the kernels' CUDA source for the host and checks each launch as
# CuPy and CUDA would (argument types against the signature, threads per block, shared memory, a guard page
# after every array).  It is loaded under a private name (tests/_cupy_standin.py): these tests stay on the
# CPU with NumPy arrays whatever the backend, a real GPU's included.
STANDIN = _cupy_standin.load()
_wrap, _unwrap = STANDIN._core._wrap, STANDIN._core._unwrap


def _to_device(a):
    return _wrap(a) if isinstance(a, np.ndarray) else a


def _to_host(r):
    if isinstance(r, tuple):
        return tuple(_to_host(x) for x in r)
    return _unwrap(r) if isinstance(r, STANDIN.ndarray) else r


class _OnNumpy:
    """A stand-in kernel called with NumPy arrays: they are wrapped without a copy (the kernel's writes land in
    them) and what the kernel returns is unwrapped, so minirso's glue runs here on NumPy, unchanged."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __call__(self, *args, **kwargs):
        if isinstance(self.kernel, STANDIN.RawKernel):
            grid, block, kargs = args
            return self.kernel(grid, block, tuple(_to_device(a) for a in kargs), **kwargs)
        return _to_host(self.kernel(*(_to_device(a) for a in args), **kwargs))


class HOST:
    """What minirso.kernels asks of its ``xp`` to build a kernel, with the stand-in's classes behind it."""

    ElementwiseKernel = staticmethod(lambda *a, **k: _OnNumpy(STANDIN.ElementwiseKernel(*a, **k)))
    RawKernel = staticmethod(lambda *a, **k: _OnNumpy(STANDIN.RawKernel(*a, **k)))
    cuda = STANDIN.cuda
