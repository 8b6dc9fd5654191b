"""Command-line arguments of a resumable run: ``--resume`` rebuilds the run from its checkpoint.

A script that trains with :class:`minirso.train.Trainer` stores its arguments in the checkpoint's
meta (``Trainer(..., meta={"args": vars(args), ...})``).  :func:`parse_resumable` parses the command line and,
with ``--resume`` and an existing checkpoint, takes every argument the user did NOT type from the
checkpoint, so ``python script.py --checkpoint run.h5 --resume`` continues the stored run whatever
its flags were.  A flag typed on the command line is compared with the stored run:

* ``extend`` flags (a schedule: ``--cycles``, ``--steps``) may be larger than stored: the run
  continues to the new length; smaller is an error (a resume does not shorten a run);
* ``free`` flags (where the data lives, the backend, checkpoint intervals, progress bars, the JSON
  path) take the typed value: they do not change what is computed;
* every other flag defines the run (architecture, batch size, seed, ...): a value that differs from
  the stored one is an error naming each such flag with both values (``parser.error``: exit status 2).

``resume`` and the checkpoint path itself always come from the command line.
"""

from __future__ import annotations

import argparse
import copy
import os
import shlex
import sys

from . import checkpoint as ckpt

__all__ = ["parse_resumable", "given_flags", "stored_args", "fit_until_stopped", "resume_command", "stop_message"]


def given_flags(parser: argparse.ArgumentParser, argv) -> set:
    """The ``dest`` of every option typed in ``argv`` (defaults are not typed: a second parse without them)."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
        action.required = False  # a required option is typed anyway; this parse only looks
    return set(vars(quiet.parse_args(argv)))


def stored_args(path) -> dict | None:
    """The arguments a script stored in the checkpoint at ``path``; None if it stored none.

    The Trainer keeps the script's ``meta`` under ``meta["user"]``; a plain :func:`checkpoint.save` at the top.
    """
    meta = ckpt.load(path, fallback=True).meta
    user = meta.get("user") if isinstance(meta.get("user"), dict) else meta
    args = user.get("args")
    return dict(args) if isinstance(args, dict) else None


def _flag(parser, dest) -> str:
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)  # the long spelling
    return dest


def parse_resumable(parser: argparse.ArgumentParser, argv=None, *, checkpoint="checkpoint", extend=(), free=()):
    """``parser.parse_args(argv)``, completed from the checkpoint's stored arguments on ``--resume``.

    ``checkpoint``: the ``dest`` of the checkpoint path; ``extend`` / ``free``: dests of schedule
    flags and of flags that do not change the computation (see the module docstring).  Without
    ``--resume``, or when the checkpoint (and its ``.prev``) does not exist, or stores no arguments,
    the plain parse is returned.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    path = getattr(args, checkpoint, None)
    if not (
        getattr(args, "resume", False) and path and (os.path.exists(path) or os.path.exists(ckpt.previous_path(path)))
    ):
        return args
    stored = stored_args(path)
    if stored is None:
        return args
    typed = given_flags(parser, argv)
    conflicts = []
    for dest, old in stored.items():
        if dest in ("resume", checkpoint) or not hasattr(args, dest):
            continue  # per invocation, or an argument this version of the script no longer has
        new = getattr(args, dest)
        if dest not in typed:
            setattr(args, dest, old)
        elif dest in free or new == old:
            pass
        elif dest in extend and old is not None and new is not None and new > old:
            pass  # a longer schedule: the run continues to the new length
        elif dest in extend:
            conflicts.append(
                f"{_flag(parser, dest)} {new!r} is less than the stored run's {old!r} "
                "(a resumed run can be extended, not shortened)"
            )
        else:
            conflicts.append(f"{_flag(parser, dest)} is {old!r} in the checkpoint, {new!r} on this command line")
    if conflicts:
        parser.error(
            f"--resume from {path}: "
            + "; ".join(conflicts)
            + ". Leave these flags out to continue the stored run, or give another --checkpoint "
            "to start a new one."
        )
    return args


def fit_until_stopped(trainer) -> bool:
    """``trainer.fit()``; True when Ctrl-C / SIGTERM stopped it (the trainer saved, then raised), else False.

    A script then reports and exits with ``128 + trainer.stop_signal`` (130 / 143: a shell's "stopped by a
    signal"); anything else raised in ``fit`` (a second Ctrl-C, an error) goes on up.
    """
    try:
        trainer.fit()
    except (KeyboardInterrupt, SystemExit):
        if trainer.stop_signal is None:
            raise  # not the trainer's own stop
    return trainer.stop_signal is not None


def resume_command(checkpoint) -> str | None:
    """The shell command that continues this script's run from ``checkpoint`` (which holds its arguments)."""
    return shlex.join(["python", sys.argv[0], "--checkpoint", checkpoint, "--resume"]) if checkpoint else None


def stop_message(trainer, checkpoint) -> str:
    """One line for a stopped run: where it stopped and the command that continues it."""
    hint = f"continue with: {resume_command(checkpoint)}" if checkpoint else "nothing was saved (no --checkpoint)"
    return f"interrupted at {trainer.where()}; {hint}"
