"""minirso: train neural networks without gradients (RSO and aMC) on NumPy or CuPy.

Start with :mod:`minirso.backend` (NumPy or CuPy), :mod:`minirso.params`
(the flat parameter buffer), :mod:`minirso.nn` (layers and the model), and
:mod:`minirso.models` (the papers' networks).
"""

from . import backend, data, losses, models, nn, optim, params, random
from .backend import asarray, backend_name, get_array_module, to_numpy, use_backend

__version__ = "0.1.0"

__all__ = ["backend", "random", "params", "nn", "losses", "models", "optim", "data", "use_backend", "backend_name",
           "get_array_module", "asarray", "to_numpy", "__version__"]
