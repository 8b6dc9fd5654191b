"""The stand-in's own controls, absent from real CuPy: counters of GPU cost, the promotion mode, the device.

Tests and benchmarks reach them as ``cupy._standin`` (``getattr(cupy, "_standin", None)`` is None on a
real CuPy, where such tests skip).  Nothing in ``minirso`` may use this module.

* ``counters``: kernel launches (every elementwise operation, reduction, matrix product, copy, fill and
  custom kernel counts one), host synchronisations (``float``/``int``/``bool``/``item``/``get``/
  ``tolist``/``asnumpy``/``Stream.synchronize``), host-to-device and device-to-host copies, and the
  FLOPs and bytes each launch moves (for the cost model in ``benchmarks/``).
* ``PROMOTION``: ``"13"`` (CuPy 13: NumPy 1's value-based casting of Python scalars) or ``"14"``
  (CuPy 14: NEP 50, Python scalars are weak), from ``MINIRSO_STANDIN_CUPY`` (default ``"14"``).
* ``compute_capability``: what ``cupy.cuda.Device().compute_capability`` returns (``"90"``, an H100);
  a test may change it (monkeypatch) to model an older GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter

__all__ = ["counters", "Counters", "launch", "sync", "h2d", "d2h", "PROMOTION", "compute_capability"]

PROMOTION = os.environ.get("MINIRSO_STANDIN_CUPY", "14").strip() or "14"
if PROMOTION not in ("13", "14"):
    raise ImportError(f"MINIRSO_STANDIN_CUPY={PROMOTION!r}: choose 13 (value-based casting) or 14 (NEP 50)")

compute_capability = "90"


class Counters:
    """Running totals of what a real GPU would be asked to do (see the module docstring)."""

    FIELDS = ("launches", "syncs", "h2d", "d2h", "flops", "bytes")

    def __init__(self):
        self.reset()

    def reset(self):
        for f in self.FIELDS:
            setattr(self, f, 0)
        self.by_name = Counter()  # launch name -> launches

    def snapshot(self) -> dict:
        return {**{f: getattr(self, f) for f in self.FIELDS}, "by_name": Counter(self.by_name)}

    @contextlib.contextmanager
    def counting(self):
        """``with counters.counting() as d:`` ... then ``d`` holds what happened inside (a dict like snapshot())."""
        before = self.snapshot()
        delta = {}
        try:
            yield delta
        finally:
            after = self.snapshot()
            delta.update({f: after[f] - before[f] for f in self.FIELDS})
            delta["by_name"] = after["by_name"] - before["by_name"]


counters = Counters()


def launch(name: str, nbytes: int = 0, flops: int = 0):
    """Record one kernel launch named ``name`` that reads and writes ``nbytes`` bytes and does ``flops`` FLOPs."""
    counters.launches += 1
    counters.bytes += int(nbytes)
    counters.flops += int(flops)
    counters.by_name[name] += 1


def sync():
    """Record one host synchronisation (the host waits for the device)."""
    counters.syncs += 1


def h2d(nbytes: int):
    """Record one host-to-device copy of ``nbytes`` bytes."""
    counters.h2d += 1
    counters.bytes += int(nbytes)


def d2h(nbytes: int):
    """Record one device-to-host copy of ``nbytes`` bytes (a copy to the host is also a sync: see ``sync``)."""
    counters.d2h += 1
    counters.bytes += int(nbytes)
