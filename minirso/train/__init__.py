"""The training loop: progress bars, held-out evaluation, history, a metrics log, checkpoints, exact resume.

::

    trainer = Trainer(model, RSO(model, x, y, cycles=50), eval_data=(x_test, y_test),
                      bn_data=x[:2000], checkpoint="run.h5")   # also writes run.h5.metrics.jsonl
    trainer.restore("run.h5")   # continue an earlier run (False, and nothing done, if there is none)
    history = trainer.fit()     # Ctrl-C: saves a checkpoint, then raises KeyboardInterrupt

Files, read in this order: ``trainer.py`` (the loop, signals, checkpoints, resume), ``evaluation.py``
(held-out accuracy and loss, and why the reported loss is a mean per sample), ``metrics.py`` (the
metrics log), ``progress.py`` (the bars).

**What is trained.**  Any optimizer that implements :class:`minirso.optim.base.TrainableOptimizer`:
RSO, AMC, Metropolis, AMCChains, or a class of your own; the Trainer knows none of them by name.  It
reads the optimizer's ``position()`` (RSO ``{"cycle", "trials"}``, aMC ``{"step"}``) and counts its
schedule in the entry the optimizer names (``schedule``: RSO cycles, aMC steps) up to the optimizer's
``end`` (RSO's ``cycles``) or, for an optimizer without an end of its own (aMC), ``steps``.

**The loop.**  A step is one ``optimizer.step()``: an RSO trial (one weight) or one aMC move.  After
every step comes a *boundary*, where in this order: (1) the history grows by the optimizer's rows
(``history_rows``: RSO a ``"layers"`` row per finished tensor, aMC a ``"steps"`` row every ``log_every``
steps); (2) an evaluation runs if due (every ``eval_every`` cycles / steps, and at the end of ``fit()``
unless the last one was there); (3) a checkpoint is written if due (every ``checkpoint_every`` cycles /
steps, also every ``checkpoint_every_trials`` trials of the run for an optimizer that counts trials),
or if a signal came, and at the end.  A checkpoint waits for the optimizer's next ``safe_point``:
RSO's is a batch start (``RSO.at_batch_start``): within one mini-batch the incremental evaluator
carries activations from trial to trial, and only at a batch start does a restored run compute exactly
what the uninterrupted one computed.

**What is reported, and how it is counted.**  Cycles are numbered from 1 wherever the trainer shows or
records one: a ``"layers"`` row of cycle 1 is a tensor of the first cycle, the ``"eval"`` row with
``cycle`` 1 was measured after the first cycle (its ``cycle`` is also the number of cycles completed),
and messages say e.g. "trial 300 (cycle 2 of 7)".  (The RSO optimizer's own ``cycle`` attribute,
``records`` and state count from 0: the number of cycles completed.)  Every loss the trainer reports
is a mean per sample (:mod:`minirso.train.evaluation` says why): ``test_loss`` / ``train_loss`` of an
evaluation, and ``batch_loss``, the optimizer's loss on the training rows it used (RSO: of the kept
candidate, averaged over the tensor's trials; aMC: U of the current parameters).  The acceptance rate
(steps that changed the parameters) is ``acceptance`` in the tables (since the previous row of the
table) and ``accept=`` on the bars, never ``acc``; ``test_acc=`` on a bar is the held-out accuracy.

**The metrics log** (``metrics_log``; by default ``<checkpoint>.metrics.jsonl`` beside the checkpoint,
none without one): JSON lines, one object per history row in the order the rows were made, each with
``"kind"`` (its table: ``"eval"``, ``"layers"`` or ``"steps"``) and the row's fields; NaN and infinities
are written as ``null`` (strict JSON).  Every line is flushed as it is written, so ``tail -f`` or
``pandas.read_json(path, lines=True)`` see a run while it goes on.  At the start of every ``fit()`` the
file is rewritten from the history (empty for a fresh run, the restored history after ``restore``), so
after a crash the lines written past the last checkpoint are not repeated by the resumed run: the log
always holds exactly the history.  ``minirso inspect --plot`` draws from the checkpoint's history.

**Exact resume.**  Every schedule is a pure function of the optimizer's position, which is in the
optimizer's state, and a checkpoint is only written at the END of a boundary.  So a restored run
starts with the next step and meets exactly the boundaries an uninterrupted run meets: no evaluation
runs twice, none is skipped.  Evaluation reads the parameters, never the optimizer, and cannot change
the trajectory (:mod:`minirso.train.evaluation`).  Random numbers are functions of counters in the
optimizer state (docs/design.md).  The optimizer's state holds only what resuming needs; the logs
(RSO's per-tensor records included) are the history, which the checkpoint holds.  Hence on NumPy the
params, optimizer state and history of a resumed run equal an uninterrupted run's bit for bit, except
``wall_time`` (seconds in ``fit()``, summed across resumes).  A damaged newest checkpoint: ``restore``
warns and loads the previous one (``path + ".prev"``), and the run repeats some work.

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

**Checkpoint meta**: ``{"trainer": {"version" (2), "kind" (the optimizer's label, lower case: "rso",
"amc"), "steps", "position", "wall_time", "loop" ({"marks": [tried, accepted] at the last row of the
optimizer's table and at the last evaluation: acceptance is per window}), "schedule"}, "user": meta}``.
Before training starts, ``fit()`` checks that the checkpoint's folder can be written
(:func:`minirso.checkpoint.check_writable`, creating missing folders): a bad path fails in a second with
a :class:`~minirso.checkpoint.CheckpointError`, not after a cycle.
"""

from .metrics import write_metrics
from .trainer import Trainer

__all__ = ["Trainer", "write_metrics"]
