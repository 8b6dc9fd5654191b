"""Parameter initialisation, drawn from the counter-based generator so NumPy and CuPy agree.

Two schemes:

* ``"kaiming"`` (He et al. 2015, the RSO paper sec. 3 and its authors' code):
  weights ~ N(0, 2 / fan_in), biases 0;
* ``("gaussian", s)`` (the aMC paper, e.g. sec. II A: "x_i ~ N(0, sigma^2)"):
  weights AND biases ~ N(0, s^2).

In both, normalisation scales (gamma) start at 1 and shifts (beta) at 0.
The draw is one normal vector over the whole flat buffer (stream
``STREAM_INIT``), so parameter k always gets the k-th number of the seed.
"""

from __future__ import annotations

import math

from ..backend import get_array_module
from ..random import STREAM_INIT, normal

__all__ = ["check_scheme", "initialize"]


def check_scheme(scheme):
    """Return ``scheme`` normalised to ``"kaiming"`` or ``("gaussian", s)``; ValueError otherwise."""
    if scheme == "kaiming":
        return scheme
    if isinstance(scheme, (tuple, list)) and len(scheme) == 2 and scheme[0] == "gaussian":
        s = float(scheme[1])
        if not s > 0:
            raise ValueError(f"init: the gaussian scale must be > 0, got {scheme[1]!r}")
        return ("gaussian", s)
    raise ValueError(f"init must be 'kaiming' or ('gaussian', s), got {scheme!r}")


def initialize(params, groups, scheme="kaiming", seed: int = 0):
    """Fill the flat buffer ``params`` in place according to ``scheme`` (see module docstring)."""
    scheme = check_scheme(scheme)
    z = normal(seed, STREAM_INIT, 0, params.size, xp=get_array_module(params))  # (P,) standard normals
    for g in groups:
        if g.kind in ("bn_scale", "ln_scale"):
            params[g.slice] = 1.0
        elif g.kind in ("bn_shift", "ln_shift"):
            params[g.slice] = 0.0
        elif scheme == "kaiming":
            std = math.sqrt(2.0 / g.fan_in) if g.kind == "weight" else 0.0
            params[g.slice] = std * z[g.slice]
        else:
            params[g.slice] = scheme[1] * z[g.slice]
