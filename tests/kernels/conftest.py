"""Fixtures of the kernel tests: models on NumPy, the host build of philox.cuh, and the kernels on the stand-in."""

from __future__ import annotations

import functools

import pytest

import minirso
from minirso import kernels
from minirso.kernels import rnn as kernels_rnn

from ._host import HOST, STANDIN, build

HARNESS = r"""
#include <math.h>
#include <stdint.h>
%(philox)s

void words(uint64_t seed, uint64_t stream, uint64_t offset, int64_t count, uint32_t *out_)
{
    for (int64_t k = 0; k < count; ++k) out_[k] = minirso_word(seed, stream, offset + (uint64_t)k);
}

void normals(uint64_t seed, uint64_t stream, uint64_t offset, int64_t count, float *out_)
{
    typedef float T;
    for (long long i = 0; i < count; ++i) { T z; %(normal_op)s out_[i] = z; }
}

void proposal_scalar(const float *mu_, double scale_, uint64_t seed, uint64_t stream, uint64_t offset,
                     int64_t rows, int64_t row_len, float *out_)
{
    typedef float T; typedef double S;
    for (long long i = 0; i < rows * row_len; ++i) {
        T mu = mu_[i]; S scale = scale_; T eps;
        %(proposal_op)s
        out_[i] = eps;
    }
}

void proposal_arrays(const float *mu_, const float *scale_, int scale_per_row, const uint64_t *seeds_,
                     uint64_t stream, uint64_t offset, int64_t rows, int64_t row_len, float *out_)
{
    typedef float T; typedef float S;
    for (long long i = 0; i < rows * row_len; ++i) {
        T mu = mu_[i]; S scale = scale_per_row ? scale_[i / row_len] : scale_[i %% row_len];
        unsigned long long seed = seeds_[i / row_len]; T eps;
        %(proposal_op)s
        out_[i] = eps;
    }
}

void move(const float *mu_, const float *scale_, int scale_is_array, double scale64, uint64_t seed, uint64_t stream,
          uint64_t offset, int64_t row_len, float *x_, float *saved_, float *eps_)
{
    typedef float T;
    for (long long i = 0; i < row_len; ++i) {
        T mu = mu_[i], x = x_[i], saved, eps;
        if (scale_is_array) { typedef float S; S scale = scale_[i]; %(move_op)s }
        else { typedef double S; S scale = scale64; %(move_op)s }
        x_[i] = x; saved_[i] = saved; eps_[i] = eps;
    }
}

void mu_update(const float *eps_, double epsilon, int64_t count, float *mu_)
{
    typedef float T;
    for (long long i = 0; i < count; ++i) { T eps = eps_[i], mu = mu_[i]; %(mu_op)s mu_[i] = mu; }
}
"""


@pytest.fixture(scope="session")
def lib(tmp_path_factory):
    """philox.cuh and the elementwise loop bodies built by the host C compiler, in a small C harness."""
    import ctypes

    from ._host import F64, I64, U64, P

    source = HARNESS % {
        "philox": kernels.PHILOX_SOURCE,
        "normal_op": kernels.ELEMENTWISE["normal"].operation,  # the registry: the loop bodies minirso builds
        "proposal_op": kernels.ELEMENTWISE["proposal"].operation,
        "move_op": kernels.ELEMENTWISE["move"].operation,
        "mu_op": kernels.ELEMENTWISE["mu_update"].operation,
    }
    # -ffp-contract=off: no fused multiply-add, as the GPU kernel is built with --fmad=false
    lib = build(tmp_path_factory, "kernels", source, "-std=c99", "-ffp-contract=off")
    lib.words.argtypes = [U64, U64, U64, I64, P]
    lib.normals.argtypes = [U64, U64, U64, I64, P]
    lib.proposal_scalar.argtypes = [P, F64, U64, U64, U64, I64, I64, P]
    lib.proposal_arrays.argtypes = [P, P, ctypes.c_int, P, U64, U64, I64, I64, P]
    lib.move.argtypes = [P, P, ctypes.c_int, F64, U64, U64, U64, I64, P, P, P]
    lib.mu_update.argtypes = [P, F64, I64, P]
    return lib


@pytest.fixture(autouse=True)
def numpy_models():
    """Models and arrays on NumPy whatever MINIRSO_BACKEND says (these tests are about the kernel source)."""
    before = minirso.backend_name()
    minirso.use_backend("numpy")
    yield
    minirso.use_backend(before)


@pytest.fixture
def fresh_kernels(monkeypatch):
    """Every kernel's failure flag cleared for this test (and restored after it)."""
    for k in kernels.all_kernels():
        monkeypatch.setattr(k, "failed", None)


@pytest.fixture
def fused(monkeypatch, fresh_kernels):
    """minirso.kernels switched on for NumPy arrays, each kernel built by minirso's own code on ``HOST`` (the
    stand-in's classes), memoised as in the package; yields the stand-in's counters."""
    monkeypatch.setenv("MINIRSO_FUSED", "1")  # (status() reads it; a MINIRSO_FUSED=0 lane runs these tests too)
    monkeypatch.setattr(kernels, "enabled", lambda xp: True)
    monkeypatch.setattr(kernels_rnn, "compute_capability", lambda xp: int(STANDIN._standin.compute_capability))
    for k in kernels.all_kernels():
        monkeypatch.setattr(k, "compiled", functools.lru_cache(maxsize=None)(lambda xp, k=k: k.make(HOST)))
    return STANDIN._standin.counters
