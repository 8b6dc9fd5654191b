"""Gradient-free optimizers: RSO (Tripathi & Singh 2020) and aMC / Metropolis (Whitelam et al. 2022).

Read in this order: :mod:`.reference` (Algorithm 1 and aMC sec. III A as plain loops),
:mod:`.base` (hyperparameters vs. state), :mod:`.evaluate` (how an RSO candidate's loss is
computed: the plain reference evaluator), :mod:`.rso`, :mod:`.incremental` (RSO's fast
evaluator), :mod:`.amc_loss` (what aMC needs of a loss), :mod:`.model_loss` (that loss for a
minirso model), :mod:`.amc_core` (one aMC core over K rows), :mod:`.amc` (AMC and Metropolis: one
row) and :mod:`.chains` (K chains in one batched evaluation).
"""

from . import reference
from .amc import AMC, Metropolis
from .amc_core import AMCCore
from .amc_loss import AMCLoss, MinibatchLoss, RecordingLoss
from .base import Optimizer, TrainableOptimizer
from .chains import AMCChains, ChainsLoss
from .evaluate import CachedEvaluator
from .incremental import IncrementalEvaluator
from .model_loss import ModelLoss
from .rso import RSO, sweep_groups

__all__ = [
    "Optimizer",
    "TrainableOptimizer",
    "RSO",
    "AMC",
    "Metropolis",
    "AMCChains",
    "ChainsLoss",
    "AMCCore",
    "AMCLoss",
    "MinibatchLoss",
    "RecordingLoss",
    "CachedEvaluator",
    "IncrementalEvaluator",
    "ModelLoss",
    "sweep_groups",
    "reference",
]
