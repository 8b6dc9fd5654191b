"""RSO's schedule: which tensor comes next, with which sigma, on which rows, with which normals.

Everything here is a pure function of the model's layout, the hyperparameters and the position
``(cycle, unit, pos)``: no state, so a resumed run recomputes exactly what an uninterrupted one used.
:class:`minirso.optim.RSO` asks it and runs Algorithm 1; the recipe items cited below are numbered as
in :mod:`minirso.optim.rso`'s docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy

from ..backend import Array, to_numpy
from ..random import integers, random_bits
from .base import check_choice, check_int, check_positive, check_seed

if TYPE_CHECKING:
    from types import ModuleType

    from ..nn.sequential import Sequential
    from ..params import ParamGroup

__all__ = [
    "Unit",
    "Schedule",
    "sweep_groups",
    "check_hyperparameters",
    "HYPERPARAMETERS",
    "STREAM_DELTA",
    "STREAM_DATA",
    "STREAM_DATA_UNIFORM",
]

STREAM_DELTA = 0x52534F01  # "RSO" 1: perturbations
STREAM_DATA = 0x52534F02  # pool order per tensor
STREAM_DATA_UNIFORM = 0x52534F03  # uniformly drawn batch rows

NORM_KINDS = ("bn_scale", "bn_shift", "ln_scale", "ln_shift")


#: RSO's hyperparameters, in the order of ``RSO.hyperparameters`` (and of its checkpoints)
HYPERPARAMETERS = (
    "cycles",
    "batch_size",
    "anneal",
    "sigma",
    "norm_sigma",
    "direction",
    "order",
    "sampling",
    "shared_batch",
    "recipe",
    "weight_decay",
    "bn_rows",
    "loss",
    "level",
    "joint_scale",
    "parallel",
    "trials_per_batch",
    "seed",
    "cache_chunk",
)


def check_hyperparameters(s: dict, n: int, loss_name: str) -> dict:
    """RSO's hyperparameters from its arguments ``s`` (by name), checked: ValueError names a bad one.

    ``n``: the pool's size; ``loss_name``: the evaluator's loss.  Returns them in :data:`HYPERPARAMETERS` order.
    """
    hp = dict(s, loss=loss_name)
    hp["cycles"] = check_int("cycles", s["cycles"], 1)
    hp["batch_size"] = check_int("batch_size", s["batch_size"], 1)
    if hp["batch_size"] > n:
        raise ValueError(f"batch_size {hp['batch_size']} is larger than the data ({n} samples)")
    hp["anneal"] = check_positive("anneal", s["anneal"])
    if isinstance(s["sigma"], str):
        check_choice("sigma", s["sigma"], ("kaiming", "std"))
    else:
        hp["sigma"] = check_positive("sigma", s["sigma"])
    hp["norm_sigma"] = check_positive("norm_sigma", s["norm_sigma"])
    hp["weight_decay"] = check_positive("weight_decay", s["weight_decay"], allow_zero=True)
    if hp["weight_decay"] >= 1:
        raise ValueError(f"weight_decay must be < 1, got {s['weight_decay']!r}")
    for name, choices in (
        ("recipe", ("authors", "paper")),
        ("direction", ("backward", "forward")),
        ("order", ("output", "input")),
        ("sampling", ("contiguous", "uniform")),
        ("level", ("weight", "layer", "network")),
        ("parallel", (None, "layer", "neuron")),
    ):
        check_choice(name, s[name], choices)
    hp["bn_rows"] = check_int("bn_rows", s["bn_rows"], 1)
    hp["shared_batch"] = bool(s["shared_batch"])
    hp["joint_scale"] = check_positive("joint_scale", s["joint_scale"])
    hp["trials_per_batch"] = check_int("trials_per_batch", s["trials_per_batch"], 1)
    if hp["trials_per_batch"] > 1 and (s["sampling"] != "contiguous" or not s["shared_batch"]):
        raise ValueError("trials_per_batch > 1 needs sampling='contiguous' and shared_batch=True")
    if s["parallel"] is not None and s["level"] != "weight":
        raise ValueError(f"parallel={s['parallel']!r} needs level='weight' (sec. 4.6 searches single weights)")
    hp["seed"] = check_seed(s["seed"])
    hp["cache_chunk"] = check_int("cache_chunk", s["cache_chunk"], 1)
    return {k: hp[k] for k in HYPERPARAMETERS}


@dataclass(frozen=True)
class Unit:
    """One entry of the sweep: a parameter tensor (or, at ``level="network"``, all of them).

    ``sl``: its slice of the flat buffer; ``layer``: the top-level layer whose
    cached input its trials start from; ``sigma``: base std (scalar, or per
    parameter at the network level); ``trials``: trials per cycle;
    ``order``: flat indices (within ``sl``) in visiting order (weight level);
    ``neuron``: elements per output neuron (its leading axis).
    """

    name: str
    sl: slice
    layer: int
    kind: str
    sigma: object
    trials: int
    order: numpy.ndarray | None
    neuron: int


def sweep_groups(model: Sequential, direction: str = "backward") -> list[ParamGroup]:
    """The model's parameter groups in RSO order.

    Stages: a "weight" tensor starts a stage; biases and normalisation tensors
    join the stage before them (a BatchNorm belongs to the conv it follows; a
    residual block's shortcut tensors are placed before its body);
    inside a stage, normalisation shifts come before their scales (beta, then
    gamma, as the authors' code).  ``"backward"`` reverses the stage order (sec. 3: last layer first).
    """
    # a residual block's shortcut tensors go before its body, so that the normalisation after the block
    # joins the body's last conv (whose output it normalises together with the skip)
    shortcut = tuple(f"{top.name}.{c.name}." for top in model.layers for c in getattr(top, "shortcut", []))
    groups = sorted(model.param_groups, key=lambda g: (g.layer, not g.name.startswith(shortcut)))  # stable
    stages = []
    for g in groups:
        if g.kind == "weight" or not stages:
            stages.append([])
        stages[-1].append(g)
    ordered = []
    for st in stages:
        for i in range(len(st) - 1):  # swap each (scale, shift) pair of one norm layer to (shift, scale)
            a, b = st[i], st[i + 1]
            same_layer = a.name.rsplit(".", 1)[0] == b.name.rsplit(".", 1)[0]
            if a.kind.endswith("_scale") and b.kind.endswith("_shift") and same_layer:
                st[i], st[i + 1] = b, a
        ordered.append(st)
    if direction == "backward":
        ordered.reverse()
    return [g for st in ordered for g in st]


class Schedule:
    """The units of a cycle and the pure functions of the position that RSO draws from.

    ``hp``: RSO's hyperparameters; ``n``: the pool's size.  ``units`` may be replaced (a resumed run
    brings the base sigmas measured on the initial weights).
    """

    def __init__(self, model: Sequential, hp: dict, n: int) -> None:
        self.hp, self.n = hp, int(n)
        self.units = self._build_units(model)

    # ---- the units -----------------------------------------------------------------------------
    def _base_sigma(self, model, g):
        hp = self.hp
        if g.kind in NORM_KINDS:
            return hp["norm_sigma"]
        if g.kind == "weight" and hp["sigma"] == "std":
            return float(numpy.std(to_numpy(model.params[g.slice])))  # the paper's sigma_d (sec. 3)
        if isinstance(hp["sigma"], float):
            return hp["sigma"]
        return math.sqrt(2.0 / g.fan_in)  # Kaiming, the authors' code

    def _build_units(self, model):
        hp = self.hp
        groups = sweep_groups(model, hp["direction"])
        if hp["level"] == "network":
            p = model.params
            sig = numpy.empty(p.size, numpy.float32)
            for g in groups:
                sig[g.slice] = self._base_sigma(model, g)
            return [Unit("network", slice(0, p.size), 0, "network", sig, p.size, None, p.size)]
        units = []
        for g in groups:
            idx = numpy.arange(g.size)
            if hp["order"] == "input" and len(g.shape) >= 2:
                # input-channel-major (sec. 4.3): all (output, taps) of input channel 0 first, then channel 1, ...
                idx = idx.reshape(g.shape).swapaxes(0, 1).reshape(-1)
            units.append(
                Unit(
                    g.name,
                    g.slice,
                    g.layer,
                    g.kind,
                    self._base_sigma(model, g),
                    g.size,
                    idx if hp["level"] == "weight" else None,
                    g.size // g.shape[0],
                )
            )
        return units

    # ---- sigma (item 1) ------------------------------------------------------------------------
    def sigma_factor(self, cycle: int) -> float:
        """Linear annealing of sigma over ``cycles`` E, cycle c = 0..E-1.

        ``"authors"``: ``a + (1 - a)(E - c)/E`` (train.py l.465), from 1 down to ``a + (1 - a)/E``;
        ``"paper"``: ``a + (1 - a)(E - 1 - c)/(E - 1)``, from 1 down to ``a`` (sec. 4.1).  E = 1 gives 1.
        """
        e, a = self.hp["cycles"], self.hp["anneal"]
        if self.hp["recipe"] == "authors":
            return a + (1.0 - a) * (e - cycle) / e
        return 1.0 if e == 1 else a + (1.0 - a) * (e - 1 - cycle) / (e - 1)

    # ---- the normals ---------------------------------------------------------------------------
    def width(self, u: Unit) -> int:
        """Normals one trial of unit ``u`` draws: 1 at the weight level, the tensor's (network's) size jointly."""
        return 1 if self.hp["level"] == "weight" else u.sl.stop - u.sl.start

    def delta_offset(self, cycle: int, unit: int, pos: int) -> int:
        """First normal of the Delta of trial ``pos`` of unit ``unit`` in cycle ``cycle``.

        The draws of a cycle are laid end to end, unit after unit, and the cycles one after another, so no
        two trials of a run share a normal whatever the tensors' sizes::

            offset = c * sum_v trials_v width_v  +  sum_{v < u} trials_v width_v  +  pos * width_u

        At the weight level this is the run-wide trial number, at the network level trial * P.
        """
        sizes = [v.trials * self.width(v) for v in self.units]  # normals each unit draws per cycle
        return cycle * sum(sizes) + sum(sizes[:unit]) + pos * self.width(self.units[unit])

    # ---- the mini-batches (items 3 and 4) ------------------------------------------------------
    def pool_owner(self, unit: int) -> int:
        """The unit whose pool order unit ``unit`` reads (item 3).

        A weight tensor reads its own; a normalisation or bias tensor the weight tensor swept last before
        it in the cycle (its conv or dense layer: the authors' BatchNorm trials ``reset()`` their conv's
        data iterator, train.py l.228); itself when no weight tensor came before it in the cycle.
        """
        for v in range(unit, -1, -1):
            if self.units[v].kind in ("weight", "network"):
                return v
        return unit

    def batches(self, u: Unit) -> int:
        """Mini-batches one unit draws from its pool in a cycle."""
        hp = self.hp
        return -(-u.trials // hp["trials_per_batch"]) * (1 if hp["shared_batch"] else 3)

    def first_batch(self, cycle: int, unit: int) -> int:
        """Index (mod N // B) of the first mini-batch of ``unit`` in ``cycle``, contiguous sampling.

        0 for every unit but the first layer's weight tensor from the second cycle on (item 4): the
        authors' conv-1 iterator is reshuffled each cycle but not reset (train.py l.178-180), so it starts
        where the tensors sharing its pool left it in the previous cycle.
        """
        u = self.units[unit]
        if cycle == 0 or u.layer != 0 or u.kind != "weight" or self.pool_owner(unit) != unit:
            return 0
        m = self.n // self.hp["batch_size"]
        sharing = [v for v in range(len(self.units)) if self.pool_owner(v) == unit]
        last = max(sharing)  # the last of them in sweep order (they all follow the weight tensor)
        if last == unit:  # no normalisation tensor resets the iterator: it has gone on for `cycle` whole cycles
            return cycle * self.batches(u) % m
        return self.batches(self.units[last]) % m

    def pool_order(self, cycle: int, unit: int) -> numpy.ndarray:
        """The pool order (N,) unit ``unit`` reads in ``cycle``: ``argsort`` of 64-bit keys drawn from
        ``random_bits(seed, STREAM_DATA, 2 N (c U + o), 2 N)``, o = :meth:`pool_owner`.  NumPy (host) array."""
        n = self.n
        key = (cycle * len(self.units) + self.pool_owner(unit)) * 2 * n
        w = random_bits(self.hp["seed"], STREAM_DATA, key, 2 * n, numpy).reshape(n, 2).astype(numpy.uint64)
        keys = (w[:, 0] << numpy.uint64(32)) | w[:, 1]  # (N,) 64-bit sort keys: ties have probability ~N^2/2^65
        return numpy.argsort(keys, kind="stable")

    def contiguous_rows(self, order: Array, batch: int) -> Array:
        """Rows of the ``batch``-th mini-batch (counted from the pool order's first) of ``order``. (B,)"""
        bsz = self.hp["batch_size"]
        s = (batch % (self.n // bsz)) * bsz
        return order[s : s + bsz]

    def uniform_rows(self, counter: int, xp: ModuleType) -> Array:
        """Rows of the run's ``counter``-th uniformly drawn batch: floor(N * uniform(seed, STREAM_DATA_UNIFORM,
        counter B, B)). (B,)"""
        bsz = self.hp["batch_size"]
        return integers(self.hp["seed"], STREAM_DATA_UNIFORM, counter * bsz, bsz, self.n, xp)

    # ---- the layer-input cache -----------------------------------------------------------------
    def inputs_to_keep(self, unit: int) -> list:
        """Layers of the cycle's later units whose pool inputs, computed now, are still valid when reached.

        A unit's layer input depends only on the layers below it, so it stays
        valid while every unit in between changes layers at or above it.  In
        the backward sweep that holds for every conv / dense layer (one forward
        pass per cycle then caches them all); a BatchNorm right after the conv
        just changed is not kept (its input continues from the conv's cache).
        """
        keep, low = [], self.units[unit].layer
        for u in self.units[unit + 1 :]:
            if u.layer <= low:
                keep.append(u.layer)
            low = min(low, u.layer)
        return keep
