"""minirso: train neural networks without gradients (RSO and aMC) on NumPy or CuPy.

Start with :mod:`minirso.backend` (NumPy or CuPy), :mod:`minirso.params`
(the flat parameter buffer), :mod:`minirso.nn` (layers and the model), and
:mod:`minirso.models` (the papers' networks).  ``import minirso`` also reaches
:mod:`minirso.train` (the training loop), :mod:`minirso.checkpoint` (HDF5
checkpoints), :mod:`minirso.cli` (``minirso inspect``), :mod:`minirso.runargs`
(the examples' resumable command lines) and :mod:`minirso.kernels` (fused GPU
kernels): they are imported on first use (``minirso.checkpoint.CheckpointError``), so that ``import minirso``
does not pay for h5py and tqdm.
"""

import importlib

from . import backend, data, losses, models, nn, optim, params, random
from .backend import asarray, backend_name, get_array_module, to_numpy, use_backend

__version__ = "0.1.0"

# Submodules imported on first attribute access (PEP 562), for import time: h5py and tqdm cost about 60 ms, and
# the GPU kernels' glue is only needed on CuPy.
_LAZY_SUBMODULES = ("checkpoint", "cli", "train", "runargs", "kernels")

__all__ = [
    "backend",
    "random",
    "params",
    "nn",
    "losses",
    "models",
    "optim",
    "data",
    "checkpoint",
    "train",
    "cli",
    "runargs",
    "kernels",
    "use_backend",
    "backend_name",
    "get_array_module",
    "asarray",
    "to_numpy",
    "__version__",
]


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds it on the package: called once per name
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
