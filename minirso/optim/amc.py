"""aMC: adaptive Metropolis Monte Carlo (Whitelam et al. 2022) on one flat parameter buffer, and plain Metropolis.

:class:`AMC` is the one-row case (K = 1) of the aMC core, :class:`minirso.optim.amc_core.AMCCore`,
whose module docstring gives the algorithm (sec. III A, steps 1-4, eqs. 9-10), its random numbers
and how a step is taken; this class is its face for one chain: the hyperparameters of the paper
(including temperature, minibatches, signal norm and progressive batching, sec. II E-F) and the
state as plain numbers (``sigma``, ``n_cr``, ``loss``, counters).

Zero-temperature Metropolis is ``epsilon = 0, n_s = infinity, lambda = 1`` (:class:`Metropolis`).

The optimizer works on ANY flat parameter array with a loss callable ``loss_fn(params) -> float``
(e.g. the Rosenbrock function of Fig. 3); what a loss must offer for minibatches, signal norm and
progressive batching is :mod:`minirso.optim.amc_loss`.  For a minirso model use
:class:`minirso.optim.ModelLoss`, which offers all of it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .amc_core import STREAM_ACCEPT, STREAM_DATA, STREAM_PROPOSAL, AMCCore, check_params, check_settings
from .base import check_seed, per_sample

if TYPE_CHECKING:
    from ..backend import Array
    from .amc_loss import AMCLoss

__all__ = ["AMC", "Metropolis", "STREAM_PROPOSAL", "STREAM_ACCEPT", "STREAM_DATA"]


class AMC(AMCCore):
    """Adaptive Monte Carlo over a flat parameter array ``params`` (moved in place).

    Hyperparameters (aMC paper sec. III A): ``sigma0`` (initial move scale),
    ``epsilon`` (mu adaptation rate, eq. 10), ``n_s`` (consecutive rejections
    before ``sigma *= decay``; ``math.inf`` never), ``signal_norm`` (lambda_i of
    eq. 18, needs a :class:`~minirso.optim.amc_loss.RecordingLoss`), ``temperature``
    (0: zero temperature), ``decay`` (0.95), ``seed``.  Data: ``batch_size=None`` is
    batch learning (the loss callable sees all its data; the previous loss is reused,
    one forward pass per step); an integer is minibatch learning (the loss must be a
    :class:`~minirso.optim.amc_loss.MinibatchLoss`); ``progressive=True`` starts at
    ``batch_size`` (default 500, or N if smaller) and doubles it when the minibatch error
    (``loss_fn.last_error``) falls below ``progressive_threshold`` (10 %).

    State: ``sigma``, ``mu`` (aligned with ``params``), ``n_cr``, ``loss``
    (U of the current parameters), ``lam`` (signal norm), ``step_count``,
    ``batch`` (current minibatch size), counters ``accepted``, ``rejected``,
    ``nonfinite`` (proposals whose loss was NaN or infinite: always rejected).
    """

    def __init__(
        self,
        params: Array,
        loss_fn: AMCLoss,
        *,
        sigma0: float = 1e-3,
        epsilon: float = 0.0,
        n_s: float = 100,
        signal_norm: bool = False,
        temperature: float = 0.0,
        decay: float = 0.95,
        seed: int = 0,
        batch_size: int | None = None,
        progressive: bool = False,
        progressive_threshold: float = 0.1,
    ) -> None:
        check_params(params, rows=False)
        settings = check_settings(
            sigma0=sigma0,
            epsilon=epsilon,
            n_s=n_s,
            decay=decay,
            temperature=temperature,
            signal_norm=signal_norm,
            batch_size=batch_size,
            progressive=progressive,
            progressive_threshold=progressive_threshold,
        )
        super().__init__(params, loss_fn, (check_seed(seed),), settings)
        s = self.settings  # with the progressive start resolved
        self.hyperparameters = {
            "sigma0": s.sigma0,
            "epsilon": s.epsilon,
            "n_s": s.n_s,
            "signal_norm": s.signal_norm,
            "temperature": s.temperature,
            "decay": s.decay,
            "seed": self.seeds[0],
            "batch_size": s.batch_size,
            "progressive": s.progressive,
            "progressive_threshold": s.progressive_threshold,
        }

    @property
    def minibatch(self) -> bool:
        return self.settings.batch_size is not None

    # the one row's numbers (sec. III A), as plain Python numbers
    @property
    def sigma(self) -> float:
        return float(self.per_row.sigma[0])

    @property
    def n_cr(self) -> int:
        return int(self.per_row.n_cr[0])

    @property
    def loss(self) -> float | None:
        """U of the current parameters (None before the first evaluation)."""
        return None if self.per_row.loss is None else float(self.per_row.loss[0])

    @property
    def accepted(self) -> int:
        return int(self.per_row.accepted[0])

    @property
    def rejected(self) -> int:
        return int(self.per_row.rejected[0])

    @property
    def nonfinite(self) -> int:
        return int(self.per_row.nonfinite[0])

    def step(self) -> dict:
        """One Monte Carlo move; returns ``{"step", "loss", "accepted", "sigma", "batch"}``."""
        n = self.step_count
        accept = bool(self.advance()[0])
        return {"step": n, "loss": self.loss, "accepted": accept, "sigma": self.sigma, "batch": self.batch}

    @property
    def acceptance_rate(self) -> float:
        total = self.accepted + self.rejected
        return self.accepted / total if total else math.nan

    # ---- what the Trainer drives (minirso.optim.base.TrainableOptimizer) ---------------------------
    label, schedule, table = "aMC", "step", "steps"

    def position(self) -> dict:
        return {"step": self.step_count}

    def batch_loss(self) -> float:
        """U of the current parameters per sample (:func:`~minirso.optim.base.per_sample`): a summed loss is
        divided by the rows it was computed on (the minibatch selected for the last step, else all the data)."""
        f = self.loss_fn
        if self.loss is None:
            return math.nan
        return per_sample(
            self.loss,
            getattr(f, "loss_fn", None),  # ModelLoss names its loss function
            lambda: int(f.rows.shape[0]) if f.rows is not None else f.num_samples,
        )

    def report(self) -> dict:
        return {
            "tried": self.step_count,
            "accepted": self.accepted,
            "batch_loss": self.batch_loss(),
            "sigma": self.sigma,
        }

    def history_rows(self, every: int) -> list:
        """A "steps" row every ``every`` steps: ``{"step", "batch_loss", "sigma"}`` (the Trainer adds the rest)."""
        n = self.step_count
        return [{"step": n, "batch_loss": self.batch_loss(), "sigma": self.sigma}] if n % every == 0 else []


class Metropolis(AMC):
    """Zero-temperature (or T > 0) Metropolis Monte Carlo: aMC with epsilon = 0, n_s = infinity, lambda = 1.

    ``Metropolis(params, loss_fn, sigma=1e-3)``: every step proposes
    ``x_i -> x_i + N(0, sigma^2)`` for all i (aMC paper eq. 1) and keeps it if the
    loss does not increase (T = 0) or with probability exp(-dU/T).
    """

    def __init__(
        self,
        params: Array,
        loss_fn: AMCLoss,
        *,
        sigma: float = 1e-3,
        temperature: float = 0.0,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            params,
            loss_fn,
            sigma0=sigma,
            epsilon=0.0,
            n_s=math.inf,
            signal_norm=False,
            temperature=temperature,
            seed=seed,
            batch_size=batch_size,
        )
