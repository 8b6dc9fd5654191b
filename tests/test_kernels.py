"""The fused GPU kernels' source (minirso.kernels), compiled for the host CPU, against the plain array code.

The kernel text is C that is also CUDA C, so the host C compiler builds the SAME source and the
arithmetic is checked here without a GPU, on NumPy arrays whatever the backend: Philox words bit for bit
against ``minirso.random.random_bits``, normals against ``minirso.random.normal`` (equal up to the last
bit of the C library's float64 log / cos against NumPy's), the aMC proposal bit for bit against the plain
``mu + scale * z`` given the same normals, for one chain and for K chains (a small C harness).  The RNN
and small-MLP kernels and the aMC move run through the CuPy stand-in's ``RawKernel`` / ``ElementwiseKernel``
(tests/standin/cupy: CuPy's argument rules and return values, one coroutine per CUDA thread, guard pages),
driven by minirso's own glue code.  What needs a device is in tests/test_gpu.py; NVIDIA's compiler in
tests/test_nvrtc.py.
"""

import ctypes
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import minirso
from minirso import kernels
from minirso import random as mr

from . import _cupy_standin

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

U64, I64, F64, P = ctypes.c_uint64, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p


def build(tmp_path_factory, name, source, *flags):
    """Compile ``source`` with the host C compiler into a shared library and load it (skip without one)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no host C compiler to build the kernel source")
    d = tmp_path_factory.mktemp(name)
    src, so = d / f"{name}.c", d / f"{name}.so"
    src.write_text(source)
    subprocess.run([cc, "-O2", *flags, "-shared", "-fPIC", "-o", str(so), str(src), "-lm"], check=True,
                   capture_output=True)
    return ctypes.CDLL(str(so))


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    source = HARNESS % {"philox": kernels.PHILOX_SOURCE, "normal_op": kernels.NORMAL_OPERATION,
                        "proposal_op": kernels.PROPOSAL_OPERATION, "move_op": kernels.MOVE_OPERATION,
                        "mu_op": kernels.MU_OPERATION}
    # -ffp-contract=off: no fused multiply-add, as the GPU kernel is built with --fmad=false
    lib = build(tmp_path_factory, "kernels", source, "-std=c99", "-ffp-contract=off")
    lib.words.argtypes = [U64, U64, U64, I64, P]
    lib.normals.argtypes = [U64, U64, U64, I64, P]
    lib.proposal_scalar.argtypes = [P, F64, U64, U64, U64, I64, I64, P]
    lib.proposal_arrays.argtypes = [P, P, ctypes.c_int, P, U64, U64, I64, I64, P]
    lib.move.argtypes = [P, P, ctypes.c_int, F64, U64, U64, U64, I64, P, P, P]
    lib.mu_update.argtypes = [P, F64, I64, P]
    return lib


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


# seeds and streams above 2^32 and 2^63, offsets that cross a block and the 2^32 counter boundary
CASES = [(0, 0, 0), (7, 1, 3), (2**63 + 12345, 2**33 + 5, 2**32 - 3), (123456789, 4, 2**40 + 7)]


@pytest.mark.parametrize("seed, stream, offset", CASES)
def test_philox_words_bit_identical(lib, seed, stream, offset):
    np.testing.assert_array_equal(c_words(lib, seed, stream, offset, 1001), mr.random_bits(seed, stream, offset, 1001, np))


def test_philox_known_answer(lib):
    """Random123's kat_vectors for philox4x32-10, counter = key = 0: 6627e8d5 e169c58d bc57ac4c 9b00dbd8."""
    np.testing.assert_array_equal(c_words(lib, 0, 0, 0, 4), np.array([0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8],
                                                                      np.uint32))


@pytest.mark.parametrize("seed, stream, offset", CASES)
def test_normals_match_random_normal(lib, seed, stream, offset):
    n = 20001
    c = c_normals(lib, seed, stream, offset, n)
    ref = mr.normal(seed, stream, offset, n, np, dtype=np.float32)
    # the same float64 formula; the C library's log / cos and NumPy's may differ in the last bit,
    # which survives the rounding to float32 only rarely
    np.testing.assert_allclose(c, ref, rtol=2e-7, atol=1e-7)
    assert np.mean(c == ref) > 0.99
    assert abs(float(c.mean())) < 0.03 and abs(float(c.std()) - 1) < 0.03  # and they are standard normals


def test_amc_proposal_one_chain(lib):
    """Scalar sigma and a lambda * sigma array: bit for bit the plain mu + scale * z of the same normals."""
    r = np.random.default_rng(3)
    p, seed, stream, offset = 5003, 2**40 + 9, 11, 7 * 5003
    mu = (r.standard_normal(p) * 1e-3).astype(np.float32)
    z = c_normals(lib, seed, stream, offset, p)
    out = np.empty(p, np.float32)
    sigma = 0.0123
    lib.proposal_scalar(ptr(mu), sigma, seed, stream, offset, 1, p, ptr(out))
    np.testing.assert_array_equal(out, mu + sigma * z)  # NumPy 2: the Python float is rounded to float32 first
    scale = (r.uniform(0.5, 2.0, p) * np.float32(sigma)).astype(np.float32)  # lambda_i sigma
    seeds = np.array([seed], np.uint64)
    lib.proposal_arrays(ptr(mu), ptr(scale), 0, ptr(seeds), stream, offset, 1, p, ptr(out))
    np.testing.assert_array_equal(out, mu + scale * z)


def test_amc_proposal_k_chains(lib):
    """K rows, each with its own seed and sigma, counting from the same offset: AMCChains' plain proposal."""
    r = np.random.default_rng(4)
    k, p, stream, offset = 5, 777, 11, 3 * 777
    seeds = np.array([5, 2**63 + 1, 17, 0, 99], np.uint64)
    mu = (r.standard_normal((k, p)) * 1e-3).astype(np.float32)
    sigma = r.uniform(1e-4, 1e-2, k).astype(np.float32)
    out = np.empty((k, p), np.float32)
    lib.proposal_arrays(ptr(mu), ptr(sigma), 1, ptr(seeds), stream, offset, k, p, ptr(out))
    z = np.stack([c_normals(lib, int(s), stream, offset, p) for s in seeds])
    np.testing.assert_array_equal(out, mu + sigma[:, None] * z)
    ref = mu + sigma[:, None] * np.stack([mr.normal(int(s), stream, offset, p, np) for s in seeds])
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-9)


def test_amc_move_and_mu_update(lib):
    """The fused move: saved = x, eps = the proposal, x = x + eps, bit for bit the plain three passes
    (scalar sigma and lambda sigma); eq. (10) bit for bit the plain ``mu += epsilon * (eps - mu)``."""
    r = np.random.default_rng(5)
    p, seed, stream, offset = 3001, 77, 11, 12 * 3001
    mu = (r.standard_normal(p) * 1e-3).astype(np.float32)
    x0 = (r.standard_normal(p) * 0.3 + 0.1).astype(np.float32)
    z = c_normals(lib, seed, stream, offset, p)
    lam_sigma = (r.uniform(0.5, 2.0, p) * np.float32(0.02)).astype(np.float32)
    for scale in (0.0173, lam_sigma):
        x, saved, eps = x0.copy(), np.full(p, np.nan, np.float32), np.full(p, np.nan, np.float32)
        is_array = isinstance(scale, np.ndarray)
        lib.move(ptr(mu), ptr(scale) if is_array else None, int(is_array), 0.0 if is_array else scale, seed, stream,
                 offset, p, ptr(x), ptr(saved), ptr(eps))
        ref_eps = mu + scale * z
        np.testing.assert_array_equal(eps, ref_eps)
        np.testing.assert_array_equal(saved, x0)
        np.testing.assert_array_equal(x, x0 + ref_eps)
    m = mu.copy()
    lib.mu_update(ptr(eps), 0.013, p, ptr(m))
    ref = mu.copy()
    ref += 0.013 * (eps - ref)
    np.testing.assert_array_equal(m, ref)
    assert not np.array_equal(m, mu)


def test_failed_kernel_falls_back_with_one_warning(monkeypatch):
    """A kernel that cannot be built (here: NumPy has no ElementwiseKernel) warns and switches the fast path off."""
    monkeypatch.setitem(kernels._STATE, "failed", None)
    monkeypatch.setitem(kernels._STATE, "kernels", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernels.amc_proposal(np.zeros(4, np.float32), 0.1, 3, 1, 0) is None
    assert len(caught) == 1 and "plain array code" in str(caught[0].message)
    assert kernels.status().startswith("failed: AttributeError")
    assert not kernels.enabled(object())  # failed: no backend uses it any more
    monkeypatch.setitem(kernels._STATE, "failed", None)
    monkeypatch.setenv("MINIRSO_FUSED", "0")
    assert kernels.status() == "off (MINIRSO_FUSED=0)" and not kernels.enabled(object())
    monkeypatch.setenv("MINIRSO_FUSED", "1")
    assert kernels.status() == "on" and kernels.enabled(object()) and not kernels.enabled(np)


# ---- the RNN and MLP kernels and the aMC glue, through the CuPy stand-in's kernel classes on the CPU ----------
# The stand-in (tests/standin/cupy) compiles the kernels' CUDA view for the host and checks each launch as
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


@pytest.fixture(autouse=True)
def numpy_models():
    """Models and arrays on NumPy whatever MINIRSO_BACKEND says (these tests are about the C source)."""
    before = minirso.backend_name()
    minirso.use_backend("numpy")
    yield
    minirso.use_backend(before)


@pytest.fixture
def fused(monkeypatch):
    """minirso.kernels switched on for NumPy arrays, each kernel built by minirso's own code on ``HOST``;
    yields the stand-in's counters."""
    build, build_raw = kernels._kernel, kernels._raw_kernel
    monkeypatch.setitem(kernels._STATE, "kernels", {})
    monkeypatch.setitem(kernels._STATE, "failed", None)
    monkeypatch.setenv("MINIRSO_FUSED", "1")  # (status() reads it; a MINIRSO_FUSED=0 lane runs these tests too)
    monkeypatch.setattr(kernels, "enabled", lambda xp: True)
    monkeypatch.setattr(kernels, "compute_capability", lambda xp: int(STANDIN._standin.compute_capability))
    monkeypatch.setattr(kernels, "_kernel", lambda xp, name: build(HOST, name))
    monkeypatch.setattr(kernels, "_raw_kernel", lambda xp, name: build_raw(HOST, name))
    return STANDIN._standin.counters


def test_amc_move_returns_eps_and_moves_in_one_launch(lib, fused):
    """kernels.amc_move on the stand-in's ElementwiseKernel, which returns (x, saved, eps) as CuPy does for three
    outputs: amc_move hands back eps itself, x moved by it, saved the old x, bit for bit the plain three passes."""
    r = np.random.default_rng(6)
    p, seed, stream, offset = 2001, 2**41 + 3, 11, 5 * 2001
    mu = (r.standard_normal(p) * 1e-3).astype(np.float32)
    x0 = (r.standard_normal(p) * 0.3 - 0.2).astype(np.float32)
    z = c_normals(lib, seed, stream, offset, p)
    lam_sigma = (r.uniform(0.5, 2.0, p) * np.float32(0.02)).astype(np.float32)
    for scale, name in ((0.0173, "minirso_move_scalar"), (lam_sigma, "minirso_move")):
        x, saved = x0.copy(), np.full(p, np.nan, np.float32)
        with fused.counting() as d:
            eps = kernels.amc_move(x, saved, mu, scale, seed, stream, offset)
        assert isinstance(eps, np.ndarray) and eps.shape == (p,) and eps.dtype == np.float32
        assert d["by_name"] == {name: 1}
        np.testing.assert_array_equal(eps, mu + scale * z)
        np.testing.assert_array_equal(saved, x0)
        np.testing.assert_array_equal(x, x0 + eps)
    m = mu.copy()
    assert kernels.amc_mu_update(m, eps, 0.013) is True
    ref = mu.copy()
    ref += 0.013 * (eps - ref)
    np.testing.assert_array_equal(m, ref)


def kernel_rnn(x, w_ih, w_hh, b, write_seq=True, record=True):
    """kernels.rnn_tanh (its launch shape and arguments) run by the stand-in's RawKernel on the CPU."""
    seq, last, hh = kernels.rnn_tanh(np.ascontiguousarray(x, np.float32), w_ih, w_hh, b, write_seq, record)
    return seq, last, hh


@pytest.mark.parametrize("t_len, n, i, h", [(13, 7, 3, 8), (20, 9, 2, 5), (6, 1, 4, 33)])
def test_rnn_kernel_matches_the_rnn_layer(fused, t_len, n, i, h):
    """Every state, the last state and sum |h_{t-1}|^2 of the kernel against minirso's RNN layer on NumPy;
    partial last blocks (N not a multiple of S), odd H, H > 32 (a sequence spans two warps); one launch."""
    from minirso import nn as mnn

    r = np.random.default_rng(t_len + n)
    layer_model = mnn.Sequential([mnn.RNN(i, h, return_sequences=True)], seed=1)
    layer_model.params[...] = (r.standard_normal(layer_model.num_params) * 0.6).astype(np.float32)
    rnn = layer_model.layers[0]
    x = (r.standard_normal((n, t_len, i)) + 0.3).astype(np.float32)  # batch first, as the layer takes it
    with fused.counting() as d:
        seq, last, hh = kernel_rnn(x.transpose(1, 0, 2), rnn.weight_ih, rnn.weight_hh, rnn.bias)
    assert d["by_name"] == {"minirso_rnn_tanh": 1}
    with pytest.MonkeyPatch.context() as m:
        m.setattr(kernels, "enabled", lambda xp: False)
        ref = rnn(x)  # (N, T, H), the plain loop
    np.testing.assert_allclose(seq.transpose(1, 0, 2), ref, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(last, ref[:, -1], rtol=1e-5, atol=2e-6)
    prev = np.concatenate([np.zeros((n, 1, h), np.float32), ref[:, :-1]], axis=1)  # h_{t-1}, h_0 = 0
    np.testing.assert_allclose(hh, float((prev.astype(np.float64) ** 2).sum()), rtol=1e-5)
    np.testing.assert_allclose(rnn(x), ref, rtol=1e-5, atol=2e-6)  # the layer itself takes the kernel too


def test_rnn_kernel_without_sequences_or_record(fused):
    """write_seq = record = 0: only the last state is written (the (1,) sequence buffer is never touched)."""
    r = np.random.default_rng(9)
    x = r.standard_normal((11, 6, 2)).astype(np.float32)
    w_ih = (r.standard_normal((7, 2)) * 0.7).astype(np.float32)
    w_hh = (r.standard_normal((7, 7)) * 0.4).astype(np.float32)
    b = r.standard_normal(7).astype(np.float32)
    seq_a, last_a, hh_a = kernel_rnn(x, w_ih, w_hh, b)
    seq_b, last_b, hh_b = kernel_rnn(x, w_ih, w_hh, b, write_seq=False, record=False)
    np.testing.assert_array_equal(last_b, last_a)
    assert seq_b is None and hh_b is None and hh_a > 0


def test_rnn_kernel_needs_compute_capability_6(fused, monkeypatch):
    """CUDA has atomicAdd(double *, double) from compute capability 6.0: the stand-in's sm_52 build rejects the
    RNN source, and kernels.rnn_tanh takes the plain loop there (None) without trying it."""
    monkeypatch.setattr(STANDIN._standin, "compute_capability", "52")
    with pytest.raises(STANDIN._kernel.CompileException, match="atomicAdd"):
        STANDIN.RawKernel(kernels.RNN_SOURCE, "minirso_rnn_tanh")((1,), (8,), ())
    x = np.ones((3, 2, 2), np.float32)
    w = np.full((4, 2), 0.1, np.float32)
    with fused.counting() as d:
        assert kernels.rnn_tanh(x, w, np.eye(4, dtype=np.float32), np.zeros(4, np.float32), True, True) is None
    assert d["launches"] == 0 and kernels.status() == "on"


def test_rnn_launch_shape():
    assert kernels.rnn_launch_shape(1500, 2, 64) == (4, 375, 256, 4 * (2 * 64 + 64 * 64 + 2 * 4 * 64))
    assert kernels.rnn_launch_shape(3, 64, 64)[0] == 3  # never more sequences per block than there are
    assert kernels.rnn_launch_shape(10, 64, 1024) is None  # W_hh alone is 4 MB: too big for shared memory
    assert kernels.rnn_launch_shape(10, 2, 2000) is None  # more threads than a block may have


def _net(kind, seed):
    from minirso import models, nn as mnn

    if kind == "fig1":
        return models.mlp([29, 16, 16, 10], output="softmax", seed=seed), "mse"
    if kind == "relu_ce":
        return models.mlp([13, 64, 7, 5], activation="relu", seed=seed), "cross_entropy_mean"
    if kind == "nobias_ce_sum":
        layers = [mnn.Dense(9, 12, bias=False), mnn.Tanh(), mnn.Dense(12, 6), mnn.Dense(6, 4, bias=False)]
        return mnn.Sequential(layers, seed=seed), "cross_entropy"
    return models.amc_deep_tanh(5, seed=seed, init="kaiming"), "mse"  # float regression targets


@pytest.mark.parametrize("kind, n", [("fig1", 300), ("fig1", 256), ("relu_ce", 37), ("nobias_ce_sum", 513),
                                     ("deep_tanh", 301)])
def test_fused_mlp_loss_equals_the_plain_forward(fused, monkeypatch, kind, n):
    """ModelLoss with the kernel (first product + ONE launch) against its plain forward on the same
    parameters: Fig. 1 (softmax + MSE on one-hot labels), ReLU + mean cross-entropy at width 64 (the
    kernel's limit), layers without bias and summed float64 cross-entropy, a deep tanh net with float
    targets; N below, at and above a multiple of the 256-row block."""
    from minirso.optim import ModelLoss

    r = np.random.default_rng(n)
    net, loss = _net(kind, seed=n)
    # every parameter random and distinct (the init's zero biases would hide a wrong bias offset)
    net.params[...] = (net.params * r.uniform(0.5, 3.0, net.num_params) + r.normal(0, 0.2, net.num_params)).astype(np.float32)
    d = net.layers[0].in_features
    x = (r.standard_normal((n, d)) * np.linspace(0.2, 2.0, d) + 0.3).astype(np.float32)
    if kind == "deep_tanh":
        y = np.tanh(x * 2.0).astype(np.float32)  # (N, 1) float targets
    else:
        y = r.integers(0, net.layers[-2 if kind == "fig1" else -1].out_features, n).astype(np.int64)
    with monkeypatch.context() as m:
        m.setattr(kernels, "enabled", lambda xp: False)
        plain = ModelLoss(net, x, y, loss)(net.params)
    ml = ModelLoss(net, x, y, loss)
    assert ml._layout is False
    with fused.counting() as c:
        u = ml(net.params)
    assert c["by_name"]["minirso_mlp_tail"] == 1 and ml._layout is not None  # the kernel ran, once
    assert u == pytest.approx(plain, rel=2e-6)
    # moving one weight of the last layer moves both alike (the offsets point at the right parameters)
    net.params[-1] += np.float32(0.25)
    with monkeypatch.context() as m:
        m.setattr(kernels, "enabled", lambda xp: False)
        p2 = ModelLoss(net, x, y, loss)(net.params)
    assert ml(net.params) == pytest.approx(p2, rel=2e-6) and abs(p2 - plain) > 1e-4 * abs(plain)


@pytest.mark.parametrize("signal_norm", [False, True])
def test_amc_with_every_fused_kernel_takes_the_plain_decisions(fused, monkeypatch, signal_norm):
    """aMC on the Fig. 1 net as it runs on a GPU (fused move, fused eq. 10, fused forward + loss where
    no signal norm is recorded), driven by minirso's own glue code through the stand-in's kernels with
    CuPy's semantics (a three-output kernel returns a tuple), against the plain NumPy run from the same
    start: the same accept / reject decision at every step, sigma decays included, and the same
    parameters up to float32 rounding."""
    from minirso import models
    from minirso.optim import AMC, ModelLoss

    r = np.random.default_rng(11)
    x = (r.random((300, 29)) * np.linspace(0.1, 1.0, 29)).astype(np.float32)
    y = r.integers(0, 10, 300).astype(np.int64)

    def run(on):
        net = models.mlp([29, 16, 16, 10], output="softmax", seed=4, init=("gaussian", 0.3))
        opt = AMC(net.params, ModelLoss(net, x, y, "mse"), sigma0=0.05, epsilon=0.2, n_s=3,
                  signal_norm=signal_norm, seed=9)
        with monkeypatch.context() as m:
            if not on:
                m.setattr(kernels, "enabled", lambda xp: False)
            with fused.counting() as c:
                decisions = [opt.step()["accepted"] for _ in range(40)]
        assert kernels.status() == "on"
        return decisions, opt, net, c["by_name"]

    (d_plain, o_plain, n_plain, c_plain), (d_fused, o_fused, n_fused, c_fused) = run(False), run(True)
    assert not c_plain and c_fused["minirso_move_scalar" if not signal_norm else "minirso_move"] == 40
    assert c_fused["minirso_mu_update"] == sum(d_fused) and ("minirso_mlp_tail" in c_fused) != signal_norm
    assert d_fused == d_plain
    assert 5 < sum(d_plain) < 35 and o_plain.sigma < 0.05  # both outcomes and at least one decay were tested
    assert o_fused.sigma == o_plain.sigma and o_fused.n_cr == o_plain.n_cr
    np.testing.assert_allclose(n_fused.params, n_plain.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(o_fused.mu, o_plain.mu, rtol=1e-4, atol=1e-8)
    assert o_fused.loss == pytest.approx(o_plain.loss, rel=1e-5)
