"""aMC: adaptive Metropolis Monte Carlo (Whitelam et al. 2022), and plain Metropolis as its special case.

One step (the paper's sec. III A, steps 1-4), for parameters x (ALL moved at once):

1. current state: select the data and know ``U(x)`` (full batch: the loss
   kept from the previous step; minibatch: recomputed on the new batch), and
   with signal norm on, ``lambda_i`` from that same forward pass (eq. 17-18);
2. propose ``x'_i = x_i + eps_i``, ``eps_i ~ N(mu_i, (lambda_i sigma)^2)``  (eq. 9);
   accept if ``U(x') <= U(x)`` (zero temperature) or, at temperature T > 0,
   with probability ``min(1, exp(-(U(x') - U(x)) / T))``  (sec. III A, note [60]);
3. accept: ``x <- x'``, ``n_cr <- 0``, ``mu_i <- mu_i + epsilon (eps_i - mu_i)``  (eq. 10);
4. reject: keep x, ``n_cr += 1``; after ``n_s`` consecutive rejections
   ``sigma <- 0.95 sigma``, ``mu <- 0``, ``n_cr <- 0``.

Zero-temperature Metropolis is ``epsilon = 0, n_s = infinity, lambda = 1``
(:class:`Metropolis`).  Progressive batching (sec. II F): a minibatch of 500
that doubles whenever the minibatch classification error falls below 10 %,
after which ``sigma <- sigma0`` and ``mu <- 0``.

The optimizer works on ANY flat parameter array with a loss callable
``loss_fn(params) -> float`` (e.g. the Rosenbrock function of Fig. 3); for a
minirso model use :class:`minirso.optim.ModelLoss`, which also provides the
signal-norm lambdas and the minibatch selection.

Random numbers: the proposal of step n is ``normal(seed, STREAM_PROPOSAL, n*P, P)``,
the Metropolis uniform ``uniform(seed, STREAM_ACCEPT, n, 1)``, the minibatch rows
``floor(N * uniform(seed, STREAM_DATA, n*N, B))`` (drawn with replacement).  So the
state is a few numbers plus mu (and lambda), and a resumed chain is exact.
"""

from __future__ import annotations

import math
import numbers

import numpy

from .. import kernels
from ..backend import get_array_module
from ..random import integers, normal, uniform
from .base import Optimizer, check_int, check_positive, check_seed

__all__ = ["AMC", "Metropolis", "STREAM_PROPOSAL", "STREAM_ACCEPT", "STREAM_DATA"]

STREAM_PROPOSAL = 0x414D4301  # "AMC" 1: the proposal normals
STREAM_ACCEPT = 0x414D4302  # the Metropolis uniforms at T > 0
STREAM_DATA = 0x414D4303  # minibatch rows


def _finite_or_inf(u: float) -> float:
    return u if math.isfinite(u) else math.inf


class AMC(Optimizer):
    """Adaptive Monte Carlo over a flat parameter array ``params`` (moved in place).

    Hyperparameters (aMC paper sec. III A): ``sigma0`` (initial move scale),
    ``epsilon`` (mu adaptation rate, eq. 10), ``n_s`` (consecutive rejections
    before ``sigma *= decay``; ``math.inf`` never), ``signal_norm`` (lambda_i of
    eq. 18, needs a loss with ``lambdas()``), ``temperature`` (0: zero temperature),
    ``decay`` (0.95), ``seed``.  Data: ``batch_size=None`` is batch learning (the
    loss callable sees all its data; the previous loss is reused, one forward
    pass per step); an integer is minibatch learning (the loss needs
    ``num_samples`` and ``select(rows)``); ``progressive=True`` starts at
    ``batch_size`` (default 500, or N if smaller) and doubles it when the minibatch error
    (``loss_fn.last_error``) falls below ``progressive_threshold`` (10 %).

    State: ``sigma``, ``mu`` (aligned with ``params``), ``n_cr``, ``loss``
    (U of the current parameters), ``lam`` (signal norm), ``step_count``,
    ``batch`` (current minibatch size), counters ``accepted``, ``rejected``,
    ``nonfinite`` (proposals whose loss was NaN or infinite: always rejected).
    """

    def __init__(self, params, loss_fn, *, sigma0: float = 1e-3, epsilon: float = 0.0, n_s=100,
                 signal_norm: bool = False, temperature: float = 0.0, decay: float = 0.95, seed: int = 0,
                 batch_size: int | None = None, progressive: bool = False, progressive_threshold: float = 0.1):
        if getattr(params, "ndim", None) != 1 or params.dtype.kind != "f":
            raise ValueError(f"params must be a 1-D floating-point array (the flat buffer), got "
                             f"{getattr(params, 'shape', type(params))} {getattr(params, 'dtype', '')}")
        if not callable(loss_fn):
            raise ValueError("loss_fn must be callable: loss_fn(params) -> float")
        sigma0 = check_positive("sigma0", sigma0)
        if not (isinstance(epsilon, numbers.Real) and not isinstance(epsilon, bool) and math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a finite number, got {epsilon!r}")
        if n_s is None or n_s == math.inf:
            n_s = math.inf
        else:
            n_s = check_int("n_s", n_s, 1)
        temperature = check_positive("temperature", temperature, allow_zero=True)
        decay = check_positive("decay", decay)
        if decay >= 1:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        if signal_norm and not hasattr(loss_fn, "lambdas"):
            raise ValueError("signal_norm=True needs a loss with lambdas() from its forward pass "
                             "(e.g. minirso.optim.ModelLoss); a plain function has no neurons")
        if progressive and batch_size is None:  # sec. II F starts at 500 (or all the data, if fewer)
            batch_size = min(500, loss_fn.num_samples) if hasattr(loss_fn, "num_samples") else 500
        if batch_size is not None:
            batch_size = check_int("batch_size", batch_size, 1)
            if not (hasattr(loss_fn, "select") and hasattr(loss_fn, "num_samples")):
                raise ValueError("batch_size (minibatch mode) needs a loss with num_samples and select(rows), "
                                 "e.g. minirso.optim.ModelLoss")
            if batch_size > loss_fn.num_samples:
                raise ValueError(f"batch_size {batch_size} is larger than the data ({loss_fn.num_samples} samples)")
        threshold = check_positive("progressive_threshold", progressive_threshold)
        self.params, self.loss_fn = params, loss_fn
        self.hyperparameters = {
            "sigma0": sigma0, "epsilon": float(epsilon), "n_s": n_s, "signal_norm": bool(signal_norm),
            "temperature": temperature, "decay": decay, "seed": check_seed(seed), "batch_size": batch_size,
            "progressive": bool(progressive), "progressive_threshold": threshold,
        }
        if signal_norm:
            loss_fn.signal_stats = True  # the model loss records eq. (17) statistics in every forward pass
        if progressive and hasattr(loss_fn, "track_error"):
            loss_fn.track_error = True  # the model loss reports its classification error (the doubling trigger)
        xp = get_array_module(params)
        self.mu = xp.zeros_like(params)  # (P,) centre of each parameter's proposal (eq. 4)
        self.lam = None  # (P,) lambda_i of the current parameters (signal norm), else None
        self._saved = xp.empty_like(params)  # (P,) the current x while a proposal is tested
        self.sigma, self.n_cr, self.loss, self.step_count = sigma0, 0, None, 0
        self.batch = batch_size
        self.accepted = self.rejected = self.nonfinite = 0

    # ---- the algorithm -------------------------------------------------------------------------
    @property
    def minibatch(self) -> bool:
        return self.hyperparameters["batch_size"] is not None

    def _evaluate(self):
        """U of the current ``params`` (and lambda, error) on the selected data; one forward pass."""
        u = float(self.loss_fn(self.params))  # host sync: the decision is taken on the host
        lam = self.loss_fn.lambdas() if self.hyperparameters["signal_norm"] else None
        return u, lam, getattr(self.loss_fn, "last_error", None)

    def rows(self, step: int, batch: int):
        """The minibatch of step ``step``: ``batch`` row indices drawn uniformly with replacement."""
        n = self.loss_fn.num_samples
        return integers(self.hyperparameters["seed"], STREAM_DATA, step * n, batch, n, get_array_module(self.params))

    def proposal(self, step: int):
        """eps of step ``step`` (eq. 9): ``mu + lambda sigma z``, z the step's standard normals. (P,)"""
        hp, p = self.hyperparameters, self.params
        xp = get_array_module(p)
        scale = self._scale()  # (P,) or scalar
        if kernels.enabled(xp):  # GPU: normals, scale and mu in ONE kernel instead of ~100 (minirso.kernels)
            eps = kernels.amc_proposal(self.mu, scale, hp["seed"], STREAM_PROPOSAL, step * p.size)
            if eps is not None:
                return eps
        z = normal(hp["seed"], STREAM_PROPOSAL, step * p.size, p.size, xp, dtype=p.dtype)  # (P,)
        return self.mu + scale * z  # one elementwise expression over the whole flat buffer

    def _scale(self):
        """lambda_i sigma (P,) with signal norm, else the scalar sigma: the std of the proposal (eq. 9)."""
        return self.sigma if self.lam is None else self.lam * self.params.dtype.type(self.sigma)

    def _move(self, step: int):
        """``x <- x + eps`` for step ``step``, keeping x in ``_saved`` (an exact restore on rejection); returns eps."""
        p = self.params
        if kernels.enabled(get_array_module(p)):  # GPU: draw, copy and add in ONE pass over the buffer
            eps = kernels.amc_move(p, self._saved, self.mu, self._scale(), self.hyperparameters["seed"],
                                   STREAM_PROPOSAL, step * p.size)
            if eps is not None:
                return eps
        eps = self.proposal(step)
        self._saved[...] = p
        p += eps
        return eps

    def step(self) -> dict:
        """One Monte Carlo move; returns ``{"step", "loss", "accepted", "sigma", "batch"}``."""
        hp, n = self.hyperparameters, self.step_count
        err = None
        # 1. current state: the data, U(x), lambda
        if self.minibatch:
            self.loss_fn.select(self.rows(n, self.batch))
        if self.minibatch or self.loss is None:
            self.loss, self.lam, err = self._evaluate()
        u0 = _finite_or_inf(self.loss)
        # 2. proposal: x' = x + eps; a copy of x is kept to restore it exactly on rejection
        eps = self._move(n)
        u1, lam1, err1 = self._evaluate()
        if not math.isfinite(u1):
            self.nonfinite += 1
            accept = False
        elif u1 <= u0:
            accept = True
        elif hp["temperature"] > 0:
            xi = float(uniform(hp["seed"], STREAM_ACCEPT, n, 1, numpy)[0])  # uniform on (0, 1)
            accept = xi < math.exp(-(u1 - u0) / hp["temperature"])
        else:
            accept = False
        if accept:  # 3.
            self.loss, self.lam, err = u1, lam1, err1
            if not (kernels.enabled(get_array_module(eps)) and kernels.amc_mu_update(self.mu, eps, hp["epsilon"])):
                self.mu += hp["epsilon"] * (eps - self.mu)  # eq. (10) (on a GPU: the same in one kernel)
            self.n_cr = 0
            self.accepted += 1
        else:  # 4.
            self.params[...] = self._saved
            self.n_cr += 1
            self.rejected += 1
            if self.n_cr >= hp["n_s"]:
                self.sigma *= hp["decay"]
                self.mu[...] = 0
                self.n_cr = 0
        if hp["progressive"] and err is not None and err < hp["progressive_threshold"] \
                and self.batch < self.loss_fn.num_samples:
            self.batch = min(2 * self.batch, self.loss_fn.num_samples)  # sec. II F: double, then reset
            self.sigma, self.n_cr = hp["sigma0"], 0
            self.mu[...] = 0
        self.step_count += 1
        return {"step": n, "loss": self.loss, "accepted": accept, "sigma": self.sigma, "batch": self.batch}

    def run(self, steps: int, callback=None) -> dict:
        """``steps`` moves; ``callback(info)`` after each.  Returns the last step's info."""
        info = None
        for _ in range(check_int("steps", steps, 0)):
            info = self.step()
            if callback is not None:
                callback(info)
        return info

    @property
    def acceptance_rate(self) -> float:
        total = self.accepted + self.rejected
        return self.accepted / total if total else math.nan

    # ---- state ---------------------------------------------------------------------------------
    def _get_state(self):
        return {"sigma": self.sigma, "mu": self.mu, "n_cr": self.n_cr,
                "loss": math.nan if self.loss is None else self.loss, "has_loss": self.loss is not None,
                "lam": self.lam if self.lam is not None else numpy.zeros(0, numpy.float32),
                "has_lam": self.lam is not None, "step_count": self.step_count,
                "batch": 0 if self.batch is None else self.batch, "accepted": self.accepted,
                "rejected": self.rejected, "nonfinite": self.nonfinite}

    def _set_state(self, s):
        if numpy.shape(s["mu"]) != tuple(self.params.shape):
            raise ValueError(f"state_dict mu has shape {numpy.shape(s['mu'])}, params {tuple(self.params.shape)}")
        self.sigma, self.n_cr, self.step_count = float(s["sigma"]), int(s["n_cr"]), int(s["step_count"])
        self.mu = self._device(s["mu"], self.params)
        self.loss = float(s["loss"]) if s["has_loss"] else None
        self.lam = self._device(s["lam"], self.params) if s["has_lam"] else None
        self.batch = int(s["batch"]) or None
        self.accepted, self.rejected, self.nonfinite = int(s["accepted"]), int(s["rejected"]), int(s["nonfinite"])


class Metropolis(AMC):
    """Zero-temperature (or T > 0) Metropolis Monte Carlo: aMC with epsilon = 0, n_s = infinity, lambda = 1.

    ``Metropolis(params, loss_fn, sigma=1e-3)``: every step proposes
    ``x_i -> x_i + N(0, sigma^2)`` for all i (aMC paper eq. 1) and keeps it if the
    loss does not increase (T = 0) or with probability exp(-dU/T).
    """

    def __init__(self, params, loss_fn, *, sigma: float = 1e-3, temperature: float = 0.0, seed: int = 0,
                 batch_size: int | None = None):
        super().__init__(params, loss_fn, sigma0=sigma, epsilon=0.0, n_s=math.inf, signal_norm=False,
                         temperature=temperature, seed=seed, batch_size=batch_size)
