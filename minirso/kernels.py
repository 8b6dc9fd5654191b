"""Fused GPU kernels, each next to the plain array code it must reproduce bit for bit.

Why.  :func:`minirso.random.normal` computes Philox4x32-10 with array
operations written once for NumPy and CuPy: about a hundred of them per
draw.  On a CPU that is the right way (each is a vectorised loop); on a GPU
each is a kernel launch of a few microseconds, so drawing aMC's proposal
(issue 5: "one kernel for the whole aMC proposal: random numbers, mu,
lambda * sigma, add") costs more than the forward pass of the Fig. 1 MLP.
Here the same arithmetic runs as ONE elementwise kernel: every element
computes its own Philox block from (seed, stream, index) and applies
Box-Muller and the proposal, eq. (9) of the aMC paper::

    eps_i = mu_i + (lambda_i sigma) z_i,   z_i = normal(seed, stream, offset + i)

The plain versions stay where they are (``minirso.random.normal``,
``AMC.proposal``); this module is used only on CuPy and only while
``MINIRSO_FUSED`` is not ``0``.

Checking it.  ``PHILOX_SOURCE`` is plain C that is also CUDA C.  The tests
compile that same text with the host C compiler (``tests/test_kernels.py``)
and compare it with ``minirso.random`` on a machine without a GPU: the
uint32 words bit for bit, the normals up to the last bit of libm's float64
``log`` / ``cos``, the proposal bit for bit given the normals.
``tests/test_gpu.py`` checks the CuPy launch against the plain path on a
device.  Contraction of ``a + b * c`` into a fused multiply-add would round
differently from NumPy, so the kernel is compiled with ``--fmad=false`` (and
the host test with ``-ffp-contract=off``).  CuPy compiles every kernel, its
own included, with ``-ftz=true``: float32 results below 1.2e-38 flush to 0 on
the GPU, on the fused and the plain path alike.

If a kernel fails to compile on some CUDA set-up, the first call warns once
and the plain path is used from then on (``status()`` says which).
"""

from __future__ import annotations

import os
import warnings

import numpy

from .backend import get_array_module

__all__ = ["PHILOX_SOURCE", "PROPOSAL_OPERATION", "NORMAL_OPERATION", "enabled", "status", "amc_proposal", "normal"]

PHILOX_SOURCE = r"""
/* Philox4x32-10 (Salmon et al. 2011) and the Box-Muller map of minirso.random, in C that is also CUDA C. */
#if defined(__CUDACC_RTC__) || defined(__HIPCC_RTC__)
#define MINIRSO_FN __device__ __forceinline__
#else
#define MINIRSO_FN static inline
#endif

MINIRSO_FN void minirso_philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1)
{
    for (int r = 0; r < 10; ++r) {
        unsigned long long p0 = (unsigned long long)c[0] * 0xD2511F53ull;  /* 32 x 32 -> 64 bits */
        unsigned long long p1 = (unsigned long long)c[2] * 0xCD9E8D57ull;
        unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
        unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
        c[0] = hi1 ^ c[1] ^ k0;
        c[1] = lo1;
        c[2] = hi0 ^ c[3] ^ k1;
        c[3] = lo0;
        k0 += 0x9E3779B9u;  /* Weyl key schedule, wraps mod 2^32 */
        k1 += 0xBB67AE85u;
    }
}

/* Word w of the (seed, stream) sequence: block w / 4 is the counter (low, high, stream low, stream high). */
MINIRSO_FN unsigned int minirso_word(unsigned long long seed, unsigned long long stream, unsigned long long w)
{
    unsigned long long block = w >> 2;
    unsigned int c[4] = {(unsigned int)block, (unsigned int)(block >> 32),
                         (unsigned int)stream, (unsigned int)(stream >> 32)};
    minirso_philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
    return c[w & 3];
}

/* Normal number j: Box-Muller (cosine half) of words 2j and 2j + 1, i.e. words 0,1 or 2,3 of block j / 2. */
MINIRSO_FN double minirso_normal(unsigned long long seed, unsigned long long stream, unsigned long long j)
{
    unsigned long long block = j >> 1;
    unsigned int c[4] = {(unsigned int)block, (unsigned int)(block >> 32),
                         (unsigned int)stream, (unsigned int)(stream >> 32)};
    minirso_philox4x32_10(c, (unsigned int)seed, (unsigned int)(seed >> 32));
    unsigned int b1 = (j & 1) ? c[2] : c[0];
    unsigned int b2 = (j & 1) ? c[3] : c[1];
    double u1 = ((double)b1 + 0.5) * (1.0 / 4294967296.0);  /* uniform on (0, 1), as minirso.random.uniform */
    double u2 = ((double)b2 + 0.5) * (1.0 / 4294967296.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);  /* 2 pi in double, as 2.0 * numpy.pi */
}
"""

# The loop bodies (CuPy ElementwiseKernel syntax: i is the element's flat index; n and i are reserved
# names there, so the row length is row_len).  Row k of a (K, row_len) output uses seed[k]: K aMC
# chains in one launch; one chain is K = 1.
PROPOSAL_OPERATION = ("eps = mu + (T)scale * (T)minirso_normal(seed, stream, "
                      "offset + (unsigned long long)(i % row_len));")
NORMAL_OPERATION = "z = (T)minirso_normal(seed, stream, offset + (unsigned long long)i);"

_STATE = {"failed": None, "kernels": {}}


def enabled(xp) -> bool:
    """True when the fused kernels are used for arrays of module ``xp``: CuPy, not switched off, not failed."""
    return xp is not numpy and os.environ.get("MINIRSO_FUSED", "1") != "0" and _STATE["failed"] is None


def status() -> str:
    """``"on"``, ``"off (MINIRSO_FUSED=0)"`` or ``"failed: <reason>"`` (the plain path is then used)."""
    if _STATE["failed"] is not None:
        return f"failed: {_STATE['failed']}"
    return "off (MINIRSO_FUSED=0)" if os.environ.get("MINIRSO_FUSED", "1") == "0" else "on"


# Parameter lists.  A type placeholder (T, S) is bound only by ARRAY arguments in CuPy, so a Python
# float sigma needs its own kernel with a concrete float64 scale; (T)scale then rounds it to float32
# exactly as NumPy 2 rounds a Python float multiplying a float32 array.
_PARAMS = {
    "proposal": ("T mu, S scale, uint64 seed, uint64 stream, uint64 offset, int64 row_len", "T eps", PROPOSAL_OPERATION),
    "proposal_scalar": ("T mu, float64 scale, uint64 seed, uint64 stream, uint64 offset, int64 row_len", "T eps",
                        PROPOSAL_OPERATION),
    "normal": ("uint64 seed, uint64 stream, uint64 offset", "T z", NORMAL_OPERATION),
}


def _kernel(xp, name):
    key = (id(xp), name)
    if key not in _STATE["kernels"]:
        # no fused multiply-add: mu + scale * z rounds twice, as the array code does (an NVRTC flag; not on HIP)
        hip = getattr(getattr(getattr(xp, "cuda", None), "runtime", None), "is_hip", False)
        options = () if hip else ("--fmad=false",)
        _STATE["kernels"][key] = xp.ElementwiseKernel(*_PARAMS[name], f"minirso_{name}", preamble=PHILOX_SOURCE,
                                                      options=options)
    return _STATE["kernels"][key]


def _launch(xp, name, *args):
    """Run kernel ``name``; on a compile or launch error warn once, switch to the plain path, return None."""
    try:
        return _kernel(xp, name)(*args)
    except Exception as exc:  # noqa: BLE001 - any failure of the optional fast path falls back to the plain one
        _STATE["failed"] = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"minirso fused GPU kernel {name!r} failed ({_STATE['failed']}); using the plain array code",
                      RuntimeWarning, stacklevel=3)
        return None


def amc_proposal(mu, scale, seed, stream: int, offset: int):
    """``mu + scale * z`` in one launch, z the proposal normals; None if the kernel is unavailable.

    mu (P,) with an int ``seed``, or (K, P) with ``seed`` a (K, 1) uint64 device array (one chain per
    row, each counting from ``offset``); ``scale`` a Python float, or an array broadcasting to mu
    (float32 lambda * sigma (P,), or sigma per chain (K, 1)).  Same bits as the plain
    ``mu + scale * normal(seed, stream, offset, P)`` up to libm's last bit of log / cos.
    """
    xp = get_array_module(mu)
    n = mu.shape[-1]
    seed = numpy.uint64(seed) if isinstance(seed, (int, numpy.integer)) else seed.astype(numpy.uint64, copy=False)
    if isinstance(scale, (int, float, numpy.integer, numpy.floating)):  # a scalar sigma (no signal norm)
        return _launch(xp, "proposal_scalar", mu, float(scale), seed, numpy.uint64(stream), numpy.uint64(offset),
                       numpy.int64(n))
    return _launch(xp, "proposal", mu, scale, seed, numpy.uint64(stream), numpy.uint64(offset), numpy.int64(n))


def normal(seed: int, stream: int, offset: int, n: int, xp, dtype):
    """``minirso.random.normal`` in one launch (an (n,) array of ``dtype``); None if unavailable."""
    out = xp.empty(n, dtype=dtype)
    if n == 0:
        return out
    return _launch(xp, "normal", numpy.uint64(seed), numpy.uint64(stream), numpy.uint64(offset), out)
