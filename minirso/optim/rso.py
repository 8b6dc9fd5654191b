"""RSO: random search optimisation, one weight at a time (Tripathi & Singh 2020, Algorithm 1).

For each weight w_j of layer d (sec. 3)::

    Delta ~ N(0, sigma_{d,c})                     the layer's std at cycle c
    L0, L+, L- = F(x; w), F(x; w + Delta), F(x; w - Delta)   on one fresh mini-batch
    w <- the argmin (a tie keeps w)

A *cycle* visits every parameter once: the last layer first (sec. 3, the
default ``direction="backward"``), and after each convolution its BatchNorm
beta, then gamma (authors' code).  Inside a tensor the order is
output-neuron-major (default) or input-channel-major (``order="input"``,
the inverted order of sec. 4.3).  Before a tensor is swept, the inputs of its
layer are cached over the whole training pool and every trial starts there
(sec. 4.7), via the evaluator (:class:`minirso.optim.CachedEvaluator`).

sigma_{d,c}: the layer's initialisation std (Kaiming ``sqrt(2 / fan_in)``, as
the authors' code; ``sigma="std"``: the std of the initialised tensor, as the
paper's text), 0.167 for BatchNorm/LayerNorm gamma and beta, annealed linearly
per cycle (sec. 4.1; the two recipes below differ in the formula).
Biases use the Kaiming std of their layer.

**Recipes.**  ``recipe="authors"`` (default) is the authors' ``train.py`` (github
rohun-tripathi/RSO-gradient-free, commit e174f3c; line numbers below are of that file), which
produced the published 99.12 % / 81.8 %; ``recipe="paper"`` follows the paper's text where it
speaks and the code where it is silent.  Item by item:

1. Annealing factor of cycle c = 0..E-1.  authors: ``a + (1 - a)(E - c)/E`` (l.465), so the last
   cycle's is ``a + (1 - a)/E`` (0.118 for E = 50); paper: ``a + (1 - a)(E - 1 - c)/(E - 1)``, the
   last cycle's std is the first's / 10 when a = 0.1 (sec. 4.1, "sigma_d^C = sigma_d^1 / 10").
2. The layer-input cache (sec. 4.7) normalises with BatchNorm's RUNNING statistics, set just
   before from one training-mode pass over the first ``bn_rows`` (2,000) rows of the pool
   (l.533-565: the caching pass runs outside ``autograd.record()``); the trials use each batch's
   own statistics (l.301-305).  Both recipes (the text is silent).
3. A normalisation tensor's (and a bias's) trials reuse the pool order of the weight tensor swept
   just before it (its conv), from that order's first batch (l.228 ``reset()``).  Both recipes.
4. The first layer's weight tensor reads the raw pool, whose iterator is reshuffled every cycle
   but never reset (l.178-180): from the second cycle on, its batches start where the tensors
   sharing its pool (item 3) left off, ``(batches of the last of them) mod (N // B)``.  Both recipes.
5. Weight decay (default 1e-4, ``--wd``) multiplies EVERY searched parameter, BatchNorm gamma
   and beta included (l.77), computed in float64 before w +- Delta is formed (l.103, l.129):
   ``w64 = w * (1 - wd)``, candidates ``float32(w64), float32(w64 + Delta), float32(w64 - Delta)``.
   Both recipes (the text says only "use weight decay", sec. 4.4 on CIFAR-10).
6. The network (global max pooling, BatchNorm epsilon 1e-3) is the builder's:
   :func:`minirso.models.rso_mnist` / :func:`~minirso.models.rso_cifar`.

The default is ``"authors"`` because it is the procedure that produced the published numbers,
checked decision for decision against the authors' code; the text's sigma^C = sigma^1 / 10 is its
rounded description (0.1 against 0.118).

Variants: ``level="layer"`` / ``"network"`` perturb all parameters of a tensor
/ of the network jointly by N(0, (sigma_d / 10)^2) per element (sec. 4.2), with
as many trials per cycle as the tensor / network has parameters (equal step
counts, as Table 2 compares them).  ``parallel="layer"`` searches every weight
of a tensor against the tensor's state at its start and merges the results;
``parallel="neuron"`` does the same per output neuron, sequentially within a
neuron (sec. 4.6).  Parallel search applies to tensors of kind "weight"; the
normalisation and bias tensors stay sequential.

Mini-batches: ``sampling="contiguous"`` (the authors': the pool is shuffled
once per tensor, batch b is rows ``[(b mod m) B, (b mod m) B + B)`` of it,
m = N // B), or ``"uniform"`` (B rows drawn uniformly with replacement per
batch; items 3 and 4 above apply to contiguous sampling only).  ``shared_batch=True`` scores w, w + Delta,
w - Delta on one batch;
False gives each its own (three batches per trial).  ``trials_per_batch = k``
(contiguous sampling, shared batch) lets k consecutive trials of a tensor
share one batch: 1 is Algorithm 1 (a fresh batch per weight); larger k is a
cheaper schedule, because the incremental evaluator then reuses the kept
candidate's activations instead of running the batch forward again.

Random numbers (all pure functions of the seed, docs/design.md): the normals of
a trial are ``normal(seed, STREAM_DELTA, offset, width)`` (width 1 at the
weight level), the offsets laying every trial's draw end to end so that no
two trials share a normal (:meth:`Schedule.delta_offset`); the pool order of the u-th
tensor of cycle c is ``argsort`` of 64-bit keys ``random_bits(seed,
STREAM_DATA, 2 N (c U + o), 2 N)``, o = u for a weight tensor and o = the index of
the weight tensor whose order it reuses (item 3) otherwise; uniform rows of batch b are
``floor(N * uniform(seed, STREAM_DATA_UNIFORM, b B, B))``.

Where things live: the schedule (units, sigmas, pool orders, rows, normal offsets: pure functions of
the position) is :mod:`minirso.optim.rso_schedule`; the variants' pieces (joint perturbations, parallel
search) are :mod:`minirso.optim.rso_variants`; this file is Algorithm 1 and its bookkeeping.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy

from ..backend import Array, get_array_module
from ..random import normal
from .base import Optimizer, check_int, per_sample
from .evaluate import check_class_labels
from .incremental import make_evaluator
from .rso_schedule import (  # re-exported: the streams RSO draws
    HYPERPARAMETERS,
    STREAM_DATA,
    STREAM_DATA_UNIFORM,
    STREAM_DELTA,
    Schedule,
    Unit,
    check_hyperparameters,
    sweep_groups,
)
from .rso_variants import ParallelSearch, joint_candidates

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..nn.sequential import Sequential
    from .evaluate import RSOEvaluator

__all__ = ["RSO", "decide", "sweep_groups", "Unit", "STREAM_DELTA", "STREAM_DATA", "STREAM_DATA_UNIFORM"]

_STAT_KEYS = ("trials", "plus", "minus", "rejected", "nonfinite", "loss_sum", "loss_count", "wall_time")


def decide(losses: numpy.ndarray) -> tuple[int, numpy.ndarray]:
    """``(best, finite)`` for the losses of (w, w + Delta, w - Delta): the argmin, where a tie keeps the
    earlier candidate (so w wins ties) and a NaN or infinite loss never wins."""
    finite = numpy.isfinite(losses)
    scores = numpy.where(finite, losses, numpy.inf)
    best = 0
    for k in range(1, len(scores)):  # strict improvement only
        if scores[k] < scores[best]:
            best = k
    return best, finite


class RSO(Optimizer):
    """RSO over ``model`` on the training pool ``(x, y)``, for ``cycles`` cycles.

    ``step()`` makes one trial; ``run_cycle()`` finishes the current cycle;
    ``run()`` all remaining cycles.  Per tensor and cycle a record is appended
    to ``records`` (in memory, for callers: not part of the state, so after ``load_state_dict``
    it holds only the tensors finished since; the Trainer's "layers" history is the persisted
    log): trials, accepted with +Delta (``plus``), with -Delta (``minus``), ``rejected``,
    ``nonfinite`` (candidate losses that were NaN or infinite: never accepted), ``mean_loss``
    (of the kept candidate), ``sigma``, ``wall_time``.  ``callback(event, info)`` is called with
    ``"trial"`` (info: cycle, unit, name, position, trials, decision, loss), ``"unit_end"`` (the
    record) and ``"cycle_end"`` ({"cycle": c}).

    Hyperparameters (ValueError names a bad one): ``batch_size`` (5000),
    ``anneal`` (0.1), ``sigma`` ("kaiming" | "std" | a number), ``norm_sigma``
    (0.167), ``direction`` ("backward" | "forward"), ``order`` ("output" |
    "input"), ``sampling`` ("contiguous" | "uniform"), ``shared_batch`` (True),
    ``recipe`` ("authors" | "paper", see the module docstring), ``weight_decay``
    (1e-4, the authors'; 0 turns it off), ``bn_rows`` (2000: the first rows of the
    pool that set BatchNorm's running statistics for the cache), ``loss`` ("cross_entropy": summed in
    float64 as the authors; "cross_entropy_mean"; or a callable),
    ``level`` ("weight" | "layer" | "network"), ``joint_scale`` (0.1),
    ``parallel`` (None | "layer" | "neuron"), ``trials_per_batch`` (1), ``seed``, ``cache_chunk`` (2000).
    ``evaluator``: how candidate losses are computed: ``"plain"`` (default,
    :class:`CachedEvaluator`, the reference), ``"incremental"``
    (:class:`minirso.optim.IncrementalEvaluator`, the same numbers faster) or
    any object with ``prepare`` and ``losses``.

    **Extending a run**: ``load_state_dict`` accepts the state of a run with FEWER cycles than this
    optimizer's ``cycles`` (never more): ``RSO(..., cycles=10).load_state_dict(state of a 3-cycle
    run)`` continues to cycle 10.  The sigma annealing is then linear over the NEW schedule: every
    trial from the load on uses ``sigma_factor(c)`` with ``cycles=10``, which is the factor an
    uninterrupted 10-cycle run would use for cycle ``c``; cycles already run keep the factors they
    had.  So sigma goes back up: after a finished 3-cycle run (factors 1, 0.55, 0.1 with ``anneal``
    0.1) the remaining cycles 4..10 use 0.7, 0.6, ..., 0.1.  Extended mid-cycle, the rest of the
    current cycle (the tensor in progress from its next trial) uses the new factor.
    """

    extendable = ("cycles",)

    def __init__(
        self,
        model: Sequential,
        x: Array,
        y: Array,
        *,
        cycles: int,
        batch_size: int = 5000,
        anneal: float = 0.1,
        sigma: str | float = "kaiming",
        norm_sigma: float = 0.167,
        direction: str = "backward",
        order: str = "output",
        sampling: str = "contiguous",
        shared_batch: bool = True,
        recipe: str = "authors",
        weight_decay: float = 1e-4,
        bn_rows: int = 2000,
        loss: str | Callable[[Array, Array], Any] = "cross_entropy",
        level: str = "weight",
        joint_scale: float = 0.1,
        parallel: str | None = None,
        trials_per_batch: int = 1,
        seed: int = 0,
        cache_chunk: int = 2000,
        evaluator: str | RSOEvaluator | None = None,
        callback: Callable[[str, dict], Any] | None = None,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"RSO: x has {x.shape[0]} samples but y has {y.shape[0]}")
        n = int(x.shape[0])
        self.model, self.x, self.y = model, x, y
        self.evaluator = make_evaluator(evaluator, model, loss, check_int("cache_chunk", cache_chunk, 1))
        loss_name = getattr(self.evaluator, "loss_name", "custom")
        check_class_labels(model, x, y, loss_name, "RSO")
        self.callback = callback
        # the arguments above by name (locals() is read once, in this scope, before any new name is bound)
        settings = {k: v for k, v in locals().items() if k in HYPERPARAMETERS and k != "loss"}
        self.hyperparameters = check_hyperparameters(settings, n, loss_name)  # ValueError names a bad one
        self.plan = Schedule(model, self.hyperparameters, n)  # the units, sigmas, rows and normals (rso_schedule)
        self.records = []  # in memory only (see the class docstring)
        self.cycle = self.unit = self.pos = self.trial = self.batches = 0
        self.accepted = 0  # trials of the run that changed the parameters (+Delta or -Delta kept)
        # reports are per sample: every candidate is scored on batch_size rows (its own or a shared batch);
        # 1 / batch_size for the summed loss, else 1 (a user's evaluator may name no loss_fn)
        self._per_sample = per_sample(1.0, getattr(self.evaluator, "loss_fn", None), self.hyperparameters["batch_size"])
        self._stats = dict.fromkeys(_STAT_KEYS, 0)
        self._parallel = None  # parallel search (sec. 4.6) over the current tensor, or None
        self._ready = False  # cache, pool order and noise of the current unit built?
        self._batch0 = 0  # contiguous sampling: pool batch of the unit's first trial (Schedule.first_batch)

    # ---- the schedule --------------------------------------------------------------------------
    @property
    def units(self) -> list:
        """The sweep: one :class:`Unit` per tensor (or one for the network), in visiting order."""
        return self.plan.units

    def sigma_factor(self, cycle: int) -> float:
        """The annealing factor of cycle ``cycle`` (module docstring, item 1; :meth:`Schedule.sigma_factor`)."""
        return self.plan.sigma_factor(cycle)

    @property
    def done(self) -> bool:
        return self.cycle >= self.hyperparameters["cycles"]

    @property
    def at_batch_start(self) -> bool:
        """Does the next trial start a fresh mini-batch (``pos % trials_per_batch == 0``)?

        An evaluator may carry work from one trial to the next within a batch
        (:class:`IncrementalEvaluator` reuses the kept candidate's activations,
        which round differently from a fresh forward pass).  At a batch start
        it begins afresh, so a checkpoint taken there resumes bit for bit; the
        trainer checkpoints only there.  With ``trials_per_batch = 1`` that is every trial.
        """
        return self.pos % self.hyperparameters["trials_per_batch"] == 0

    # ---- what the Trainer drives (minirso.optim.base.TrainableOptimizer) ---------------------------
    label, schedule, table = "RSO", "cycle", "layers"

    @property
    def params(self):
        return self.model.params

    @property
    def end(self) -> int:
        return self.hyperparameters["cycles"]

    def position(self) -> dict:
        return {"cycle": self.cycle, "trials": self.trial}  # cycle: the cycles completed

    @property
    def safe_point(self) -> bool:
        return self.at_batch_start

    def where(self, end: int | None = None) -> str:
        cycles = self.hyperparameters["cycles"]
        if self.done:
            return f"trial {self.trial} (all {cycles} cycles done)"
        if self.cycle and self.unit == 0 and self.pos == 0:
            return f"trial {self.trial} (end of cycle {self.cycle} of {cycles})"
        return f"trial {self.trial} (cycle {self.cycle + 1} of {cycles})"

    def report(self) -> dict:
        """``sigma``: the annealing factor of the last trial's cycle; ``batch_loss``: the mean kept loss of the
        current tensor's trials, per sample; ``part``: the tensor in progress and its trials done."""
        st, u = self._stats, self.units[self.unit]
        last = self.cycle - (self.cycle > 0 and self.unit == 0 and self.pos == 0)
        loss = st["loss_sum"] / st["loss_count"] if st["loss_count"] else math.nan
        return {
            "tried": self.trial,
            "accepted": self.accepted,
            "sigma": self.sigma_factor(last),
            "batch_loss": loss * self._per_sample,
            "part": (u.name, self.pos, u.trials),
        }

    def history_rows(self, every: int | None = None) -> list:
        """The "layers" row of the tensor the last step finished (none inside a tensor): its record with cycles
        counted from 1, ``batch_loss`` per sample instead of ``mean_loss``, and ``acceptance``."""
        if self.pos != 0 or not self.records:
            return []
        r = self.records[-1]
        row = {k: v for k, v in r.items() if k != "mean_loss"}
        row.update(
            cycle=r["cycle"] + 1,
            batch_loss=r["mean_loss"] * self._per_sample,
            acceptance=(r["plus"] + r["minus"]) / r["trials"] if r["trials"] else math.nan,
        )
        return [row]

    @property
    def total_trials_per_cycle(self) -> int:
        return sum(u.trials for u in self.units)

    # ---- per-unit set-up -----------------------------------------------------------------------
    def _begin_unit(self):
        """Cache the unit's layer inputs, draw its pool order and (weight level) its normals."""
        hp, u, plan = self.hyperparameters, self.units[self.unit], self.plan
        if u.layer > 0:
            # item 2: running statistics from the first bn_rows rows (train.py l.556-565), the cache in eval mode
            self.model.reestimate_batchnorm(self.x[: hp["bn_rows"]])
            self.model.eval()
        try:
            self.evaluator.prepare(u.layer, self.x, self.y, keep=plan.inputs_to_keep(self.unit))
        finally:
            self.model.train()  # the trials: each batch's own statistics
        if hp["sampling"] == "contiguous":
            self._batch0 = plan.first_batch(self.cycle, self.unit)
            self._perm = get_array_module(self.model.params).asarray(plan.pool_order(self.cycle, self.unit))  # (N,)
        if hp["level"] == "weight":  # the normals of all the unit's trials (also right after a mid-unit resume)
            t0 = self.delta_offset(pos=0)
            self._z = normal(hp["seed"], STREAM_DELTA, t0, u.trials, numpy, dtype=numpy.float64)  # (trials,)
        if self.pos == 0:
            self._stats = dict.fromkeys(_STAT_KEYS, 0)
            self._parallel = None
            if hp["parallel"] is not None and u.kind == "weight":  # the tensor's state at the start of the unit
                self._parallel = ParallelSearch(hp["parallel"], self.model.params[u.sl].copy())
        self._ready = True

    def _rows(self, b: int):
        """Pool rows of the b-th mini-batch of the current unit (b counts from the unit's start).

        Contiguous: a slice of the unit's pool order.  Uniform: drawn from the
        run-wide batch counter ``batches`` (so every batch of the run differs).
        """
        if self.hyperparameters["sampling"] == "contiguous":
            return self.plan.contiguous_rows(self._perm, self._batch0 + b)  # (B,)
        rows = self.plan.uniform_rows(self.batches, get_array_module(self.model.params))
        self.batches += 1
        return rows  # (B,)

    # ---- one trial -----------------------------------------------------------------------------
    def _losses(self, sl, cands, first_batch: int):
        """Losses (K,) of the candidate rows ``cands`` (K, n) for ``params[sl]``: on one batch, or one each."""
        if self.hyperparameters["shared_batch"]:
            return self.evaluator.losses(sl, cands, self._rows(first_batch))
        return numpy.array(
            [self.evaluator.losses(sl, cands[k : k + 1], self._rows(first_batch + k))[0] for k in range(len(cands))]
        )

    def step(self) -> dict:
        """One trial (one weight, or one joint perturbation); returns its info dict.

        Algorithm 1's inner loop: candidates w, w + Delta, w - Delta; their
        losses on a fresh batch (the evaluator); keep the best.
        """
        if self.done:
            raise RuntimeError(f"RSO: all {self.hyperparameters['cycles']} cycles are done")
        hp, u = self.hyperparameters, self.units[self.unit]
        if not self._ready:
            self._begin_unit()
        t_start = time.perf_counter()
        if hp["level"] == "weight":
            sl, cands, neuron = self._weight_candidates(u)
        else:  # sec. 4.2: the whole tensor / network at once
            sl, neuron = u.sl, None
            cands = joint_candidates(self.model.params, u, hp, self.delta_offset(), self.sigma_factor(self.cycle))
        batch = self.pos // hp["trials_per_batch"]  # batch index inside the unit
        losses = self._losses(sl, cands, batch * (1 if hp["shared_batch"] else 3))  # (3,) float64
        best, finite = decide(losses)
        self.model.params[sl] = cands[best]
        if self._parallel is not None:  # sec. 4.6: park the decision, the tensor back to its start state
            self._parallel.after(self.model.params, u, sl.start, neuron)
        self._count(best, losses, finite, time.perf_counter() - t_start)
        info = {
            "cycle": self.cycle,
            "unit": self.unit,
            "name": u.name,
            "position": self.pos,
            "trials": u.trials,
            "decision": ("keep", "plus", "minus")[best],
            "loss": float(losses[best]),
        }
        self.pos += 1
        self.trial += 1
        if self.callback is not None:
            self.callback("trial", info)
        if self.pos == u.trials:
            self._end_unit()
        return info

    def delta_offset(self, cycle: int | None = None, unit: int | None = None, pos: int | None = None) -> int:
        """First normal of the Delta of a trial, by default the next one (:meth:`Schedule.delta_offset`)."""
        return self.plan.delta_offset(
            self.cycle if cycle is None else cycle,
            self.unit if unit is None else unit,
            self.pos if pos is None else pos,
        )

    def _weight_candidates(self, u):
        """Weight level: ``(slice of w_j, candidates (3, 1), the neuron's slice or None)``."""
        params, hp = self.model.params, self.hyperparameters
        j = int(u.order[self.pos])  # flat index inside the tensor
        i = u.sl.start + j
        sl = slice(i, i + 1)
        neuron = None if self._parallel is None else self._parallel.before(params, u, j)  # sec. 4.6
        w = float(params[i])  # host sync
        if hp["weight_decay"]:  # item 5: every tensor, in float64, before w +- Delta (train.py l.77, l.103)
            w *= 1.0 - hp["weight_decay"]
            params[sl] = w  # rounded to the buffer's type, as the authors write it back before the trial
        delta = float(u.sigma * self.sigma_factor(self.cycle) * self._z[self.pos])  # Delta ~ N(0, sigma_{d,c})
        xp = get_array_module(params)
        return sl, xp.asarray(numpy.array([[w], [w + delta], [w - delta]], dtype=params.dtype)), neuron  # (3, 1)

    def _count(self, best, losses, finite, seconds):
        st = self._stats
        st["trials"] += 1
        st[("rejected", "plus", "minus")[best]] += 1
        self.accepted += best != 0
        st["nonfinite"] += int((~finite[1:]).sum())
        if finite[best]:
            st["loss_sum"] += float(losses[best])
            st["loss_count"] += 1
        st["wall_time"] += seconds

    def _end_unit(self):
        u, st = self.units[self.unit], self._stats
        if self._parallel is not None:
            self._parallel.merge(self.model.params, u)  # sec. 4.6: the searches' decisions at once
        record = {
            "cycle": self.cycle,
            "name": u.name,
            "layer": u.layer,
            "trials": st["trials"],
            "plus": st["plus"],
            "minus": st["minus"],
            "rejected": st["rejected"],
            "nonfinite": st["nonfinite"],
            "mean_loss": st["loss_sum"] / st["loss_count"] if st["loss_count"] else math.nan,
            "sigma": float(numpy.mean(u.sigma)) * self.sigma_factor(self.cycle),
            "wall_time": st["wall_time"],
        }
        self.records.append(record)
        self._parallel = None
        self._ready = False
        self.pos = 0
        self.unit += 1
        if self.callback is not None:
            self.callback("unit_end", record)
        if self.unit == len(self.units):
            self.unit = 0
            self.cycle += 1
            if self.callback is not None:
                self.callback("cycle_end", {"cycle": self.cycle - 1})

    def run_cycle(self) -> list:
        """Finish the current cycle; returns its records."""
        c = self.cycle
        while not self.done and self.cycle == c:
            self.step()
        return [r for r in self.records if r["cycle"] == c]

    def run(self) -> list:
        """Run every remaining cycle; returns all records."""
        while not self.done:
            self.step()
        return self.records

    # ---- state ---------------------------------------------------------------------------------
    def _get_state(self):
        s = {
            "cycle": self.cycle,
            "unit": self.unit,
            "pos": self.pos,
            "trial": self.trial,
            "batches": self.batches,
            "accepted": self.accepted,
        }  # records: not state (the class docstring)
        s.update({f"stat_{k}": v for k, v in self._stats.items()})
        empty = numpy.zeros(0, numpy.float32)
        s["base"] = self._parallel.base if self._parallel is not None else empty
        s["pending"] = self._parallel.pending if self._parallel is not None else empty
        s["has_parallel"] = self._parallel is not None
        # base sigmas: with sigma="std" they were measured on the INITIAL weights, which a resumed
        # model no longer has, so they travel with the state
        s["unit_sigma"] = (
            self.units[0].sigma
            if self.hyperparameters["level"] == "network"
            else numpy.array([u.sigma for u in self.units], dtype=numpy.float64)
        )
        return s

    def _set_state(self, s):
        self.cycle, self.unit, self.pos = int(s["cycle"]), int(s["unit"]), int(s["pos"])
        if "accepted" not in s:
            raise ValueError(
                "state_dict is from an older minirso: its RSO state holds 'records' and no 'accepted' "
                "(the trainer's history now holds the log); continue that run with the version that "
                "saved it"
            )
        self.trial, self.batches, self.accepted = int(s["trial"]), int(s["batches"]), int(s["accepted"])
        if not (0 <= self.unit < len(self.units) and 0 <= self.pos < self.units[self.unit].trials):
            raise ValueError(f"state_dict position (unit {self.unit}, trial {self.pos}) does not fit this model")
        sig = numpy.asarray(s["unit_sigma"])
        if self.hyperparameters["level"] == "network":
            if sig.shape != (self.model.params.size,):
                raise ValueError(f"state_dict unit_sigma has shape {sig.shape}, expected ({self.model.params.size},)")
            self.plan.units = [replace(self.units[0], sigma=sig.astype(numpy.float32))]
        else:
            if sig.shape != (len(self.units),):
                raise ValueError(
                    f"state_dict unit_sigma has {sig.size} entries, this model has {len(self.units)} tensors"
                )
            self.plan.units = [replace(u, sigma=float(v)) for u, v in zip(self.units, sig)]
        self.records = []  # the in-memory log restarts: a resumed run's earlier tensors are in the trainer's history
        self._stats = {k: s[f"stat_{k}"] for k in _STAT_KEYS}
        self._parallel = None
        if s["has_parallel"]:
            params = self.model.params
            self._parallel = ParallelSearch(
                self.hyperparameters["parallel"], self._device(s["base"], params), self._device(s["pending"], params)
            )
        self._ready = False
