"""aMC: time per step of minirso's ``AMC.step()`` next to the authors'-style PyTorch optimizer.

Nets (full batch, one forward pass per step: the previous loss is kept):

* the aMC paper's Fig. 1 MLP, ``mlp([784, 16, 16, 10], output="softmax")``, 13,002 parameters,
  MSE against one-hot targets;
* the authors' LayerNorm example, ``mlp([784, 64, 64, 64, 64, 10], layer_norm=True)``, 63,882
  parameters, mean cross-entropy;

each without signal norm (as the authors' optimizer) and with it (the paper's eq. 17-18, lambdas from
the same forward pass).  Data: synthetic float32 images of MNIST shape with random labels (the speed
does not depend on the pixel values; full MNIST is not on this machine).

K chains: minirso has no batched-chains API yet.  :class:`BatchedChains` is a PROTOTYPE written here
with the backend's matmul: K independent aMC chains of the Fig. 1 MLP (no signal norm), their
parameters a (K, P) stack, all K losses from ONE batched forward (the first layer is one product of
the shared images with the K chains' stacked weights), accept/reject per chain on the device.  Its
time for K = 32 is compared with ONE chain of minirso's ``AMC.step()`` (the goal: at most 4x).
"""

from __future__ import annotations

import numpy

from minirso import models, to_numpy
from minirso.backend import get_array_module
from minirso.losses import one_hot
from minirso.nn import Dense, Softmax, Tanh
from minirso.optim import AMC, ModelLoss
from minirso.random import normal

import roofline
from common import median, row, timed
from torch_ref import TorchAMC, TorchMLP

NETS = {
    "fig1": (lambda: models.mlp([784, 16, 16, 10], output="softmax", init=("gaussian", 1e-2)), "mse",
             "Fig. 1 MLP 784-16-16-10 tanh"),
    "ln64": (lambda: models.mlp([784, 64, 64, 64, 64, 10], layer_norm=True), "cross_entropy_mean",
             "784-64x4-10 LayerNorm MLP"),
}
HYPER = {"sigma0": 1e-3, "epsilon": 1e-2, "n_s": 20}


def data(n: int, seed: int = 0):
    """Synthetic MNIST-shaped data: (n, 784) float32 in [0, 1) and integer labels 0..9."""
    rng = numpy.random.default_rng(seed)
    return rng.random((n, 784), dtype=numpy.float32), rng.integers(0, 10, n).astype(numpy.int64)


def step_work(net, n: int, signal_norm: bool) -> roofline.Work:
    """One full-batch step: one forward + loss, the proposal over P parameters (about 12 float32
    reads/writes each: draw, mu + lambda sigma z, save, add, mu update) and, with signal norm, one
    more read of every dense layer's input (its sum of squares)."""
    w = roofline.forward_work(net, (n, 784)) + roofline.Work(6.0 * net.num_params, 12 * roofline.F32 * net.num_params)
    if signal_norm:
        for layer in net.layers:
            if isinstance(layer, Dense):
                w = w + roofline.Work(2.0 * n * layer.in_features, roofline.F32 * n * layer.in_features)
    return w


def _time_steps(ctx, step, warmup, repeats):
    for _ in range(warmup):
        step()
    return [timed(ctx, step)[0] for _ in range(repeats)]


def single_chain(ctx, key: str, signal_norm: bool, x_h, y_h, warmup: int, repeats: int) -> dict:
    """minirso ``AMC.step()`` and :class:`torch_ref.TorchAMC` on the same net, data and start point."""
    build, loss, label = NETS[key]
    torch = ctx.torch
    net = build()
    tm = TorchMLP(net, ctx.tdev, loss="mse" if loss == "mse" else "ce")
    x, y = ctx.xp.asarray(x_h), ctx.xp.asarray(y_h)
    ml = ModelLoss(net, x, y, loss)
    tx = torch.as_tensor(x_h, device=ctx.tdev)
    target = torch.as_tensor(to_numpy(one_hot(y_h, 10)), device=ctx.tdev) if loss == "mse" else \
        torch.as_tensor(y_h, device=ctx.tdev)
    u_m, u_t = ml(net.params), tm.loss(tx, target)[0].item()
    numpy.testing.assert_allclose(u_t, u_m, rtol=1e-4, err_msg=f"torch {key} loss != minirso loss")
    opt = AMC(net.params, ml, signal_norm=signal_norm, seed=0, **HYPER)
    topt = TorchAMC(tm.params, lambda stats: tm.loss(tx, target, stats), signal_norm=signal_norm, seed=0, **HYPER)
    tm_s, tt_s = [], []
    for _ in range(2):  # alternate the two libraries in halves: a load change hits both alike
        tm_s += _time_steps(ctx, opt.step, warmup, repeats // 2)
        tt_s += _time_steps(ctx, topt.step, warmup, repeats // 2)
    return {"net": key, "label": label, "signal_norm": signal_norm, "minirso_step_s": median(tm_s),
            "torch_step_s": median(tt_s), "minirso_acceptance": opt.acceptance_rate,
            "torch_acceptance": topt.accepted / max(1, topt.steps),
            "params": net.num_params, "initial_loss_minirso": u_m, "initial_loss_torch": u_t,
            "samples": {"minirso": tm_s, "torch": tt_s}}


class BatchedChains:
    """PROTOTYPE: K independent aMC chains (no signal norm) of a minirso Dense/tanh/softmax MLP with MSE.

    State per chain k: parameters ``theta[k]`` (K, P), ``mu[k]``, ``sigma[k]``, ``n_cr[k]``, loss ``u[k]``.
    A step draws z (K, P), proposes ``theta + mu + sigma z``, evaluates all K losses in one batched
    forward, and accepts / adapts per chain with ``where`` on the device (one host read of the losses
    per step, as minirso reads its one loss).
    """

    STREAM = 0x4B434831

    def __init__(self, net, x, y, k: int, sigma0=1e-3, epsilon=1e-2, n_s=20, seed=0):
        xp = get_array_module(net.params)
        self.xp, self.x, self.k, self.seed = xp, x, k, seed
        self.target = one_hot(y, 10)  # (N, 10)
        self.dense = [(l.weight.shape, _slice(net, l.name + ".weight"), _slice(net, l.name + ".bias"))
                      for l in net.layers if isinstance(l, Dense)]
        if not all(isinstance(l, (Dense, Tanh, Softmax)) for l in net.layers):
            raise NotImplementedError("the prototype knows Dense, Tanh and Softmax layers")
        p = net.params.size
        self.theta = xp.tile(net.params[None, :], (k, 1))  # (K, P)
        self.mu = xp.zeros_like(self.theta)
        self.sigma = xp.full((k,), sigma0, dtype=xp.float32)
        self.n_cr = xp.zeros((k,), dtype=xp.int32)
        self.epsilon, self.n_s, self.p, self.t = epsilon, n_s, p, 0
        self.u = self.losses(self.theta)

    def losses(self, theta):
        """MSE of every chain's net on all data: theta (K, P) -> (K,)."""
        xp, k, n = self.xp, self.k, self.x.shape[0]
        h = None
        for i, ((o, inp), ws, bs) in enumerate(self.dense):
            w = theta[:, ws].reshape(k, o, inp)  # (K, O, I)
            b = theta[:, bs][:, None, :]  # (K, 1, O)
            if h is None:  # the shared input: ONE product with all chains' weights side by side
                h = (self.x @ w.reshape(k * o, inp).T).reshape(n, k, o).transpose(1, 0, 2) + b  # (K, N, O)
            else:
                h = xp.matmul(h, w.transpose(0, 2, 1)) + b  # (K, N, O)
            if i < len(self.dense) - 1:
                h = xp.tanh(h)
        e = xp.exp(h - h.max(axis=2, keepdims=True))
        d = e / e.sum(axis=2, keepdims=True) - self.target[None]
        return (d * d).mean(axis=(1, 2))  # (K,)

    def step(self):
        xp = self.xp
        z = normal(self.seed, self.STREAM, self.t * self.k * self.p, self.k * self.p, xp).reshape(self.k, self.p)
        eps = self.mu + self.sigma[:, None] * z
        new = self.theta + eps
        u1 = self.losses(new)
        acc = u1 <= self.u  # (K,)
        self.theta = xp.where(acc[:, None], new, self.theta)
        self.mu = xp.where(acc[:, None], self.mu + self.epsilon * (eps - self.mu), self.mu)
        self.u = xp.where(acc, u1, self.u)
        self.n_cr = xp.where(acc, 0, self.n_cr + 1)
        decay = self.n_cr >= self.n_s
        self.sigma = xp.where(decay, self.sigma * 0.95, self.sigma).astype(xp.float32)
        self.mu = xp.where(decay[:, None], 0, self.mu)
        self.n_cr = xp.where(decay, 0, self.n_cr)
        self.t += 1
        return to_numpy(u1)  # host sync: one read per step


def _slice(net, name):
    return next(g.slice for g in net.param_groups if g.name == name)


def chains(ctx, x_h, y_h, k: int, t_single: float, warmup: int, repeats: int) -> dict:
    """Time one step of the prototype with 1 and with K chains; check its loss against minirso's."""
    build, loss, _ = NETS["fig1"]
    net = build()
    x, y = ctx.xp.asarray(x_h), ctx.xp.asarray(y_h)
    out = {}
    for kk in (1, k):
        bc = BatchedChains(net, x, y, kk, **HYPER)
        if kk == 1:
            numpy.testing.assert_allclose(float(bc.u[0]), ModelLoss(net, x, y, loss)(net.params), rtol=1e-4,
                                          err_msg="batched prototype loss != minirso loss")
        out[kk] = median(_time_steps(ctx, bc.step, warmup, repeats))
    fwd = roofline.forward_work(net, (x_h.shape[0], 784))
    x_read = roofline.F32 * x_h.size
    work_k = fwd * k + roofline.Work(0.0, -(k - 1) * x_read)  # the images are read once for all chains
    return {"k": k, "proto_k1_step_s": out[1], "proto_k_step_s": out[k], "minirso_one_chain_step_s": t_single,
            "ratio_k_vs_one_chain": out[k] / t_single, "work_k": work_k}


def run(ctx, peaks: dict, n: int | None = None, k: int = 32) -> dict:
    n = n or (60000 if ctx.gpu else ctx.pick(10000, 60000, 60000))
    warmup, repeats = ctx.pick(2, 10, 20), ctx.pick(6, 100, 400)
    ctx.note(f"aMC: full batch of {n} synthetic MNIST-shaped images" + (" (CPU --quick: 10,000)" if n == 10000 else "")
             + f"; sigma0={HYPER['sigma0']}, epsilon={HYPER['epsilon']}, n_s={HYPER['n_s']}; median of {repeats} steps")
    x_h, y_h = data(n)
    pk = peaks["used"]
    fr = lambda w, s: roofline.fraction(w, s, pk)
    results, rows = [], []
    for key in ("fig1", "ln64"):
        for sn in (False, True):
            r = single_chain(ctx, key, sn, x_h, y_h, warmup, repeats)
            w = step_work(NETS[key][0](), n, sn)
            r.update(flops=w.flops, bytes=w.bytes)
            results.append(r)
            anchor = {"fig1": "0.6 ms", "ln64": "1.4 ms"}[key]
            goal = (">= 5x vs PyTorch" if key == "fig1" and not sn else "") + (
                f" (anchor {anchor} on H100)" if not sn else "")
            rows.append(row(f"aMC step, {r['label']}{' + signal norm' if sn else ''}", "s/step",
                            plain=r["minirso_step_s"], torch=r["torch_step_s"], goal=goal.strip(), work=w,
                            check=(">=", 5) if key == "fig1" and not sn else None,
                            frac_minirso=fr(w, r["minirso_step_s"]), frac_torch=fr(w, r["torch_step_s"])))
            print(f"  amc {key} signal_norm={sn}: minirso {1e3 * r['minirso_step_s']:.3f} ms, "
                  f"torch {1e3 * r['torch_step_s']:.3f} ms", flush=True)
    t_single = results[0]["minirso_step_s"]
    c = chains(ctx, x_h, y_h, k, t_single, 1 if ctx.quick else warmup, max(3, repeats // 4))  # up to K single steps
    rows.append(row(f"aMC K={k} chains, one batched forward (PROTOTYPE)", "s/step", plain=k * t_single,
                    fast=c["proto_k_step_s"], ratio=c["ratio_k_vs_one_chain"],
                    ratio_text=f"{c['ratio_k_vs_one_chain']:.2f}x one chain",
                    goal=f"ratio = K={k} time / 1 minirso chain, <= 4x", work=c["work_k"],
                    check=("<=", 4), cpu_check=False,
                    frac_minirso=fr(c["work_k"], c["proto_k_step_s"]),
                    detail=f"plain column: {k} x one minirso chain; fast: the prototype in benchmarks/amc_bench.py"))
    print(f"  amc K={k} prototype: {1e3 * c['proto_k_step_s']:.3f} ms/step (K=1: {1e3 * c['proto_k1_step_s']:.3f} ms)",
          flush=True)
    c["work_k"] = {"flops": c["work_k"].flops, "bytes": c["work_k"].bytes}
    return {"rows": rows, "single_chain": results, "chains": c,
            "config": {"n": n, "warmup": warmup, "repeats": repeats, "hyper": HYPER, "data": "synthetic"}}
