"""Gradient-free optimizers: RSO (Tripathi & Singh 2020) and aMC / Metropolis (Whitelam et al. 2022).

Read in this order: :mod:`.base` (hyperparameters vs. state), :mod:`.evaluate`
(how a candidate's loss is computed: the plain reference evaluators),
:mod:`.rso`, :mod:`.amc`, :mod:`.incremental` (RSO's fast evaluator) and :mod:`.chains`
(K aMC chains in one batched evaluation).
"""

from .amc import AMC, Metropolis
from .base import Optimizer
from .chains import AMCChains, ChainsLoss
from .evaluate import CachedEvaluator
from .model_loss import ModelLoss
from .incremental import IncrementalEvaluator
from .rso import RSO, sweep_groups

__all__ = ["Optimizer", "RSO", "AMC", "Metropolis", "AMCChains", "ChainsLoss", "CachedEvaluator", "IncrementalEvaluator", "ModelLoss", "sweep_groups"]
