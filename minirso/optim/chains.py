"""K independent aMC chains advanced together, with ONE batched loss evaluation per step.

Why: an aMC step moves every parameter and then needs one forward pass.  For a
small net (the aMC paper's Fig. 1 MLP has 13,002 parameters) that pass is a
few thin matrix products that leave a GPU mostly idle, so K chains (other
seeds, other hyperparameters to compare, an ensemble) cost little more than
one when their K forward passes run as one batched pass.

:class:`AMCChains` is the K-row case of the aMC core
(:class:`minirso.optim.amc_core.AMCCore`, whose docstring gives the algorithm: aMC paper
sec. III A, steps 1-4, eqs. 9-10) at zero temperature on the full batch, and :class:`AMC`
is its one-row case: chain k uses ``seeds[k]``, draws the same proposal normals
``normal(seeds[k], STREAM_PROPOSAL, n*P, P)`` as ``AMC(seed=seeds[k])`` at step n and
takes the same decisions given the same losses.  So a chain of ``AMCChains`` follows the
single-chain trajectory (the tests check it), up to floating-point ties between the
batched and the single forward pass.

What it does not offer (use :class:`AMC` for these): signal norm (lambda_i of eq. 18 per
chain), minibatch or progressive batching, temperature > 0.

Two pieces, as for one chain (policy vs. evaluator, docs/design.md):

* :class:`ChainsLoss` evaluates K parameter vectors of one minirso model on
  all its data: ``loss(thetas (K, P)) -> (K,)`` in one batched forward
  (``Dense`` becomes a batched matmul; activations and ``LayerNorm`` act on a
  leading chain axis).  Any callable with that signature works too (e.g. a
  batched Rosenbrock function): the :class:`~minirso.optim.amc_loss.AMCLoss` contract.
* :class:`AMCChains` is the optimizer: ``params`` is a (K, P) array, row k the
  flat parameter buffer of chain k, changed in place.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy

from ..backend import Array, get_array_module
from ..losses import resolve_loss
from ..nn import Dense, Flatten, Identity, LayerNorm, ReLU, Softmax, Tanh
from ..nn import functional as F
from .amc_core import AMCCore, check_params, check_settings
from .base import check_seed, per_sample
from .evaluate import check_class_labels

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from ..nn.sequential import Sequential
    from .amc_loss import AMCLoss

__all__ = ["AMCChains", "ChainsLoss"]

_SUPPORTED = (Dense, Tanh, ReLU, Identity, Softmax, Flatten, LayerNorm)


class ChainsLoss:
    """Losses (K,) of K parameter vectors of ``model`` on all of ``(x, y)``, in one batched forward pass.

    The loss per chain is the same function as :class:`ModelLoss` uses
    (``"mse"``, ``"cross_entropy"``, ...), applied to chain k's outputs.  The
    model's own ``params`` are not touched.  Layers: Dense, Tanh, ReLU,
    Identity, Softmax, Flatten, LayerNorm (MLPs such as the aMC paper's);
    others raise ValueError naming the layer.
    """

    def __init__(
        self, model: Sequential, x: Array, y: Array, loss: str | Callable[[Array, Array], Any] = "mse"
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"ChainsLoss: x has {x.shape[0]} samples but y has {y.shape[0]}")
        for name, layer, _ in model.named_layers():
            if not isinstance(layer, _SUPPORTED):
                raise ValueError(
                    f"ChainsLoss: layer {name!r} ({type(layer).__name__}) has no batched-chains "
                    f"forward; supported: {', '.join(c.__name__ for c in _SUPPORTED)}"
                )
        self.model, self.x, self.y = model, x, y
        self.loss_name, self.loss_fn = resolve_loss(loss)
        check_class_labels(model, x, y, self.loss_name, "ChainsLoss")
        self._groups = {g.name: g for g in model.param_groups}

    @property
    def num_params(self) -> int:
        return int(self.model.params.size)

    def _view(self, thetas, layer, name):
        g = self._groups[f"{layer.name}.{name}"]
        return thetas[:, g.slice].reshape((thetas.shape[0],) + tuple(g.shape))  # (K, *shape)

    def forward(self, thetas: Array) -> Array:
        """Outputs of every chain: thetas (K, P) -> (K, N, ...)."""
        if thetas.ndim != 2 or thetas.shape[1] != self.num_params:
            raise ValueError(f"ChainsLoss: thetas must be (K, {self.num_params}), got {tuple(thetas.shape)}")
        xp = get_array_module(thetas)
        k, n = thetas.shape[0], self.x.shape[0]
        h = None  # (K, N, ...) once the first parameterised layer has run; before that the shared x
        a = self.x  # (N, ...)
        for layer in self.model.layers:
            if isinstance(layer, Dense):
                w = self._view(thetas, layer, "weight")  # (K, O, I)
                o, i = w.shape[1], w.shape[2]
                if h is None:  # the shared input: ONE product with all chains' weights side by side
                    h = (a.reshape(n, i) @ w.reshape(k * o, i).T).reshape(n, k, o).transpose(1, 0, 2)  # (K, N, O)
                else:
                    h = xp.matmul(h, w.transpose(0, 2, 1))  # (K, N, I) @ (K, I, O) -> (K, N, O)
                if layer.bias is not None:
                    h = h + self._view(thetas, layer, "bias")[:, None, :]  # + (K, 1, O)
            elif isinstance(layer, LayerNorm):
                if h is None:
                    h = xp.broadcast_to(a, (k,) + a.shape)  # (K, N, ...)
                gamma = self._view(thetas, layer, "gamma")  # (K, *normalized_shape)
                beta = self._view(thetas, layer, "beta")
                extra = (1,) * (h.ndim - gamma.ndim)  # broadcast over N (and any middle axes)
                gamma = gamma.reshape((k,) + extra + gamma.shape[1:])  # (K, 1, ..., *shape)
                beta = beta.reshape((k,) + extra + beta.shape[1:])
                h = _layer_norm_chains(h, gamma, beta, layer.eps, len(layer.normalized_shape))
            elif isinstance(layer, Flatten) and h is not None:
                h = h.reshape(k, n, -1)  # (K, N, features)
            elif h is None:
                a = layer(a)  # before the first parameters: the shared input, one pass for all chains
            else:  # Tanh, ReLU, Identity, Softmax: elementwise or over the last axis, any leading axes
                h = layer(h)
        if h is None:
            h = xp.broadcast_to(a, (k,) + a.shape)
        return h

    def __call__(self, thetas: Array) -> Array:
        """Losses (K,) as a float64 array of the backend (no host sync here)."""
        out = self.forward(thetas)  # (K, N, ...)
        xp = get_array_module(out)
        return xp.stack([xp.asarray(self.loss_fn(out[c], self.y), dtype=xp.float64) for c in range(out.shape[0])])


def _layer_norm_chains(h, gamma, beta, eps, d):
    """LayerNorm over the trailing ``d`` axes of h (K, N, ..., *shape), with the same xhat as
    :func:`minirso.nn.functional.layer_norm` (row by row); gamma, beta (K, 1, ..., *shape) broadcast over N."""
    y = F.standardize(h, d, eps)  # (K, N, ..., *shape)
    y *= gamma
    y += beta
    return y


class AMCChains(AMCCore):
    """K zero-temperature aMC chains on the full batch, moved together (module docstring).

    ``params``: a (K, P) floating-point array, row k the parameters of chain k
    (changed in place).  ``loss_fn(params) -> (K,)`` losses, e.g. :class:`ChainsLoss`.
    ``seeds``: K distinct seeds (chain k draws what ``AMC(seed=seeds[k])``
    draws), or an int s for seeds s, s+1, ..., s+K-1.  ``sigma0``, ``epsilon``,
    ``n_s``, ``decay``: as :class:`AMC` (the same validation), the same for every chain.

    State per chain: ``sigma`` (K,) float64 on the host, ``mu`` (K, P) on the
    device, ``n_cr`` (K,), ``loss`` (K,), counters ``accepted``, ``rejected``,
    ``nonfinite`` (K,), and the shared ``step_count``.

    One step: K proposals ``eps_k = mu_k + sigma_k z_k`` (eq. 9), the K losses of
    ``x_k + eps_k`` in one call of ``loss_fn``, ONE host read of those K losses
    (the decisions, mu and sigma updates then follow the core's code per chain), and
    the moves applied on the device with ``where``, from decisions the device
    takes itself from the same losses: nothing is copied to the device per step.
    """

    def __init__(
        self,
        params: Array,
        loss_fn: AMCLoss,
        *,
        seeds: int | Sequence[int] = 0,
        sigma0: float = 1e-3,
        epsilon: float = 0.0,
        n_s: float = 100,
        decay: float = 0.95,
    ) -> None:
        k = check_params(params, rows=True).shape[0]
        if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
            seeds = [int(seeds) + c for c in range(k)]
        seeds = [check_seed(s) for s in seeds]
        if len(seeds) != k:
            raise ValueError(f"seeds: {len(seeds)} given for {k} chains")
        if len(set(seeds)) != k:
            raise ValueError("seeds must differ: chains with one seed draw the same proposals")
        settings = check_settings(sigma0=sigma0, epsilon=epsilon, n_s=n_s, decay=decay)
        super().__init__(params, loss_fn, seeds, settings)
        self.hyperparameters = {
            "chains": k,
            "seeds": list(self.seeds),  # a list: a checkpoint's JSON keeps it
            "sigma0": settings.sigma0,
            "epsilon": settings.epsilon,
            "n_s": settings.n_s,
            "decay": settings.decay,
        }

    # the per-chain numbers (K,) on the host
    @property
    def sigma(self):
        return self.per_row.sigma

    @property
    def n_cr(self):
        return self.per_row.n_cr

    @property
    def loss(self):
        """(K,) U of every chain's current parameters (None before the first step)."""
        return self.per_row.loss

    @property
    def accepted(self):
        return self.per_row.accepted

    @property
    def rejected(self):
        return self.per_row.rejected

    @property
    def nonfinite(self):
        return self.per_row.nonfinite

    def step(self) -> dict:
        """One move of every chain; returns ``{"step", "loss" (K,), "accepted" (K,), "sigma" (K,)}``."""
        n = self.step_count
        accept = self.advance()
        return {"step": n, "loss": self.loss.copy(), "accepted": accept, "sigma": self.sigma.copy()}

    # ---- what the Trainer drives (minirso.optim.base.TrainableOptimizer) ---------------------------
    label, schedule, table = "aMC chains", "step", "steps"

    def position(self) -> dict:
        return {"step": self.step_count}

    def best(self) -> int:
        """The chain with the lowest U (0 before the first step; a NaN U never wins)."""
        if self.loss is None:
            return 0
        return int(numpy.argmin(numpy.where(numpy.isnan(self.loss), numpy.inf, self.loss)))

    def model_params(self) -> Array:
        """The best chain's row (P,): what the Trainer's model holds for evaluation and the checkpoint."""
        return self.params[self.best()]

    def batch_loss(self) -> float:
        """The best chain's U per sample (:func:`~minirso.optim.base.per_sample`; ChainsLoss sees all its rows)."""
        f = self.loss_fn
        if self.loss is None:
            return float("nan")
        return per_sample(float(self.loss[self.best()]), getattr(f, "loss_fn", None), lambda: int(f.x.shape[0]))

    def report(self) -> dict:
        """Counts over all chains (``tried``: K per step); ``sigma``: the best chain's."""
        return {
            "tried": self.step_count * self.chains,
            "accepted": int(self.accepted.sum()),
            "batch_loss": self.batch_loss(),
            "sigma": float(self.sigma[self.best()]),
        }

    def history_rows(self, every: int) -> list:
        """A "steps" row every ``every`` steps: the best chain's ``batch_loss`` and ``sigma``, its index ``best``."""
        n = self.step_count
        if n % every:
            return []
        best = self.best()
        return [{"step": n, "best": best, "batch_loss": self.batch_loss(), "sigma": float(self.sigma[best])}]

    # the K rows are not a model's parameters: they are state (a model holds one row, see model_params)
    def _get_state(self):
        return {**super()._get_state(), "params": self.params}

    def _set_state(self, s):
        if numpy.shape(s["params"]) != tuple(self.params.shape):
            raise ValueError(
                f"state_dict params has shape {numpy.shape(s['params'])}, expected {tuple(self.params.shape)}"
            )
        super()._set_state(s)
        self.params[...] = self._device(s["params"], self.params)  # in place: the caller's array is the chains'

    @property
    def acceptance_rate(self):
        """(K,) accepted / proposed per chain (NaN before the first step)."""
        total = self.accepted + self.rejected
        with numpy.errstate(invalid="ignore", divide="ignore"):
            return numpy.where(total > 0, self.accepted / numpy.maximum(total, 1), numpy.nan)
