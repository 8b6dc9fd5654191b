"""The child side of ``cost_model.py``: the units of work it counts, run INSIDE the CuPy stand-in subprocess.

    python benchmarks/cost_work.py JOB --out PATH   # what cost_model._run_job starts, one per job

The parent (``cost_model._run_job``) starts this file with ``PYTHONPATH=<repo>/tests/standin``,
``MINIRSO_BACKEND=cupy`` and ``MINIRSO_FUSED`` set, so ``import cupy`` here is the stand-in.  Each ``work_*``
counts one benchmark case's unit of work (launches, syncs, copies, FLOPs, bytes) at two small sizes and
extrapolates to the GPU sizes (``cost_model.GPU``, ``cost_model.SMALL``; the method is in ``cost_model``'s
docstring); :func:`worker` writes the result, or the error, as JSON for the parent.  minirso, CuPy and the
benchmark modules are imported inside the functions, after the backend is chosen.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from cost_model import FIELDS, GPU, JOBS, SMALL  # noqa: E402 - the shared sizes (cost_model imports no minirso)


def _counters():
    import cupy

    st = getattr(cupy, "_standin", None)
    if st is None:
        raise RuntimeError(f"'cupy' here is not the stand-in (no cupy._standin; imported from {cupy.__file__})")
    return st.counters


def _count(fn, repeats: int) -> dict:
    """Counts per call of ``fn`` over ``repeats`` calls, and the five most frequent launch names."""
    with _counters().counting() as d:
        for _ in range(repeats):
            fn()
    out = {f: d[f] / repeats for f in FIELDS}
    out["custom"] = sum(v for k, v in d["by_name"].items() if k.startswith("minirso_")) / repeats
    out["top"] = [[k, v / repeats] for k, v in d["by_name"].most_common(5)]
    return out


def _sub(a: dict, b: dict) -> dict:
    return {f: a[f] - b[f] for f in FIELDS}


def _extrapolate(at: dict, n_gpu: int) -> dict:
    """``at``: {size: counts}; FLOPs/bytes affine in the size up to ``n_gpu``, the rest from the larger size."""
    (a, ca), (b, cb) = sorted(at.items())
    out = {f: cb[f] for f in ("launches", "syncs", "h2d", "d2h")}
    for f in ("flops", "bytes"):
        out[f] = ca[f] + (cb[f] - ca[f]) * (n_gpu - a) / (b - a)
    out["custom"] = cb.get("custom", 0)
    out["counts_vary_with_size"] = any(ca[f] != cb[f] for f in ("launches", "syncs", "h2d", "d2h"))
    out["measured_at"] = [a, b]
    out["top"] = cb.get("top", [])
    return out


class _RowsConvs:
    """Records every ``_conv2d_rows`` call and re-counts its launches at another batch (see the docstring)."""

    def __init__(self):
        from minirso.nn import functional as F

        self.F, self.orig, self.calls, self._memo = F, F._conv2d_rows, [], {}
        orig = self.orig

        def recorded(x, weight, padding, *args, **kwargs):
            self.calls.append((tuple(x.shape), tuple(weight.shape), tuple(padding)))
            return orig(x, weight, padding, *args, **kwargs)

        F._conv2d_rows = recorded  # conv2d looks the name up at call time

    def launches(self, x_shape, w_shape, padding) -> float:
        key = (x_shape, w_shape, padding)
        if key not in self._memo:
            import cupy

            x, w = cupy.ones(x_shape, dtype=cupy.float32), cupy.ones(w_shape, dtype=cupy.float32)
            self._memo[key] = _count(lambda: self.orig(x, w, padding), 1)["launches"]
        return self._memo[key]

    def extra(self, calls, batch: int) -> float:
        """Launches the recorded ``calls`` would add at ``batch`` rows (instead of the rows they had)."""
        return sum(self.launches((batch,) + xs[1:], ws, p) - self.launches(xs, ws, p) for xs, ws, p in calls)


def _jump(opt, unit: int):
    """Continue ``opt`` at the first trial of tensor ``unit`` (as rso_bench: the public state_dict API)."""
    sd = opt.state_dict()
    sd["state"].update(unit=unit, pos=0, trial=sum(u.trials for u in opt.units[:unit]))
    opt.load_state_dict(sd)


def work_rso(kind: str) -> dict:
    """Per tensor of the paper's MNIST net: one trial (and the cache) of ``RSO`` with evaluator ``kind``.

    ``plain`` / ``fast`` (incremental, trials_per_batch=1): the first step of the tensor (cache + a trial),
    one warm-up trial, then ``trials`` counted.  ``fast16`` (trials_per_batch=16): counted trials are
    reused ones (positions 2.. of a 16-trial batch).
    """
    import cupy

    from minirso import models
    from minirso.data import bundled_mnist_split
    from minirso.optim import RSO

    rec = _RowsConvs()
    x_h, y_h, _, _ = bundled_mnist_split()
    pool, n_tr = SMALL["rso_pool"], SMALL["rso_trials"]
    x, y = cupy.asarray(x_h[:pool]), cupy.asarray(y_h[:pool])
    evaluator = "plain" if kind == "plain" else "incremental"
    tpb = 16 if kind == "fast16" else 1
    at = {}  # batch -> [per tensor {"trial", "cache", ...}]
    units = None
    for b in SMALL["rso_batch"]:
        opt = RSO(
            models.rso_mnist(seed=420), x, y, cycles=1, batch_size=b, seed=72, evaluator=evaluator, trials_per_batch=tpb
        )
        units = opt.units
        per = []
        for k in range(len(units)):
            _jump(opt, k)
            n0 = len(rec.calls)
            first = _count(opt.step, 1)
            n1 = len(rec.calls)
            opt.step()  # warm-up trial
            n2 = len(rec.calls)
            trial = _count(opt.step, n_tr)
            trial["rows_calls"] = rec.calls[n2:]
            first["rows_calls"] = rec.calls[n0:n1]
            per.append({"first": first, "trial": trial})
        at[b] = per
    stats = dict(getattr(opt.evaluator, "stats", {}))
    tensors = []
    b_hi = max(at)
    chunks_gpu = math.ceil(GPU["rso_pool"] / GPU["rso_chunk"])
    for k, u in enumerate(units):
        trial = _extrapolate({b: at[b][k]["trial"] for b in at}, GPU["rso_batch"])
        hi = at[b_hi][k]
        trial["launches"] += rec.extra(hi["trial"]["rows_calls"], GPU["rso_batch"]) / n_tr
        t = {"name": u.name, "layer": u.layer, "trials": u.trials, "trial": trial}
        if kind != "fast16":
            # cache = first step - one trial, at the larger batch.  The pool's forward runs per 2,000-row chunk:
            # its launches (its rows convs re-counted at 2,000 rows) x 30 chunks, FLOPs / bytes x 60,000 / pool;
            # syncs and copies are the unit's set-up (its pool order: one host-to-device copy), once per unit
            cache = _sub(hi["first"], hi["trial"])
            n_trial_calls = len(hi["trial"]["rows_calls"]) // n_tr
            cache_calls = hi["first"]["rows_calls"][: len(hi["first"]["rows_calls"]) - n_trial_calls]
            cache["launches"] = (cache["launches"] + rec.extra(cache_calls, GPU["rso_chunk"])) * chunks_gpu
            for f in ("flops", "bytes"):
                cache[f] *= GPU["rso_pool"] / pool
            t["cache"] = cache
        tensors.append(t)
    return {
        "kind": kind,
        "tensors": tensors,
        "evaluator_stats_last_run": stats,
        "rows_conv_launches": {str(k): v for k, v in rec._memo.items()},
    }


def _amc_sizes(fn):
    """``fn(n) -> counts`` at the two small sizes, extrapolated to the GPU's 60,000 rows."""
    return _extrapolate({n: fn(n) for n in SMALL["amc_n"]}, GPU["amc_n"])


def work_amc() -> dict:
    """One full-batch ``AMC.step()`` of each benchmark net, signal norm off and on (amc_bench's configs)."""
    import cupy
    from amc_bench import HYPER, NETS, data

    from minirso.optim import AMC, ModelLoss

    out = {}
    for key in ("fig1", "ln64"):
        build, loss, label = NETS[key]
        for sn in (False, True):

            def one(n):
                x_h, y_h = data(n)
                net = build()
                opt = AMC(
                    net.params,
                    ModelLoss(net, cupy.asarray(x_h), cupy.asarray(y_h), loss),
                    signal_norm=sn,
                    seed=0,
                    **HYPER,
                )
                for _ in range(2):
                    opt.step()
                return _count(opt.step, SMALL["amc_steps"])

            out[f"{key}{'_sn' if sn else ''}"] = {
                "label": label + (" + signal norm" if sn else ""),
                "step": _amc_sizes(one),
            }
    return out


def work_chains() -> dict:
    """One ``AMCChains.step()`` with K = 32 chains of the Fig. 1 MLP (amc_bench.chains' config)."""
    import cupy
    from amc_bench import HYPER, NETS, data

    from minirso.optim import AMCChains, ChainsLoss

    build, loss, _ = NETS["fig1"]

    def one(n):
        x_h, y_h = data(n)
        net = build()
        thetas = cupy.tile(net.params[None, :], (GPU["chains_k"], 1))
        bc = AMCChains(thetas, ChainsLoss(net, cupy.asarray(x_h), cupy.asarray(y_h), loss), seeds=0, **HYPER)
        for _ in range(2):
            bc.step()
        return _count(bc.step, SMALL["amc_steps"])

    return {"k": GPU["chains_k"], "step": _amc_sizes(one)}


def work_rnn() -> dict:
    """One forward of ``models.amc_rnn_classifier()`` on 784-step sequences (rnn_bench's config)."""
    import cupy
    from rnn_bench import sequences

    from minirso import models

    model = models.amc_rnn_classifier()

    def one(n):
        x = cupy.asarray(sequences(n, GPU["rnn_t"]))
        model(x)
        return _count(lambda: model(x), SMALL["rnn_repeats"])

    return {"forward": _extrapolate({n: one(n) for n in SMALL["rnn_n"]}, GPU["rnn_n"])}


WORK = {
    "rso_plain": lambda: work_rso("plain"),
    "rso_fast": lambda: work_rso("fast"),
    "rso_fast16": lambda: work_rso("fast16"),
    "amc": work_amc,
    "chains": work_chains,
    "rnn": work_rnn,
}


def worker(job: str, out_path: str):
    """Run one job under the stand-in and write ``{"result" | "error", "fused", ...}`` as JSON."""
    import warnings

    t0 = time.perf_counter()
    rec = {"job": job}
    try:
        import minirso

        minirso.use_backend("cupy")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec["result"] = WORK[job]()
        rec["warnings"] = sorted({str(w.message)[:300] for w in caught})
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it instead of numbers
        import traceback

        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc()[-3000:]
    try:
        import cupy

        from minirso import kernels

        rec["fused"] = kernels.status()
        rec["promotion"] = getattr(getattr(cupy, "_standin", None), "PROMOTION", None)
    except Exception as exc:  # noqa: BLE001
        rec["fused"] = f"unknown ({type(exc).__name__}: {exc})"
    rec["seconds"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(rec, f, default=str)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", choices=JOBS, help="the unit of work to count")
    p.add_argument("--out", required=True, help="write the JSON record to OUT")
    args = p.parse_args(argv)
    worker(args.job, args.out)


if __name__ == "__main__":
    main()
