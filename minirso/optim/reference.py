"""The two papers' algorithms as short plain loops: what the fast optimizer classes must reproduce.

* :func:`rso_reference`: Algorithm 1 of Tripathi & Singh 2020 (RSO, sec. 3, with the annealing of
  sec. 4.1 and the layer-input cache of sec. 4.7);
* :func:`amc_reference`: the adaptive Metropolis algorithm of Whitelam et al. 2022 (aMC, sec. III A,
  steps 1-4, eqs. 9-10; Metropolis is its case ``epsilon = 0, n_s = inf``).

They read top to bottom next to the papers: one weight (or one move) at a time, every loss from a
plain forward pass, nothing carried from one trial to the next, no resumable state, no fast path.
:class:`minirso.optim.RSO` (either evaluator) and :class:`minirso.optim.AMC` / ``Metropolis`` must
take the same decisions and end at the same parameters; ``tests/optim/test_reference.py`` checks it.

For that the loops draw their random numbers exactly as the classes do (docs/design.md,
"counter-based random numbers"): every draw is ``f(seed, stream, counter)`` of :mod:`minirso.random`,
with the streams of :mod:`minirso.optim.rso` and :mod:`minirso.optim.amc`.  They cover RSO at the
weight level (last layer first, contiguous batches, a fresh batch per weight, either recipe) and aMC at
zero or positive temperature, full batch or minibatch, signal norm optional.  RSO's variants (joint
perturbations, parallel search, other orders and samplings) and aMC's progressive batching are not here.
"""

from __future__ import annotations

import math

import numpy

from ..backend import get_array_module
from ..losses import resolve_loss
from ..random import integers, normal, random_bits, uniform
from . import amc, rso

__all__ = ["rso_reference", "amc_reference", "anneal_factor", "pool_order"]


def pool_order(seed: int, key: int, n: int):
    """A shuffle (N,) of the N training rows: ``argsort`` of 64-bit keys from ``random_bits(seed, rso.STREAM_DATA,
    2 N key, 2 N)`` (key i: words 2i and 2i + 1), ``key = c U + u`` for the u-th of U tensors in cycle c."""
    w = random_bits(seed, rso.STREAM_DATA, 2 * n * key, 2 * n, numpy).reshape(n, 2).astype(numpy.uint64)
    return numpy.argsort((w[:, 0] << numpy.uint64(32)) | w[:, 1], kind="stable")  # (N,)


def anneal_factor(recipe: str, anneal: float, cycle: int, cycles: int) -> float:
    """sigma_d^c / sigma_d at cycle c = 0..C-1: linear annealing (sec. 4.1), a = ``anneal``.

    ``"authors"``: a + (1 - a)(C - c)/C (their train.py), last cycle a + (1 - a)/C;
    ``"paper"``: a + (1 - a)(C - 1 - c)/(C - 1), last cycle a ("sigma_d^C = sigma_d^1 / 10"); 1 when C = 1.
    """
    if recipe == "authors":
        return anneal + (1.0 - anneal) * (cycles - cycle) / cycles
    return 1.0 if cycles == 1 else anneal + (1.0 - anneal) * (cycles - 1 - cycle) / (cycles - 1)


def rso_reference(
    model,
    x,
    y,
    cycles: int,
    batch_size: int,
    *,
    seed: int = 0,
    recipe: str = "authors",
    anneal: float = 0.1,
    norm_sigma: float = 0.167,
    weight_decay: float = 1e-4,
    bn_rows: int = 2000,
    loss="cross_entropy",
    chunk_size: int = 2000,
    factors=None,
) -> list:
    """Algorithm 1 of the RSO paper on ``model`` (trained in place); returns the decisions in visiting order.

    Per cycle c of C, per tensor W_d in sweep order (last layer first; after a conv its BatchNorm's beta,
    then gamma: :func:`minirso.optim.rso.sweep_groups`), per weight w_j of W_d in flat order::

        w <- (1 - wd) w                                      in float64 (sec. 4.4: "use weight decay")
        Delta_j ~ N(0, sigma_d^c)                            Algorithm 1, line 12
        F(w), F(w + Delta_j), F(w - Delta_j) on a new mini-batch
        w <- the candidate of least loss; a tie keeps w      sec. 3

    sigma_d: Kaiming ``sqrt(2 / fan_in)`` of the layer, ``norm_sigma`` for BatchNorm / LayerNorm parameters;
    sigma_d^c = sigma_d :func:`anneal_factor` (``factors[c]`` instead, if given: e.g. a run extended to
    more cycles, whose later cycles anneal over the new schedule).  ``loss``: a name of
    :data:`minirso.losses.LOSSES` (default: cross-entropy summed in float64) or a callable.  Where the text is
    silent this follows the authors' code, as :class:`minirso.optim.RSO` does (its module docstring numbers
    the items):

    * the layer-input cache (sec. 4.7): before a tensor is swept, the inputs of its layer for the whole
      pool, with BatchNorm in eval mode on running statistics from the first ``bn_rows`` rows (item 2);
      the trials themselves normalise with each batch's own statistics;
    * data order (items 3, 4): a weight tensor shuffles the pool; the tensors swept after it (its bias,
      its BatchNorm) read that shuffle again from its first batch; the first layer's weight tensor
      starts, from the second cycle on, where the batches of its pool stopped in the cycle before;
    * weight decay multiplies every searched parameter (item 5).

    Random numbers: Delta_j is sigma_d^c times the t-th normal ``normal(seed, rso.STREAM_DELTA, t, 1)``,
    t the run-wide trial number; the u-th tensor of cycle c shuffles by ``pool_order(seed, c U + u, N)``;
    batch b of a shuffle is its rows ``[(b mod m) B, (b mod m) B + B)``, m = N // B.
    Returns ``"keep"`` / ``"plus"`` / ``"minus"`` per trial.
    """
    loss_fn = resolve_loss(loss)[1]
    p, n = model.params, int(x.shape[0])
    xp = get_array_module(p)
    groups = rso.sweep_groups(model, "backward")
    m = n // batch_size  # mini-batches per shuffle
    decisions, t, first_stop = [], 0, 0
    for c in range(cycles):
        factor = anneal_factor(recipe, anneal, c, cycles) if factors is None else factors[c]
        order = None
        for u, g in enumerate(groups):
            sigma = norm_sigma if g.kind.endswith(("_scale", "_shift")) else math.sqrt(2.0 / g.fan_in)
            if g.layer > 0:  # the cache's BatchNorm: running statistics of the first bn_rows rows
                model.reestimate_batchnorm(x[:bn_rows])
                model.eval()
            cache = model.layer_inputs(x, g.layer, chunk_size)  # (N, ...) inputs of the tensor's layer
            model.train()  # the trials: each batch's own statistics
            start = 0
            if g.kind == "weight" or order is None:  # a new shuffle of the pool
                order = xp.asarray(pool_order(seed, c * len(groups) + u, n))  # (N,)
                first_layer = g.layer == 0 and g.kind == "weight"
                if first_layer and c > 0:
                    start = first_stop
            for j in range(g.size):
                i = g.slice.start + j
                w = float(p[i])  # host sync
                w *= 1.0 - weight_decay  # in float64, before w +- Delta is formed
                z = float(normal(seed, rso.STREAM_DELTA, t, 1, numpy, dtype=numpy.float64)[0])
                delta = sigma * factor * z
                b = (start + j) % m
                rows = order[b * batch_size : (b + 1) * batch_size]  # (B,)
                candidates = numpy.array([w, w + delta, w - delta], dtype=p.dtype)
                losses = []
                for v in candidates:
                    p[i] = v
                    out = model.forward(cache[rows], start=g.layer)
                    losses.append(float(loss_fn(out, y[rows])))  # host sync
                scores = [v if math.isfinite(v) else math.inf for v in losses]  # NaN or inf never wins
                best = 0
                for k in (1, 2):  # strict improvement only: a tie keeps w
                    if scores[k] < scores[best]:
                        best = k
                p[i] = candidates[best]
                decisions.append(("keep", "plus", "minus")[best])
                t += 1
            if first_layer:  # where the first layer's shuffle stopped
                first_stop = start + g.size
    return decisions


def amc_reference(
    loss,
    params,
    steps: int,
    *,
    sigma0: float,
    epsilon: float = 0.0,
    n_s=math.inf,
    decay: float = 0.95,
    temperature: float = 0.0,
    seed: int = 0,
    lambdas=None,
    batch_size: int | None = None,
    num_samples: int | None = None,
):
    """aMC (sec. III A) for ``steps`` moves of the flat array ``params`` (moved in place); returns ``(infos, mu)``.

    ``loss(x, rows)``: U(x) on the rows ``rows`` of the data (``None``: all of it, batch learning).
    ``lambdas(x, rows)``: lambda_i of eq. (18) for x on those rows (signal norm on), or None (lambda_i = 1).
    Minibatch learning: ``batch_size`` rows of ``num_samples`` per step.  Each step::

        1. current state: select the data; U(x) (batch learning: known from the last step); lambda_i
        2. propose x'_i = x_i + eps_i, eps_i ~ N(mu_i, (lambda_i sigma)^2)            eq. (9)
           accept if U(x') <= U(x), or at T > 0 with probability exp(-(U(x') - U(x)) / T)   note [60]
        3. accept: x <- x', n_cr <- 0, mu_i <- mu_i + epsilon (eps_i - mu_i)           eq. (10)
        4. reject: keep x, n_cr += 1; if n_cr = n_s: n_cr <- 0, sigma <- decay sigma, mu <- 0

    A NaN or infinite U(x') is rejected; a non-finite U(x) counts as +inf.  Random numbers: the normals of
    step n are ``normal(seed, amc.STREAM_PROPOSAL, n P, P)``, its uniform ``uniform(seed,
    amc.STREAM_ACCEPT, n, 1)``, its rows ``integers(seed, amc.STREAM_DATA, n N, B, N)``.
    ``infos[n]``: ``{"step", "loss" (U of the kept state), "accepted", "sigma"}``.
    """
    xp = get_array_module(params)
    size = params.size
    mu = xp.zeros_like(params)  # (P,) the centres of the proposals, initially 0
    sigma, n_cr, u, infos = sigma0, 0, None, []
    for n in range(steps):
        # 1. current state
        rows = None  # batch learning: all the data
        if batch_size is not None:  # (B,) rows drawn with replacement
            rows = integers(seed, amc.STREAM_DATA, n * num_samples, batch_size, num_samples, xp)
        if rows is not None or u is None:
            u = loss(params, rows)
        lam = None if lambdas is None else lambdas(params, rows)  # (P,)
        # 2. proposed move
        z = normal(seed, amc.STREAM_PROPOSAL, n * size, size, xp, dtype=params.dtype)  # (P,)
        sigma_i = sigma if lam is None else lam * sigma
        eps = mu + sigma_i * z  # (P,) eq. (9)
        saved = params.copy()  # x, recorded
        params += eps
        u_new = loss(params, rows)
        u_old = u if math.isfinite(u) else math.inf
        if not math.isfinite(u_new):
            accept = False
        elif u_new <= u_old:
            accept = True
        elif temperature > 0:
            xi = float(uniform(seed, amc.STREAM_ACCEPT, n, 1, numpy)[0])
            accept = xi < math.exp(-(u_new - u_old) / temperature)
        else:
            accept = False
        if accept:  # 3. accept move
            u, n_cr = u_new, 0
            mu += epsilon * (eps - mu)
        else:  # 4. reject move
            params[...] = saved
            n_cr += 1
            if n_cr == n_s:
                n_cr, sigma = 0, sigma * decay
                mu[...] = 0
        infos.append({"step": n, "loss": u, "accepted": accept, "sigma": sigma})
    return infos, mu
