"""Counter-based random numbers: every draw is a pure function of (seed, stream, index).

Why not ``numpy.random`` / ``cupy.random``?  CuPy's generators cannot be saved
and restored, and the two libraries draw different numbers for the same seed.
Here a random number is *computed*, not pulled from a hidden state:

    bits(seed, stream, i) = Philox4x32-10(key=seed, counter=(i // 4, stream))[i % 4]

(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
generator behind cuRAND's and NumPy's ``Philox``).  Consequences:

* an object's random state is a few integers (seed, stream, a counter), so a
  checkpoint stores it exactly and a resumed run draws the same numbers;
* NumPy and CuPy draw bit-identical integers (the code below is integer
  arithmetic written once against the array module), and the same normals up
  to the rounding of ``log``/``cos`` in float64;
* draw ``n`` at ``offset`` equals the slice ``[offset:offset+n]`` of a longer
  draw, so any proposal can be regenerated later instead of stored.

``stream`` separates independent uses (initialisation, data order, proposals):
see the ``STREAM_*`` constants.  Seeds and streams are unsigned 64-bit integers.

This module is the reference and imports no GPU code.  On CuPy, :func:`minirso.kernels.normal` computes
:func:`normal` in one launch (``minirso/kernels/philox.cuh``, with this module's constants); a caller that
wants it tries it first and falls back to :func:`normal` here.
"""

from __future__ import annotations

import numpy

from .backend import get_array_module
from .backend import xp as _active_xp

__all__ = ["philox4x32", "random_bits", "uniform", "integers", "normal", "STREAM_INIT"]

# Streams used by the library itself; optimizers and data loaders take their own.
STREAM_INIT = 1  # parameter initialisation

# The Philox constants; minirso/kernels/philox.cuh spells the same (tests/kernels/test_philox.py checks it).
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57  # multipliers (Salmon et al. 2011, Table 2)
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments (golden ratio, sqrt(3) - 1)
_MASK32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1


def _check_u64(name, v):
    if not isinstance(v, (int, numpy.integer)) or isinstance(v, bool) or not 0 <= int(v) <= _U64:
        raise ValueError(f"{name} must be an integer in [0, 2**64), got {v!r}")
    return int(v)


def philox4x32(c0, c1, c2, c3, k0: int, k1: int, rounds: int = 10):
    """The Philox4x32 block function on uint32 arrays ``c0..c3`` (the counter) and key ``(k0, k1)``.

    Returns four uint32 arrays.  One round (Salmon et al. 2011, sec. 3.2)::

        hi0, lo0 = mulhilo(M0, c0);  hi1, lo1 = mulhilo(M1, c2)
        c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);  k += (W0, W1)
    """
    xp = get_array_module(c0)
    u32, u64 = xp.uint32, xp.uint64
    c0, c1, c2, c3 = (xp.asarray(c, dtype=u32) for c in (c0, c1, c2, c3))
    for _ in range(rounds):
        p0 = c0.astype(u64) * u64(PHILOX_M0)  # 32x32 -> 64-bit product, exact in uint64
        p1 = c2.astype(u64) * u64(PHILOX_M1)
        hi0, lo0 = (p0 >> u64(32)).astype(u32), (p0 & u64(_MASK32)).astype(u32)
        hi1, lo1 = (p1 >> u64(32)).astype(u32), (p1 & u64(_MASK32)).astype(u32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ u32(k0), lo1, hi0 ^ c3 ^ u32(k1), lo0
        k0, k1 = (k0 + PHILOX_W0) & _MASK32, (k1 + PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


def _check_words(offset, n):
    """Words ``offset .. offset+n-1`` must lie in the sequence: 0 <= offset, n >= 0, offset + n <= 2**64."""
    offset = _check_u64("offset", offset)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if offset + n > _U64 + 1:
        raise ValueError(f"offset + n must be <= 2**64 (the sequence's length), got {offset} + {n}")
    return offset


def random_bits(seed: int, stream: int, offset: int, n: int, xp=None):
    """``n`` uint32 words: words ``offset .. offset+n-1`` of the (seed, stream) sequence."""
    seed, stream = _check_u64("seed", seed), _check_u64("stream", stream)
    offset = _check_words(offset, n)
    xp = xp or _active_xp()
    first, last = offset // 4, (offset + n + 3) // 4  # blocks covering the requested words
    block = xp.arange(first, max(last, first + 1), dtype=xp.uint64)  # (B,)
    c0 = (block & xp.uint64(_MASK32)).astype(xp.uint32)
    c1 = (block >> xp.uint64(32)).astype(xp.uint32)
    c2 = xp.full(block.shape, stream & _MASK32, dtype=xp.uint32)
    c3 = xp.full(block.shape, stream >> 32, dtype=xp.uint32)
    words = xp.stack(philox4x32(c0, c1, c2, c3, seed & _MASK32, seed >> 32), axis=1).reshape(-1)  # (4B,)
    start = offset - 4 * first
    return words[start : start + n]


def uniform(seed: int, stream: int, offset: int, n: int, xp=None, dtype=numpy.float64):
    """``n`` uniforms in the open interval (0, 1) from words ``offset .. offset+n-1``.

    float64 (default): ``(bits + 0.5) / 2**32``; float32: ``((bits >> 9) + 0.5) / 2**23``.
    """
    xp = xp or _active_xp()
    bits = random_bits(seed, stream, offset, n, xp)
    if numpy.dtype(dtype) == numpy.float32:
        # (bits + 0.5) / 2**32 would round to exactly 1.0 in float32 for the top words; the top 23
        # bits give a grid float32 holds exactly: 2**-24 .. 1 - 2**-24, strictly inside (0, 1).
        return ((bits >> xp.uint32(9)).astype(xp.float32) + xp.float32(0.5)) * xp.float32(1.0 / 2**23)
    if numpy.dtype(dtype) != numpy.float64:
        raise ValueError(f"uniform: dtype must be float64 or float32, got {numpy.dtype(dtype)}")
    return (bits.astype(xp.float64) + 0.5) * (1.0 / 2**32)


def integers(seed: int, stream: int, offset: int, n: int, high: int, xp=None):
    """``n`` int64 values uniform on ``[0, high)``: ``floor(high * uniform(...))`` of words ``offset ..``.

    The clamp to ``high - 1`` guards the float64 product against rounding up to ``high``.
    Used for mini-batch rows drawn with replacement.
    """
    xp = xp or _active_xp()
    u = uniform(seed, stream, offset, n, xp)  # (n,)
    return xp.minimum((u * high).astype(xp.int64), high - 1)


def normal(seed: int, stream: int, offset: int, n: int, xp=None, dtype=numpy.float32):
    """``n`` standard normals; element ``i`` is Box-Muller of words ``2(offset+i)`` and ``2(offset+i)+1``.

    ``z = sqrt(-2 ln u1) cos(2 pi u2)`` (Box & Muller 1958), computed in float64
    and rounded to ``dtype``.  Using only the cosine half keeps the map from an
    index to its value trivial, which is what makes regeneration and slicing exact.
    """
    xp = xp or _active_xp()
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_u64("offset", offset)
    u = uniform(seed, stream, 2 * offset, 2 * n, xp).reshape(n, 2)  # (n, 2)
    z = xp.sqrt(-2.0 * xp.log(u[:, 0])) * xp.cos(2.0 * numpy.pi * u[:, 1])
    return z.astype(dtype, copy=False)
