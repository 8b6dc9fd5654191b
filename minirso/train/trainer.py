"""The Trainer: runs any :class:`~minirso.optim.base.TrainableOptimizer` on a model (``minirso/train/__init__.py``)."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from tqdm import tqdm

from .. import checkpoint as ckpt
from ..backend import Array, get_array_module, to_numpy
from ..losses import resolve_loss
from ..optim.base import TrainableOptimizer, check_int
from .evaluation import evaluate
from .metrics import MetricsLog, ordered_rows
from .progress import Progress

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..nn.sequential import Sequential

__all__ = ["Trainer"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_MEMBERS = (
    "label",
    "schedule",
    "table",
    "params",
    "end",
    "position",
    "safe_point",
    "step",
    "history_rows",
    "report",
    "where",
    "model_params",
    "state_dict",
    "load_state_dict",
)


class Trainer:
    """Run ``optimizer`` on ``model`` to its end (``steps`` for one without an end of its own, e.g. aMC).

    See the package docstring.  ``checkpoint``: the HDF5 path to save to (its folder is created), or None /
    "" for none.  ``metrics_log``: True (default): ``<checkpoint>.metrics.jsonl``, or none without a
    checkpoint; a path; or False / None / "" for none.  ``loss``: the loss of the evaluations, reported
    per sample (:mod:`minirso.train.evaluation` says why it is not the optimizer's).
    """

    def __init__(
        self,
        model: Sequential,
        optimizer: TrainableOptimizer,
        *,
        steps: int | None = None,
        eval_data: tuple[Array, Array] | None = None,
        train_eval_data: tuple[Array, Array] | None = None,
        bn_data: Array | None = None,
        eval_every: int = 1,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        checkpoint_every_trials: int | None = None,
        log_every: int = 100,
        progress: bool = True,
        meta: dict | None = None,
        loss: str | Callable[[Array, Array], Any] = "cross_entropy_mean",
        eval_batch: int = 2000,
        metrics_log: bool | str | os.PathLike | None = True,
    ) -> None:
        if not isinstance(optimizer, TrainableOptimizer):
            missing = [m for m in _MEMBERS if not hasattr(optimizer, m)]
            raise TypeError(
                f"Trainer: {type(optimizer).__name__} is not a minirso.optim.base.TrainableOptimizer "
                f"(it lacks {', '.join(missing)})"
            )
        opt, name = optimizer, optimizer.label
        p = opt.params
        if not (p is model.params or (getattr(p, "ndim", 0) == 2 and p.shape[1] == model.params.size)):
            raise ValueError(
                f"Trainer: the {name} optimizer was built for a different model: it must move "
                "model.params, or rows (K, P) of parameter vectors for it"
            )
        if opt.end is not None and steps is not None:
            raise ValueError(
                f"Trainer: steps is for an optimizer without an end of its own; {name} ends at {opt.schedule} {opt.end}"
            )
        if opt.end is None and steps is None:
            raise ValueError(f"Trainer: {name} needs steps (the {opt.schedule} to reach)")
        if checkpoint_every_trials is not None and "trials" not in opt.position():
            raise ValueError(
                f"Trainer: checkpoint_every_trials counts trials, which {name} has not; use "
                f"checkpoint_every ({opt.schedule}s)"
            )
        self.model, self.optimizer = model, optimizer
        self.steps = None if steps is None else check_int("steps", steps, 0)
        self.every_trials = (
            None
            if checkpoint_every_trials is None
            else check_int("checkpoint_every_trials", checkpoint_every_trials, 1)
        )
        self.log_every = check_int("log_every", log_every, 1)
        self.eval_data, self.train_eval_data, self.bn_data = eval_data, train_eval_data, bn_data
        self.eval_every = check_int("eval_every", eval_every, 1)
        # None or "" (a command line's --checkpoint '') mean: no checkpoints
        self.checkpoint_path = os.fspath(checkpoint) if checkpoint is not None and os.fspath(checkpoint) else None
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        if metrics_log is True:
            metrics_log = self.checkpoint_path and self.checkpoint_path + ".metrics.jsonl"
        self.metrics_log = (
            os.fspath(metrics_log) if metrics_log not in (None, False) and os.fspath(metrics_log) else None
        )
        self._log = MetricsLog(self.metrics_log)
        self.progress, self.meta = bool(progress), dict(meta or {})
        self.loss_name, self._loss_fn = resolve_loss(loss)
        self.eval_batch = check_int("eval_batch", eval_batch, 1)
        self.history = {"eval": [], opt.table: []}
        self.interrupted, self.stop_signal = False, None
        self._wall, self._t0 = 0.0, None  # seconds in earlier fit() calls; perf_counter() at this one's start
        self._dirty = False  # anything new since the last checkpoint?
        self._save_wanted = False  # a trial checkpoint fell due where a checkpoint would not resume exactly
        self._bars = Progress(opt, self.end)
        self._load_marks({})

    @property
    def end(self) -> int:
        """``position()[schedule]`` at which the run is done: the optimizer's end, or ``steps``."""
        return self.optimizer.end if self.optimizer.end is not None else self.steps

    @property
    def kind(self) -> str:
        return self.optimizer.label.lower()

    @property
    def wall_time(self) -> float:
        """Seconds spent inside ``fit()``, summed across resumes."""
        return self._wall + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def done(self) -> bool:
        return self.optimizer.position()[self.optimizer.schedule] >= self.end

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to the end and return ``history``; on SIGINT / SIGTERM checkpoint, then raise
        KeyboardInterrupt / SystemExit(143) (see the package docstring)."""
        self.interrupted, self.stop_signal = False, None
        if self.checkpoint_path is not None:  # a bad path fails now, not at the first save a cycle later
            ckpt.check_writable(self.checkpoint_path, create_folders=True)
        self._t0 = time.perf_counter()
        try:
            with self._metrics_log(), self._signal_handlers(), self._bars.opened(self.progress):
                while not self.done() and not self.interrupted:
                    eval_due, save_due = self._step()  # (1) one step, and its history rows
                    self._dirty = True
                    if eval_due:
                        self._log_evaluation()  # (2)
                    self.interrupted = self.stop_signal is not None and self.optimizer.safe_point
                    if save_due or self.interrupted:
                        self._save()  # (3)
                if not self.interrupted:
                    rows, now = self.history["eval"], self.optimizer.position()
                    if self._has_eval() and not (rows and all(rows[-1].get(k) == v for k, v in now.items())):
                        self._log_evaluation()  # the final evaluation, unless the schedule just made it
                    if self._dirty:
                        self._save()
        finally:
            self._wall, self._t0 = self.wall_time, None
        if self.interrupted:  # the handlers are restored: raise what the signal would have raised without them
            name = signal.Signals(self.stop_signal).name
            text = f"stopped by {name} at {self.where()}" + (
                f"; checkpoint saved to {self.checkpoint_path}" if self.checkpoint_path else "; no checkpoint path set"
            )
            self._say(text)
            if self.stop_signal == signal.SIGINT:
                raise KeyboardInterrupt(text)
            raise SystemExit(128 + self.stop_signal)
        return self.history

    def _step(self):
        """One step and its boundary's history rows; ``(eval_due, save_due)``.  The schedule counts
        ``position()[schedule]``: an evaluation / checkpoint is due where it has just moved to a multiple of
        ``eval_every`` / ``checkpoint_every``; a trial checkpoint waits for the next safe point."""
        opt = self.optimizer
        before = opt.position()[opt.schedule]
        opt.step()
        now = opt.position()
        for row in opt.history_rows(self.log_every):
            self._record(opt.table, self._complete(row))
        self._bars.update(self.done())
        moved = now[opt.schedule] != before
        if self.every_trials is not None and now["trials"] % self.every_trials == 0:
            self._save_wanted = True  # taken at the next safe point
        save_due = opt.safe_point and ((moved and now[opt.schedule] % self.checkpoint_every == 0) or self._save_wanted)
        if save_due:
            self._save_wanted = False
        return moved and now[opt.schedule] % self.eval_every == 0, save_due

    def _complete(self, row) -> dict:
        """The optimizer's row, with the Trainer's ``acceptance`` (since the table's previous row) and
        ``wall_time`` where it has none of its own."""
        acceptance = self._window("rows")
        row = dict(row)
        row.setdefault("acceptance", acceptance)
        row.setdefault("wall_time", self.wall_time)
        return row

    def _load_marks(self, state):
        """``[tried, accepted]`` at the last row of the optimizer's table and at the last evaluation: the
        starts of the acceptance windows (in the checkpoint, so a resumed run's windows are the same)."""
        r = self.optimizer.report()
        now = [r["tried"], r["accepted"]]
        self._marks = {k: list(state.get("marks", {}).get(k, now)) for k in ("rows", "eval")}

    def _window(self, key) -> float:
        """Acceptance since the mark ``key``, which then moves here."""
        r = self.optimizer.report()
        (n0, a0), n, a = self._marks[key], r["tried"], r["accepted"]
        self._marks[key] = [n, a]
        return (a - a0) / (n - n0) if n > n0 else math.nan

    def where(self) -> str:
        """Where the run is, for people: e.g. "trial 300 (cycle 2 of 7)" (RSO) or "step 40 of 150" (aMC)."""
        return self.optimizer.where(self.end)

    def _record(self, table, row):
        """Append ``row`` to ``history[table]`` and, as one flushed line, to the metrics log."""
        self.history[table].append(row)
        self._log.write(table, row)

    @contextmanager
    def _metrics_log(self):
        """The metrics log, rewritten from the history (see the package docstring) and open for appending."""
        if self.metrics_log is None:
            yield
            return
        self._log.open(ordered_rows(self.history, self.optimizer.schedule))
        try:
            yield
        finally:
            self._log.close()

    @contextmanager
    def _signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # Python runs signal handlers in the main thread only: no graceful stop elsewhere
            return
        old = {s: signal.signal(s, self._on_signal) for s in _SIGNALS}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)

    def _on_signal(self, signum, frame):
        if self.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait for the step
        self.stop_signal = signum  # the loop looks at this after the current step

    def _say(self, text):
        if self.progress:
            tqdm.write(f"minirso.train: {text}", file=sys.stderr)  # with the bars, off stdout

    # ---- evaluation ----------------------------------------------------------------------------
    def _has_eval(self) -> bool:
        return self.eval_data is not None or self.train_eval_data is not None

    def _sync_model(self):
        """The model holds the optimizer's ``model_params()`` (K rows: the best row; else already its own)."""
        p = self.optimizer.model_params()
        if p is not self.model.params:
            self.model.params[...] = p

    def evaluate(self) -> dict:
        """``{"test_accuracy", "test_loss", "train_accuracy", "train_loss"}``, those available
        (:func:`minirso.train.evaluation.evaluate`).  The optimizer state is not touched."""
        if not self._has_eval():
            return {}
        self._sync_model()
        return evaluate(
            self.model,
            {"test": self.eval_data, "train": self.train_eval_data},
            self.loss_name,
            self._loss_fn,
            self.bn_data,
            self.eval_batch,
        )

    def _log_evaluation(self):
        r = self.optimizer.report()
        row = {
            **self.optimizer.position(),
            "wall_time": self.wall_time,
            **self.evaluate(),
            "acceptance": self._window("eval"),
            "sigma": r["sigma"],
        }
        self._record("eval", row)
        self._dirty = True
        self._bars.show_eval(row)

    # ---- checkpoints ---------------------------------------------------------------------------
    def _save(self):
        if self.checkpoint_path is None:
            return
        self._sync_model()
        state = {
            "version": 2,
            "kind": self.kind,
            "steps": self.steps,
            "position": self.optimizer.position(),
            "wall_time": self.wall_time,
            "loop": {"marks": self._marks},
            "schedule": {
                "eval_every": self.eval_every,
                "checkpoint_every": self.checkpoint_every,
                "checkpoint_every_trials": self.every_trials,
                "log_every": self.log_every,
                "loss": self.loss_name,
            },
        }
        os.makedirs(os.path.dirname(os.path.abspath(self.checkpoint_path)), exist_ok=True)  # e.g. runs/
        ckpt.save(
            self.checkpoint_path,
            self.model,
            self.optimizer,
            self.history,
            meta={"trainer": state, "user": self.meta},
            keep_previous=True,
        )
        self._dirty = False

    def restore(self, path: str | os.PathLike | None = None) -> bool:
        """Continue from the checkpoint at ``path`` (default: ``checkpoint``); False if there is none.

        Falls back, with a warning, to the previous checkpoint when the newest is damaged.  ValueError
        when the model's architecture or the optimizer's hyperparameters differ from the checkpoint's.
        """
        path = path if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("Trainer.restore: no path given and no checkpoint path set")
        if not (os.path.exists(path) or os.path.exists(ckpt.previous_path(path))):
            return False
        ck = ckpt.load(path, fallback=True)
        state = ck.meta.get("trainer", {})
        if state.get("kind", self.kind) != self.kind:
            raise ValueError(f"{ck.path} is from a {state['kind']!r} run, this trainer runs {self.kind!r}")
        _check_architecture(ck.model, self.model, ck.path)
        if ck.optimizer is None:
            raise ValueError(f"{ck.path} holds no optimizer state")
        self.optimizer.load_state_dict(ck.optimizer)  # before any change: ValueError names a hyperparameter
        xp = get_array_module(self.model.params)
        self.model.params[...] = xp.asarray(to_numpy(ck.model.params))  # in place: the layers' views stay bound
        saved = ck.model.buffers()
        for name, buf in self.model.buffers().items():
            buf[...] = xp.asarray(to_numpy(saved[name]))
        self.history = {"eval": [], self.optimizer.table: [], **(ck.history or {})}
        self._wall = float(state.get("wall_time", 0.0))
        self._load_marks(state.get("loop", {}))
        self._dirty = False
        return True


def _check_architecture(saved, model, path):
    """ValueError naming the first layer where ``model`` differs from the checkpoint's (init seeds may differ)."""
    a, b = saved.architecture()["layers"], model.architecture()["layers"]
    if len(a) != len(b):
        raise ValueError(f"{path}: the checkpoint's model has {len(a)} layers, this model {len(b)}")
    for i, (la, lb) in enumerate(zip(a, b)):
        if la != lb:
            raise ValueError(f"{path}: layer {i} is {la} in the checkpoint, {lb} in this model")
