"""Progress bars for any optimizer the Trainer drives, from its ``position()`` and ``report()``.

One bar over the schedule (RSO: cycles, aMC: steps).  When ``report()`` names a ``part`` in progress
(RSO: the tensor being swept), a second bar shows that part's trials.  The numbers on a bar --
``batch_loss`` (per sample), ``accept`` (the share of accepted steps since the bar last changed),
``sigma`` -- are on the part's bar when there is one, else on the schedule's; the held-out accuracy of
the last evaluation (``test_acc``) is on the schedule's bar.  The acceptance rate is ``accept``, never
``acc``.
"""

from __future__ import annotations

from contextlib import contextmanager

from tqdm import tqdm

__all__ = ["Progress"]

SHOW_EVERY = 20  # the numbers are redrawn every this many steps: a tqdm refresh costs ~0.1 ms


class Progress:
    """The bars of one ``fit()`` of ``optimizer`` up to ``end`` (``opened(on)``, then ``update()`` per step)."""

    def __init__(self, optimizer, end):
        self.opt, self.end = optimizer, end
        self.bar = self.part_bar = None
        self.test = None  # the test accuracy shown, as text

    @contextmanager
    def opened(self, on: bool):
        opt = self.opt
        if on:
            self.bar = tqdm(
                total=self.end,
                initial=opt.position()[opt.schedule],
                desc=opt.label,
                unit=opt.schedule,
                position=0,
                dynamic_ncols=True,
            )
            r = opt.report()
            self.shown = (r["tried"], r["accepted"])
            self.steps = 0
        try:
            yield
        finally:
            for bar in (self.part_bar, self.bar):
                if bar is not None:
                    bar.close()
            self.bar = self.part_bar = None

    def update(self, done: bool):
        """After a step: move the bars; redraw the numbers every ``SHOW_EVERY`` steps and at the end."""
        if self.bar is None:
            return
        opt = self.opt
        self.steps += 1
        r = opt.report()
        self._part(None if done else r.get("part"))
        n = opt.position()[opt.schedule]
        numbers = self.steps % SHOW_EVERY == 0 or done
        if numbers:
            (t0, a0), t, a = self.shown, r["tried"], r["accepted"]
            self.shown = (t, a)
            shown = {
                "batch_loss": f"{r['batch_loss']:.4g}",
                "accept": f"{(a - a0) / max(t - t0, 1):.2f}",
                "sigma": f"{r['sigma']:.3g}",
            }
            target = self.part_bar if self.part_bar is not None else self.bar
            if target is self.bar and self.test is not None:
                shown["test_acc"] = self.test
            target.set_postfix(shown, refresh=False)
        if self.part_bar is not None and numbers:
            self.part_bar.update(self.part_bar_n - self.part_bar.n)
        if n != self.bar.n and (numbers or self.part_bar is not None):
            self.bar.update(n - self.bar.n)

    def _part(self, part):
        """Open, move, replace or close the part's bar (another name, or fewer done: a new part)."""
        name, done, total = part if part is not None else (None, 0, 0)
        if self.part_bar is not None and (self.part_name != name or done < self.part_bar_n):
            self.part_bar.update(self.part_bar.total - self.part_bar.n)
            self.part_bar.close()
            self.part_bar = None
        if part is None:
            return
        if self.part_bar is None:
            self.part_bar = tqdm(
                total=total, initial=done, desc=name, unit="trial", position=1, leave=False, dynamic_ncols=True
            )
            self.part_name = name
        self.part_bar_n = done

    def show_eval(self, row):
        """The held-out accuracy of the evaluation ``row`` on the schedule's bar."""
        self.test = f"{row['test_accuracy']:.4f}" if "test_accuracy" in row else None
        if self.bar is not None and self.test is not None:
            self.bar.set_postfix(test_acc=self.test)
