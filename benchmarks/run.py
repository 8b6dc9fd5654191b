"""The issue-5 benchmark suite: minirso next to its PyTorch baselines, with ratios and roofline fractions.

    python benchmarks/run.py                       # everything, on the GPU if CuPy and torch CUDA work
    python benchmarks/run.py --quick --json b.json # a short smoke run (small sizes; about 2 minutes on a CPU)
    python benchmarks/run.py --device cpu --only rso,amc
    python benchmarks/run.py --quick --cost-model   # + launches, syncs and a predicted H100 time per row

See benchmarks/README.md for what each case measures and how to read the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules, however this is started

# Two thread pools share this process: OpenBLAS's (NumPy) and OpenMP's (torch).  By default idle threads
# of each keep spinning for a while after every call and steal the cores the other library's threads
# need: on a 2-core machine that made per-step loops 10-100x slower, whichever library ran.  Let idle
# threads sleep instead (set before numpy and torch are imported; an explicit environment value wins).
THREAD_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}
for _k, _v in THREAD_ENV.items():
    os.environ.setdefault(_k, _v)

import common  # noqa: E402
import cost_model  # noqa: E402 - imports no minirso, NumPy or torch (its counting runs in subprocesses)
import roofline  # noqa: E402
from tables import fmt_frac, fmt_si, fmt_time, table  # noqa: E402

CASES = ("rso", "amc", "rnn")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", help="write every number and the machine facts to PATH")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run)")
    mode.add_argument("--full", action="store_true", help="more sampled trials / steps (slower, tighter)")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="gpu: CuPy + torch CUDA; cpu: NumPy + torch CPU; auto: gpu when both work",
    )
    p.add_argument("--only", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--rso-batch", type=int, help="RSO mini-batch (default 5,000 on a GPU, 256 on a CPU)")
    p.add_argument("--rso-pool", type=int, help="RSO training pool rows (default 60,000 GPU, 8,000 CPU, 1,024 --quick)")
    p.add_argument("--torch-threads", type=int, help="torch CPU threads (default: the machine's cores)")
    p.add_argument("--torch-fp32", action="store_true", help="GPU: no TF32 in PyTorch's cuDNN convolutions")
    p.add_argument("--amc-n", type=int, help="aMC full-batch size (default 60,000; 10,000 with --quick on a CPU)")
    p.add_argument(
        "--cost-model",
        action="store_true",
        help="count launches / syncs / copies on the CuPy stand-in (benchmarks/cost_model.py) and add "
        "them and a predicted H100 time to the summary table",
    )
    args = p.parse_args(argv)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    bad = sorted(set(args.only) - set(CASES))
    if bad:
        p.error(f"--only: unknown case(s) {bad}; choose from {CASES}")
    return args


# ---- the printed tables ---------------------------------------------------------------------------
def summary_table(rows, gpu, cost=None):
    """The summary; with ``cost`` (a cost_model.measure() result) also launches, syncs and the predicted H100
    time per row (and on a GPU the measured / predicted ratio)."""
    out = []
    for r in rows:
        out.append(
            [
                r["case"],
                r["unit"],
                fmt_time(r["minirso_plain_s"]),
                fmt_time(r["minirso_fast_s"]),
                fmt_time(r["torch_s"]),
                r["ratio_text"] or ("-" if r["ratio"] is None else f"{r['ratio']:.2f}x"),
                common.goal_met(r, gpu) or "-",
                fmt_si(r["flops"], "FLOP"),
                fmt_si(r["bytes"], "B"),
                f"{fmt_frac(r['peak_fraction_minirso'], r['peak_fraction_minirso_is_equivalent'])} / "
                f"{fmt_frac(r['peak_fraction_torch'])}",
            ]
        )
        if cost is not None:
            out[-1] += cost_model.summary_cells(cost, r, gpu)
    headers = [
        "case",
        "unit",
        "minirso plain",
        "minirso fast",
        "PyTorch",
        "ratio",
        "goal met",
        "FLOP/step",
        "bytes/step",
        "peak: minirso / PyTorch",
    ]
    if cost is not None:
        headers += ["launches", "syncs", "pred. H100"] + (["measured / pred."] if gpu else [])
    return table(out, headers)


def rso_tensor_table(tensors):
    out = [
        [
            t["name"],
            t["trials"],
            fmt_time(t["plain_trial_s"]),
            fmt_time(t["fast_trial_s"]),
            fmt_time(t["fast16_reused_trial_s"]),
            fmt_time(t["torch_trial_s"]),
            fmt_time(max(0.0, t["fast_first_s"] - t["fast_trial_s"])),
            fmt_time(t["torch_cache_s"]),
            fmt_si(t["trial_flops"], "FLOP"),
        ]
        for t in tensors
    ]
    return table(
        out,
        [
            "tensor",
            "trials",
            "plain/trial",
            "fast/trial",
            "fast16 reused",
            "PyTorch/trial",
            "minirso cache",
            "PyTorch cache",
            "FLOP/trial (Alg. 1)",
        ],
    )


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, roofline.Work):
        return {"flops": o.flops, "bytes": o.bytes}
    if hasattr(o, "item") and not hasattr(o, "__len__"):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def main(argv=None):
    args = parse_args(argv)
    mode = "quick" if args.quick else "full" if args.full else "default"
    t0 = time.perf_counter()
    ctx = common.make_context(args.device, mode, args.torch_threads, torch_tf32=not args.torch_fp32)
    info = common.machine_info(ctx)
    print(
        f"minirso benchmarks ({mode}) on {'GPU ' + info['gpu'] if ctx.gpu else 'CPU'}: {info['cpu_model']}, "
        f"{info['cpu_cores']} cores, load {info['load_average_1m']}; numpy {info['numpy']}, cupy {info['cupy']}, "
        f"torch {info['torch']}",
        flush=True,
    )
    pk = roofline.peaks(ctx, info["gpu"])
    m = pk["measured"]
    print(
        f"peaks used ({pk['used']['source']}): {fmt_si(pk['used']['flops'], 'FLOP/s')}, "
        f"{fmt_si(pk['used']['bytes'], 'B/s')}; measured: {fmt_si(m['flops'], 'FLOP/s')} "
        f"(float32 {m['matmul_n']}^2 matmul), {fmt_si(m['bytes'], 'B/s')} (copy, read + write)",
        flush=True,
    )
    info["thread_env"] = {k: os.environ.get(k) for k in THREAD_ENV}
    if not ctx.gpu:
        ctx.note(
            "thread pools: "
            + ", ".join(f"{k}={v}" for k, v in info["thread_env"].items())
            + " (idle NumPy / torch threads sleep instead of spinning against each other)"
        )
    results = {"machine": info, "peaks": pk, "mode": mode, "args": vars(args)}
    rows = []
    if "rso" in args.only:
        import rso_bench

        print("RSO ...", flush=True)
        results["rso"] = rso_bench.run(ctx, pk, batch=args.rso_batch, n_pool=args.rso_pool)
        rows += results["rso"]["rows"]
    if "amc" in args.only:
        import amc_bench

        print("aMC ...", flush=True)
        results["amc"] = amc_bench.run(ctx, pk, n=args.amc_n)
        rows += results["amc"]["rows"]
    if "rnn" in args.only:
        import rnn_bench

        print("RNN ...", flush=True)
        results["rnn"] = rnn_bench.run(ctx, pk)
        rows += results["rnn"]["rows"]
    results["rows"] = rows
    if ctx.gpu:  # whether minirso's fused GPU kernels ran (or failed and left the plain array code)
        from minirso import kernels

        info["fused_kernels"] = kernels.status()
        ctx.note(
            "minirso fused GPU kernels (minirso.kernels: Philox normals, aMC proposal, RNN layer): " + kernels.status()
        )
    cost = None
    if args.cost_model:  # after the timings: its stand-in subprocesses would load the machine
        print("cost model (stand-in subprocesses) ...", flush=True)
        cost = results["cost_model"] = cost_model.measure(args.only)
    results["notes"] = ctx.notes
    results["wall_s"] = time.perf_counter() - t0
    for r in rows:
        r["goal_met"] = common.goal_met(r, ctx.gpu)

    print()
    if "rso" in results:
        print("RSO per tensor (median trial times; caches over the pool):")
        print(rso_tensor_table(results["rso"]["tensors"]))
        print()
    print(
        "Summary (ratio = PyTorch / best minirso, > 1: minirso faster; peak = fraction of the "
        "FLOP (F) or bandwidth (B) peak):"
    )
    print(summary_table(rows, ctx.gpu, cost))
    if any(r["peak_fraction_minirso_is_equivalent"] for r in rows):
        print(
            "  * effective fraction: the plain algorithm's FLOPs/bytes divided by the fast path's time "
            "(the fast path skips most of that work, so this can exceed 100%)"
        )
    if cost is not None:
        print(
            "  launches / syncs: per step, trial or forward (RSO cycles: per trial, the cycle's mean), counted on "
            "the CuPy stand-in; they and pred. H100 (in the row's unit) are at the GPU sizes (RSO batch 5,000, pool "
            "60,000; aMC 60,000 rows; RNN 1,500 x 784) whatever this run's sizes; 'a / b' = plain / fast column"
        )
    print()
    for r in rows:
        if r["detail"] or r["goal"]:
            print(f"* {r['case']}: {'; '.join(x for x in (r['goal'], r['detail']) if x)}")
    if cost is not None:
        print()
        print(cost_model.report(cost))
        if ctx.gpu:
            print(
                "Launch time implied by each measured row (measured - syncs - FLOP and byte terms) / launches; "
                f"the model uses {cost_model.LAUNCH_S * 1e6:g} us:"
            )
            print(cost_model.implied_table(cost, rows))
    for n in ctx.notes:
        print(f"- {n}")
    print(f"total wall time {results['wall_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_jsonable(results), f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
