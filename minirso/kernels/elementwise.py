"""The elementwise kernels: how each is built and listed, and the Philox normals, ONE launch for ~100 operations.

Each is a CuPy ``ElementwiseKernel``: a one-line loop body over the flat index ``i``, with ``philox.cuh`` as
its preamble where it draws normals.  Every element computes its own Philox block from (seed, stream, index)
and applies Box-Muller.  :func:`elementwise` builds one under a name and lists it in :data:`ELEMENTWISE`, the
registry the NVRTC test and the host harness read; the twins of aMC's proposal, move and eq. (10) are made
that way beside their plain code in ``minirso/optim/amc_core.py`` (listed once ``minirso.optim`` is imported,
as ``import minirso`` does).

Contraction of ``a + b * c`` into a fused multiply-add would round differently from NumPy, so the kernels are
compiled with ``--fmad=false`` (the host test with ``-ffp-contract=off``).  Each caller runs the plain twin
named in its docstring when the kernel is unavailable (it failed; see build.py).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from .build import Kernel, source

__all__ = ["PHILOX_SOURCE", "NORMAL_OPERATION", "Elementwise", "ELEMENTWISE", "elementwise", "normal"]

PHILOX_SOURCE = source("philox.cuh")


class Elementwise(NamedTuple):
    """The arguments of one ``ElementwiseKernel``: parameter lists, loop body, preamble."""

    in_params: str
    out_params: str
    operation: str
    preamble: str


ELEMENTWISE: dict[str, Elementwise] = {}  # name -> its arguments, every elementwise kernel made so far


def elementwise(name: str, in_params: str, out_params: str, operation: str, preamble: str = "") -> Kernel:
    """The :class:`~minirso.kernels.build.Kernel` ``name`` (CuPy's ``minirso_<name>``), listed in ELEMENTWISE.

    CuPy syntax: ``i`` is the element's flat index (``n`` and ``i`` are reserved names); a type placeholder
    (T, S) is bound only by ARRAY arguments.
    """
    spec = ELEMENTWISE[name] = Elementwise(in_params, out_params, operation, preamble)

    def make(xp):
        # no fused multiply-add: mu + scale * z rounds twice, as the array code does (an NVRTC flag; not on HIP)
        hip = getattr(getattr(getattr(xp, "cuda", None), "runtime", None), "is_hip", False)
        options = () if hip else ("--fmad=false",)
        return xp.ElementwiseKernel(
            spec.in_params, spec.out_params, spec.operation, f"minirso_{name}", preamble=spec.preamble, options=options
        )

    return Kernel(name, make)


NORMAL_OPERATION = "z = (T)minirso_normal(seed, stream, offset + (unsigned long long)i);"
_NORMAL = elementwise("normal", "uint64 seed, uint64 stream, uint64 offset", "T z", NORMAL_OPERATION, PHILOX_SOURCE)


def normal(seed: int, stream: int, offset: int, n: int, xp, dtype):
    """An (n,) array of ``dtype``: ``minirso.random.normal(seed, stream, offset, n, xp, dtype)`` in one launch
    (equal up to the last bit of CUDA's float64 log / cos against the array code's); None if unavailable.

    Plain twin: :func:`minirso.random.normal`, which also validates the arguments (here they are taken as
    valid: seed, stream, offset in [0, 2**64), offset + n within the sequence).
    """
    out = xp.empty(n, dtype=dtype)
    if n == 0:
        return out
    ok, _ = _NORMAL.launch(xp, numpy.uint64(seed), numpy.uint64(stream), numpy.uint64(offset), out)
    return out if ok else None
