"""The training loop: progress bars, held-out evaluation, history, a metrics log, checkpoints, exact resume.

::

    trainer = Trainer(model, RSO(model, x, y, cycles=50), eval_data=(x_test, y_test),
                      bn_data=x[:2000], checkpoint="run.h5")   # also writes run.h5.metrics.jsonl
    trainer.restore("run.h5")   # continue an earlier run (False, and nothing done, if there is none)
    history = trainer.fit()     # Ctrl-C: saves a checkpoint, then raises KeyboardInterrupt

**The loop.**  A step is one RSO trial (one weight) or one aMC move.  After every step comes a
*boundary*, where in this order: (1) the history grows (RSO: a ``"layers"`` row per finished tensor;
aMC: a ``"steps"`` row every ``log_every`` steps); (2) an evaluation runs if due (every ``eval_every``
RSO cycles / aMC steps, and at the end of ``fit()`` unless the last one was there); (3) a checkpoint
is written if due (every ``checkpoint_every`` cycles / steps, RSO also every ``checkpoint_every_trials``
trials of the run), or if a signal came, and at the end.  RSO checkpoints (trial-level ones and
those for a signal) wait for the next batch start (``RSO.at_batch_start``): within one mini-batch the
incremental evaluator carries activations from trial to trial, and only at a batch start does a
restored run compute exactly what the uninterrupted one computed.

**What is reported, and how it is counted.**  Cycles are numbered from 1 wherever the trainer shows or
records one: a ``"layers"`` row of cycle 1 is a tensor of the first cycle, the ``"eval"`` row with
``cycle`` 1 was measured after the first cycle (its ``cycle`` is also the number of cycles completed),
and messages say e.g. "trial 300 (cycle 2 of 7)".  (The RSO optimizer's own ``cycle`` attribute,
``records`` and state count from 0: the number of cycles completed.)  Every loss the trainer reports
is a mean per sample: ``test_loss`` / ``train_loss`` of an evaluation, and ``batch_loss``, the
optimizer's loss on the training rows it used (RSO: of the kept candidate, averaged over the tensor's
trials; aMC: U of the current parameters) -- the optimizers' summed ``"cross_entropy"`` is divided by
its number of rows; a custom loss callable is reported as it returns.  The acceptance rate (moves or
trials that changed the parameters) is ``acceptance`` in the tables and ``accept=`` on the bars, never
``acc``; ``test_acc=`` on a bar is the held-out accuracy.

**The metrics log** (``metrics_log``; by default ``<checkpoint>.metrics.jsonl`` beside the checkpoint,
none without one): JSON lines, one object per history row in the order the rows were made, each with
``"kind"`` (its table: ``"eval"``, ``"layers"`` or ``"steps"``) and the row's fields; NaN and infinities
are written as ``null`` (strict JSON).  Every line is flushed as it is written, so ``tail -f`` or
``pandas.read_json(path, lines=True)`` see a run while it goes on.  At the start of every ``fit()`` the
file is rewritten from the history (empty for a fresh run, the restored history after ``restore``), so
after a crash the lines written past the last checkpoint are not repeated by the resumed run: the log
always holds exactly the history.  ``minirso inspect --plot`` draws from the checkpoint's history.

**Exact resume.**  Every schedule is a pure function of the optimizer's position (cycles, trials,
steps), which is in the optimizer's state, and a checkpoint is only written at the END of a
boundary.  So a restored run starts with the next step and meets exactly the boundaries an
uninterrupted run meets: no evaluation runs twice, none is skipped.  Evaluation reads the parameters,
never the optimizer; it re-estimates BatchNorm running statistics, which training mode never reads
(:mod:`minirso.nn.norm`), so it cannot change the trajectory.  Random numbers are functions of
counters in the optimizer state (docs/design.md).  Hence on NumPy the params, optimizer state and history
of a resumed run equal an uninterrupted run's bit for bit, except ``wall_time`` (seconds in ``fit()``,
summed across resumes).  A damaged newest checkpoint: ``restore`` warns and loads the previous one
(``path + ".prev"``), and the run repeats some work.

**Signals: a stopped run stops the script.**  While ``fit()`` runs (only then) SIGINT and SIGTERM set a
flag: the current step and its boundary finish, a checkpoint is saved, ``interrupted`` becomes True,
``stop_signal`` holds the signal number, and ``fit()`` raises what Python raises for that signal when
no handler is installed, so a script looping over runs does not go on to the next one:

* SIGINT (Ctrl-C): ``KeyboardInterrupt`` (its message says where the run stopped and where it was
  saved).  Uncaught, Python prints the traceback and the process ends as killed by SIGINT (a shell
  shows exit status 130).
* SIGTERM (``kill``, job schedulers): ``SystemExit(143)``.  Uncaught, the process exits quietly with
  status 143 (128 + SIGTERM, what a shell reports for a process SIGTERM ended); ``finally`` blocks and
  ``atexit`` run.

Neither is an ``Exception``, so ``except Exception`` does not swallow them.  A script that wants to
report an interrupted run catches them and exits with ``128 + trainer.stop_signal`` (the examples
write their ``--json`` with ``"interrupted": true``, print the command that resumes, and exit 130 /
143).  A second SIGINT during the step raises KeyboardInterrupt at once, without a new checkpoint
(``interrupted`` stays False; the file on disk stays whole: saves replace it atomically).

**Checkpoint meta**: ``{"trainer": {"version", "kind" ("rso"/"amc"), "steps", "position",
"wall_time", "loop" (aMC: [step, accepted] at the last "steps" row and evaluation: acceptance is
per window), "schedule"}, "user": meta}``.  Before training starts, ``fit()`` checks that the
checkpoint's folder can be written (:func:`minirso.checkpoint.check_writable`, creating missing folders):
a bad path fails in a second with a :class:`~minirso.checkpoint.CheckpointError`, not after a cycle.

**Nets that end in Softmax** (aMC's): the output is a probability, so accuracy is its arg-max and a
cross-entropy ``loss`` is ``-log p[label]`` (the cross-entropy of ``log p``); ``loss="mse"`` reports
the aMC paper's training loss instead.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager

import numpy
from tqdm import tqdm

from . import checkpoint as ckpt
from .backend import get_array_module, to_numpy
from .nn.activation import Softmax
from .optim import AMC, RSO
from .optim.base import check_int
from .losses import LOSSES, resolve_loss

__all__ = ["Trainer", "write_metrics"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SUMMED = LOSSES["cross_entropy"]  # the one built-in loss summed over rows: reported divided by them
_SHOW_EVERY = 20  # progress-bar updates every this many trials / steps: a tqdm refresh costs ~0.1 ms


class Trainer:
    """Run ``optimizer`` (RSO, or AMC / Metropolis with ``steps``) on ``model``: see the module docstring.

    ``checkpoint``: the HDF5 path to save to (its folder is created), or None / "" for none.
    ``metrics_log``: True (default): ``<checkpoint>.metrics.jsonl``, or none without a checkpoint; a path;
    or False / None / "" for none.
    """

    def __init__(self, model, optimizer, *, steps=None, eval_data=None, train_eval_data=None, bn_data=None,
                 eval_every=1, checkpoint=None, checkpoint_every=1, checkpoint_every_trials=None, log_every=100,
                 progress=True, meta=None, loss="cross_entropy_mean", eval_batch=2000, metrics_log=True):
        if isinstance(optimizer, RSO):
            if optimizer.model is not model:
                raise ValueError("Trainer: the RSO optimizer was built for a different model")
            if steps is not None:
                raise ValueError("Trainer: steps is for aMC; RSO runs the optimizer's cycles")
            self._loop = _RSOLoop(self, optimizer, checkpoint_every_trials)
        elif isinstance(optimizer, AMC):
            if optimizer.params is not model.params:
                raise ValueError("Trainer: the aMC optimizer must move model.params (AMC(model.params, ...))")
            if checkpoint_every_trials is not None:
                raise ValueError("Trainer: checkpoint_every_trials is for RSO; use checkpoint_every (steps)")
            if steps is None:
                raise ValueError("Trainer: aMC needs steps (the total number of steps to reach)")
            self._loop = _AMCLoop(self, optimizer, check_int("steps", steps, 0), check_int("log_every", log_every, 1))
        else:
            raise TypeError(f"Trainer: optimizer must be minirso.optim.RSO or AMC, got {type(optimizer).__name__}")
        self.model, self.optimizer = model, optimizer
        self.eval_data, self.train_eval_data, self.bn_data = eval_data, train_eval_data, bn_data
        self.eval_every = check_int("eval_every", eval_every, 1)
        # None or "" (a command line's --checkpoint '') mean: no checkpoints
        self.checkpoint_path = os.fspath(checkpoint) if checkpoint is not None and os.fspath(checkpoint) else None
        self.checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        if metrics_log is True:
            metrics_log = self.checkpoint_path and self.checkpoint_path + ".metrics.jsonl"
        self.metrics_log = os.fspath(metrics_log) if metrics_log not in (None, False) and os.fspath(metrics_log) \
            else None
        self._log = None  # the open metrics log while fit() runs
        self.progress, self.meta = bool(progress), dict(meta or {})
        self.loss_name, self._loss_fn = resolve_loss(loss)
        self.eval_batch = check_int("eval_batch", eval_batch, 1)
        self.history = {"eval": [], self._loop.table: []}
        self.interrupted, self.stop_signal = False, None
        self._wall, self._t0 = 0.0, None  # seconds in earlier fit() calls; perf_counter() at this one's start
        self._dirty = False  # anything new since the last checkpoint?

    @property
    def wall_time(self) -> float:
        """Seconds spent inside ``fit()``, summed across resumes."""
        return self._wall + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to the end and return ``history``; on SIGINT / SIGTERM checkpoint, then raise
        KeyboardInterrupt / SystemExit(143) (see the module docstring)."""
        loop = self._loop
        self.interrupted, self.stop_signal = False, None
        if self.checkpoint_path is not None:  # a bad path fails now, not at the first save a cycle later
            ckpt.check_writable(self.checkpoint_path, create_folders=True)
        self._t0 = time.perf_counter()
        try:
            with self._metrics_log(), self._signal_handlers(), loop.bars(self.progress):
                while not loop.done() and not self.interrupted:
                    eval_due, save_due = loop.step()  # (1) one trial / move, and its history rows
                    self._dirty = True
                    if eval_due:
                        self._log_evaluation()  # (2)
                    self.interrupted = self.stop_signal is not None and loop.can_stop()
                    if save_due or self.interrupted:
                        self._save()  # (3)
                if not self.interrupted:
                    rows = self.history["eval"]
                    if self._has_eval() and not (rows and loop.at(rows[-1])):
                        self._log_evaluation()  # the final evaluation, unless the schedule just made it
                    if self._dirty:
                        self._save()
        finally:
            self._wall, self._t0 = self.wall_time, None
        if self.interrupted:  # the handlers are restored: raise what the signal would have raised without them
            name = signal.Signals(self.stop_signal).name
            text = f"stopped by {name} at {self.where()}" + (
                f"; checkpoint saved to {self.checkpoint_path}" if self.checkpoint_path else "; no checkpoint path set")
            self._say(text)
            if self.stop_signal == signal.SIGINT:
                raise KeyboardInterrupt(text)
            raise SystemExit(128 + self.stop_signal)
        return self.history

    def where(self) -> str:
        """Where the run is, for people: e.g. "trial 300 (cycle 2 of 7)" (RSO) or "step 40 of 150" (aMC)."""
        return self._loop.where()

    def _record(self, table, row):
        """Append ``row`` to ``history[table]`` and, as one flushed line, to the metrics log."""
        self.history[table].append(row)
        if self._log is not None:
            self._log.write(_json_line(table, row))
            self._log.flush()  # readers (tail -f, pandas) see the line now, not when a buffer fills

    @contextmanager
    def _metrics_log(self):
        """The metrics log, rewritten from the history (see the module docstring) and open for appending."""
        if self.metrics_log is None:
            yield
            return
        path = self.metrics_log
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            tmp = f"{path}.tmp{os.getpid()}"
            with open(tmp, "w") as f:  # written next to it and renamed: a reader never sees half a history
                f.writelines(_json_line(table, row) for table, row in self._loop.ordered_rows())
            os.replace(tmp, path)
            self._log = open(path, "a")
        except OSError as e:
            raise OSError(e.errno, f"Trainer: cannot write the metrics log {path} ({e.strerror}); choose another "
                                   "path with metrics_log=PATH, or metrics_log=False for none") from e
        try:
            yield
        finally:
            self._log.close()
            self._log = None

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

    def evaluate(self) -> dict:
        """``{"test_accuracy", "test_loss", "train_accuracy", "train_loss"}``, those available.

        BatchNorm statistics are re-estimated on ``bn_data`` first; the model runs in eval mode and goes
        back to its previous mode.  Params and optimizer state are not touched.
        """
        if not self._has_eval():
            return {}
        model, xp = self.model, get_array_module(self.model.params)
        was_training = model.training
        if self.bn_data is not None:
            model.reestimate_batchnorm(xp.asarray(self.bn_data))  # a no-op for models without BatchNorm
        model.eval()
        try:
            out = {}
            for prefix, data in (("test", self.eval_data), ("train", self.train_eval_data)):
                if data is not None:
                    out.update({f"{prefix}_{k}": v for k, v in self._measure(*data).items()})
            return out
        finally:
            model.train(was_training)

    def _measure(self, x, y) -> dict:
        """Accuracy (integer labels only) and the loss per sample on ``(x, y)``, ``eval_batch`` rows at a time."""
        xp = get_array_module(self.model.params)
        log_p = isinstance(self.model.layers[-1], Softmax) and self.loss_name.startswith("cross_entropy")
        summed = self._loss_fn is _SUMMED  # the authors' summed loss; the others are means over rows
        n, correct, total = int(x.shape[0]), 0, 0.0
        for i in range(0, n, self.eval_batch):
            xb, yb = xp.asarray(x[i : i + self.eval_batch]), xp.asarray(y[i : i + self.eval_batch])
            out = self.model.forward(xb)
            if yb.dtype.kind in "iu" and out.ndim == 2:
                correct += int((out.argmax(axis=1) == yb).sum())  # host sync, once per chunk
            if log_p:  # a probability output: cross-entropy of log p is -log p[label]
                out = xp.log(xp.maximum(out, numpy.finfo(out.dtype).tiny))
            value = float(self._loss_fn(out, yb))
            total += value if summed else value * yb.shape[0]
        result = {"accuracy": correct / n} if y.dtype.kind in "iu" else {}
        result["loss"] = total / n  # per sample, whichever loss
        return result

    def _log_evaluation(self):
        row = {**self._loop.position(), "wall_time": self.wall_time, **self.evaluate(), **self._loop.eval_summary()}
        self._record("eval", row)
        self._dirty = True
        self._loop.show_eval(row)

    # ---- checkpoints ---------------------------------------------------------------------------
    def _save(self):
        if self.checkpoint_path is None:
            return
        loop = self._loop
        state = {"version": 1, "kind": loop.kind, "steps": getattr(loop, "steps", None), "position": loop.position(),
                 "wall_time": self.wall_time, "loop": loop.state(),
                 "schedule": {"eval_every": self.eval_every, "checkpoint_every": self.checkpoint_every,
                              "checkpoint_every_trials": getattr(loop, "every_trials", None),
                              "log_every": getattr(loop, "log_every", None), "loss": self.loss_name}}
        os.makedirs(os.path.dirname(os.path.abspath(self.checkpoint_path)), exist_ok=True)  # e.g. runs/
        ckpt.save(self.checkpoint_path, self.model, self.optimizer, self.history,
                  meta={"trainer": state, "user": self.meta}, keep_previous=True)
        self._dirty = False

    def restore(self, path=None) -> bool:
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
        if state.get("kind", self._loop.kind) != self._loop.kind:
            raise ValueError(f"{ck.path} is from a {state['kind']!r} run, this trainer runs {self._loop.kind!r}")
        _check_architecture(ck.model, self.model, ck.path)
        if ck.optimizer is None:
            raise ValueError(f"{ck.path} holds no optimizer state")
        self.optimizer.load_state_dict(ck.optimizer)  # before any change: ValueError names a hyperparameter
        xp = get_array_module(self.model.params)
        self.model.params[...] = xp.asarray(to_numpy(ck.model.params))  # in place: the layers' views stay bound
        saved = ck.model.buffers()
        for name, buf in self.model.buffers().items():
            buf[...] = xp.asarray(to_numpy(saved[name]))
        self.history = {"eval": [], self._loop.table: [], **(ck.history or {})}
        self._wall = float(state.get("wall_time", 0.0))
        self._loop.load_state(state.get("loop", {}))
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


class _Loop:
    """What the Trainer asks of a loop: ``done()``, ``position()``, ``where()``, ``step() -> (eval_due,
    save_due)``, ``eval_summary()``, ``bars(on)``, ``show_eval(row)``, ``order(table, row)`` (where a history
    row was made) and its own ``state()`` for the checkpoint."""

    key = None  # the position entry that identifies a boundary

    def ordered_rows(self):
        """``(table, row)`` of the whole history in the order the rows were made (for the metrics log): by
        position, and at one position the loop's row before the evaluation (``step()`` makes it first)."""
        rows = [(table, row) for table in (self.table, "eval") for row in self.t.history.get(table, [])]
        return sorted(rows, key=lambda tr: (self.order(*tr), tr[0] == "eval"))  # stable within a table

    def at(self, row) -> bool:
        """Is ``row`` (of history["eval"]) from the current position?"""
        return row.get(self.key) == self.position()[self.key]

    def can_stop(self) -> bool:
        """May a checkpoint be taken now and resume exactly?  (RSO: only at a batch start.)"""
        return True

    def state(self) -> dict:
        return {}

    def load_state(self, state):
        pass


class _RSOLoop(_Loop):
    """RSO: a step is a trial; history rows at tensor ends; evaluations and checkpoints at cycle ends.
    Its position and records are in the optimizer state: nothing of its own to checkpoint."""

    kind, table, key = "rso", "layers", "trials"

    def __init__(self, trainer, opt, every_trials):
        self.t, self.opt = trainer, opt
        self.every_trials = None if every_trials is None else check_int("checkpoint_every_trials", every_trials, 1)
        self._cycles = self._tensor = None  # the two progress bars
        self._save_wanted = False  # a trial checkpoint fell due inside a batch
        # losses per sample: every candidate is scored on batch_size rows (its own or a shared batch)
        summed = getattr(opt.evaluator, "loss_fn", None) is _SUMMED
        self.per_sample = 1.0 / opt.hyperparameters["batch_size"] if summed else 1.0

    def done(self):
        return self.opt.done

    def position(self):
        return {"cycle": self.opt.cycle, "trials": self.opt.trial}  # cycle: the cycles completed

    def where(self):
        opt, cycles = self.opt, self.opt.hyperparameters["cycles"]
        if opt.done:
            return f"trial {opt.trial} (all {cycles} cycles done)"
        if opt.cycle and opt.unit == 0 and opt.pos == 0:
            return f"trial {opt.trial} (end of cycle {opt.cycle} of {cycles})"
        return f"trial {opt.trial} (cycle {opt.cycle + 1} of {cycles})"

    def order(self, table, row):
        return row["cycle"]  # a "layers" row of cycle c comes before the evaluation after cycle c

    def step(self):
        t, opt, cycle = self.t, self.opt, self.opt.cycle
        self._show_trial(opt.step())
        for r in opt.records[len(t.history["layers"]):]:  # a tensor has finished: its record becomes a row
            row = {k: v for k, v in r.items() if k != "mean_loss"}  # (in the optimizer's units: summed)
            row.update(cycle=r["cycle"] + 1, batch_loss=r["mean_loss"] * self.per_sample,
                       acceptance=(r["plus"] + r["minus"]) / r["trials"] if r["trials"] else math.nan)
            t._record("layers", row)
        cycle_end = opt.cycle != cycle
        if cycle_end and self._cycles is not None:
            self._cycles.update(1)
        if self.every_trials is not None and opt.trial % self.every_trials == 0:
            self._save_wanted = True  # taken at the next batch start (see can_stop)
        save_due = self.can_stop() and ((cycle_end and opt.cycle % t.checkpoint_every == 0) or self._save_wanted)
        if save_due:
            self._save_wanted = False
        return cycle_end and opt.cycle % t.eval_every == 0, save_due

    def can_stop(self):
        """Only where the next trial draws a fresh batch: an evaluator may carry rounding-sensitive work
        between the trials of one batch (``RSO.at_batch_start``).  A signal waits at most
        ``trials_per_batch - 1`` trials; a trial checkpoint due mid-batch is taken at the batch's end.
        Saves change nothing in the run, so moving them keeps resume exact."""
        return self.opt.at_batch_start

    def eval_summary(self):
        """Acceptance over the cycles since the previous evaluation; sigma: the annealing factor."""
        rows = self.t.history["eval"]
        recs = [r for r in self.opt.records if r["cycle"] >= (rows[-1]["cycle"] if rows else 0)]
        trials = sum(r["trials"] for r in recs)
        acc = sum(r["plus"] + r["minus"] for r in recs) / trials if trials else math.nan
        return {"acceptance": acc, "sigma": self.opt.sigma_factor(max(self.opt.cycle - 1, 0))}

    @contextmanager
    def bars(self, on):
        """One bar over cycles, one over the trials of the current tensor."""
        if on:
            self._cycles = tqdm(total=self.opt.hyperparameters["cycles"], initial=self.opt.cycle, desc="RSO",
                                unit="cycle", position=0, dynamic_ncols=True)
        try:
            yield
        finally:
            for bar in (self._tensor, self._cycles):
                if bar is not None:
                    bar.close()
            self._cycles = self._tensor = None

    def _show_trial(self, info):
        if self._cycles is None:
            return
        if self._tensor is None:  # a tensor starts (or a resumed run starts inside one)
            self._tensor = tqdm(total=info["trials"], initial=info["position"], desc=info["name"], unit="trial",
                                position=1, leave=False, dynamic_ncols=True)
            self._shown = self._kept = self._loss = 0
        self._shown += 1
        self._kept += info["decision"] != "keep"
        self._loss += info["loss"]
        last = info["position"] + 1 == info["trials"]
        if self._shown % _SHOW_EVERY == 0 or last:
            sigma = float(numpy.mean(self.opt.units[info["unit"]].sigma)) * self.opt.sigma_factor(info["cycle"])
            self._tensor.set_postfix(batch_loss=f"{self._loss * self.per_sample / self._shown:.4g}",
                                     accept=f"{self._kept / self._shown:.2f}", sigma=f"{sigma:.3g}", refresh=False)
            self._tensor.update(self._tensor.total - self._tensor.n if last else _SHOW_EVERY)
        if last:
            self._tensor.close()
            self._tensor = None

    def show_eval(self, row):
        if self._cycles is not None and "test_accuracy" in row:
            self._cycles.set_postfix(test_acc=f"{row['test_accuracy']:.4f}")


class _AMCLoop(_Loop):
    """aMC: a step is a Monte Carlo move; every step is a boundary."""

    kind, table, key = "amc", "steps", "step"

    def __init__(self, trainer, opt, steps, log_every):
        self.t, self.opt, self.steps, self.log_every = trainer, opt, steps, log_every
        self.load_state({})
        self._bar = self._test = None  # the progress bar; the test accuracy it shows

    def done(self):
        return self.opt.step_count >= self.steps

    def position(self):
        return {"step": self.opt.step_count}

    def where(self):
        return f"step {self.opt.step_count} of {self.steps}"

    def order(self, table, row):
        return row["step"]

    def batch_loss(self):
        """U of the current parameters per sample: the summed cross-entropy divided by the rows it was
        computed on (the minibatch selected for the last step, else all the data)."""
        f, loss = self.opt.loss_fn, float(self.opt.loss)
        if getattr(f, "loss_fn", None) is not _SUMMED:
            return loss
        return loss / (int(f.rows.shape[0]) if f.rows is not None else f.num_samples)

    def state(self):
        return {"marks": self.marks}

    def load_state(self, state):
        now = [self.opt.step_count, self.opt.accepted]  # [steps, accepted] at the last row of each table
        self.marks = {k: list(state.get("marks", {}).get(k, now)) for k in ("log", "eval")}

    def _window(self, key):
        """Acceptance since the mark ``key``, which then moves here."""
        (n0, a0), n, a = self.marks[key], self.opt.step_count, self.opt.accepted
        self.marks[key] = [n, a]
        return (a - a0) / (n - n0) if n > n0 else math.nan

    def step(self):
        t, opt = self.t, self.opt
        opt.step()
        n = opt.step_count
        if n % self.log_every == 0:
            t._record("steps", {"step": n, "batch_loss": self.batch_loss(), "sigma": float(opt.sigma),
                                "acceptance": self._window("log"), "wall_time": t.wall_time})
        self._show()
        return n % t.eval_every == 0, n % t.checkpoint_every == 0

    def eval_summary(self):
        return {"acceptance": self._window("eval"), "sigma": float(self.opt.sigma)}

    @contextmanager
    def bars(self, on):
        if on:
            self._bar = tqdm(total=self.steps, initial=self.opt.step_count, desc="aMC", unit="step",
                             dynamic_ncols=True)
            self._shown = [self.opt.step_count, self.opt.accepted]
        try:
            yield
        finally:
            if self._bar is not None:
                self._bar.close()
            self._bar = None

    def _show(self):
        opt, bar = self.opt, self._bar
        if bar is None or not (opt.step_count % _SHOW_EVERY == 0 or self.done()):
            return
        (n0, a0), n = self._shown, opt.step_count
        self._shown = [n, opt.accepted]
        shown = {"batch_loss": f"{self.batch_loss():.4g}", "accept": f"{(opt.accepted - a0) / max(n - n0, 1):.2f}",
                 "sigma": f"{opt.sigma:.3g}"}
        if self._test is not None:
            shown["test_acc"] = self._test
        bar.set_postfix(shown, refresh=False)
        bar.update(n - n0)

    def show_eval(self, row):
        self._test = f"{row['test_accuracy']:.4f}" if "test_accuracy" in row else None


def _json_line(table, row) -> str:
    """One metrics-log line: ``{"kind": table, **row}`` as strict JSON (NaN and infinities as null)."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
    return json.dumps({"kind": table, **clean}, allow_nan=False, default=_plain) + "\n"


def _plain(v):
    if isinstance(v, numpy.generic):
        v = v.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return str(v)


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
