"""Recurrent layers: a simple tanh RNN (Elman 1990) and a GRU (Cho et al. 2014).

Input (N, T, input_size), batch first; the hidden state starts at zero.
Output: the last hidden state (N, H), or all of them (N, T, H) with
``return_sequences=True``, which is how layers are stacked: the aMC paper's
RNN is ``RNN(2, 64, return_sequences=True) -> RNN(64, 64) -> Dense(64, 2)``.

Signal norm (aMC eq. 17) for recurrent layers: the input matrix and the
recurrent matrix feed the SAME neurons, so their squared inputs are summed
together, ``q_j = sum_i x_{t,i}^2 + sum_k h_{t-1,k}^2``, and the data average
runs over samples AND time steps (every step is one evaluation of the neuron).
Both matrices therefore report ``fan_in = input_size + hidden_size``.
"""

from __future__ import annotations

from .. import kernels
from ..backend import get_array_module
from ..params import ParamSpec
from . import functional as F
from .layer import Layer

__all__ = ["RNN", "GRU"]


class _Recurrent(Layer):
    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, return_sequences: bool = False, name: str | None = None):
        super().__init__(name)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.return_sequences = bool(return_sequences)

    def config(self):
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "return_sequences": self.return_sequences,
        }

    def _matrices(self):
        g, h, i = self._gates, self.hidden_size, self.input_size
        return [
            ParamSpec("weight_ih", (g * h, i), "weight", i + h, stat="h"),
            ParamSpec("weight_hh", (g * h, h), "weight", i + h, stat="h"),
        ]

    def _input(self, x):
        return self._check(x, 3, f"(N, T, {self.input_size})", a2=self.input_size)


class RNN(_Recurrent):
    """Elman RNN: ``h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)``.

    One bias vector (PyTorch's ``b_ih + b_hh`` are redundant; to copy PyTorch
    weights in, use ``b = b_ih + b_hh``).
    """

    def param_specs(self):
        return self._matrices() + [ParamSpec("bias", (self.hidden_size,), "bias", self.input_size + self.hidden_size)]

    def forward(self, x):
        x = self._input(x)
        xp = get_array_module(x)
        n, t_len, _ = x.shape
        x_tm = x.transpose(1, 0, 2)  # (T, N, I), a view: step t's input is x_tm[t]
        fused = None
        if kernels.enabled(xp):  # GPU: all T steps in ONE launch, states on chip (minirso.kernels.rnn_tanh)
            fused = kernels.rnn_tanh(
                x_tm, self.weight_ih, self.weight_hh, self.bias, self.return_sequences, self.recording
            )
        seq, h, hh_sum = fused if fused is not None else self._steps(x_tm)
        if self.recording:
            q = (x * x).sum(dtype=xp.float64) + hh_sum
            self._record_shared("h", q, self.hidden_size, n * t_len)
        return seq.transpose(1, 0, 2) if seq is not None else h  # (N, T, H), a view of the time-major array

    def _steps(self, x_tm):
        """The plain loop over time: ``(seq (T, N, H) or None, last (N, H), sum |h_{t-1}|^2 if recording)``.

        Time-major and one product per step: [x_t, h_{t-1}] (N, I + H) times the stacked matrices.
        Precomputing x W_ih^T for all steps at once looks cheaper but writes and re-reads a (T, N, H)
        array (300 MB for the aMC experiment) instead of keeping each step in cache: 2.8x slower.
        """
        xp = get_array_module(x_tm)
        t_len, n, i = x_tm.shape
        hs = self.hidden_size
        w_cat = xp.concatenate([self.weight_ih.T, self.weight_hh.T])  # (I + H, H)
        xh = xp.zeros((n, i + hs), dtype=xp.float32)  # (N, I + H): [x_t, h_{t-1}], with h_0 = 0
        z = xp.empty((n, hs), dtype=xp.float32)  # (N, H) pre-activation, reused every step
        seq = xp.empty((t_len, n, hs), dtype=xp.float32) if self.return_sequences else None  # (T, N, H)
        hh_sum = xp.zeros((), dtype=xp.float64)
        h = xh[:, i:]
        for t in range(t_len):
            if self.recording:
                hh_sum += (h * h).sum(dtype=xp.float64)
            xh[:, :i] = x_tm[t]
            xp.matmul(xh, w_cat, out=z)  # (N, H) = x_t W_ih^T + h_{t-1} W_hh^T
            z += self.bias
            h = xp.tanh(z, out=seq[t] if seq is not None else z)  # (N, H)
            xh[:, i:] = h
        return seq, h, hh_sum


class GRU(_Recurrent):
    """Gated recurrent unit, PyTorch's equations and gate order (r, z, n)::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Two bias vectors (3H each) because b_hn sits inside the reset gate.
    Signal norm: for the n gate the recurrent inputs reach the neuron scaled
    by r_j, so there ``q_j = sum_i x_i^2 + r_j^2 sum_k h_k^2``.
    """

    _gates = 3

    def param_specs(self):
        f, g = self.input_size + self.hidden_size, 3 * self.hidden_size
        return self._matrices() + [ParamSpec("bias_ih", (g,), "bias", f), ParamSpec("bias_hh", (g,), "bias", f)]

    def forward(self, x):
        x = self._input(x)
        xp = get_array_module(x)
        n, t_len, _ = x.shape
        hs = self.hidden_size
        gi = x @ self.weight_ih.T + self.bias_ih  # (N, T, 3H)
        h = xp.zeros((n, hs), dtype=xp.float32)  # (N, H)
        seq = xp.empty((n, t_len, hs), dtype=xp.float32) if self.return_sequences else None
        q_rz = xp.zeros((), dtype=xp.float64)  # sum of |h|^2 over samples and steps
        q_n = xp.zeros((hs,), dtype=xp.float64)  # sum of r_j^2 |h|^2, per n-gate neuron j
        for t in range(t_len):
            gh = h @ self.weight_hh.T + self.bias_hh  # (N, 3H)
            g = gi[:, t]
            r = F.sigmoid(g[:, :hs] + gh[:, :hs])
            z = F.sigmoid(g[:, hs : 2 * hs] + gh[:, hs : 2 * hs])
            cand = xp.tanh(g[:, 2 * hs :] + r * gh[:, 2 * hs :])
            if self.recording:
                hh = (h * h).sum(axis=1, dtype=xp.float64)  # (N,)
                q_rz += hh.sum()
                q_n += ((r * r).astype(xp.float64) * hh[:, None]).sum(axis=0)
            h = (1.0 - z) * cand + z * h
            if seq is not None:
                seq[:, t] = h
        if self.recording:
            xx = (x * x).sum(dtype=xp.float64)
            q_r_and_z = xp.zeros(2 * hs, dtype=xp.float64) + (xx + q_rz)  # the r and z gates see x and h as they are
            q = xp.concatenate([q_r_and_z, xx + q_n])  # (3H,) in gate order r, z, n
            self._record("h", q, n * t_len)
        return seq if seq is not None else h
