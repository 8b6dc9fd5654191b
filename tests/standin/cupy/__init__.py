"""A strict CuPy stand-in that runs on the CPU (put ``tests/standin`` on ``PYTHONPATH``).

It models only the ``cupy`` names minirso, its tests, examples and benchmarks use, with CuPy's signatures
and CuPy's semantics (see ``tests/standin/README.md``); any other name raises AttributeError, so a new call
must be added here on purpose and checked against real CuPy.  ``cupy._standin`` holds the counters (kernel
launches, host syncs, transfers) and the promotion mode (CuPy 13 or 14, ``MINIRSO_STANDIN_CUPY``).
"""

from __future__ import annotations

# NumPy's scalar types and constants, which CuPy re-exports unchanged (cupy/__init__.py).
from numpy import bool_, float32, float64, inf, int32, int64, nan, newaxis, pi, uint8, uint32, uint64  # noqa: E402

from . import _standin, cuda
from ._core import ndarray
from ._functions import (
    arange,
    array,
    asarray,
    ascontiguousarray,
    asnumpy,
    broadcast_to,
    concatenate,
    copyto,
    einsum,
    empty,
    empty_like,
    full,
    get_array_module,
    linspace,
    matmul,
    ones,
    ones_like,
    stack,
    take_along_axis,
    tile,
    where,
    zeros,
    zeros_like,
)
from ._kernel import ElementwiseKernel, RawKernel
from ._ufunc import ufunc as _ufunc_type

# The ufuncs minirso calls by name (cupy/_math/*.py, cupy/_core/_routines_math.pyx); cupy.abs is absolute.
maximum = _ufunc_type("maximum")
minimum = _ufunc_type("minimum")
sqrt = _ufunc_type("sqrt")
exp = _ufunc_type("exp")
log = _ufunc_type("log")
tanh = _ufunc_type("tanh")
sin = _ufunc_type("sin")
cos = _ufunc_type("cos")
isfinite = _ufunc_type("isfinite")
isnan = _ufunc_type("isnan")
abs = _ufunc_type("absolute", "absolute")  # noqa: A001  (cupy/__init__.py: abs = absolute)

_VERSIONS = {"13": "13.6.0", "14": "14.2.0"}


def __getattr__(name):
    if name == "__version__":
        return _VERSIONS[_standin.PROMOTION]  # read at call time: a test may switch the mode
    raise AttributeError(
        f"module 'cupy' has no attribute {name!r} (the CuPy stand-in models only what minirso "
        f"uses; add it on purpose in tests/standin/cupy, checked against real CuPy)"
    )
