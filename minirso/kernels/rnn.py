"""A whole tanh RNN layer in ONE launch (``rnn_tanh.cu``), the hidden state kept on chip.

The plain layer (:class:`minirso.nn.recurrent.RNN`, its per-step loop) makes one matrix product and a few
elementwise operations per time step: about 5 launches x 784 steps per layer on a GPU.  Here each thread block
owns a few sequences, keeps W_ih^T, W_hh^T and their hidden states in shared memory, and walks all T steps, one
barrier per step.  Its sums run in another order than the BLAS product of the plain loop, so the two agree to
float32 rounding, not bit for bit (over hundreds of steps the chaotic recurrence amplifies that, as between any
two implementations).  It needs compute capability 6.0 or newer (a float64 ``atomicAdd``); older GPUs run the
plain loop.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from .build import Kernel, compute_capability, source

__all__ = ["RNN_SOURCE", "RNN_MIN_CAPABILITY", "rnn_launch_shape", "rnn_tanh"]

RNN_SOURCE = source("rnn_tanh.cu")
RNN_MIN_CAPABILITY = 60  # double atomicAdd (CUDA C++ Programming Guide, "atomicAdd()": compute capability 6.x+)
_SHARED_LIMIT = 48 * 1024  # bytes of shared memory a block may use without opting in

_KERNEL = Kernel("rnn_tanh", lambda xp: xp.RawKernel(RNN_SOURCE, "minirso_rnn_tanh"))


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


def rnn_tanh(x_tm, w_ih, w_hh, bias, return_sequences: bool, record: bool):
    """One tanh RNN layer in one launch: ``(seq (T, N, H) or None, last (N, H), sum |h_{t-1}|^2 or None)``.

    ``x_tm`` (T, N, I) float32, time-major.  Plain twin: ``minirso.nn.recurrent.RNN``'s per-step loop (the same
    three results, to float32 rounding).  Returns None when the layer does not fit the kernel (see
    :func:`rnn_launch_shape`), the GPU's compute capability is below 6.0 (the kernel adds the float64 statistic
    with ``atomicAdd(double *, double)``, which CUDA provides from 6.0 on), or the kernel is unavailable; the
    caller then runs the plain loop.
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
    args = (
        x_tm,
        xp.ascontiguousarray(w_ih),
        xp.ascontiguousarray(w_hh),
        xp.ascontiguousarray(bias),
        seq,
        last,
        hh,
        numpy.int32(t_len),
        numpy.int32(n),
        numpy.int32(i),
        numpy.int32(hidden),
        numpy.int32(s),
        numpy.int32(bool(return_sequences)),
        numpy.int32(bool(record)),
    )
    ok, _ = _KERNEL.launch(xp, (blocks,), (threads,), args, shared_mem=shared)
    if not ok:
        return None
    return (seq if return_sequences else None), last, (hh[0] if record else None)
