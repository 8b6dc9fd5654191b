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
a checkpoint saves ``model.params`` and ``optimizer.state_dict()`` together.  (The K rows
that :class:`~minirso.optim.AMCChains` moves are not the model's parameters: they are in its state.)

:class:`TrainableOptimizer` is what :class:`minirso.train.Trainer` drives: RSO, AMC, Metropolis,
AMCChains, and any class of a user's that implements it (docs/design.md, section 2).
"""

from __future__ import annotations

import math
import numbers
from typing import Protocol, runtime_checkable

import numpy

from ..backend import get_array_module, to_numpy
from ..losses import LOSSES

__all__ = ["Optimizer", "TrainableOptimizer", "per_sample", "check_positive", "check_choice", "check_int", "check_seed"]


@runtime_checkable
class TrainableOptimizer(Protocol):
    """What :class:`minirso.train.Trainer` needs of an optimizer; the Trainer knows no optimizer class.

    The decision (docs/design.md, section 2): the optimizer owns everything that depends on its
    algorithm -- its position in the run, where a checkpoint resumes exactly, its own history rows
    and the numbers a progress bar shows -- and the Trainer owns everything that does not: the
    schedule of evaluations and checkpoints, the history, the metrics log, signals, bars and files.
    Every schedule is a function of :meth:`position`, so a resumed run meets the same boundaries.

    * ``label``: the name bars and messages show (``"RSO"``, ``"aMC"``); lower-cased, the checkpoint's
      ``kind``.
    * ``schedule``: the :meth:`position` entry that ``eval_every``, ``checkpoint_every`` and the end
      count (RSO ``"cycle"``, aMC ``"step"``).  ``checkpoint_every_trials`` counts a ``"trials"`` entry.
    * ``table``: the history table of the optimizer's rows (RSO ``"layers"``, aMC ``"steps"``).
    * ``params``: the array it moves, ``model.params`` itself or K rows (K, P) of candidate
      parameter vectors for the model (AMCChains): the Trainer checks it against its model.
    * ``end``: ``position()[schedule]`` at which the run is done (RSO: ``cycles``), or None when the
      optimizer has no end of its own (aMC): then the Trainer's ``steps`` gives it.
    * ``position()``: the counters that place the run (RSO ``{"cycle", "trials"}``, aMC ``{"step"}``),
      part of the optimizer state; every history row carries the ``schedule`` entry.
    * ``safe_point``: would a checkpoint taken now resume bit for bit?  (RSO: ``at_batch_start``.)
    * ``step() -> dict``: one step (an RSO trial, an aMC move).
    * ``history_rows(every) -> list[dict]``: the rows of ``table`` that the step just made (called once
      after every step); ``every`` is the Trainer's ``log_every``, for rows made every so many steps
      (aMC).  A row without ``acceptance`` or ``wall_time`` gets the Trainer's: the share of accepted
      steps since the previous row, and the seconds in ``fit()``.
    * ``report() -> dict``: ``tried`` and ``accepted`` (steps and accepted steps of the run, from which
      the Trainer computes acceptance over a window), ``batch_loss`` (per sample) and ``sigma`` now;
      optionally ``part``: ``(name, done, total)`` of the piece in progress (RSO: a tensor's trials).
    * ``where(end) -> str``: where the run is, for people ("trial 300 (cycle 2 of 7)", "step 40 of 150").
    * ``model_params()``: the (P,) parameters the model holds for evaluation and the checkpoint:
      ``params`` itself, or for K rows the best row.
    * ``state_dict()`` / ``load_state_dict(state)``: everything resuming needs besides ``model.params``,
      and nothing else: logs live in the Trainer's history, which the checkpoint holds.  The checkpoint
      stores ``{"type": str, "hyperparameters": JSON-exact dict, "state": dict}``; ``load_state_dict``
      raises ValueError when the hyperparameters differ (:class:`Optimizer` does both).

    :class:`Optimizer` gives the defaults most optimizers want (``end``, ``safe_point``, ``where``,
    ``model_params``); an optimizer that is not a subclass writes all the members itself.
    """

    label: str
    schedule: str
    table: str
    params: object

    @property
    def end(self) -> int | None: ...

    def position(self) -> dict: ...

    @property
    def safe_point(self) -> bool: ...

    def step(self) -> dict: ...

    def history_rows(self, every: int) -> list: ...

    def report(self) -> dict: ...

    def where(self, end: int) -> str: ...

    def model_params(self): ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state_dict: dict): ...


def per_sample(value: float, loss_fn, rows) -> float:
    """A loss reported per sample: ``value / rows`` for the registry's ``"cross_entropy"`` (the authors' RSO
    loss, the one built-in loss SUMMED over rows), ``value`` for every other loss (means, or a user's callable).

    ``rows``: the number of rows ``value`` was computed on, or a function giving it.  The optimizers
    keep their papers' default losses (RSO the summed cross-entropy, aMC's ModelLoss the MSE); what is
    reported (history rows, bars, the Trainer's evaluation) is per sample, so runs with other batch sizes
    and other optimizers compare on one scale.
    """
    if loss_fn is not LOSSES["cross_entropy"]:
        return value
    return value / (rows() if callable(rows) else rows)


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
    """Base class: subclasses fill ``self.hyperparameters`` and implement ``_get_state`` / ``_set_state``.

    It gives the defaults of :class:`TrainableOptimizer` that fit most optimizers: no end of its own,
    every step a safe point, ``params`` as the model's parameters, and "step 40 of 150".
    """

    hyperparameters: dict
    end = None
    safe_point = True
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
                raise ValueError(
                    f"hyperparameter {k!r} is {saved[k]!r} in the state_dict, {v!r} in this optimizer: "
                    f"a run can be extended on load (a larger {k}), not shortened"
                )
            if not _same(saved[k], v):
                raise ValueError(f"hyperparameter {k!r} differs: state_dict has {saved[k]!r}, this optimizer {v!r}")
        extra = sorted(set(saved) - set(self.hyperparameters))
        if extra:
            raise ValueError(f"state_dict has unknown hyperparameters {extra}")
        self._set_state(dict(state_dict["state"]))

    def where(self, end: int) -> str:
        return f"{self.schedule} {self.position()[self.schedule]} of {end}"

    def model_params(self):
        return self.params

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
