"""One aMC core over K rows: :class:`AMC` is its K = 1 case, :class:`AMCChains` its K-row case.

aMC (Whitelam et al. 2022, sec. III A, steps 1-4), for every row k of a (K, P) parameter array (one
row: a flat (P,) buffer) with its own seed, sigma_k, n_cr,k and mu_k:

1. current state: select the data and know ``U(x_k)`` (full batch: kept from the previous step;
   minibatch: evaluated afresh on this step's rows) and, with signal norm, ``lambda_i`` from that
   same forward pass (eqs. 17-18);
2. propose ``x'_i = x_i + eps_i``, ``eps_i ~ N(mu_i, (lambda_i sigma)^2)`` (eq. 9) for ALL i at once;
   accept if ``U(x') <= U(x)`` (zero temperature) or, at T > 0, with probability
   ``min(1, exp(-(U(x') - U(x)) / T))`` (note [60]); a NaN or infinite ``U(x')`` is always rejected;
3. accept: ``x <- x'``, ``n_cr <- 0``, ``mu_i <- mu_i + epsilon (eps_i - mu_i)`` (eq. 10);
4. reject: keep x, ``n_cr += 1``; after ``n_s`` consecutive rejections ``sigma <- decay sigma``
   (the paper's 0.95), ``mu <- 0``, ``n_cr <- 0``.

Progressive batching (sec. II F): the minibatch doubles whenever its classification error falls
below a threshold, after which ``sigma <- sigma0`` and ``mu <- 0``.  Temperature, minibatches,
signal norm and progressive batching are offered for one row (:class:`AMC`); K rows run the
full-batch, zero-temperature algorithm (:class:`AMCChains`).

Where the code differs with K, it is where the numbers live, not what is computed: the state of
each row (:class:`RowState`: sigma, n_cr, U, counters) is kept on the host, the decisions are taken
there, and the device arrays (x, mu) follow them.  One row's decision is one host branch (one
launch: eq. 10 or the restore; a reset of mu adds one); K rows' decisions are taken again on the
device from the same float64 losses (``where`` over rows).  Either way a step reads U once and
copies nothing to the device.  What the core needs of a loss is :mod:`minirso.optim.amc_loss`
(the policy asks, the loss evaluates: docs/design.md, "Policy versus evaluator").

Random numbers (:mod:`minirso.random`): the proposal of step n in row k is
``normal(seeds[k], STREAM_PROPOSAL, n*P, P)``, its Metropolis uniform ``uniform(seeds[k],
STREAM_ACCEPT, n, 1)``, the minibatch rows ``floor(N * uniform(seed, STREAM_DATA, n*N, B))`` (with
replacement).  So the state is a few numbers plus mu (and lambda), and a resumed chain is exact.

GPU twins (Chainer style): on CuPy, while :func:`minirso.kernels.enabled` says so, the proposal (eq. 9), one
row's move and one row's eq. (10) each run as ONE elementwise kernel, written right below the plain lines it
equals (``*_OPERATION``, ``*_gpu``) and built by :func:`minirso.kernels.elementwise` (memoised, its own failure
flag).  A kernel that is unavailable returns None (eq. 10: False) and the plain lines run; both round alike
(no fused multiply-add), so they are equal bit for bit given the same normals (``tests/kernels``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace

import numpy

from .. import kernels
from ..backend import get_array_module, to_numpy
from ..random import integers, normal, uniform
from .amc_loss import MinibatchLoss, RecordingLoss, require
from .base import Optimizer, check_int, check_positive

__all__ = ["AMCCore", "Settings", "RowState", "check_settings", "STREAM_PROPOSAL", "STREAM_ACCEPT", "STREAM_DATA"]

STREAM_PROPOSAL = 0x414D4301  # "AMC" 1: the proposal normals
STREAM_ACCEPT = 0x414D4302  # the Metropolis uniforms at T > 0
STREAM_DATA = 0x414D4303  # minibatch rows


@dataclass(frozen=True)
class Settings:
    """aMC's hyperparameters (sec. III A, II E, II F), checked by :func:`check_settings`."""

    sigma0: float  # initial move scale
    epsilon: float  # mu adaptation rate, eq. (10)
    n_s: float  # consecutive rejections before sigma *= decay (an int, or math.inf: never)
    decay: float  # the paper's 0.95
    temperature: float = 0.0  # 0: zero-temperature Metropolis
    signal_norm: bool = False  # lambda_i of eq. (18)
    batch_size: int | None = None  # None: batch learning
    progressive: bool = False  # sec. II F
    progressive_threshold: float = 0.1


def check_settings(
    *,
    sigma0,
    epsilon,
    n_s,
    decay,
    temperature=0.0,
    signal_norm=False,
    batch_size=None,
    progressive=False,
    progressive_threshold=0.1,
) -> Settings:
    """The one validation of aMC's hyperparameters: :class:`Settings`, or ValueError naming the bad one.

    Python and NumPy numbers are accepted alike (``numpy.float32(0.01)`` is an epsilon).
    """
    sigma0 = check_positive("sigma0", sigma0)
    if not (isinstance(epsilon, numbers.Real) and not isinstance(epsilon, bool) and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a finite number, got {epsilon!r}")
    n_s = math.inf if n_s is None or n_s == math.inf else check_int("n_s", n_s, 1)
    decay = check_positive("decay", decay)
    if decay >= 1:
        raise ValueError(f"decay must be in (0, 1), got {decay!r}")
    return Settings(
        sigma0=sigma0,
        epsilon=float(epsilon),
        n_s=n_s,
        decay=decay,
        temperature=check_positive("temperature", temperature, allow_zero=True),
        signal_norm=bool(signal_norm),
        batch_size=None if batch_size is None else check_int("batch_size", batch_size, 1),
        progressive=bool(progressive),
        progressive_threshold=check_positive("progressive_threshold", progressive_threshold),
    )


@dataclass
class RowState:
    """The numbers each row keeps, host arrays (K,): what changes as the chains run besides mu and lambda."""

    sigma: numpy.ndarray  # (K,) float64 move scale
    n_cr: numpy.ndarray  # (K,) int64 consecutive rejections
    loss: numpy.ndarray | None  # (K,) float64 U of the current parameters; None before the first evaluation
    accepted: numpy.ndarray  # (K,) int64 counters
    rejected: numpy.ndarray
    nonfinite: numpy.ndarray  # proposals whose U was NaN or infinite (always rejected)

    @classmethod
    def start(cls, k: int, sigma0: float) -> RowState:
        return cls(
            numpy.full(k, sigma0), numpy.zeros(k, numpy.int64), None, *(numpy.zeros(k, numpy.int64) for _ in range(3))
        )


def after_decisions(xp, accept, n_cr, sigma, settings: Settings):
    """Steps 3-4's counters for K rows: ``(n_cr, sigma, reset)``; the same code on the host and on the device."""
    n_cr = xp.where(accept, 0, n_cr + 1)
    reset = n_cr >= settings.n_s  # n_s rejections in a row: sigma *= decay, mu = 0, n_cr = 0
    return xp.where(reset, 0, n_cr), xp.where(reset, sigma * settings.decay, sigma), reset


def check_params(params, rows: bool):
    """``params`` as one flat floating-point buffer (P,) or, with ``rows``, a (K, P) array; else ValueError."""
    if getattr(params, "ndim", None) != (2 if rows else 1) or params.dtype.kind != "f":
        kind = (
            "a (K, P) floating-point array (one row per chain)"
            if rows
            else "a 1-D floating-point array (the flat buffer)"
        )
        raise ValueError(
            f"params must be {kind}, got {getattr(params, 'shape', type(params))} {getattr(params, 'dtype', '')}"
        )
    return params


def scaled_kernels(name: str, out_params: str, operation: str) -> tuple:
    """The two kernels of an eq. (9) GPU twin, ``(name, name_scalar)``: the first takes an array scale (lambda
    sigma (P,), or sigma per row (K, 1)), the second a Python float.  A type placeholder is bound only by ARRAY
    arguments in CuPy, so a float sigma needs a concrete float64 scale; ``(T)scale`` then rounds it to float32
    exactly as NumPy 2 rounds a Python float multiplying a float32 array."""
    args = "uint64 seed, uint64 stream, uint64 offset, int64 row_len"
    return tuple(
        kernels.elementwise(f"{name}{tail}", f"T mu, {s} scale, {args}", out_params, operation, kernels.PHILOX_SOURCE)
        for tail, s in (("", "S"), ("_scalar", "float64"))
    )


def launch_scaled(pair: tuple, mu, scale, seed, stream: int, offset: int, *outs):
    """``(ok, result)`` of the kernel of ``pair`` (:func:`scaled_kernels`) that takes ``scale``."""
    if isinstance(scale, (int, float, numpy.integer, numpy.floating)):
        kernel, scale = pair[1], float(scale)
    else:
        kernel = pair[0]
    stream, offset, row_len = numpy.uint64(stream), numpy.uint64(offset), numpy.int64(mu.shape[-1])
    return kernel.launch(get_array_module(mu), mu, scale, seed, stream, offset, row_len, *outs)


class AMCCore(Optimizer):
    """aMC over the rows of ``params`` (moved in place): see the module docstring; subclasses give it a face.

    ``params``: (P,) for one row or (K, P) for K rows; ``loss_fn``: an :class:`~minirso.optim.amc_loss.AMCLoss`
    (a float for (P,), (K,) losses for (K, P)); ``seeds``: one per row; ``settings``: :func:`check_settings`.
    Arrays shaped like ``params``: ``mu``, ``lam`` (signal norm, else None).  Per row: :attr:`per_row`.
    """

    def __init__(self, params, loss_fn, seeds, settings: Settings):
        if not callable(loss_fn):
            raise ValueError("loss_fn must be callable: loss_fn(params) -> U (a float; (K,) losses for (K, P) params)")
        k = 1 if params.ndim == 1 else params.shape[0]
        s = settings
        if k > 1 and (s.temperature or s.signal_norm or s.batch_size is not None or s.progressive):
            raise ValueError("temperature, signal_norm, batch_size and progressive are for one row (AMC)")
        if s.progressive and s.batch_size is None:  # sec. II F starts at 500 (or all the data, if fewer)
            s = replace(s, batch_size=min(500, loss_fn.num_samples) if isinstance(loss_fn, MinibatchLoss) else 500)
        if s.batch_size is not None:
            require(loss_fn, MinibatchLoss, "batch_size (minibatch mode)")
            if s.batch_size > loss_fn.num_samples:
                raise ValueError(f"batch_size {s.batch_size} is larger than the data ({loss_fn.num_samples} samples)")
        if s.signal_norm or s.progressive:
            require(loss_fn, RecordingLoss, "signal_norm=True" if s.signal_norm else "progressive=True")
            # the loss records eq. (17) statistics / its classification error in every forward pass
            loss_fn.configure(signal_stats=s.signal_norm, track_error=s.progressive)
        self.params, self.loss_fn, self.seeds, self.settings = params, loss_fn, tuple(seeds), s
        xp = get_array_module(params)
        self.mu = xp.zeros_like(params)  # like params: centre of each parameter's proposal (eq. 9)
        self.lam = None  # like params: lambda_i of the current parameters (signal norm), else None
        self._saved = xp.empty_like(params)  # the current x while a proposal is tested
        self.per_row = RowState.start(k, s.sigma0)
        self.step_count = 0
        self.batch = s.batch_size  # the current minibatch size (progressive batching changes it)
        self._dev = None  # K rows on a GPU: device copies of the per-row numbers (see _device_rows)

    @property
    def chains(self) -> int:
        """K, the number of rows."""
        return len(self.seeds)

    # ---- the algorithm -------------------------------------------------------------------------
    def rows(self, step: int, batch: int):
        """The minibatch of step ``step``: ``batch`` row indices drawn uniformly with replacement."""
        n = self.loss_fn.num_samples
        return integers(self.seeds[0], STREAM_DATA, step * n, batch, n, get_array_module(self.params))

    def proposal(self, step: int):
        """eps of step ``step``, shaped like params: row k is ``mu_k + lambda_k sigma_k z_k`` (eq. 9)."""
        p = self.params
        xp, size = get_array_module(p), p.shape[-1]
        scale = self._scale()
        if kernels.enabled(xp):  # GPU: normals, scale and mu of every row in ONE kernel instead of ~100
            seed = self.seeds[0] if self.chains == 1 else self._device_rows(xp)["seeds"]
            eps = self.proposal_gpu(self.mu, scale, seed, STREAM_PROPOSAL, step * size)
            if eps is not None:
                return eps
        z = [normal(s, STREAM_PROPOSAL, step * size, size, xp, dtype=p.dtype) for s in self.seeds]
        z = z[0].reshape(p.shape) if len(z) == 1 else xp.stack(z)  # like params
        return self.mu + scale * z  # one elementwise expression over all rows

    # ---- GPU twin of the lines above: eq. (9) per element, z drawn in the kernel (philox.cuh) -------------------
    # CuPy's syntax: i is the flat index (n and i are reserved, so the row length is row_len); row k of a
    # (K, row_len) mu uses seed[k]: K chains in one launch, one chain is K = 1
    PROPOSAL_OPERATION = (
        "eps = mu + (T)scale * (T)minirso_normal(seed, stream, offset + (unsigned long long)(i % row_len));"
    )
    PROPOSAL_KERNELS = scaled_kernels("proposal", "T eps", PROPOSAL_OPERATION)

    @classmethod
    def proposal_gpu(cls, mu, scale, seed, stream: int, offset: int):
        """``mu + scale * z`` in one launch, bit for bit the lines above given the same normals; None if the
        kernel is unavailable.  mu (P,) with an int ``seed``, or (K, P) with ``seed`` a (K, 1) device array."""
        seed = numpy.uint64(seed) if isinstance(seed, (int, numpy.integer)) else seed.astype(numpy.uint64, copy=False)
        ok, eps = launch_scaled(cls.PROPOSAL_KERNELS, mu, scale, seed, stream, offset)
        return eps if ok else None

    def _scale(self):
        """lambda sigma, the std of the proposal (eq. 9): one row's sigma is a Python float (rounded to the
        params' dtype as it multiplies z), K rows' a (K, 1) column (on a GPU: its device copy)."""
        p = self.params
        if self.chains == 1:
            sigma = float(self.per_row.sigma[0])
            return sigma if self.lam is None else self.lam * p.dtype.type(sigma)
        xp = get_array_module(p)
        sigma = self.per_row.sigma if xp is numpy else self._device_rows(xp)["sigma"]
        scale = sigma.astype(p.dtype)[:, None]  # (K, 1)
        return scale if self.lam is None else self.lam * scale

    def _move(self, step: int):
        """``x <- x + eps`` in every row, keeping x in ``_saved`` (an exact restore on rejection); returns eps."""
        p = self.params
        if self.chains == 1 and kernels.enabled(get_array_module(p)):  # GPU: draw, copy and add in ONE pass
            eps = self.move_gpu(
                p, self._saved, self.mu, self._scale(), self.seeds[0], STREAM_PROPOSAL, step * p.shape[-1]
            )
            if eps is not None:
                return eps
        eps = self.proposal(step)
        self._saved[...] = p
        p += eps
        return eps

    # ---- GPU twin of the three passes above (one row): the proposal, the copy and the add in ONE pass ----------
    MOVE_OPERATION = PROPOSAL_OPERATION + " saved = x; x = x + eps;"
    MOVE_KERNELS = scaled_kernels("move", "T x, T saved, T eps", MOVE_OPERATION)

    @classmethod
    def move_gpu(cls, x, saved, mu, scale, seed: int, stream: int, offset: int):
        """``saved[:] = x``, ``eps = mu + scale z``, ``x += eps`` in one launch, bit for bit the passes above;
        returns eps, or None if the kernel is unavailable (x and saved are then untouched)."""
        eps = get_array_module(x).empty_like(mu)
        ok, _ = launch_scaled(cls.MOVE_KERNELS, mu, scale, numpy.uint64(seed), stream, offset, x, saved, eps)
        # CuPy returns (x, saved, eps) for three outputs (_kernel.pyx: ``ret = tuple(out_args)``); eps is filled
        return eps if ok else None

    def _evaluate(self):
        """``(U (K,) float64 on the host, U on the device or None, lambda or None, error or None)``: one
        (batched) forward pass of the current ``params`` on the selected data."""
        u = self.loss_fn(self.params)
        if isinstance(u, numbers.Real) or getattr(u, "ndim", None) == 0:  # one number
            u_dev, u_host = None, numpy.array([float(u)])  # host sync: the decision is taken on the host
        else:  # (K,) losses, on the device for a device loss: kept there for the device's own decisions
            xp = get_array_module(self.params)
            u_dev = xp.asarray(u, dtype=xp.float64).reshape(-1)
            u_host = to_numpy(u_dev)  # host sync: the one read per step
        if u_host.shape != (self.chains,):
            raise ValueError(f"loss_fn returned {u_host.shape[0]} losses for {self.chains} chains")
        s = self.settings
        lam = self.loss_fn.lambdas().reshape(self.params.shape) if s.signal_norm else None
        return u_host, u_dev, lam, self.loss_fn.last_error if s.progressive else None

    def _decide(self, step: int, u0, u1):
        """Step 2's test per row: ``(accept, finite)`` (K,) bool; at T > 0 an uphill move is kept when
        ``uniform(seeds[k], STREAM_ACCEPT, step, 1) < exp(-(U(x') - U(x)) / T)`` (note [60])."""
        finite = numpy.isfinite(u1)
        accept = finite & (u1 <= u0)
        t = self.settings.temperature
        if t > 0:
            for k in numpy.flatnonzero(finite & ~accept):
                xi = float(uniform(self.seeds[k], STREAM_ACCEPT, step, 1, numpy)[0])  # uniform on (0, 1)
                accept[k] = xi < math.exp(-(float(u1[k]) - float(u0[k])) / t)
        return accept, finite

    def advance(self):
        """One move of every row (steps 1-4); returns the decisions, (K,) bool on the host."""
        s, n, rows = self.settings, self.step_count, self.per_row
        err = None
        # 1. the current state: this step's data, U(x), lambda
        if self.batch is not None:
            self.loss_fn.select(self.rows(n, self.batch))
        if self.batch is not None or rows.loss is None:
            rows.loss, _, self.lam, err = self._evaluate()
            self._dev = None  # the device copies follow the new U at their next use
        u0 = numpy.where(numpy.isfinite(rows.loss), rows.loss, numpy.inf)  # (K,) any finite U beats a NaN one
        # 2. the proposal x' = x + eps (x kept for an exact restore), its U, the decisions
        eps = self._move(n)  # like params
        u1, u1_dev, lam1, err1 = self._evaluate()  # U(x') (K,), lambda, error
        accept, finite = self._decide(n, u0, u1)  # (K,) bool
        # 3.-4. the numbers on the host ...
        rows.loss = numpy.where(accept, u1, rows.loss)
        rows.nonfinite += ~finite
        rows.accepted += accept
        rows.rejected += ~accept
        rows.n_cr, rows.sigma, reset = after_decisions(numpy, accept, rows.n_cr, rows.sigma, s)
        # ... and the arrays on the device
        self._apply(accept, reset, eps, u1_dev)
        if self.chains == 1 and accept[0]:
            self.lam, err = lam1, err1
        if (
            s.progressive
            and err is not None
            and err < s.progressive_threshold
            and self.batch < self.loss_fn.num_samples
        ):
            self.batch = min(2 * self.batch, self.loss_fn.num_samples)  # sec. II F: double, then reset
            rows.sigma[:], rows.n_cr[:] = s.sigma0, 0
            self.mu[...] = 0
        self.step_count += 1
        return accept

    def _apply(self, accept, reset, eps, u1_dev):
        """Steps 3-4 on the device arrays: x restored where rejected, mu by eq. (10) where accepted, 0 where reset."""
        p, epsilon = self.params, self.settings.epsilon
        xp = get_array_module(p)
        if self.chains == 1:  # one decision, on the host: one launch, nothing copied to the device
            if accept[0]:
                if not (kernels.enabled(xp) and self.mu_update_gpu(self.mu, eps, epsilon)):
                    self.mu += epsilon * (eps - self.mu)  # eq. (10) (on a GPU: the same in one kernel)
            else:
                p[...] = self._saved
                if reset[0]:
                    self.mu[...] = 0
            return
        a, d = accept, reset  # K decisions: on a GPU taken again there, from the same float64 losses
        if xp is not numpy:
            dev = self._device_rows(xp)
            a = xp.isfinite(u1_dev) & (u1_dev <= dev["u0"])  # (K,) zero temperature (K rows have no T)
            dev["u0"] = xp.where(a, u1_dev, dev["u0"])
            dev["n_cr"], dev["sigma"], d = after_decisions(xp, a, dev["n_cr"], dev["sigma"], self.settings)
        p[...] = xp.where(a[:, None], p, self._saved)
        self.mu = xp.where(a[:, None], self.mu + epsilon * (eps - self.mu), self.mu)  # eq. (10) where accepted
        self.mu = xp.where(d[:, None], 0, self.mu).astype(p.dtype, copy=False)

    # ---- GPU twin of one row's eq. (10) above: rounded as the array code (float32, no FMA) -------------------
    MU_OPERATION = "mu = mu + (T)epsilon * (eps - mu);"
    MU_KERNEL = kernels.elementwise("mu_update", "T eps, float64 epsilon", "T mu", MU_OPERATION)

    @classmethod
    def mu_update_gpu(cls, mu, eps, epsilon: float) -> bool:
        """Eq. (10) in place, ``mu += epsilon (eps - mu)``, in one launch, bit for bit the line above; False if
        the kernel is unavailable."""
        return cls.MU_KERNEL.launch(get_array_module(mu), eps, float(epsilon), mu)[0]

    def _device_rows(self, xp):
        """K rows on a GPU: the per-row numbers the device needs (seeds (K, 1), sigma, n_cr, U with inf for a
        non-finite U), copied from the host ONCE (first use, or after a new U or a restore) and from then on
        updated on the device by the same arithmetic as the host's (:func:`after_decisions`), so a step copies
        nothing to the device.  The host copy stays the state; both take the same decisions from the same U."""
        if self._dev is None:
            rows = self.per_row
            u0 = (
                numpy.full(self.chains, numpy.inf)
                if rows.loss is None
                else numpy.where(numpy.isfinite(rows.loss), rows.loss, numpy.inf)
            )
            self._dev = {
                "seeds": xp.asarray(numpy.array(self.seeds, dtype=numpy.uint64)[:, None]),
                "sigma": xp.asarray(rows.sigma),
                "n_cr": xp.asarray(rows.n_cr),
                "u0": xp.asarray(u0),
            }
        return self._dev

    def run(self, steps: int, callback=None) -> dict:
        """``steps`` moves; ``callback(info)`` after each.  Returns the last step's info."""
        info = None
        for _ in range(check_int("steps", steps, 0)):
            info = self.step()
            if callback is not None:
                callback(info)
        return info

    def step(self) -> dict:
        raise NotImplementedError  # AMC / AMCChains: advance() and the info of their face

    # ---- state: one flat row saves scalars (AMC's layout), K rows (K,) arrays (AMCChains') --------
    def _get_state(self):
        r, k = self.per_row, self.chains
        loss = numpy.full(k, numpy.nan) if r.loss is None else r.loss
        if self.params.ndim == 2:
            return {
                "sigma": r.sigma,
                "mu": self.mu,
                "n_cr": r.n_cr,
                "loss": loss,
                "has_loss": r.loss is not None,
                "step_count": self.step_count,
                "accepted": r.accepted,
                "rejected": r.rejected,
                "nonfinite": r.nonfinite,
            }
        return {
            "sigma": float(r.sigma[0]),
            "mu": self.mu,
            "n_cr": int(r.n_cr[0]),
            "loss": float(loss[0]),
            "has_loss": r.loss is not None,
            "lam": self.lam if self.lam is not None else numpy.zeros(0, numpy.float32),
            "has_lam": self.lam is not None,
            "step_count": self.step_count,
            "batch": 0 if self.batch is None else self.batch,
            "accepted": int(r.accepted[0]),
            "rejected": int(r.rejected[0]),
            "nonfinite": int(r.nonfinite[0]),
        }

    def _set_state(self, s):
        if numpy.shape(s["mu"]) != tuple(self.params.shape):
            raise ValueError(f"state_dict mu has shape {numpy.shape(s['mu'])}, params {tuple(self.params.shape)}")
        k = self.chains
        shape = (k,) if self.params.ndim == 2 else ()
        for name in ("sigma", "n_cr", "loss", "accepted", "rejected", "nonfinite"):
            if numpy.shape(s[name]) != shape:
                raise ValueError(f"state_dict {name} has shape {numpy.shape(s[name])}, expected {shape}")

        def rows(name, dtype):
            return numpy.array(s[name], dtype=dtype).reshape(k)

        self.per_row = RowState(
            rows("sigma", numpy.float64),
            rows("n_cr", numpy.int64),
            rows("loss", numpy.float64) if bool(s["has_loss"]) else None,
            *(rows(n, numpy.int64) for n in ("accepted", "rejected", "nonfinite")),
        )
        xp, dtype = get_array_module(self.params), self.params.dtype
        self.mu = xp.asarray(numpy.asarray(s["mu"]), dtype=dtype)  # host -> device: once, on a restore
        self.step_count = int(s["step_count"])
        if self.params.ndim == 1:
            self.lam = xp.asarray(numpy.asarray(s["lam"]), dtype=dtype) if s["has_lam"] else None
            self.batch = int(s["batch"]) or None
        self._dev = None  # the device copies follow the restored state at the next step
