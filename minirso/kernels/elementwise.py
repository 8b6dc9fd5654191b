"""The elementwise kernels: Philox normals and aMC's proposal, move and eq. (10), each ONE launch.

Each is a CuPy ``ElementwiseKernel``: a one-line loop body over the flat index ``i``, with ``philox.cuh`` as
its preamble where it draws normals.  Every element computes its own Philox block from (seed, stream, index)
and applies Box-Muller and eq. (9) of the aMC paper::

    eps_i = mu_i + (lambda_i sigma) z_i,   z_i = normal(seed, stream, offset + i)

Contraction of ``a + b * c`` into a fused multiply-add would round differently from NumPy, so the kernels are
compiled with ``--fmad=false`` (the host test with ``-ffp-contract=off``).  Each function returns None when
its kernel is unavailable (it failed; see build.py), and the caller then runs the plain twin named in its
docstring.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from ..backend import get_array_module
from .build import Kernel, source

__all__ = [
    "PHILOX_SOURCE",
    "PROPOSAL_OPERATION",
    "NORMAL_OPERATION",
    "MOVE_OPERATION",
    "MU_OPERATION",
    "ELEMENTWISE",
    "normal",
    "amc_proposal",
    "amc_move",
    "amc_mu_update",
]

PHILOX_SOURCE = source("philox.cuh")

# The loop bodies (CuPy ElementwiseKernel syntax: i is the element's flat index; n and i are reserved
# names there, so the row length is row_len).  Row k of a (K, row_len) output uses seed[k]: K aMC
# chains in one launch; one chain is K = 1.
PROPOSAL_OPERATION = (
    "eps = mu + (T)scale * (T)minirso_normal(seed, stream, offset + (unsigned long long)(i % row_len));"
)
NORMAL_OPERATION = "z = (T)minirso_normal(seed, stream, offset + (unsigned long long)i);"
# aMC's whole move in one pass: the proposal, x kept for an exact restore on rejection, x' = x + eps
MOVE_OPERATION = PROPOSAL_OPERATION + " saved = x; x = x + eps;"
# eq. (10) on acceptance: mu <- mu + epsilon (eps - mu), rounded as the array code (float32, no FMA)
MU_OPERATION = "mu = mu + (T)epsilon * (eps - mu);"


class Elementwise(NamedTuple):
    """The arguments of one ``ElementwiseKernel``: parameter lists, loop body, preamble."""

    in_params: str
    out_params: str
    operation: str
    preamble: str


# Parameter lists.  A type placeholder (T, S) is bound only by ARRAY arguments in CuPy, so a Python
# float sigma needs its own kernel with a concrete float64 scale; (T)scale then rounds it to float32
# exactly as NumPy 2 rounds a Python float multiplying a float32 array.
_PROPOSAL_IN = "uint64 seed, uint64 stream, uint64 offset, int64 row_len"
ELEMENTWISE = {
    "proposal": Elementwise(f"T mu, S scale, {_PROPOSAL_IN}", "T eps", PROPOSAL_OPERATION, PHILOX_SOURCE),
    "proposal_scalar": Elementwise(f"T mu, float64 scale, {_PROPOSAL_IN}", "T eps", PROPOSAL_OPERATION, PHILOX_SOURCE),
    "normal": Elementwise("uint64 seed, uint64 stream, uint64 offset", "T z", NORMAL_OPERATION, PHILOX_SOURCE),
    "move": Elementwise(f"T mu, S scale, {_PROPOSAL_IN}", "T x, T saved, T eps", MOVE_OPERATION, PHILOX_SOURCE),
    "move_scalar": Elementwise(
        f"T mu, float64 scale, {_PROPOSAL_IN}", "T x, T saved, T eps", MOVE_OPERATION, PHILOX_SOURCE
    ),
    "mu_update": Elementwise("T eps, float64 epsilon", "T mu", MU_OPERATION, ""),
}


def _maker(name: str):
    spec = ELEMENTWISE[name]

    def make(xp):
        # no fused multiply-add: mu + scale * z rounds twice, as the array code does (an NVRTC flag; not on HIP)
        hip = getattr(getattr(getattr(xp, "cuda", None), "runtime", None), "is_hip", False)
        return xp.ElementwiseKernel(
            spec.in_params,
            spec.out_params,
            spec.operation,
            f"minirso_{name}",
            preamble=spec.preamble,
            options=() if hip else ("--fmad=false",),
        )

    return make


_KERNEL = {name: Kernel(name, _maker(name)) for name in ELEMENTWISE}


def _scaled(name, scale):
    """``(kernel, scale argument)``: a scalar sigma (no signal norm) takes the ``_scalar`` kernel with a
    float64 scale, because a Python float cannot bind the type placeholder of an array argument."""
    if isinstance(scale, (int, float, numpy.integer, numpy.floating)):
        return _KERNEL[f"{name}_scalar"], float(scale)
    return _KERNEL[name], scale


def normal(seed: int, stream: int, offset: int, n: int, xp, dtype):
    """An (n,) array of ``dtype``: ``minirso.random.normal(seed, stream, offset, n, xp, dtype)`` in one launch
    (equal up to the last bit of CUDA's float64 log / cos against the array code's); None if unavailable.

    Plain twin: :func:`minirso.random.normal`, which also validates the arguments (here they are taken as
    valid: seed, stream, offset in [0, 2**64), offset + n within the sequence).
    """
    out = xp.empty(n, dtype=dtype)
    if n == 0:
        return out
    ok, _ = _KERNEL["normal"].launch(xp, numpy.uint64(seed), numpy.uint64(stream), numpy.uint64(offset), out)
    return out if ok else None


def amc_proposal(mu, scale, seed, stream: int, offset: int):
    """``mu + scale * z`` in one launch, z the proposal normals; None if the kernel is unavailable.

    mu (P,) with an int ``seed``, or (K, P) with ``seed`` a (K, 1) uint64 device array (one chain per
    row, each counting from ``offset``); ``scale`` a Python float, or an array broadcasting to mu
    (float32 lambda * sigma (P,), or sigma per chain (K, 1)).  Plain twin: the array code of
    ``minirso.optim.amc.AMC.proposal`` (``mu + scale * normal(seed, stream, offset, P)``) and of
    ``minirso.optim.chains.AMCChains.proposal`` (K rows), bit for bit given the same normals.
    """
    xp = get_array_module(mu)
    seed = numpy.uint64(seed) if isinstance(seed, (int, numpy.integer)) else seed.astype(numpy.uint64, copy=False)
    kernel, scale = _scaled("proposal", scale)
    ok, eps = kernel.launch(xp, mu, scale, seed, numpy.uint64(stream), numpy.uint64(offset), numpy.int64(mu.shape[-1]))
    return eps if ok else None


def amc_move(x, saved, mu, scale, seed: int, stream: int, offset: int):
    """aMC's move of all parameters in ONE launch: ``saved[:] = x``, ``eps = mu + scale z``, ``x += eps``.

    Plain twin: the three passes of ``minirso.optim.amc.AMC``'s move (the proposal, the copy, the add), equal
    bit for bit (see :func:`amc_proposal`).  Returns eps, or None if the kernel is unavailable (x and saved
    are then untouched).
    """
    xp = get_array_module(x)
    eps = xp.empty_like(mu)
    kernel, scale = _scaled("move", scale)
    ok, _ = kernel.launch(
        xp,
        mu,
        scale,
        numpy.uint64(seed),
        numpy.uint64(stream),
        numpy.uint64(offset),
        numpy.int64(mu.shape[-1]),
        x,
        saved,
        eps,
    )
    # an ElementwiseKernel with several outputs returns them all as a tuple (CuPy's _kernel.pyx:
    # ``ret = tuple(out_args)`` when nout > 1): (x, saved, eps); eps was filled in place either way
    return eps if ok else None


def amc_mu_update(mu, eps, epsilon: float) -> bool:
    """Eq. (10) in place, ``mu += epsilon (eps - mu)``, in one launch; False if the kernel is unavailable.

    Plain twin: ``self.mu += epsilon * (eps - self.mu)`` in ``minirso.optim.amc.AMC.step``, bit for bit.
    """
    ok, _ = _KERNEL["mu_update"].launch(get_array_module(mu), eps, float(epsilon), mu)
    return ok
