"""RSO on the paper's MNIST network: time per full cycle, minirso next to the authors' method in PyTorch.

A cycle is one trial for every weight and BatchNorm parameter (12,016 trials) plus, before each
tensor, caching its layer's input over the whole pool.  A full cycle is far too long to run on a
CPU, so every implementation is measured on a SAMPLE of trials in EACH tensor and extrapolated::

    cycle = sum over tensors u of  [ first_u + (trials_u - 1) * median trial time_u ]

where ``first_u`` is the timed first step of the tensor (it builds the cache, then makes one trial).
The implementations, all on the same pool, batch size and initial weights:

* minirso plain: ``RSO(evaluator="plain")`` (``CachedEvaluator``: three ``forward(start=L)`` per trial);
* minirso fast: ``RSO(evaluator="incremental")`` with ``trials_per_batch=1``, the exact Algorithm 1
  (a fresh batch per weight), and with ``trials_per_batch=16`` (16 consecutive weights share a batch,
  so 15 of 16 trials reuse the kept candidate's activations).  For 16 the sample is the reused trials;
  the cycle counts one full trial (the ``trials_per_batch=1`` median) per 16;
* PyTorch cached (:class:`torch_ref.TorchRSO`): the authors' method, the anchor of issue 5;
* PyTorch uncached: every forward from the images; the trial cost does not depend on the tensor, so
  it is sampled on one tensor and multiplied by the 12,016 trials.

minirso is driven through its real optimizer (``RSO.step``, bookkeeping included): the benchmark jumps to
a tensor with ``state_dict`` / ``load_state_dict`` and times ``step()`` calls.
"""

from __future__ import annotations

import math

import numpy
import roofline
from common import median, row, timed
from torch_ref import TorchRSO, TorchSequential

from minirso import models, to_numpy
from minirso.data import bundled_mnist_split
from minirso.optim import RSO


def pool(ctx, n_pool: int):
    """``(x, y, note)``: n_pool real digits (the bundled 8,000 MNIST images, tiled when more are asked)."""
    x, y, _, _ = bundled_mnist_split()
    note = f"pool: {n_pool} rows of the bundled 8,000 real MNIST digits"
    if n_pool > len(x):
        reps = -(-n_pool // len(x))
        x, y = numpy.tile(x, (reps, 1, 1, 1))[:n_pool], numpy.tile(y, reps)[:n_pool]
        note += (
            f" (tiled {n_pool / 8000:.1f}x: full MNIST is not bundled; 60,000 rows give the authors' "
            "12 batches per shuffle)"
        )
    return x[:n_pool].copy(), y[:n_pool].copy(), note


def _jump(opt, unit: int):
    """Make ``opt`` continue at the first trial of tensor ``unit`` (public state_dict API only)."""
    sd = opt.state_dict()
    sd["state"].update(unit=unit, pos=0, trial=sum(u.trials for u in opt.units[:unit]))
    opt.load_state_dict(sd)


def _minirso_unit(ctx, opt, unit: int, n: int):
    """``(first, [trial times])``: the tensor's first step (cache + one trial), then ``n`` more steps."""
    _jump(opt, unit)
    first, _ = timed(ctx, opt.step)
    n = min(n, opt.units[unit].trials - 1)
    return first, [timed(ctx, opt.step)[0] for _ in range(n)]


def _torch_unit(ctx, trs, u, layer, n, batch, rng):
    """``(cache seconds, [trial times])`` for tensor ``u`` in torch: cache, one warm-up trial, n timed.

    The warm-up matters on a GPU (cuDNN picks its algorithms for each new start layer); a CPU --quick run skips it.
    """
    torch = ctx.torch
    cache_s, _ = timed(ctx, trs.prepare, layer)
    n_pool = trs.x.shape[0]
    perm = torch.as_tensor(rng.permutation(n_pool), device=ctx.tdev)  # the pool shuffled once per tensor
    m = n_pool // batch
    times = []
    warm = 0 if (ctx.quick and not ctx.gpu) else 1
    for b in range(1 - warm, n + 1):
        rows = perm[(b % m) * batch : (b % m) * batch + batch]
        delta = float(u.sigma * rng.standard_normal())
        t, _ = timed(ctx, trs.trial, u.name, int(u.order[b % u.trials]), delta, rows)
        if b:  # the first trial is a warm-up (cuDNN picks its algorithms for this start layer)
            times.append(t)
    return cache_s, times


def check_same_network(ctx, model, tnet, x):
    """Assert that the torch twin computes minirso's logits (BatchNorm on batch statistics, float32)."""
    torch = ctx.torch
    xb = x[:64]
    want = to_numpy(model.forward(ctx.xp.asarray(xb)))
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # compare in true float32
    try:
        with torch.inference_mode():
            got = tnet.forward(torch.as_tensor(xb, device=ctx.tdev)).cpu().numpy()
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    numpy.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg="torch RSO net != minirso net")
    return float(numpy.abs(got - want).max())


def _work(model, x_shape, layer, batch, n_pool):
    """(trial work, cache work) of Algorithm 1 for a tensor of ``layer``: 3 forwards from the layer on the
    batch (plus gathering the batch) and one forward of the pool up to the layer (plus writing the cache)."""
    in_shape = roofline.shapes(model, x_shape)[layer]
    in_elems = float(numpy.prod(in_shape[1:]))
    gather = roofline.Work(0.0, 2 * roofline.F32 * batch * in_elems)
    trial = 3 * roofline.forward_work(model, (batch,) + in_shape[1:], start=layer) + gather
    cache = roofline.Work() if layer == 0 else roofline.forward_work(model, (n_pool,) + tuple(x_shape[1:]), 0, layer)
    return trial, cache


def run(ctx, peaks: dict, batch: int | None = None, n_pool: int | None = None) -> dict:
    """Measure every implementation on every tensor; returns ``{"rows", "tensors", "config"}``."""
    torch = ctx.torch
    batch = batch or (5000 if ctx.gpu else 256)
    n_pool = n_pool or (60000 if ctx.gpu else ctx.pick(1024, 8000, 8000))
    n = ctx.pick(3, 10, 30)  # timed trials per tensor (after the first step)
    n16 = min(15, n)
    x_h, y_h, pool_note = pool(ctx, n_pool)
    ctx.note(
        f"RSO: batch {batch}"
        + ("" if ctx.gpu or batch != 256 else " (CPU preset: at 5,000 a trial takes seconds, a cycle hours)")
        + f"; {pool_note}; timed trials per tensor: {n}, extrapolated to the cycle"
    )
    x, y = ctx.xp.asarray(x_h), ctx.xp.asarray(y_h)

    def fresh():
        return models.rso_mnist(seed=420)

    ref = fresh()
    tnet = TorchSequential(ref, ctx.tdev)
    max_err = check_same_network(ctx, ref, tnet, x_h)
    layer_of = {g.name: g.layer for g in ref.param_groups}
    tx, ty = torch.as_tensor(x_h, device=ctx.tdev), torch.as_tensor(y_h, device=ctx.tdev)
    t_cached = TorchRSO(tnet, tx, ty, layer_of, cached=True)
    t_uncached = TorchRSO(TorchSequential(ref, ctx.tdev), tx, ty, layer_of, cached=False)

    opts = {
        "plain": RSO(fresh(), x, y, cycles=1, batch_size=batch, seed=72, evaluator="plain"),
        "fast": RSO(fresh(), x, y, cycles=1, batch_size=batch, seed=72, evaluator="incremental"),
        "fast16": RSO(fresh(), x, y, cycles=1, batch_size=batch, seed=72, evaluator="incremental", trials_per_batch=16),
    }
    units = opts["plain"].units
    rng = numpy.random.default_rng(72)
    tensors = []
    for k, u in enumerate(units):  # implementations interleaved per tensor: a load change hits all alike
        first_p, tp = _minirso_unit(ctx, opts["plain"], k, n)
        first_f, tf = _minirso_unit(ctx, opts["fast"], k, n)
        _, t16 = _minirso_unit(ctx, opts["fast16"], k, n16)
        cache_t, tt = _torch_unit(ctx, t_cached, u, u.layer, n, batch, rng)
        trial_w, cache_w = _work(ref, x.shape, u.layer, batch, n_pool)
        if k and units[k - 1].layer == u.layer:  # BatchNorm gamma after beta: the layer's cache is already there
            cache_w = roofline.Work()
        tensors.append(
            {
                "name": u.name,
                "layer": u.layer,
                "trials": u.trials,
                "plain_first_s": first_p,
                "plain_trial_s": median(tp),
                "fast_first_s": first_f,
                "fast_trial_s": median(tf),
                "fast16_reused_trial_s": median(t16),
                "torch_cache_s": cache_t,
                "torch_trial_s": median(tt),
                "trial_flops": trial_w.flops,
                "trial_bytes": trial_w.bytes,
                "cache_flops": cache_w.flops,
                "cache_bytes": cache_w.bytes,
                "samples": {"plain": tp, "fast": tf, "fast16": t16, "torch": tt},
            }
        )
        print(
            f"  rso {u.name:13s} trial ms: plain {1e3 * median(tp):8.2f}  fast {1e3 * median(tf):8.2f}  "
            f"fast16 {1e3 * median(t16):8.2f}  torch {1e3 * median(tt):8.2f}",
            flush=True,
        )

    # uncached PyTorch: 3 forwards from the images per trial, whatever the tensor: sampled on the last one
    u = units[-1]
    _, tu = _torch_unit(ctx, t_uncached, u, 0, n, batch, rng)
    t_unc_trial = median(tu)

    def cycle(first_key, trial_key):
        return sum(t[first_key] + (t["trials"] - 1) * t[trial_key] for t in tensors)

    cyc = {
        "plain": cycle("plain_first_s", "plain_trial_s"),
        "fast": cycle("fast_first_s", "fast_trial_s"),
        "fast16": sum(
            t["fast_first_s"]
            - t["fast_trial_s"]  # the cache, then one full trial per 16
            + math.ceil(t["trials"] / 16) * t["fast_trial_s"]
            + (t["trials"] - math.ceil(t["trials"] / 16)) * t["fast16_reused_trial_s"]
            for t in tensors
        ),
        "torch": sum(t["torch_cache_s"] + t["trials"] * t["torch_trial_s"] for t in tensors),
        "torch_uncached": sum(t["trials"] for t in tensors) * t_unc_trial,
    }
    total_trials = sum(t["trials"] for t in tensors)
    cycle_work = sum(
        (
            roofline.Work(t["trial_flops"], t["trial_bytes"]) * t["trials"]
            + roofline.Work(t["cache_flops"], t["cache_bytes"])
            for t in tensors
        ),
        roofline.Work(),
    )
    unc_trial_w = _work(ref, x.shape, 0, batch, n_pool)[0]
    unc_work = unc_trial_w * total_trials
    pk = peaks["used"]
    fr = lambda w, s: roofline.fraction(w, s, pk)
    stats = {k: dict(o.evaluator.stats) for k, o in opts.items() if hasattr(o.evaluator, "stats")}
    if stats["fast"]["reused"] or stats["fast"]["plain"]:
        ctx.note(f"WARNING: the trials_per_batch=1 fast path was not pure Alg. 1 incremental trials: {stats['fast']}")
    rows = [
        row(
            "RSO cycle, Alg. 1 (fresh batch per weight)",
            "s/cycle",
            plain=cyc["plain"],
            fast=cyc["fast"],
            torch=cyc["torch"],
            goal=">= 20x vs PyTorch cached",
            check=(">=", 20),
            work=cycle_work,
            frac_minirso=fr(cycle_work, cyc["fast"]),
            frac_torch=fr(cycle_work, cyc["torch"]),
            equivalent=True,
            detail="PyTorch = authors' method with cached layer inputs; fast = IncrementalEvaluator",
        ),
        row(
            "RSO cycle, trials_per_batch=16",
            "s/cycle",
            fast=cyc["fast16"],
            torch=cyc["torch"],
            goal="(cheaper schedule)",
            work=cycle_work,
            frac_minirso=fr(cycle_work, cyc["fast16"]),
            frac_torch=fr(cycle_work, cyc["torch"]),
            equivalent=True,
            detail="16 consecutive weights share a batch; PyTorch column: Alg. 1 cached, as above",
        ),
        row(
            "RSO cycle vs PyTorch uncached",
            "s/cycle",
            fast=cyc["fast"],
            torch=cyc["torch_uncached"],
            goal="(anchor: ~320 s on H100)",
            cpu_check=False,
            work=unc_work,
            frac_torch=fr(unc_work, cyc["torch_uncached"]),
            detail="PyTorch: three forwards from the images per weight, no cache",
        ),
    ]
    for name, anchor in (("conv2.weight", "19 ms"), ("conv6.weight", "2 ms")):
        t = next(t for t in tensors if t["name"] == name)
        w = roofline.Work(t["trial_flops"], t["trial_bytes"])
        rows.append(
            row(
                f"RSO trial, {name}",
                "s/trial",
                plain=t["plain_trial_s"],
                fast=t["fast_trial_s"],
                torch=t["torch_trial_s"],
                goal=f"(anchor: {anchor} on H100)",
                work=w,
                frac_minirso=fr(w, t["fast_trial_s"]),
                frac_torch=fr(w, t["torch_trial_s"]),
                equivalent=True,
            )
        )
    return {
        "rows": rows,
        "tensors": tensors,
        "cycle_s": cyc,
        "torch_uncached_trial_s": t_unc_trial,
        "evaluator_stats": stats,
        "config": {
            "batch": batch,
            "pool": n_pool,
            "timed_trials_per_tensor": n,
            "timed_reused_trials": n16,
            "total_trials": total_trials,
            "torch_vs_minirso_max_abs_logit_diff": max_err,
            "seed_init": 420,
            "seed_rso": 72,
        },
    }
