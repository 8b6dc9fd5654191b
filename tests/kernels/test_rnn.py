"""The RNN kernel (minirso/kernels/rnn_tanh.cu, rnn.py) run by the CuPy stand-in's RawKernel on the CPU (one
coroutine per CUDA thread, guard pages after every array), against minirso's plain RNN layer."""

import numpy as np
import pytest

from minirso import kernels

from ._host import STANDIN


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
