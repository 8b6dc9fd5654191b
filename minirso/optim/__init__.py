"""Gradient-free optimizers: RSO (Tripathi & Singh 2020) and aMC / Metropolis (Whitelam et al. 2022).

Read in this order: :mod:`.base` (hyperparameters vs. state), :mod:`.evaluate`
(how a candidate's loss is computed: the plain reference evaluators),
:mod:`.rso`, :mod:`.amc`, and :mod:`.incremental` (RSO's fast evaluator).
"""

from .amc import AMC, Metropolis
from .base import Optimizer
from .evaluate import CachedEvaluator, ModelLoss
from .incremental import IncrementalEvaluator
from .rso import RSO, sweep_groups

__all__ = ["Optimizer", "RSO", "AMC", "Metropolis", "CachedEvaluator", "IncrementalEvaluator", "ModelLoss", "sweep_groups"]
