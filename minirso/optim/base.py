"""What every minirso optimizer shares: hyperparameters apart from state, and exact save / restore.

Like a PyTorch optimizer or an optax transformation, an optimizer here keeps

* ``hyperparameters`` - fixed at construction (sigma0, epsilon, batch size, ...);
* ``state`` - what changes as it runs (sigma, mu, counters, the position inside a cycle).

Randomness is not hidden state: every draw is a pure function of
``(seed, stream, counter)`` (:mod:`minirso.random`, docs/design.md), and the
counters are part of ``state``.  So ``state_dict()`` is a few integers and
arrays, and ``load_state_dict`` on a freshly built optimizer continues the run
on exactly the trajectory an uninterrupted run follows.

The model's parameters are NOT part of the optimizer state (as in PyTorch):
a checkpoint saves ``model.params`` and ``optimizer.state_dict()`` together.
"""

from __future__ import annotations

import math
import numbers

import numpy

from ..backend import get_array_module, to_numpy

__all__ = ["Optimizer", "check_positive", "check_choice", "check_int", "check_seed"]


def check_positive(name, value, allow_zero=False, allow_inf=False):
    """``value`` as a float, or ValueError naming the hyperparameter."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value >= 0 if allow_zero else value > 0) and (allow_inf or math.isfinite(value))
    if not ok:
        need = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a {'' if allow_inf else 'finite '}number {need}, got {value!r}")
    return float(value)


def check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_seed(seed):
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


class Optimizer:
    """Base class: subclasses fill ``self.hyperparameters`` and implement ``_get_state`` / ``_set_state``."""

    hyperparameters: dict
    #: hyperparameters that are a schedule's length (RSO: ``cycles``): ``load_state_dict`` accepts a
    #: LARGER value than the state_dict's (the run is extended), never a smaller one
    extendable: tuple = ()

    def state_dict(self) -> dict:
        """``{"type", "hyperparameters", "state"}``: host (NumPy) copies, safe to keep or save."""
        state = {k: (to_numpy(v).copy() if hasattr(v, "shape") else v) for k, v in self._get_state().items()}
        return {"type": type(self).__name__, "hyperparameters": dict(self.hyperparameters), "state": state}

    def load_state_dict(self, state_dict: dict):
        """Continue from ``state_dict``: this optimizer must have been built with the same hyperparameters.

        A mismatch raises ValueError naming the hyperparameter: resuming with a
        different batch size or order would silently change the trajectory.  The one
        exception is a schedule length in ``extendable`` (RSO's ``cycles``): this
        optimizer may have a larger one, and the loaded run then continues to it.
        """
        if state_dict.get("type") != type(self).__name__:
            raise ValueError(f"state_dict is for {state_dict.get('type')!r}, not {type(self).__name__}")
        saved = state_dict.get("hyperparameters", {})
        for k, v in self.hyperparameters.items():
            if k not in saved:
                raise ValueError(f"state_dict lacks hyperparameter {k!r}")
            if k in self.extendable and isinstance(saved[k], numbers.Integral) and v != saved[k]:
                if v > saved[k]:
                    continue  # the run is extended: this optimizer's (larger) value holds from now on
                raise ValueError(f"hyperparameter {k!r} is {saved[k]!r} in the state_dict, {v!r} in this optimizer: "
                                 f"a run can be extended on load (a larger {k}), not shortened")
            if not _same(saved[k], v):
                raise ValueError(f"hyperparameter {k!r} differs: state_dict has {saved[k]!r}, this optimizer {v!r}")
        extra = sorted(set(saved) - set(self.hyperparameters))
        if extra:
            raise ValueError(f"state_dict has unknown hyperparameters {extra}")
        self._set_state(dict(state_dict["state"]))

    # helpers for subclasses
    @staticmethod
    def _device(value, like):
        """A host array from a state_dict, as an array of ``like``'s module and dtype."""
        xp = get_array_module(like)
        return xp.asarray(numpy.asarray(value), dtype=like.dtype)

    def _get_state(self) -> dict:
        raise NotImplementedError

    def _set_state(self, state: dict):
        raise NotImplementedError
