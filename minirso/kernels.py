"""Fused GPU kernels, each next to the plain array code it must reproduce (bit for bit where the sums allow).

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

A third kernel runs a whole tanh RNN layer in ONE launch (issue 5: "a
persistent RNN kernel that keeps the hidden state on chip"): the plain layer
(``minirso.nn.recurrent.RNN``) makes one matrix product and a few elementwise
operations per time step, about 5 launches x 784 steps per layer on a GPU.
Here each thread block owns a few sequences, keeps W_ih^T, W_hh^T and their
hidden states in shared memory, and walks all T steps, one barrier per step.
The tests run the SAME text on the CPU through the CuPy stand-in's
``RawKernel`` (``tests/standin``: one coroutine per CUDA thread, each running
to its next ``__syncthreads``, guard pages after every array), and NVIDIA's
NVRTC compiles it for sm_60, sm_80 and sm_90 (``tests/test_nvrtc.py``).  Its sums run in
another order than the BLAS product of the plain loop, so the two agree to
float32 rounding, not bit for bit (over hundreds of steps the chaotic
recurrence amplifies that, as between any two implementations).  It needs
compute capability 6.0 or newer (a float64 ``atomicAdd``); older GPUs run the
plain loop.

aMC's step on a GPU is otherwise launch-bound as well: for the Fig. 1 net (13,002 parameters,
60,000 rows) the plain step is about 25 launches (by count of the code), most on arrays of a few thousand
numbers, while the one large piece of work (the first product, x W^T over 60,000 x 784 inputs)
is a single cuBLAS call.  So the move is ONE kernel (``MOVE_OPERATION``: the proposal, the copy
of x kept for a rejection, the add; three passes in the plain code), eq. (10) is one
(``MU_OPERATION``), and everything after the first product is one (``MLP_SOURCE``: the first
bias and activation, the small Dense layers, softmax, the per-row loss and per-block sums, a
thread per row), used by :class:`minirso.optim.ModelLoss` for chains of Dense layers up to 64
wide.  A step is then about 5 launches and one host read.  (CUDA graphs would remove the launches
altogether, but CuPy refuses cuBLAS calls during stream capture, so a step with a product
cannot be captured.)  The move is bit for bit the plain code; the MLP tail sums in another order
than cuBLAS and the plain reductions, so its loss agrees to float32 rounding.

If a kernel fails to compile on some CUDA set-up, the first call warns once
and the plain path is used from then on (``status()`` says which).
"""

from __future__ import annotations

import os
import warnings

import numpy

from .backend import get_array_module

__all__ = ["PHILOX_SOURCE", "PROPOSAL_OPERATION", "NORMAL_OPERATION", "RNN_SOURCE", "enabled", "status",
           "amc_proposal", "normal", "rnn_tanh", "rnn_launch_shape", "MLP_SOURCE", "mlp_tail",
           "MOVE_OPERATION", "MU_OPERATION", "amc_move", "amc_mu_update", "compute_capability",
           "RNN_MIN_CAPABILITY"]

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
# aMC's whole move in one pass: the proposal, x kept for an exact restore on rejection, x' = x + eps
MOVE_OPERATION = PROPOSAL_OPERATION + " saved = x; x = x + eps;"
# eq. (10) on acceptance: mu <- mu + epsilon (eps - mu), rounded as the array code (float32, no FMA)
MU_OPERATION = "mu = mu + (T)epsilon * (eps - mu);"

RNN_SOURCE = r"""
/* One tanh RNN layer, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), h_0 = 0, all T steps in one launch.
 * Block b owns sequences b*S .. b*S+S-1; thread (s, j) = (tid / H, tid % H) owns hidden unit j of
 * sequence s.  Shared memory: W_ih^T (I, H) and W_hh^T (H, H), transposed so that the H threads of a
 * sequence read consecutive words (no bank conflicts), and the hidden states twice (S, H): step t
 * reads one copy and writes the other, so ONE barrier per step separates the reads from the writes.
 * The macros spell the CUDA builtins in one place (a host build may define MINIRSO_HOST and its own). */
#ifndef MINIRSO_HOST
#define MINIRSO_KERNEL extern "C" __global__ void
#define MINIRSO_RESTRICT __restrict__
#define MINIRSO_TID ((int)threadIdx.x)
#define MINIRSO_BID ((int)blockIdx.x)
#define MINIRSO_NTHREADS ((int)blockDim.x)
#define MINIRSO_SHARED(name) extern __shared__ float name[]
#define MINIRSO_SYNC() __syncthreads()
#define MINIRSO_ATOMIC_ADD(p, v) atomicAdd((p), (v))
#endif

MINIRSO_KERNEL minirso_rnn_tanh(
    const float *MINIRSO_RESTRICT x,     /* (T, N, I) inputs, time-major */
    const float *MINIRSO_RESTRICT w_ih,  /* (H, I) */
    const float *MINIRSO_RESTRICT w_hh,  /* (H, H) */
    const float *MINIRSO_RESTRICT bias,  /* (H,) */
    float *MINIRSO_RESTRICT seq,         /* (T, N, H) every state, written if write_seq */
    float *MINIRSO_RESTRICT last,        /* (N, H) the last state */
    double *MINIRSO_RESTRICT hh_sum,     /* (1,) += sum over t, n of |h_{t-1}|^2, if record */
    int T, int N, int I, int H, int S, int write_seq, int record)
{
    MINIRSO_SHARED(smem);
    float *wih = smem;              /* (I, H): wih[i * H + j] = w_ih[j, i] */
    float *whh = wih + I * H;       /* (H, H): whh[k * H + j] = w_hh[j, k] */
    float *hbuf = whh + H * H;      /* (2, S, H) */
    const int tid = MINIRSO_TID, nt = MINIRSO_NTHREADS;
    const int s = tid / H, j = tid % H;
    const int n = MINIRSO_BID * S + s;
    const int active = (s < S) && (n < N);
    for (int k = tid; k < I * H; k += nt) wih[(k % I) * H + k / I] = w_ih[k];
    for (int k = tid; k < H * H; k += nt) whh[(k % H) * H + k / H] = w_hh[k];
    for (int k = tid; k < 2 * S * H; k += nt) hbuf[k] = 0.0f;
    const float b = (s < S) ? bias[j] : 0.0f;
    double q = 0.0;
    int cur = 0;
    MINIRSO_SYNC();
    for (int t = 0; t < T; ++t) {
        if (active) {
            const float *h = hbuf + cur * S * H + s * H;
            const float *xt = x + ((long long)t * N + n) * I;
            float z = 0.0f;
            for (int i = 0; i < I; ++i) z += wih[i * H + j] * xt[i];
            for (int k = 0; k < H; ++k) z += whh[k * H + j] * h[k];
            const float hj = h[j];
            q += (double)(hj * hj);  /* float32 square summed in float64, as the array code */
            const float hn = tanhf(z + b);
            hbuf[(cur ^ 1) * S * H + s * H + j] = hn;
            if (write_seq) seq[((long long)t * N + n) * H + j] = hn;
        }
        cur ^= 1;
        MINIRSO_SYNC();
    }
    if (active) {
        last[(long long)n * H + j] = hbuf[cur * S * H + s * H + j];
        if (record) MINIRSO_ATOMIC_ADD(hh_sum, q);
    }
}
"""

MLP_SOURCE = r"""
/* Everything of a small fully connected net after its first matrix product, for every row, in ONE launch:
 * the first layer's bias and activation, the remaining Dense layers (widths <= MINIRSO_MLP_MAX), an
 * optional softmax, the per-row loss, and one partial sum per block (a fixed-order tree in shared
 * memory, so the result does not depend on scheduling).  Thread = row.  The first product x W^T (the
 * only large one: N x 784 inputs in aMC's Fig. 1) stays with cuBLAS.
 * layout (L, 5), one row per Dense layer: weight offset and bias offset (-1: none) in the flat parameter
 * buffer, inputs, outputs, activation after it (0 none, 1 tanh, 2 relu).  Layer 0's weight is not read.
 * loss 0: sum over classes of (out_j - target_j)^2, target = one-hot(label) or a float row;
 * loss 1: cross-entropy -log softmax(out)[label], in double (as minirso's float64 cross_entropy). */
#ifndef MINIRSO_HOST
#define MINIRSO_KERNEL extern "C" __global__ void
#define MINIRSO_RESTRICT __restrict__
#define MINIRSO_TID ((int)threadIdx.x)
#define MINIRSO_BID ((int)blockIdx.x)
#define MINIRSO_NTHREADS ((int)blockDim.x)
#define MINIRSO_SHARED_DOUBLE(name) extern __shared__ double name[]
#define MINIRSO_SYNC() __syncthreads()
#endif
#define MINIRSO_MLP_MAX 64

MINIRSO_KERNEL minirso_mlp_tail(
    const float *MINIRSO_RESTRICT z1,          /* (N, layout[0].outputs) x W_1^T, before the bias */
    const float *MINIRSO_RESTRICT params,      /* the flat parameter buffer */
    const long long *MINIRSO_RESTRICT layout,  /* (L, 5) */
    const long long *MINIRSO_RESTRICT labels,  /* (N,) integer labels, if target_kind == 0 */
    const float *MINIRSO_RESTRICT targets,     /* (N, C) float targets, if target_kind == 1 */
    double *MINIRSO_RESTRICT partial,          /* (blocks,) the block's sum of per-row losses */
    int N, int L, int softmax, int loss, int target_kind)
{
    MINIRSO_SHARED_DOUBLE(red);  /* (threads,), threads a power of two */
    const int tid = MINIRSO_TID, nt = MINIRSO_NTHREADS;
    const int n = MINIRSO_BID * nt + tid;
    double row = 0.0;
    if (n < N) {
        float a[MINIRSO_MLP_MAX], b[MINIRSO_MLP_MAX];
        int width = (int)layout[3];
        for (int j = 0; j < width; ++j) {
            float s = z1[(long long)n * width + j];
            if (layout[1] >= 0) s += params[layout[1] + j];  /* x W^T first, then + b: as Dense */
            a[j] = layout[4] == 1 ? tanhf(s) : (layout[4] == 2 ? (s > 0.0f ? s : 0.0f) : s);
        }
        for (int l = 1; l < L; ++l) {
            const long long *lay = layout + 5 * l;
            const float *w = params + lay[0];  /* (outputs, inputs), row-major */
            const int in = (int)lay[2], out = (int)lay[3], act = (int)lay[4];
            for (int j = 0; j < out; ++j) {
                float s = 0.0f;
                for (int k = 0; k < in; ++k) s += w[j * in + k] * a[k];
                if (lay[1] >= 0) s += params[lay[1] + j];
                b[j] = act == 1 ? tanhf(s) : (act == 2 ? (s > 0.0f ? s : 0.0f) : s);
            }
            for (int j = 0; j < out; ++j) a[j] = b[j];
            width = out;
        }
        if (softmax) {  /* float32, max subtracted: as minirso.nn.functional.softmax */
            float m = a[0], s = 0.0f;
            for (int j = 1; j < width; ++j) m = a[j] > m ? a[j] : m;
            for (int j = 0; j < width; ++j) { a[j] = expf(a[j] - m); s += a[j]; }
            for (int j = 0; j < width; ++j) a[j] = a[j] / s;
        }
        if (loss == 0) {
            for (int j = 0; j < width; ++j) {
                const float t = target_kind == 1 ? targets[(long long)n * width + j]
                                                 : (labels[n] == j ? 1.0f : 0.0f);
                const float d = a[j] - t;  /* float32 difference and square, summed in double */
                row += (double)(d * d);
            }
        } else {
            const long long y = labels[n];
            double m = a[0], s = 0.0;
            for (int j = 1; j < width; ++j) m = (double)a[j] > m ? (double)a[j] : m;
            for (int j = 0; j < width; ++j) s += exp((double)a[j] - m);
            row = (y >= 0 && y < width) ? m + log(s) - (double)a[y] : nan("");  /* NaN for a bad label */
        }
    }
    red[tid] = row;
    MINIRSO_SYNC();
    for (int h = nt / 2; h > 0; h /= 2) {
        if (tid < h) red[tid] += red[tid + h];
        MINIRSO_SYNC();
    }
    if (tid == 0) partial[MINIRSO_BID] = red[0];
}
"""

MLP_MAX_WIDTH = 64  # MINIRSO_MLP_MAX: widest layer after the first product
MLP_THREADS = 256  # rows per block (a power of two: the block sum is a tree)

_SHARED_LIMIT = 48 * 1024  # bytes of shared memory a block may use without opting in


RNN_MIN_CAPABILITY = 60  # double atomicAdd (CUDA C++ Programming Guide, "atomicAdd()": compute capability 6.x+)


def compute_capability(xp) -> int:
    """The current GPU's compute capability as an int (``"90"`` -> 90: an H100); CuPy returns it as a string."""
    return int(xp.cuda.Device().compute_capability)


def rnn_launch_shape(n: int, input_size: int, hidden: int):
    """``(S, blocks, threads, shared bytes)`` for :data:`RNN_SOURCE`, or None when the layer does not fit.

    S sequences per block: up to 4 (many blocks keep every SM busy: 375 blocks for the aMC
    experiment's 1,500 sequences), at most 1,024 threads, and the transposed weights plus the two
    state copies within 48 KB of shared memory (hidden 64: 33 KB).
    """
    if hidden < 1 or hidden > 1024:
        return None
    s = max(1, min(4, 1024 // hidden, n))
    shared = 4 * (input_size * hidden + hidden * hidden + 2 * s * hidden)
    if shared > _SHARED_LIMIT:
        return None
    return s, -(-n // s), s * hidden, shared


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
    "move": ("T mu, S scale, uint64 seed, uint64 stream, uint64 offset, int64 row_len", "T x, T saved, T eps",
             MOVE_OPERATION),
    "move_scalar": ("T mu, float64 scale, uint64 seed, uint64 stream, uint64 offset, int64 row_len",
                    "T x, T saved, T eps", MOVE_OPERATION),
    "mu_update": ("T eps, float64 epsilon", "T mu", MU_OPERATION),
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


_RAW = {"rnn_tanh": lambda: RNN_SOURCE, "mlp_tail": lambda: MLP_SOURCE}  # name -> source of minirso_<name>


def _raw_kernel(xp, name):
    key = (id(xp), name)
    if key not in _STATE["kernels"]:
        _STATE["kernels"][key] = xp.RawKernel(_RAW[name](), f"minirso_{name}")
    return _STATE["kernels"][key]


def _launch(xp, name, *args):
    """Run kernel ``name``; on a compile or launch error warn once, switch to the plain path, return None."""
    try:
        if name in _RAW:
            grid, block, args, shared = args
            return _raw_kernel(xp, name)(grid, block, args, shared_mem=shared)
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
    seed = numpy.uint64(seed) if isinstance(seed, (int, numpy.integer)) else seed.astype(numpy.uint64, copy=False)
    name, scale = _scaled("proposal", scale)
    return _launch(xp, name, mu, scale, seed, numpy.uint64(stream), numpy.uint64(offset), numpy.int64(mu.shape[-1]))


def _scaled(name, scale):
    """``(kernel name, scale argument)``: a scalar sigma (no signal norm) takes the ``_scalar`` kernel with a
    float64 scale, because a Python float cannot bind the type placeholder of an array argument."""
    if isinstance(scale, (int, float, numpy.integer, numpy.floating)):
        return f"{name}_scalar", float(scale)
    return name, scale


def amc_move(x, saved, mu, scale, seed: int, stream: int, offset: int):
    """aMC's move of all parameters in ONE launch: ``saved[:] = x``, ``eps = mu + scale z``, ``x += eps``.

    The plain path is three passes over the buffer (``AMC.proposal``, the copy, the add); the result
    is the same bit for bit (see :func:`amc_proposal`).  Returns eps, or None if the kernel is
    unavailable (x and saved are then untouched).
    """
    xp = get_array_module(x)
    eps = xp.empty_like(mu)
    name, scale = _scaled("move", scale)
    out = _launch(xp, name, mu, scale, numpy.uint64(seed), numpy.uint64(stream), numpy.uint64(offset),
                  numpy.int64(mu.shape[-1]), x, saved, eps)
    # an ElementwiseKernel with several outputs returns them all as a tuple (CuPy's _kernel.pyx:
    # ``ret = tuple(out_args)`` when nout > 1): (x, saved, eps); eps was filled in place either way
    return None if out is None else eps


def amc_mu_update(mu, eps, epsilon: float):
    """Eq. (10) in place, ``mu += epsilon (eps - mu)``, in one launch; False if the kernel is unavailable."""
    return _launch(get_array_module(mu), "mu_update", eps, float(epsilon), mu) is not None


def normal(seed: int, stream: int, offset: int, n: int, xp, dtype):
    """``minirso.random.normal`` in one launch (an (n,) array of ``dtype``); None if unavailable."""
    out = xp.empty(n, dtype=dtype)
    if n == 0:
        return out
    return _launch(xp, "normal", numpy.uint64(seed), numpy.uint64(stream), numpy.uint64(offset), out)


def rnn_tanh(x_tm, w_ih, w_hh, bias, return_sequences: bool, record: bool):
    """One tanh RNN layer in one launch: ``(seq (T, N, H) or None, last (N, H), sum |h_{t-1}|^2 or None)``.

    ``x_tm`` (T, N, I) float32, time-major.  Returns None when the layer does not fit the kernel
    (see :func:`rnn_launch_shape`), the GPU's compute capability is below 6.0 (the kernel adds the
    float64 statistic with ``atomicAdd(double *, double)``, which CUDA provides from 6.0 on), or the
    kernel is unavailable; the caller then runs the plain loop.
    """
    xp = get_array_module(x_tm)
    t_len, n, i = x_tm.shape
    hidden = w_hh.shape[0]
    shape = rnn_launch_shape(n, i, hidden)
    if shape is None or x_tm.dtype != numpy.float32 or t_len == 0 or n == 0:  # nothing to launch for
        return None
    if compute_capability(xp) < RNN_MIN_CAPABILITY:
        return None
    s, blocks, threads, shared = shape
    x_tm = xp.ascontiguousarray(x_tm)
    seq = xp.empty((t_len, n, hidden) if return_sequences else (1,), dtype=numpy.float32)
    last = xp.empty((n, hidden), dtype=numpy.float32)
    hh = xp.zeros(1, dtype=numpy.float64)
    args = (x_tm, xp.ascontiguousarray(w_ih), xp.ascontiguousarray(w_hh), xp.ascontiguousarray(bias), seq, last, hh,
            numpy.int32(t_len), numpy.int32(n), numpy.int32(i), numpy.int32(hidden), numpy.int32(s),
            numpy.int32(bool(return_sequences)), numpy.int32(bool(record)))
    if _launch(xp, "rnn_tanh", (blocks,), (threads,), args, shared) is None and _STATE["failed"] is not None:
        return None
    return (seq if return_sequences else None), last, (hh[0] if record else None)


def mlp_tail(z1, params, layout, labels, targets, softmax: bool, loss: int):
    """Sum over rows of a small MLP's per-row loss from its first product ``z1``; None if unavailable.

    ``z1`` (N, W) float32 = x W_1^T (the caller's cuBLAS product); ``layout`` an (L, 5) int64 device
    array (see :data:`MLP_SOURCE`); ``labels`` (N,) int64 or ``targets`` (N, C) float32 (the other None);
    ``loss`` 0 (squared error summed over classes) or 1 (cross-entropy).  Returns a 0-d float64 device
    array: the per-block sums added in a fixed order (no atomics, so the same on every run).
    """
    xp = get_array_module(z1)
    n = z1.shape[0]
    if n == 0 or z1.dtype != numpy.float32 or params.dtype != numpy.float32:
        return None
    z1 = xp.ascontiguousarray(z1)
    blocks = -(-n // MLP_THREADS)
    partial = xp.empty(blocks, dtype=numpy.float64)
    # the kernel never reads the unused one of labels / targets; an array of the slot's own type fills it
    # (int64 ``layout`` for ``long long *labels``, float32 ``z1`` for ``float *targets``): no allocation
    # on this hot path, and no pointer of one type passed where the kernel declares another
    lab = layout if labels is None else xp.ascontiguousarray(labels, dtype=numpy.int64)
    tgt = z1 if targets is None else xp.ascontiguousarray(targets, dtype=numpy.float32)
    args = (z1, params, layout, lab, tgt, partial, numpy.int32(n), numpy.int32(layout.shape[0]),
            numpy.int32(bool(softmax)), numpy.int32(loss), numpy.int32(targets is not None))
    if _launch(xp, "mlp_tail", (blocks,), (MLP_THREADS,), args, 8 * MLP_THREADS) is None and _STATE["failed"] is not None:
        return None
    return partial.sum()
