"""Plain-text formatting shared by the benchmark scripts (``run.py``, ``cost_model.py``): times, SI quantities,
roofline fractions and column-aligned tables.  Pure functions of their arguments (no minirso, NumPy or torch).
"""

from __future__ import annotations

import math


def fmt_time(s):
    """Seconds as "1.23 s", "4.56 ms" or "7.8 us"; "-" for None or NaN."""
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_si(v, unit):
    """``v`` with a k / M / G / T / P prefix and three significant digits: "41.2 GFLOP"; "-" for None."""
    if v is None:
        return "-"
    for scale, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {p}{unit}"
    return f"{v:.3g} {unit}"


def fmt_frac(f, equivalent=False):
    """A roofline fraction ``{"value", "bound"}`` as "12%F" (a trailing "*": an effective fraction); "-" if none."""
    if not f:
        return "-"
    pct = 100 * f["value"]
    text = f"{pct:.0f}%" if pct >= 10 else f"{pct:.2g}%"
    return f"{text}{f['bound']}{'*' if equivalent else ''}"


def table(rows, headers):
    """A plain-text table with columns as wide as their widest cell."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers))]
    line = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows])
