"""aMC: time per step of minirso's ``AMC.step()`` next to the authors'-style PyTorch optimizer.

Nets (full batch, one forward pass per step: the previous loss is kept):

* the aMC paper's Fig. 1 MLP, ``mlp([784, 16, 16, 10], output="softmax")``, 13,002 parameters,
  MSE against one-hot targets;
* the authors' LayerNorm example, ``mlp([784, 64, 64, 64, 64, 10], layer_norm=True)``, 63,882
  parameters, mean cross-entropy;

each without signal norm (as the authors' optimizer) and with it (the paper's eq. 17-18, lambdas from
the same forward pass).  Data: synthetic float32 images of MNIST shape with random labels (the speed
does not depend on the pixel values; full MNIST is not on this machine).

K chains: :class:`minirso.optim.AMCChains` with :class:`minirso.optim.ChainsLoss` advances K
independent aMC chains of the Fig. 1 MLP (no signal norm), their parameters a (K, P) stack, all K
losses from ONE batched forward (the first layer is one product of the shared images with the K
chains' stacked weights), one host read of the K losses per step.  Its time for K = 32 is compared
with ONE chain of minirso's ``AMC.step()`` (the goal: at most 4x).
"""

from __future__ import annotations

import numpy
import roofline
from common import median, row, timed
from torch_ref import TorchAMC, TorchMLP

from minirso import models, to_numpy
from minirso.losses import one_hot
from minirso.nn import Dense
from minirso.optim import AMC, AMCChains, ChainsLoss, ModelLoss

NETS = {
    "fig1": (
        lambda: models.mlp([784, 16, 16, 10], output="softmax", init=("gaussian", 1e-2)),
        "mse",
        "Fig. 1 MLP 784-16-16-10 tanh",
    ),
    "ln64": (
        lambda: models.mlp([784, 64, 64, 64, 64, 10], layer_norm=True),
        "cross_entropy_mean",
        "784-64x4-10 LayerNorm MLP",
    ),
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
    target = (
        torch.as_tensor(to_numpy(one_hot(y_h, 10)), device=ctx.tdev)
        if loss == "mse"
        else torch.as_tensor(y_h, device=ctx.tdev)
    )
    u_m, u_t = ml(net.params), tm.loss(tx, target)[0].item()
    numpy.testing.assert_allclose(u_t, u_m, rtol=1e-4, err_msg=f"torch {key} loss != minirso loss")
    opt = AMC(net.params, ml, signal_norm=signal_norm, seed=0, **HYPER)
    topt = TorchAMC(tm.params, lambda stats: tm.loss(tx, target, stats), signal_norm=signal_norm, seed=0, **HYPER)
    tm_s, tt_s = [], []
    for _ in range(2):  # alternate the two libraries in halves: a load change hits both alike
        tm_s += _time_steps(ctx, opt.step, warmup, repeats // 2)
        tt_s += _time_steps(ctx, topt.step, warmup, repeats // 2)
    return {
        "net": key,
        "label": label,
        "signal_norm": signal_norm,
        "minirso_step_s": median(tm_s),
        "torch_step_s": median(tt_s),
        "minirso_acceptance": opt.acceptance_rate,
        "torch_acceptance": topt.accepted / max(1, topt.steps),
        "params": net.num_params,
        "initial_loss_minirso": u_m,
        "initial_loss_torch": u_t,
        "samples": {"minirso": tm_s, "torch": tt_s},
    }


def _slice(net, name):
    return next(g.slice for g in net.param_groups if g.name == name)


def chains(ctx, x_h, y_h, k: int, t_single: float, warmup: int, repeats: int) -> dict:
    """Time one step of AMCChains with 1 and with K chains; check its loss against minirso's ModelLoss."""
    build, loss, _ = NETS["fig1"]
    net = build()
    x, y = ctx.xp.asarray(x_h), ctx.xp.asarray(y_h)
    out = {}
    for kk in (1, k):
        thetas = ctx.xp.tile(net.params[None, :], (kk, 1))  # (K, P): every chain starts at the net's init
        bc = AMCChains(thetas, ChainsLoss(net, x, y, loss), seeds=0, **HYPER)
        if kk == 1:
            numpy.testing.assert_allclose(
                float(to_numpy(bc.loss_fn(thetas))[0]),
                ModelLoss(net, x, y, loss)(net.params),
                rtol=1e-4,
                err_msg="AMCChains loss != minirso ModelLoss",
            )
        out[kk] = median(_time_steps(ctx, bc.step, warmup, repeats))
    fwd = roofline.forward_work(net, (x_h.shape[0], 784))
    x_read = roofline.F32 * x_h.size
    work_k = fwd * k + roofline.Work(0.0, -(k - 1) * x_read)  # the images are read once for all chains
    return {
        "k": k,
        "chains_k1_step_s": out[1],
        "chains_k_step_s": out[k],
        "minirso_one_chain_step_s": t_single,
        "ratio_k_vs_one_chain": out[k] / t_single,
        "work_k": work_k,
    }


def run(ctx, peaks: dict, n: int | None = None, k: int = 32) -> dict:
    n = n or (60000 if ctx.gpu else ctx.pick(10000, 60000, 60000))
    warmup, repeats = ctx.pick(2, 10, 20), ctx.pick(6, 100, 400)
    ctx.note(
        f"aMC: full batch of {n} synthetic MNIST-shaped images"
        + (" (CPU --quick: 10,000)" if n == 10000 else "")
        + f"; sigma0={HYPER['sigma0']}, epsilon={HYPER['epsilon']}, n_s={HYPER['n_s']}; median of {repeats} steps"
    )
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
                f" (anchor {anchor} on H100)" if not sn else ""
            )
            rows.append(
                row(
                    f"aMC step, {r['label']}{' + signal norm' if sn else ''}",
                    "s/step",
                    plain=r["minirso_step_s"],
                    torch=r["torch_step_s"],
                    goal=goal.strip(),
                    work=w,
                    check=(">=", 5) if key == "fig1" and not sn else None,
                    frac_minirso=fr(w, r["minirso_step_s"]),
                    frac_torch=fr(w, r["torch_step_s"]),
                )
            )
            print(
                f"  amc {key} signal_norm={sn}: minirso {1e3 * r['minirso_step_s']:.3f} ms, "
                f"torch {1e3 * r['torch_step_s']:.3f} ms",
                flush=True,
            )
    t_single = results[0]["minirso_step_s"]
    c = chains(ctx, x_h, y_h, k, t_single, 1 if ctx.quick else warmup, max(3, repeats // 4))  # up to K single steps
    rows.append(
        row(
            f"aMC K={k} chains, one batched forward",
            "s/step",
            plain=k * t_single,
            fast=c["chains_k_step_s"],
            ratio=c["ratio_k_vs_one_chain"],
            ratio_text=f"{c['ratio_k_vs_one_chain']:.2f}x one chain",
            goal=f"ratio = K={k} time / 1 minirso chain, <= 4x",
            work=c["work_k"],
            check=("<=", 4),
            cpu_check=False,
            frac_minirso=fr(c["work_k"], c["chains_k_step_s"]),
            detail=f"plain column: {k} x one minirso chain; fast: minirso.optim.AMCChains",
        )
    )
    print(
        f"  amc K={k} AMCChains: {1e3 * c['chains_k_step_s']:.3f} ms/step (K=1: {1e3 * c['chains_k1_step_s']:.3f} ms)",
        flush=True,
    )
    c["work_k"] = {"flops": c["work_k"].flops, "bytes": c["work_k"].bytes}
    return {
        "rows": rows,
        "single_chain": results,
        "chains": c,
        "config": {"n": n, "warmup": warmup, "repeats": repeats, "hyper": HYPER, "data": "synthetic"},
    }
