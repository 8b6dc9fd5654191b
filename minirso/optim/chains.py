"""K independent aMC chains advanced together, with ONE batched loss evaluation per step.

Why: an aMC step moves every parameter and then needs one forward pass.  For a
small net (the aMC paper's Fig. 1 MLP has 13,002 parameters) that pass is a
few thin matrix products that leave a GPU mostly idle, so K chains (other
seeds, other hyperparameters to compare, an ensemble) cost little more than
one when their K forward passes run as one batched pass.

Exactly K copies of :class:`minirso.optim.AMC` at zero temperature on the
full batch (aMC paper sec. III A, steps 1-4, eqs. 9-10): chain k uses
``seeds[k]`` and draws the same proposal normals ``normal(seeds[k],
STREAM_PROPOSAL, n*P, P)`` as ``AMC(seed=seeds[k])`` at step n, and takes the
same decisions given the same losses.  So a chain of ``AMCChains`` follows the
single-chain trajectory (the tests check it), up to floating-point ties
between the batched and the single forward pass.

What it does not do (use :class:`AMC` for these): signal norm (lambda_i of
eq. 18 per chain), minibatch or progressive batching, temperature > 0.

Two pieces, as for one chain (policy vs. evaluator, DESIGN.md):

* :class:`ChainsLoss` evaluates K parameter vectors of one minirso model on
  all its data: ``loss(thetas (K, P)) -> (K,)`` in one batched forward
  (``Dense`` becomes a batched matmul; activations and ``LayerNorm`` act on a
  leading chain axis).  Any callable with that signature works too (e.g. a
  batched Rosenbrock function).
* :class:`AMCChains` is the optimizer: ``params`` is a (K, P) array, row k the
  flat parameter buffer of chain k, changed in place.
"""

from __future__ import annotations

import math

import numpy

from .. import kernels
from ..backend import get_array_module, to_numpy
from ..nn import Dense, Flatten, Identity, LayerNorm, ReLU, Softmax, Tanh
from ..nn import functional as F
from ..random import normal
from .amc import AMC, STREAM_PROPOSAL
from .base import Optimizer, check_int, check_positive, check_seed
from ..losses import resolve_loss
from .evaluate import check_class_labels

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

    def __init__(self, model, x, y, loss="mse"):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"ChainsLoss: x has {x.shape[0]} samples but y has {y.shape[0]}")
        for name, layer, _ in model.named_layers():
            if not isinstance(layer, _SUPPORTED):
                raise ValueError(f"ChainsLoss: layer {name!r} ({type(layer).__name__}) has no batched-chains "
                                 f"forward; supported: {', '.join(c.__name__ for c in _SUPPORTED)}")
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

    def forward(self, thetas):
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

    def __call__(self, thetas):
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


class AMCChains(Optimizer):
    """K zero-temperature aMC chains on the full batch, moved together (module docstring).

    ``params``: a (K, P) floating-point array, row k the parameters of chain k
    (changed in place).  ``loss_fn(params) -> (K,)`` losses, e.g. :class:`ChainsLoss`.
    ``seeds``: K distinct seeds (chain k draws what ``AMC(seed=seeds[k])``
    draws), or an int s for seeds s, s+1, ..., s+K-1.  ``sigma0``, ``epsilon``,
    ``n_s``, ``decay``: as :class:`AMC`, the same for every chain.

    State per chain: ``sigma`` (K,) float64 on the host, ``mu`` (K, P) on the
    device, ``n_cr`` (K,), ``loss`` (K,), counters ``accepted``, ``rejected``,
    ``nonfinite`` (K,), and the shared ``step_count``.

    One step: K proposals ``eps_k = mu_k + sigma_k z_k`` (eq. 9), the K losses of
    ``x_k + eps_k`` in one call of ``loss_fn``, ONE host read of those K losses
    (the decisions, mu and sigma updates then follow AMC's code per chain), and
    the moves applied on the device with ``where``, from decisions the device
    takes itself from the same losses: nothing is copied to the device per step.
    """

    def __init__(self, params, loss_fn, *, seeds=0, sigma0: float = 1e-3, epsilon: float = 0.0, n_s=100,
                 decay: float = 0.95):
        if getattr(params, "ndim", None) != 2 or params.dtype.kind != "f":
            raise ValueError(f"params must be a (K, P) floating-point array (one row per chain), got "
                             f"{getattr(params, 'shape', type(params))} {getattr(params, 'dtype', '')}")
        if not callable(loss_fn):
            raise ValueError("loss_fn must be callable: loss_fn(params (K, P)) -> losses (K,)")
        k = params.shape[0]
        if isinstance(seeds, (int, numpy.integer)) and not isinstance(seeds, bool):
            seeds = [int(seeds) + c for c in range(k)]
        seeds = [check_seed(s) for s in seeds]
        if len(seeds) != k:
            raise ValueError(f"seeds: {len(seeds)} given for {k} chains")
        if len(set(seeds)) != k:
            raise ValueError("seeds must differ: chains with one seed draw the same proposals")
        sigma0 = check_positive("sigma0", sigma0)
        if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a finite number, got {epsilon!r}")
        n_s = math.inf if n_s is None or n_s == math.inf else check_int("n_s", n_s, 1)
        decay = check_positive("decay", decay)
        if decay >= 1:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.params, self.loss_fn = params, loss_fn
        self.hyperparameters = {"chains": k, "seeds": tuple(seeds), "sigma0": sigma0, "epsilon": float(epsilon),
                                "n_s": n_s, "decay": decay}
        xp = get_array_module(params)
        self.mu = xp.zeros_like(params)  # (K, P) centre of each proposal (eq. 10)
        self.sigma = numpy.full(k, sigma0)  # (K,) float64, host: as AMC's Python float
        self.n_cr = numpy.zeros(k, numpy.int64)
        self.loss = None  # (K,) float64 host array once known
        self.step_count = 0
        self.accepted, self.rejected, self.nonfinite = (numpy.zeros(k, numpy.int64) for _ in range(3))
        self._dev = None  # device copies of seeds, sigma, n_cr and U (see _mirror), made on the first step

    @property
    def chains(self) -> int:
        return self.hyperparameters["chains"]

    def proposal(self, step: int):
        """eps (K, P) of step ``step``: row k is ``mu_k + sigma_k z_k`` with chain k's normals (eq. 9)."""
        p = self.params
        xp, (k, n) = get_array_module(p), p.shape
        dev = self._mirror()
        scale = dev["sigma"].astype(p.dtype)[:, None]  # (K, 1): sigma rounded as AMC's sigma * z
        if kernels.enabled(xp):  # GPU: all K chains' normals and moves in ONE kernel (minirso.kernels)
            eps = kernels.amc_proposal(self.mu, scale, dev["seeds"], STREAM_PROPOSAL, step * n)
            if eps is not None:
                return eps
        z = xp.stack([normal(s, STREAM_PROPOSAL, step * n, n, xp, dtype=p.dtype)
                      for s in self.hyperparameters["seeds"]])  # (K, P)
        return self.mu + scale * z

    def _mirror(self):
        """The per-chain numbers the device needs (seeds, sigma, n_cr, U with inf for a non-finite U),
        copied from the host state ONCE (first step, or after a restore) and from then on updated on the
        device by the same arithmetic as the host copy, so a step copies nothing to the device.  The host
        copy stays the state (checkpoints, ``info``); both take the same decisions from the same losses."""
        if self._dev is None:
            xp = get_array_module(self.params)
            u0 = numpy.full(self.chains, numpy.inf) if self.loss is None else \
                numpy.where(numpy.isfinite(self.loss), self.loss, numpy.inf)
            self._dev = {"seeds": xp.asarray(numpy.array(self.hyperparameters["seeds"], dtype=numpy.uint64)[:, None]),
                         "sigma": xp.asarray(self.sigma), "n_cr": xp.asarray(self.n_cr), "u0": xp.asarray(u0)}
        return self._dev

    def _losses(self, params):
        """``(losses (K,) float64 on the device, the same on the host)``: the one host read of a step."""
        u = self.loss_fn(params)
        xp = get_array_module(self.params)
        u_dev = xp.asarray(u, dtype=xp.float64).reshape(-1)  # (K,) no copy when the loss is on the device
        u_host = to_numpy(u_dev)  # host sync: the one read per step
        if u_host.shape != (self.chains,):
            raise ValueError(f"loss_fn returned {u_host.shape[0]} losses for {self.chains} chains")
        return u_dev, u_host

    def step(self) -> dict:
        """One move of every chain; returns ``{"step", "loss" (K,), "accepted" (K,), "sigma" (K,)}``."""
        hp, n = self.hyperparameters, self.step_count
        xp = get_array_module(self.params)
        if self.loss is None:
            _, self.loss = self._losses(self.params)
            self._dev = None
        dev = self._mirror()
        u0 = numpy.where(numpy.isfinite(self.loss), self.loss, numpy.inf)
        eps = self.proposal(n)  # (K, P)
        new = self.params + eps  # (K, P) x' = x + eps
        u1_dev, u1 = self._losses(new)
        # the host's bookkeeping (the state) ...
        finite = numpy.isfinite(u1)
        accept = finite & (u1 <= u0)  # zero temperature: keep x' when U does not increase
        self.loss = numpy.where(accept, u1, self.loss)
        self.nonfinite += ~finite
        self.accepted += accept
        self.rejected += ~accept
        self.n_cr = numpy.where(accept, 0, self.n_cr + 1)
        decay = self.n_cr >= hp["n_s"]  # after n_s rejections in a row: sigma *= decay, mu = 0
        self.sigma = numpy.where(decay, self.sigma * hp["decay"], self.sigma)
        self.n_cr = numpy.where(decay, 0, self.n_cr)
        # ... and the same decisions on the device, from the same float64 losses (no copy to the device)
        a = xp.isfinite(u1_dev) & (u1_dev <= dev["u0"])  # (K,)
        self.params[...] = xp.where(a[:, None], new, self.params)
        self.mu = xp.where(a[:, None], self.mu + hp["epsilon"] * (eps - self.mu), self.mu)  # eq. (10) where accepted
        dev["u0"] = xp.where(a, u1_dev, dev["u0"])
        n_cr = xp.where(a, 0, dev["n_cr"] + 1)
        d = n_cr >= hp["n_s"]  # (K,)
        dev["sigma"] = xp.where(d, dev["sigma"] * hp["decay"], dev["sigma"])
        self.mu = xp.where(d[:, None], 0, self.mu).astype(self.params.dtype, copy=False)
        dev["n_cr"] = xp.where(d, 0, n_cr)
        self.step_count += 1
        return {"step": n, "loss": self.loss.copy(), "accepted": accept, "sigma": self.sigma.copy()}

    run = AMC.run  # ``steps`` moves, ``callback(info)`` after each: AMC's loop, which only calls step()

    @property
    def acceptance_rate(self):
        """(K,) accepted / proposed per chain (NaN before the first step)."""
        total = self.accepted + self.rejected
        with numpy.errstate(invalid="ignore", divide="ignore"):
            return numpy.where(total > 0, self.accepted / numpy.maximum(total, 1), numpy.nan)

    # ---- state ---------------------------------------------------------------------------------
    def _get_state(self):
        k = self.chains
        return {"sigma": self.sigma, "mu": self.mu, "n_cr": self.n_cr,
                "loss": numpy.full(k, numpy.nan) if self.loss is None else self.loss,
                "has_loss": self.loss is not None, "step_count": self.step_count,
                "accepted": self.accepted, "rejected": self.rejected, "nonfinite": self.nonfinite}

    def _set_state(self, s):
        if numpy.shape(s["mu"]) != tuple(self.params.shape):
            raise ValueError(f"state_dict mu has shape {numpy.shape(s['mu'])}, params {tuple(self.params.shape)}")
        k = self.chains
        for name in ("sigma", "n_cr", "loss", "accepted", "rejected", "nonfinite"):
            if numpy.shape(s[name]) != (k,):
                raise ValueError(f"state_dict {name} has shape {numpy.shape(s[name])}, expected ({k},)")
        self.sigma = numpy.array(s["sigma"], dtype=numpy.float64)
        self.mu = self._device(s["mu"], self.params)
        self.n_cr = numpy.array(s["n_cr"], dtype=numpy.int64)
        self.loss = numpy.array(s["loss"], dtype=numpy.float64) if bool(s["has_loss"]) else None
        self.step_count = int(s["step_count"])
        self.accepted, self.rejected, self.nonfinite = (numpy.array(s[n], dtype=numpy.int64)
                                                        for n in ("accepted", "rejected", "nonfinite"))
        self._dev = None  # the device copies follow the restored state at the next step
