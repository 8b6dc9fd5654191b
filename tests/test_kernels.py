"""The fused GPU kernels' source (minirso.kernels), compiled for the host CPU, against the plain array code.

The kernel text is C that is also CUDA C, so the host C compiler builds the SAME source into a
small library (with the kernel's loop body pasted into a C loop, as CuPy pastes it into a CUDA
one) and the arithmetic is checked here without a GPU: Philox words bit for bit against
``minirso.random.random_bits``, normals against ``minirso.random.normal`` (equal up to the last
bit of the C library's float64 log / cos against NumPy's), the aMC proposal bit for bit against
the plain ``mu + scale * z`` given the same normals, for one chain and for K chains.  What needs
a device (CuPy's launch, NVRTC) is in tests/test_gpu.py.
"""

import ctypes
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from minirso import kernels
from minirso import random as mr

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


# ---- the persistent RNN kernel, run on the CPU: one POSIX thread per CUDA thread ---------------------------
THREADS_HARNESS = r"""
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#define MINIRSO_HOST
#define MINIRSO_KERNEL static void
#define MINIRSO_RESTRICT restrict
static pthread_barrier_t minirso_barrier;
static pthread_mutex_t minirso_mutex = PTHREAD_MUTEX_INITIALIZER;
static __thread int minirso_tid;
static int minirso_bid, minirso_nthreads;
static void *minirso_smem;
#define MINIRSO_TID minirso_tid
#define MINIRSO_BID minirso_bid
#define MINIRSO_NTHREADS minirso_nthreads
#define MINIRSO_SHARED(name) float *name = (float *)minirso_smem
#define MINIRSO_SHARED_DOUBLE(name) double *name = (double *)minirso_smem
#define MINIRSO_SYNC() pthread_barrier_wait(&minirso_barrier)
static void minirso_atomic_add(double *p, double v)
{
    pthread_mutex_lock(&minirso_mutex); *p += v; pthread_mutex_unlock(&minirso_mutex);
}
#define MINIRSO_ATOMIC_ADD(p, v) minirso_atomic_add((p), (v))

static void (*minirso_body)(void);  /* calls the kernel with the arguments of the current launch */

static void *minirso_thread(void *tid)
{
    minirso_tid = (int)(intptr_t)tid;
    minirso_body();
    return NULL;
}

/* the launch <<<blocks, threads, shared>>>, block after block, one POSIX thread per CUDA thread;
 * shared memory starts as NaN garbage */
static int minirso_launch(void (*body)(void), int blocks, int threads, int shared)
{
    pthread_t th[1024];
    minirso_body = body;
    minirso_nthreads = threads;
    minirso_smem = malloc(shared);
    for (int b = 0; b < blocks; ++b) {
        memset(minirso_smem, 0xFF, shared);
        minirso_bid = b;
        pthread_barrier_init(&minirso_barrier, NULL, threads);
        for (int t = 0; t < threads; ++t)
            if (pthread_create(&th[t], NULL, minirso_thread, (void *)(intptr_t)t)) return -1;
        for (int t = 0; t < threads; ++t) pthread_join(th[t], NULL);
        pthread_barrier_destroy(&minirso_barrier);
    }
    free(minirso_smem);
    return 0;
}
"""


RNN_HARNESS = THREADS_HARNESS + r"""
%(rnn)s

static struct { const float *x, *w_ih, *w_hh, *bias; float *seq, *last; double *hh;
                int T, N, I, H, S, write_seq, record; } A;

static void body(void)
{
    minirso_rnn_tanh(A.x, A.w_ih, A.w_hh, A.bias, A.seq, A.last, A.hh, A.T, A.N, A.I, A.H, A.S, A.write_seq, A.record);
}

int rnn(const float *x, const float *w_ih, const float *w_hh, const float *bias, float *seq, float *last,
        double *hh, int T, int N, int I, int H, int S, int write_seq, int record, int blocks, int threads,
        int shared)
{
    A.x = x; A.w_ih = w_ih; A.w_hh = w_hh; A.bias = bias; A.seq = seq; A.last = last; A.hh = hh;
    A.T = T; A.N = N; A.I = I; A.H = H; A.S = S; A.write_seq = write_seq; A.record = record;
    return minirso_launch(body, blocks, threads, shared);
}
"""


@pytest.fixture(scope="module")
def rnn_lib(tmp_path_factory):
    lib = build(tmp_path_factory, "rnn_kernel", RNN_HARNESS % {"rnn": kernels.RNN_SOURCE}, "-std=gnu99", "-pthread")
    lib.rnn.argtypes = [P] * 7 + [ctypes.c_int] * 10
    lib.rnn.restype = ctypes.c_int
    return lib


def kernel_rnn(lib, x, w_ih, w_hh, b, write_seq=True, record=True):
    """Run RNN_SOURCE as CuPy would launch it (shape from kernels.rnn_launch_shape), on CPU threads."""
    t_len, n, i = x.shape
    h = w_hh.shape[0]
    s, blocks, threads, shared = kernels.rnn_launch_shape(n, i, h)
    seq = np.full((t_len, n, h), np.nan, np.float32)
    last = np.full((n, h), np.nan, np.float32)
    hh = np.zeros(1, np.float64)
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (x, w_ih, w_hh, b)]
    assert lib.rnn(*(ptr(a) for a in arrays), ptr(seq), ptr(last), ptr(hh), t_len, n, i, h, s, int(write_seq),
                   int(record), blocks, threads, shared) == 0
    return seq, last, hh[0]


@pytest.mark.parametrize("t_len, n, i, h", [(13, 7, 3, 8), (20, 9, 2, 5), (6, 1, 4, 33)])
def test_rnn_kernel_matches_the_rnn_layer(rnn_lib, t_len, n, i, h):
    """Every state, the last state and sum |h_{t-1}|^2 of the kernel against minirso's RNN layer on NumPy;
    partial last blocks (N not a multiple of S), odd H, H > 32 (a sequence spans two warps)."""
    from minirso import nn as mnn

    r = np.random.default_rng(t_len + n)
    layer_model = mnn.Sequential([mnn.RNN(i, h, return_sequences=True)], seed=1)
    layer_model.params[...] = (r.standard_normal(layer_model.num_params) * 0.6).astype(np.float32)
    rnn = layer_model.layers[0]
    x = (r.standard_normal((n, t_len, i)) + 0.3).astype(np.float32)  # batch first, as the layer takes it
    seq, last, hh = kernel_rnn(rnn_lib, x.transpose(1, 0, 2), rnn.weight_ih, rnn.weight_hh, rnn.bias)
    ref = rnn(x)  # (N, T, H)
    np.testing.assert_allclose(seq.transpose(1, 0, 2), ref, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(last, ref[:, -1], rtol=1e-5, atol=2e-6)
    prev = np.concatenate([np.zeros((n, 1, h), np.float32), ref[:, :-1]], axis=1)  # h_{t-1}, h_0 = 0
    np.testing.assert_allclose(hh, float((prev.astype(np.float64) ** 2).sum()), rtol=1e-5)


def test_rnn_kernel_without_sequences_or_record(rnn_lib):
    """write_seq = record = 0: only the last state is written, the sequence buffer and the sum stay untouched."""
    r = np.random.default_rng(9)
    x = r.standard_normal((11, 6, 2)).astype(np.float32)
    w_ih, w_hh = (r.standard_normal((7, 2)) * 0.7).astype(np.float32), (r.standard_normal((7, 7)) * 0.4).astype(np.float32)
    b = r.standard_normal(7).astype(np.float32)
    seq_a, last_a, hh_a = kernel_rnn(rnn_lib, x, w_ih, w_hh, b)
    seq_b, last_b, hh_b = kernel_rnn(rnn_lib, x, w_ih, w_hh, b, write_seq=False, record=False)
    np.testing.assert_array_equal(last_b, last_a)
    assert np.isnan(seq_b).all() and hh_b == 0.0 and hh_a > 0


def test_rnn_launch_shape():
    assert kernels.rnn_launch_shape(1500, 2, 64) == (4, 375, 256, 4 * (2 * 64 + 64 * 64 + 2 * 4 * 64))
    assert kernels.rnn_launch_shape(3, 64, 64)[0] == 3  # never more sequences per block than there are
    assert kernels.rnn_launch_shape(10, 64, 1024) is None  # W_hh alone is 4 MB: too big for shared memory
    assert kernels.rnn_launch_shape(10, 2, 2000) is None  # more threads than a block may have


# ---- the fused small-MLP tail, run on the CPU the same way ----------------------------------------------
MLP_HARNESS = THREADS_HARNESS + r"""
%(mlp)s

static struct { const float *z1, *params; const long long *layout, *labels; const float *targets; double *partial;
                int N, L, softmax, loss, target_kind; } A;

static void body(void)
{
    minirso_mlp_tail(A.z1, A.params, A.layout, A.labels, A.targets, A.partial, A.N, A.L, A.softmax, A.loss,
                     A.target_kind);
}

int mlp(const float *z1, const float *params, const long long *layout, const long long *labels,
        const float *targets, double *partial, int N, int L, int softmax, int loss, int target_kind,
        int blocks, int threads, int shared)
{
    A.z1 = z1; A.params = params; A.layout = layout; A.labels = labels; A.targets = targets; A.partial = partial;
    A.N = N; A.L = L; A.softmax = softmax; A.loss = loss; A.target_kind = target_kind;
    return minirso_launch(body, blocks, threads, shared);
}
"""


@pytest.fixture(scope="module")
def mlp_lib(tmp_path_factory):
    lib = build(tmp_path_factory, "mlp_kernel", MLP_HARNESS % {"mlp": kernels.MLP_SOURCE}, "-std=gnu99", "-pthread")
    lib.mlp.argtypes = [P] * 6 + [ctypes.c_int] * 8
    lib.mlp.restype = ctypes.c_int
    return lib


class HostRawKernel:
    """Stands in for ``cupy.RawKernel(MLP_SOURCE, ...)``: the same launch (grid, block, args, shared_mem),
    run by the host build on NumPy arrays, so minirso's own glue code drives the kernel here."""

    def __init__(self, lib):
        self.lib, self.launches = lib, 0

    def __call__(self, grid, block, args, shared_mem=0):
        self.launches += 1
        arrays, ints = args[:6], args[6:]
        assert all(a.flags.c_contiguous for a in arrays)
        assert self.lib.mlp(*(ptr(a) for a in arrays), *(int(v) for v in ints), grid[0], block[0], shared_mem) == 0


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
def test_fused_mlp_loss_equals_the_plain_forward(mlp_lib, monkeypatch, kind, n):
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
    plain = ModelLoss(net, x, y, loss)(net.params)
    fake = HostRawKernel(mlp_lib)
    monkeypatch.setattr(kernels, "enabled", lambda xp: True)
    monkeypatch.setattr(kernels, "_raw_kernel", lambda xp, name: fake)
    fused = ModelLoss(net, x, y, loss)
    assert fused._layout is False
    u = fused(net.params)
    assert fake.launches == 1 and fused._layout is not None  # the kernel ran
    assert u == pytest.approx(plain, rel=2e-6)
    # moving one weight of the last layer moves both alike (the offsets point at the right parameters)
    net.params[-1] += np.float32(0.25)
    plain2 = ModelLoss(net, x, y, loss)
    monkeypatch.setattr(kernels, "enabled", lambda xp: False)
    p2 = plain2(net.params)
    monkeypatch.setattr(kernels, "enabled", lambda xp: True)
    assert fused(net.params) == pytest.approx(p2, rel=2e-6) and abs(p2 - plain) > 1e-4 * abs(plain)


class HostElementwise:
    """Stands in for the ``cupy.ElementwiseKernel`` objects of the aMC move (same positional arguments
    as minirso's glue passes them), run by the host build of the same operation text."""

    def __init__(self, lib, name):
        self.lib, self.name = lib, name

    def __call__(self, *args):
        if self.name == "mu_update":
            eps, epsilon, mu = args
            self.lib.mu_update(ptr(eps), epsilon, mu.size, ptr(mu))
            return mu
        assert self.name in ("move", "move_scalar"), self.name
        mu, scale, seed, stream, offset, row_len, x, saved, eps = args
        is_array = self.name == "move"
        if is_array:
            scale = np.ascontiguousarray(np.broadcast_to(scale, mu.shape), dtype=np.float32)
        self.lib.move(ptr(mu), ptr(scale) if is_array else None, int(is_array), 0.0 if is_array else scale,
                      int(seed), int(stream), int(offset), int(row_len), ptr(x), ptr(saved), ptr(eps))
        return eps


@pytest.mark.parametrize("signal_norm", [False, True])
def test_amc_with_every_fused_kernel_takes_the_plain_decisions(lib, mlp_lib, monkeypatch, signal_norm):
    """aMC on the Fig. 1 net as it runs on a GPU (fused move, fused eq. 10, fused forward + loss where
    no signal norm is recorded), driven by minirso's own glue code through the host builds, against
    the plain NumPy run from the same start: the same accept / reject decision at every step, sigma
    decays included, and the same parameters up to float32 rounding."""
    from minirso import models
    from minirso.optim import AMC, ModelLoss

    r = np.random.default_rng(11)
    x = (r.random((300, 29)) * np.linspace(0.1, 1.0, 29)).astype(np.float32)
    y = r.integers(0, 10, 300).astype(np.int64)

    def run(fused):
        net = models.mlp([29, 16, 16, 10], output="softmax", seed=4, init=("gaussian", 0.3))
        opt = AMC(net.params, ModelLoss(net, x, y, "mse"), sigma0=0.05, epsilon=0.2, n_s=3,
                  signal_norm=signal_norm, seed=9)
        with monkeypatch.context() as m:
            if fused:
                m.setattr(kernels, "enabled", lambda xp: True)
                m.setattr(kernels, "_kernel", lambda xp, name: HostElementwise(lib, name))
                m.setattr(kernels, "_raw_kernel", lambda xp, name: HostRawKernel(mlp_lib))
            decisions = [opt.step()["accepted"] for _ in range(40)]
            assert kernels.status() == "on"
        return decisions, opt, net

    (d_plain, o_plain, n_plain), (d_fused, o_fused, n_fused) = run(False), run(True)
    assert d_fused == d_plain
    assert 5 < sum(d_plain) < 35 and o_plain.sigma < 0.05  # both outcomes and at least one decay were tested
    assert o_fused.sigma == o_plain.sigma and o_fused.n_cr == o_plain.n_cr
    np.testing.assert_allclose(n_fused.params, n_plain.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(o_fused.mu, o_plain.mu, rtol=1e-4, atol=1e-8)
    assert o_fused.loss == pytest.approx(o_plain.loss, rel=1e-5)
