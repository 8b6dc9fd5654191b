"""What every benchmark case shares: the device choice, the timer, machine facts and the result rows.

A *context* (:class:`Context`) says where minirso and PyTorch run (NumPy + torch CPU, or CuPy + torch
CUDA) and how long to measure (``quick`` / default / ``full``).  Every timing goes through
:func:`timed`, which synchronises both libraries' GPU queues before reading the clock, so a number
is the wall time of the work, not the time to enqueue it.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field

import numpy

import minirso
from minirso import backend


@dataclass
class Context:
    """Where and how long to measure.

    ``gpu``: CuPy + torch CUDA (else NumPy + torch CPU); ``mode``: ``"quick"`` (a smoke run,
    small sizes, few repeats), ``"default"`` or ``"full"`` (more samples per tensor);
    ``xp``: the array module minirso uses; ``tdev``: the torch device.
    """

    gpu: bool
    mode: str
    xp: object
    torch: object
    tdev: object
    notes: list = field(default_factory=list)

    @property
    def quick(self) -> bool:
        return self.mode == "quick"

    def pick(self, quick, default, full):
        """The setting for this mode."""
        return {"quick": quick, "default": default, "full": full}[self.mode]

    def note(self, text: str):
        """A line for the report (printed under the table and stored in the JSON)."""
        self.notes.append(text)


def make_context(
    device: str = "auto", mode: str = "default", torch_threads: int | None = None, torch_tf32: bool = True
) -> Context:
    """Choose the backend pair: ``"gpu"`` = CuPy + torch CUDA, ``"cpu"`` = NumPy + torch CPU.

    ``"auto"`` takes the GPU when BOTH CuPy and torch see a CUDA device (comparing a GPU minirso
    with a CPU PyTorch would be meaningless), else the CPU.  On the CPU torch gets as many threads
    as the machine has cores (NumPy's BLAS already uses them all) unless ``torch_threads`` says otherwise.
    ``torch_tf32=False`` turns off cuDNN's TF32 convolutions (on by default in PyTorch, so in the baseline).
    """
    import torch

    cupy_ok, torch_ok = backend.cupy_available(), torch.cuda.is_available()
    if device == "gpu" and not (cupy_ok and torch_ok):
        raise SystemExit(
            f"--device gpu needs CuPy and torch with CUDA (cupy usable: {cupy_ok}, "
            f"torch.cuda.is_available(): {torch_ok})"
        )
    gpu = device == "gpu" or (device == "auto" and cupy_ok and torch_ok)
    notes = []
    if gpu:
        xp = minirso.use_backend("cupy")
        tdev = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # the strongest baseline: cuDNN picks its fastest conv per shape
        torch.backends.cudnn.allow_tf32 = torch_tf32
        if torch_tf32:
            notes.append(
                "PyTorch on GPU: cuDNN convolutions may use TF32 (PyTorch's default; minirso computes in "
                "FP32); --torch-fp32 turns it off"
            )
    else:
        xp = minirso.use_backend("numpy")
        tdev = torch.device("cpu")
        torch.set_num_threads(torch_threads or os.cpu_count() or 1)
        why = "" if device == "cpu" else f" (GPU not used: cupy usable {cupy_ok}, torch CUDA {torch_ok})"
        which = "--torch-threads" if torch_threads else "the machine's cores"
        notes.append(f"CPU run: NumPy backend, torch.set_num_threads({torch.get_num_threads()}) = {which}{why}")
    return Context(gpu=gpu, mode=mode, xp=xp, torch=torch, tdev=tdev, notes=notes)


def synchronize(ctx: Context):
    """Wait for all queued GPU work of both libraries (no-op on the CPU)."""
    if ctx.gpu:
        backend.synchronize()
        ctx.torch.cuda.synchronize()


def timed(ctx: Context, fn, *args, **kwargs):
    """``(seconds, result)`` of one call of ``fn``, GPU queues drained before and after."""
    synchronize(ctx)
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    synchronize(ctx)
    return time.perf_counter() - t0, out


def median_time(ctx: Context, fn, repeats: int, warmup: int = 1) -> dict:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed: ``{"median", "min", "samples"}`` (s)."""
    for _ in range(warmup):
        timed(ctx, fn)
    samples = [timed(ctx, fn)[0] for _ in range(max(1, repeats))]
    return {"median": statistics.median(samples), "min": min(samples), "samples": samples}


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---- machine facts ------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name(ctx: Context) -> str | None:
    if not ctx.gpu:
        return None
    return ctx.torch.cuda.get_device_name(0)


def machine_info(ctx: Context) -> dict:
    """CPU model, cores, load, GPU name, library versions and the torch settings that change speed."""
    torch = ctx.torch
    info = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "minirso": minirso.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": "gpu" if ctx.gpu else "cpu",
        "gpu": gpu_name(ctx),
        "mode": ctx.mode,
    }
    try:
        import cupy

        info["cupy"] = cupy.__version__
    except Exception:
        info["cupy"] = None
    if ctx.gpu:
        info["cuda_runtime"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["torch_cudnn_benchmark"] = torch.backends.cudnn.benchmark
        info["torch_cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["torch_matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return info


# ---- result rows --------------------------------------------------------------------------------
def row(
    case: str,
    unit: str,
    *,
    plain=None,
    fast=None,
    torch=None,
    ratio=None,
    goal: str = "",
    check=None,
    cpu_check: bool = True,
    work=None,
    frac_minirso=None,
    frac_torch=None,
    equivalent: bool = False,
    ratio_text: str | None = None,
    detail: str = "",
) -> dict:
    """One line of the summary table (times in seconds; ``work`` a :class:`roofline.Work` or None).

    ``ratio`` = PyTorch time / best minirso time unless given (>1: minirso is faster).
    ``check``: the issue-5 goal as ``(">=", 20)`` or ``("<=", 4)`` on the ratio (GPU runs: the goals are
    stated for the H100); ``cpu_check``: on a CPU run the row is held to the CPU goal instead
    (NumPy at most 2x slower than PyTorch CPU: ratio >= 0.5).  ``equivalent``: minirso's peak fraction
    counts the work of the PLAIN algorithm (RSO's fast path skips most of it: an "effective" fraction).
    ``ratio_text``: how the table shows a ratio that is not PyTorch / minirso.
    """
    best = min([t for t in (plain, fast) if t is not None], default=None)
    if ratio is None and torch is not None and best:
        ratio = torch / best
    return {
        "case": case,
        "unit": unit,
        "minirso_plain_s": plain,
        "minirso_fast_s": fast,
        "torch_s": torch,
        "ratio": ratio,
        "goal": goal,
        "check": check,
        "cpu_check": cpu_check,
        "flops": None if work is None else work.flops,
        "bytes": None if work is None else work.bytes,
        "peak_fraction_minirso": frac_minirso,
        "peak_fraction_torch": frac_torch,
        "peak_fraction_minirso_is_equivalent": equivalent,
        "ratio_text": ratio_text,
        "detail": detail,
    }


def goal_met(r: dict, gpu: bool) -> str:
    """Which goals the row's ratio meets here, e.g. ``">=20:NO >=0.5:ok"`` ("" when none applies).

    The issue-5 goal (``check``) applies on a GPU; on a CPU, rows comparing minirso with PyTorch
    are held to ``ratio >= 0.5`` (NumPy at most 2x slower than PyTorch CPU).
    """
    if r["ratio"] is None:
        return ""
    tests = []
    if r["check"] and gpu:
        tests.append(tuple(r["check"]))
    if not gpu and r["cpu_check"] and r["torch_s"] is not None:
        tests.append((">=", 0.5))
    out = []
    for op, v in tests:
        ok = r["ratio"] >= v if op == ">=" else r["ratio"] <= v
        out.append(f"{op}{v:g}:{'ok' if ok else 'NO'}")
    return " ".join(out)
