"""The GPU's cost, visible on a CPU: kernel launches, host syncs, copies, FLOPs and bytes per unit of work,
counted on the CuPy stand-in (``tests/standin/cupy``), and a predicted H100 time from them.

    python benchmarks/cost_model.py                 # the tables (a few minutes at most on a 2-core CPU)
    python benchmarks/cost_model.py --json cm.json  # also every number
    python benchmarks/run.py --cost-model ...       # the same, as columns of the benchmark's summary table

Each case runs in a SUBPROCESS (``benchmarks/cost_work.py``: the counted units of work) with
``PYTHONPATH=<repo>/tests/standin`` and ``MINIRSO_BACKEND=cupy`` (so ``import cupy`` is the stand-in even
where a real CuPy is installed), ``MINIRSO_FUSED`` as in this process (default on; ``--fused 0|1``
overrides).  The stand-in counts what a GPU would be asked to do
(``cupy._standin.counters``: every elementwise operation, reduction, product, copy, fill and custom
kernel is one launch; ``float``/``item``/``get``... are host syncs).  A unit of work is counted over
several repeats after a warm-up and reported per repeat (means: accepted and rejected steps differ).

Sizes.  Launches and syncs per unit do not depend on the batch, with ONE exception found here: on a GPU
minirso's row-strip convolution (``nn.functional._conv2d_rows``, the 16 -> 16 convs) works in chunks of
about 900 samples at 28 x 28 and 3,300 at 14 x 14, so a batch of 5,000 makes more launches than a small
one.  So each case is counted at two small sizes a < b, FLOPs and bytes are extrapolated to the
benchmark's GPU size linearly (q(N) = q(a) + (q(b) - q(a)) (N - a) / (b - a); every count here is affine
in the batch), the launch and sync counts are those at b (a flag says when a and b differ), and for RSO
every ``_conv2d_rows`` call is recorded and its launch count re-measured at the GPU batch (5,000 for a
trial, the cache chunk of 2,000 for the layer-input cache).  GPU sizes: RSO batch 5,000 and pool 60,000,
aMC full batch 60,000 (K = 32 chains for ``AMCChains``), RNN batch 1,500 x 784 steps, as
``benchmarks/run.py --device gpu``.  An RSO cycle's cache (each tensor's layer input over the pool) is
counted at a 256-row pool and scaled to 60,000 rows (launches x 30 chunks of 2,000, FLOPs and bytes
x 60,000 / 256; its syncs and copies are per tensor): an approximation, and about 1% of a cycle.

Prediction (seconds on one H100 SXM, CuPy)::

    t = (launches + h2d) x LAUNCH_S + syncs x SYNC_S + flops / FP32_PEAK + bytes / HBM_BW

==============  ===========  ======================================================================
constant        value        source
==============  ===========  ======================================================================
``LAUNCH_S``    9 us         host time per kernel launch through CuPy 14 on an H100 (issue text:
                             "about 9 us per launch on an H100"); each host-to-device copy is
                             counted as one more enqueued operation at the same price (an
                             assumption).  To be re-measured: ``run.py --device gpu --cost-model``
                             prints the launch time each case implies.
``SYNC_S``      10 us        an estimate, not a data-sheet number: one small device-to-host copy
                             and stream synchronisation round trip (``float(x)``, ``x.item()``).
                             Correct it from a GPU run.
``FP32_PEAK``   67 TFLOP/s   NVIDIA H100 Tensor Core GPU data sheet, H100 SXM FP32 (no tensor
                             cores); ``roofline.PUBLISHED_GPU_PEAKS["H100 SXM"]``.
``HBM_BW``      3.35 TB/s    same data sheet, H100 SXM HBM3 bandwidth; same table.
==============  ===========  ======================================================================

The sum is additive: it assumes the host's launching and the device's work never overlap (a sync
forces exactly that; between syncs a GPU that is busier than the host hides the launch time).  So for
launch-bound steps (most of minirso's: small arrays) it is close; for steps with long kernels it is
an upper estimate.  FLOPs and bytes are what the stand-in attributes to each launch (an unfused
read-and-write per launch).  minirso's own kernels (``minirso.kernels``) report no FLOPs (``RawKernel``)
or one per element (``ElementwiseKernel``), so where they ran the prediction takes the larger of the
counted FLOPs and ``roofline.py``'s analytic count at the GPU size (shown next to the counted ones).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
STANDIN = os.path.join(REPO, "tests", "standin")
WORKER = os.path.join(HERE, "cost_work.py")  # the child side: the counted units of work, run under the stand-in
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from tables import fmt_si, fmt_time, table  # noqa: E402

# H100 SXM: data-sheet peaks, the same table roofline.py uses (kept literal here so the parent needs no minirso)
FP32_PEAK = 67e12  # FLOP/s, = roofline.PUBLISHED_GPU_PEAKS["H100 SXM"][1]
HBM_BW = 3.35e12  # bytes/s, = roofline.PUBLISHED_GPU_PEAKS["H100 SXM"][0]
LAUNCH_S = 9e-6  # s per kernel launch (and per host-to-device copy): the CuPy 14 / H100 figure
SYNC_S = 10e-6  # s per host sync: an estimate (see the module docstring)

FIELDS = ("launches", "syncs", "h2d", "d2h", "flops", "bytes")
GPU = {
    "rso_batch": 5000,
    "rso_pool": 60000,
    "rso_chunk": 2000,
    "amc_n": 60000,
    "chains_k": 32,
    "rnn_n": 1500,
    "rnn_t": 784,
}
SMALL = {
    "rso_batch": (16, 32),
    "rso_pool": 256,
    "rso_trials": 3,
    "amc_n": (1000, 2000),
    "amc_steps": 6,
    "rnn_n": (8, 16),
    "rnn_repeats": 2,
}
JOBS = ("rso_plain", "rso_fast", "rso_fast16", "amc", "chains", "rnn")  # = cost_work.WORK's keys
JOBS_OF_CASE = {"rso": ("rso_plain", "rso_fast", "rso_fast16"), "amc": ("amc", "chains"), "rnn": ("rnn",)}


def predict(c: dict) -> float:
    """Predicted H100 seconds of a unit of work with counts ``c`` (see the module docstring)."""
    return (
        (c["launches"] + c["h2d"]) * LAUNCH_S
        + c["syncs"] * SYNC_S
        + c.get("flops_used", c["flops"]) / FP32_PEAK
        + c["bytes"] / HBM_BW
    )


def implied_launch_s(c: dict, measured_s: float) -> float | None:
    """The launch time that would make ``predict`` equal a measured time (the other constants kept)."""
    n = c["launches"] + c["h2d"]
    if not n or not measured_s:
        return None
    return (measured_s - c["syncs"] * SYNC_S - c.get("flops_used", c["flops"]) / FP32_PEAK - c["bytes"] / HBM_BW) / n


def constants() -> dict:
    return {"launch_s": LAUNCH_S, "sync_s": SYNC_S, "fp32_peak_flops": FP32_PEAK, "hbm_bytes_per_s": HBM_BW}


# ---- counting: one stand-in subprocess (cost_work.py) per job -------------------------------------
def _run_job(job: str, fused: str, timeout: float) -> dict:
    """Run ``cost_work.py JOB`` under the stand-in; its JSON record, or an ``error`` one, with ``wall_s``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (STANDIN, env.get("PYTHONPATH", "")) if p)
    env["MINIRSO_BACKEND"] = "cupy"
    env["MINIRSO_FUSED"] = fused
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = "1"  # jobs run side by side; counts do not depend on threads
    fd, path = tempfile.mkstemp(suffix=f".{job}.json")
    os.close(fd)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            [sys.executable, WORKER, job, "--out", path],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        try:
            with open(path) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            rec = {
                "job": job,
                "error": f"worker exited {p.returncode} without a result",
                "traceback": (p.stdout + p.stderr)[-3000:],
            }
    except subprocess.TimeoutExpired:
        rec = {"job": job, "error": f"timed out after {timeout:.0f} s"}
    finally:
        os.unlink(path)
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def measure(cases=("rso", "amc", "rnn"), fused: str | None = None, timeout: float = 900.0, parallel=None) -> dict:
    """Run the jobs of ``cases`` in stand-in subprocesses; returns the assembled model (see :func:`assemble`)."""
    fused = fused if fused is not None else os.environ.get("MINIRSO_FUSED", "1")
    jobs = [j for c in cases for j in JOBS_OF_CASE[c]]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel or max(1, os.cpu_count() or 1)) as ex:
        recs = dict(zip(jobs, ex.map(lambda j: _run_job(j, fused, timeout), jobs)))
    return assemble(recs, fused, time.perf_counter() - t0)


def _with_pred(c: dict, analytic: float | None = None) -> dict:
    """``c`` with its prediction; where minirso's own kernels ran (``custom`` launches), whose FLOPs the stand-in
    cannot see (a RawKernel reports none, an ElementwiseKernel one per element), FLOPs = max(counted, analytic)."""
    c = dict(c)
    if analytic is not None and c.get("custom"):
        c["flops_analytic"] = analytic
        c["flops_used"] = max(c["flops"], analytic)
    return {**c, "pred_s": predict(c)}


def analytic_flops() -> dict:
    """roofline.py's FLOPs per unit of work at the GPU sizes, for the cases that can run minirso's own kernels."""
    import roofline
    from amc_bench import NETS, step_work
    from rnn_bench import rnn_work

    out = {}
    for key in ("fig1", "ln64"):
        for sn in (False, True):
            out[f"amc_{key}{'_sn' if sn else ''}"] = step_work(NETS[key][0](), GPU["amc_n"], sn).flops
    net = NETS["fig1"][0]()
    out["amc_chains"] = GPU["chains_k"] * (roofline.forward_work(net, (GPU["amc_n"], 784)).flops + 6.0 * net.num_params)
    out["rnn"] = rnn_work(GPU["rnn_n"], GPU["rnn_t"]).flops
    return out


def _scaled(c: dict, k: float) -> dict:
    return {
        **{f: c[f] * k for f in FIELDS},
        "flops_used": c.get("flops_used", c["flops"]) * k,
        "pred_s": predict(c) * k,
    }


def assemble(recs: dict, fused: str, wall_s: float) -> dict:
    """Cases with per-unit counts at GPU sizes and predictions, keyed for :func:`summary_cells`."""
    cases, errors, notes = {}, {}, []
    try:
        analytic = analytic_flops()
    except Exception as exc:  # noqa: BLE001 - the counted FLOPs are then used alone
        analytic = {}
        notes.append(f"analytic FLOPs unavailable ({type(exc).__name__}: {exc}); counted FLOPs used")
    for job, rec in recs.items():
        if "error" in rec:
            errors[job] = rec["error"]
        notes.append(
            f"{job}: fused kernels {rec.get('fused', '?')}, {rec.get('wall_s', 0):.0f} s"
            + (f"; warnings: {'; '.join(rec['warnings'])}" if rec.get("warnings") else "")
        )
    rso = {k: recs[f"rso_{k}"]["result"] for k in ("plain", "fast", "fast16") if "result" in recs.get(f"rso_{k}", {})}
    for k, r in rso.items():
        for t in r["tensors"]:
            t["trial"] = _with_pred(t["trial"])
            if "cache" in t:
                t["cache"] = _with_pred(t["cache"])
            cases[f"rso_trial_{k}_{t['name']}"] = {
                "label": f"RSO trial {t['name']}, {k}",
                "unit": "trial",
                **t["trial"],
            }
        trials = sum(t["trials"] for t in r["tensors"])
        mean = {f: sum(t["trial"][f] * t["trials"] for t in r["tensors"]) / trials for f in FIELDS}
        cases[f"rso_trial_{k}_mean"] = {
            "label": f"RSO trial, {k}"
            + (" reused" if k == "fast16" else "")
            + f" (mean over a cycle's {trials} trials)",
            "unit": "trial",
            **_with_pred(mean),
            "counts_vary_with_size": any(t["trial"]["counts_vary_with_size"] for t in r["tensors"]),
        }
    if "fast" in rso:  # cycles: sum over tensors of cache + trials x trial (fast16: as rso_bench's formula)
        for k in ("plain", "fast"):
            if k in rso:
                cyc = {f: sum(t["cache"][f] + t["trials"] * t["trial"][f] for t in rso[k]["tensors"]) for f in FIELDS}
                cases[f"rso_cycle_{k}"] = {"label": f"RSO cycle, {k}", "unit": "cycle", **_with_pred(cyc)}
        if "fast16" in rso:
            cyc = {f: 0.0 for f in FIELDS}
            for tf, t16 in zip(rso["fast"]["tensors"], rso["fast16"]["tensors"]):
                full = math.ceil(tf["trials"] / 16)
                for f in FIELDS:
                    cyc[f] += tf["cache"][f] + full * tf["trial"][f] + (tf["trials"] - full) * t16["trial"][f]
            cases["rso_cycle_fast16"] = {
                "label": "RSO cycle, fast, trials_per_batch=16",
                "unit": "cycle",
                **_with_pred(cyc),
            }
            trials = sum(t["trials"] for t in rso["fast"]["tensors"])
            mean = {
                f: sum(
                    math.ceil(tf["trials"] / 16) * tf["trial"][f]
                    + (tf["trials"] - math.ceil(tf["trials"] / 16)) * t16["trial"][f]
                    for tf, t16 in zip(rso["fast"]["tensors"], rso["fast16"]["tensors"])
                )
                / trials
                for f in FIELDS
            }  # one full trial per 16, the rest reused: the cycle's mean trial
            cases["rso_trial_fast16_cycle_mean"] = {
                "label": "RSO trial, fast, trials_per_batch=16 (cycle's mean)",
                "unit": "trial",
                **_with_pred(mean),
            }
    if "result" in recs.get("amc", {}):
        for key, v in recs["amc"]["result"].items():
            cases[f"amc_{key}"] = {
                "label": f"aMC step, {v['label']}",
                "unit": "step",
                **_with_pred(v["step"], analytic.get(f"amc_{key}")),
            }
    if "result" in recs.get("chains", {}):
        v = recs["chains"]["result"]
        cases["amc_chains"] = {
            "label": f"AMCChains step, K={v['k']}",
            "unit": "step",
            **_with_pred(v["step"], analytic.get("amc_chains")),
        }
    if "result" in recs.get("rnn", {}):
        cases["rnn"] = {
            "label": "RNN forward (2 layers)",
            "unit": "forward",
            **_with_pred(recs["rnn"]["result"]["forward"], analytic.get("rnn")),
        }
    return {
        "cases": cases,
        "errors": errors,
        "notes": notes,
        "fused_env": fused,
        "constants": constants(),
        "gpu_sizes": GPU,
        "small_sizes": SMALL,
        "wall_s": wall_s,
        "jobs": recs,
    }


# ---- the summary table's cells --------------------------------------------------------------------
def _row_cases(case_text: str):
    """``(plain case key, fast case key, per-trial keys or None)`` for a summary-table row, by its text."""
    if case_text.startswith("RSO cycle, Alg. 1"):
        return "rso_cycle_plain", "rso_cycle_fast", ("rso_trial_plain_mean", "rso_trial_fast_mean")
    if case_text.startswith("RSO cycle, trials_per_batch=16"):
        return None, "rso_cycle_fast16", (None, "rso_trial_fast16_cycle_mean")
    if case_text.startswith("RSO cycle vs PyTorch uncached"):
        return None, "rso_cycle_fast", (None, "rso_trial_fast_mean")
    if case_text.startswith("RSO trial, "):
        name = case_text.split(", ", 1)[1]
        return f"rso_trial_plain_{name}", f"rso_trial_fast_{name}", None
    if case_text.startswith("aMC step, "):
        key = "ln64" if "LayerNorm" in case_text else "fig1"
        return f"amc_{key}{'_sn' if 'signal norm' in case_text else ''}", None, None
    if case_text.startswith("aMC K="):
        return "amc_fig1_x32", "amc_chains", None
    if case_text.startswith("RNN forward"):
        return "rnn", None, None
    return None, None, None


def summary_cells(cm: dict, r: dict, gpu: bool) -> list:
    """``[launches, syncs, pred. H100]`` (+ ``measured / pred.`` on a GPU) for summary row ``r``.

    Cells show "plain / fast" where the row has both columns; counts are per step, trial or forward (for
    an RSO cycle: per trial, the cycle's mean), the prediction in the row's unit.
    """
    cases = dict(cm["cases"])
    if "amc_fig1" in cases:  # the K=32 row's plain column is 32 single chains
        cases["amc_fig1_x32"] = {**_scaled(cases["amc_fig1"], 32)}
    plain, fast, per_trial = _row_cases(r["case"])
    keys = [k for k in (plain, fast) if k]
    if not keys:
        return ["-", "-", "-"] + (["-"] if gpu else [])
    count_keys = [k for k in (per_trial or (plain, fast)) if k]

    def cell(ks, fmt):
        return " / ".join(fmt(cases[k]) if k in cases else "?" for k in ks)

    out = [
        cell(count_keys, lambda c: f"{c['launches']:.0f}"),
        cell(count_keys, lambda c: f"{c['syncs']:.0f}"),
        cell(keys, lambda c: fmt_time(c["pred_s"])),
    ]
    if gpu:
        meas = [r["minirso_plain_s"] if plain else None, r["minirso_fast_s"] if fast else None]
        pairs = [(k, m) for k, m in zip((plain, fast), meas) if k]
        out.append(" / ".join(f"{m / cases[k]['pred_s']:.2f}" if (m and k in cases) else "-" for k, m in pairs))
    return out


def counts_table(cm: dict) -> str:
    """Every case: per-unit counts at GPU sizes, the prediction, and what it was measured at."""
    order = [
        "rso_trial_plain_mean",
        "rso_trial_fast_mean",
        "rso_trial_fast16_mean",
        "rso_trial_fast16_cycle_mean",
        "rso_trial_plain_conv2.weight",
        "rso_trial_fast_conv2.weight",
        "rso_trial_plain_conv6.weight",
        "rso_trial_fast_conv6.weight",
        "rso_cycle_plain",
        "rso_cycle_fast",
        "rso_cycle_fast16",
        "amc_fig1",
        "amc_fig1_sn",
        "amc_ln64",
        "amc_ln64_sn",
        "amc_chains",
        "rnn",
    ]
    rows = []
    for k in order:
        c = cm["cases"].get(k)
        if c is None:
            continue
        rows.append(
            [
                c["label"],
                c["unit"],
                f"{c['launches']:.6g}",
                f"{c['syncs']:.6g}",
                f"{c['h2d']:.6g}",
                f"{c['d2h']:.6g}",
                fmt_si(c["flops"], "FLOP")
                + (f" (analytic {fmt_si(c['flops_analytic'], 'FLOP')})" if "flops_analytic" in c else ""),
                fmt_si(c["bytes"], "B"),
                fmt_time(c["pred_s"]),
                "yes" if c.get("counts_vary_with_size") else "",
            ]
        )
    return table(
        rows,
        [
            "case",
            "per",
            "launches",
            "syncs",
            "h2d",
            "d2h",
            "FLOP counted",
            "bytes",
            "pred. H100",
            "count varies w/ size",
        ],
    )


def tensor_table(cm: dict) -> str:
    """RSO per tensor: launches / syncs per trial, plain, incremental and incremental reused (tpb=16)."""
    names = [
        k[len("rso_trial_fast_") :] for k in cm["cases"] if k.startswith("rso_trial_fast_") and not k.endswith("_mean")
    ]
    rows = []
    for n in names:
        cells = []
        for kind in ("plain", "fast", "fast16"):
            c = cm["cases"].get(f"rso_trial_{kind}_{n}")
            cells.append("-" if c is None else f"{c['launches']:.0f} / {c['syncs']:.0f}")
        rows.append([n] + cells)
    return table(rows, ["tensor", "plain: launches / syncs", "incremental", "incremental, reused (tpb=16)"])


def report(cm: dict) -> str:
    """The printed block: constants, counts, per-tensor counts, notes and errors."""
    c = cm["constants"]
    lines = [
        f"GPU cost model (counted on the CuPy stand-in, MINIRSO_FUSED={cm['fused_env']}; predicted H100 = "
        f"(launches + h2d) x {c['launch_s'] * 1e6:g} us + syncs x {c['sync_s'] * 1e6:g} us + FLOPs / "
        f"{c['fp32_peak_flops'] / 1e12:g} TFLOP/s + bytes / {c['hbm_bytes_per_s'] / 1e12:g} TB/s; sizes as "
        f"on the GPU, see benchmarks/cost_model.py):",
        counts_table(cm),
    ]
    if any(k.startswith("rso_trial_") for k in cm["cases"]):
        lines += ["", "RSO per tensor, per trial at batch 5,000:", tensor_table(cm)]
    lines += [f"- {n}" for n in cm["notes"]]
    lines += [f"- ERROR {j}: {e}" for j, e in cm["errors"].items()]
    lines.append(f"cost model wall time {cm['wall_s']:.0f} s")
    return "\n".join(lines)


def implied_table(cm: dict, rows) -> str:
    """GPU runs: the launch time each measured row implies (other constants kept), to correct LAUNCH_S."""
    out = []
    cases = dict(cm["cases"])
    for r in rows:
        plain, fast, _ = _row_cases(r["case"])
        for k, m in ((plain, r["minirso_plain_s"]), (fast, r["minirso_fast_s"])):
            if k in cases and m:
                v = implied_launch_s(cases[k], m)
                if v is not None:
                    out.append([r["case"], k, f"{v * 1e6:.2f} us"])
    return table(out, ["row", "case", "implied s per launch"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="rso,amc,rnn", help="comma-separated subset of rso,amc,rnn")
    p.add_argument(
        "--fused", choices=("0", "1"), help="MINIRSO_FUSED for the counted runs (default: this environment's, else 1)"
    )
    p.add_argument("--json", metavar="PATH", help="write every number to PATH")
    args = p.parse_args(argv)
    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    cm = measure(cases, fused=args.fused)
    print(report(cm))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(cm, f, indent=1, default=str)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
