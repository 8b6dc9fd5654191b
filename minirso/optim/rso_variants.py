"""RSO's variants as small pieces: joint perturbations (sec. 4.2) and parallel search (sec. 4.6).

:class:`minirso.optim.RSO` reads as Algorithm 1 (one weight, w and w +- Delta, keep the best); these are the
changes the paper tries against it.  Each is a function or a small object that RSO calls at one point of a
trial, so the main loop does not branch on them beyond choosing which piece to call.
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..backend import get_array_module
from ..random import normal
from .rso_schedule import STREAM_DELTA

__all__ = ["joint_candidates", "ParallelSearch"]


def joint_candidates(params, u, hp, offset: int, factor: float):
    """Layer / network level (sec. 4.2): every parameter of unit ``u`` moves by ``joint_scale * sigma * z``.

    ``z``: ``normal(seed, STREAM_DELTA, offset, n)``; ``factor``: the cycle's sigma annealing factor.
    With weight decay every parameter is first scaled by ``1 - wd`` in float64 (recipe item 5) and written
    back.  Returns the candidates (3, n): w, w + Delta, w - Delta.
    """
    xp = get_array_module(params)
    width = u.sl.stop - u.sl.start
    z = (
        kernels.normal(hp["seed"], STREAM_DELTA, offset, width, xp, params.dtype) if kernels.enabled(xp) else None
    )  # GPU: one launch instead of about 100 (minirso.kernels.normal)
    if z is None:
        z = normal(hp["seed"], STREAM_DELTA, offset, width, xp, dtype=params.dtype)  # (n,)
    scale = hp["joint_scale"] * factor
    if hp["level"] == "network":
        sigma = xp.asarray(u.sigma * scale, dtype=params.dtype)  # (n,) each tensor's own sigma
    else:
        sigma = params.dtype.type(u.sigma * scale)
    w = params[u.sl]  # (n,)
    delta = sigma * z  # (n,)
    if hp["weight_decay"]:
        w = w.astype(numpy.float64) * (1.0 - hp["weight_decay"])
        params[u.sl] = w.astype(params.dtype)
        return xp.stack([w, w + delta, w - delta]).astype(params.dtype)  # (3, n)
    return xp.stack([w, w + delta, w - delta])  # (3, n)


class ParallelSearch:
    """Parallel search over one weight tensor (sec. 4.6), merged at the end of the tensor.

    ``mode="layer"``: every weight is searched against the tensor as it was at the start of the unit;
    ``mode="neuron"``: the weights of one output neuron are searched one after another (each sees its
    neuron's decisions so far), the other neurons stay at the start state.  ``base``: the tensor at the
    start; ``pending``: the decisions so far (both (n,), checkpointed by RSO).
    """

    def __init__(self, mode: str, base, pending=None):
        self.mode = mode
        self.base = base
        self.pending = base.copy() if pending is None else pending

    def before(self, params, u, j: int):
        """Set up the trial of element ``j``: the slice of its neuron (its own search so far), or None."""
        if self.mode != "neuron":
            return None
        first = (j // u.neuron) * u.neuron
        neuron = slice(u.sl.start + first, u.sl.start + first + u.neuron)
        params[neuron] = self.pending[first : first + u.neuron]
        return neuron

    def after(self, params, u, i: int, neuron):
        """Record the decision RSO just wrote at ``params[i]``, and put the tensor back to its start state."""
        j = i - u.sl.start
        self.pending[j] = params[i]
        if neuron is not None:
            params[neuron] = self.base[neuron.start - u.sl.start : neuron.stop - u.sl.start]
        else:
            params[i : i + 1] = self.base[j : j + 1]

    def merge(self, params, u):
        """The end of the tensor: every decision at once."""
        params[u.sl] = self.pending
