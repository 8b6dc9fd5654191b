"""The metrics log (JSON lines, one per history row) and a run's final metrics file.

A line is ``{"kind": table, **row}`` as strict JSON: NaN and infinities are written as ``null`` and
NumPy scalars as the numbers they hold, so ``json.loads`` and ``pandas.read_json(path, lines=True)``
read it.  :class:`MetricsLog` is rewritten from the history when ``fit()`` starts and then appended
to, one flushed line per row (``minirso/train/__init__.py`` says why).
"""

from __future__ import annotations

import json
import math
import os

import numpy

__all__ = ["MetricsLog", "json_line", "ordered_rows", "write_metrics"]


def json_line(table, row) -> str:
    """One metrics-log line: ``{"kind": table, **row}`` as strict JSON (NaN and infinities as null)."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
    return json.dumps({"kind": table, **clean}, allow_nan=False, default=_plain) + "\n"


def _plain(v):
    if isinstance(v, numpy.generic):
        v = v.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return str(v)


def ordered_rows(history: dict, schedule: str) -> list:
    """``(table, row)`` of the whole history in the order the rows were made: by the ``schedule`` entry
    every row carries, and at one value the optimizer's rows before the evaluation (a step makes them
    first).  Stable within a table."""
    rows = [(table, row) for table, table_rows in history.items() if table != "eval" for row in table_rows]
    rows += [("eval", row) for row in history.get("eval", [])]
    return sorted(rows, key=lambda tr: (tr[1][schedule], tr[0] == "eval"))


class MetricsLog:
    """The log at ``path`` while ``fit()`` runs: ``open(rows)`` rewrites it from ``rows`` and keeps it open."""

    def __init__(self, path):
        self.path, self.file = path, None

    def open(self, rows):
        path = self.path
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:  # written next to it and renamed: a reader never sees half a history
                f.writelines(json_line(table, row) for table, row in rows)
            os.replace(tmp, path)
            self.file = open(path, "a")
        except OSError as e:
            raise OSError(
                e.errno,
                f"Trainer: cannot write the metrics log {path} ({e.strerror}); choose another "
                "path with metrics_log=PATH, or metrics_log=False for none",
            ) from e

    def write(self, table, row):
        if self.file is not None:
            self.file.write(json_line(table, row))
            self.file.flush()  # readers (tail -f, pandas) see the line now, not when a buffer fills

    def close(self):
        if self.file is not None:
            self.file.close()
        self.file = None


def write_metrics(path, metrics: dict) -> str:
    """Write a run's final ``metrics`` as indented JSON to ``path`` (the examples' ``--json PATH``).

    Missing folders are created; the file is written next to its final name and
    renamed, so a reader never sees half a file.  NumPy scalars become numbers.
    Returns the path.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(metrics, f, indent=2, default=lambda v: v.item() if isinstance(v, numpy.generic) else str(v))
    os.replace(tmp, path)
    return path
