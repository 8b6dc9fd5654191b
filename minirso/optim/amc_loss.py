"""What aMC needs of a loss: the contract of :class:`AMC`, :class:`Metropolis` and :class:`AMCChains`, as Protocols.

aMC (Whitelam et al. 2022, sec. III A) asks a loss one thing per evaluation, ``U(x)``, and a little
more for some configurations:

============================  ==========================================  ======================
configuration                 what the loss must offer                    protocol
============================  ==========================================  ======================
batch learning                ``loss(params) -> U``                       :class:`AMCLoss`
``batch_size=`` (minibatch)   ``num_samples``, ``select(rows)``           :class:`MinibatchLoss`
``signal_norm=True``          ``configure(...)``, ``lambdas()`` (eq. 18)  :class:`RecordingLoss`
``progressive=True``          both of the above, and ``last_error``       both
============================  ==========================================  ======================

``U`` is a number for one flat parameter vector (``AMC``: params (P,)) and K numbers for K rows
(``AMCChains``: params (K, P) -> (K,)).  Any callable is an :class:`AMCLoss` (the Rosenbrock function
of the paper's Fig. 3 is one); :class:`minirso.optim.ModelLoss` implements all three protocols for a
minirso model.

Configuration (a design decision, see docs/design.md): what a loss records beyond U costs a pass or a
host sync, so it records it only when asked.  It is asked through its OWN interface, never by writing
its attributes: either at construction (``ModelLoss(..., signal_stats=True)``) or by the optimizer,
which calls :meth:`RecordingLoss.configure` once, in its constructor, with exactly what its
hyperparameters need (``signal_stats`` for signal norm, ``track_error`` for the doubling trigger of
progressive batching, sec. II F).  A loss is configured for the optimizer that uses it: two
optimizers should not share one loss.  A loss without what a configuration needs is a ValueError at
the optimizer's construction, naming the protocol (:func:`require`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["AMCLoss", "MinibatchLoss", "RecordingLoss", "require"]


@runtime_checkable
class AMCLoss(Protocol):
    """``U(params)``: a float for params (P,), or losses (K,) for params (K, P) (one per row)."""

    def __call__(self, params, /): ...


@runtime_checkable
class MinibatchLoss(AMCLoss, Protocol):
    """A loss over ``num_samples`` samples that evaluates on a chosen subset (minibatch learning, sec. II F)."""

    @property
    def num_samples(self) -> int: ...

    def select(self, rows, /) -> None:
        """Evaluate on these sample indices from now on (``None``: all of them)."""


@runtime_checkable
class RecordingLoss(AMCLoss, Protocol):
    """A loss whose evaluation can also record what aMC reads right after it, in the same forward pass."""

    def configure(self, *, signal_stats: bool = False, track_error: bool = False) -> None:
        """From now on record the signal-norm statistics (eq. 17) and / or the classification error."""

    def lambdas(self):
        """lambda_i of eq. (18) for the parameters of the last evaluation, shaped like those parameters."""

    @property
    def last_error(self) -> float | None:
        """Classification error of the last evaluation (None where it has none, e.g. regression)."""


def require(loss, protocol, setting: str):
    """``loss``, or ValueError: ``setting`` (e.g. ``"signal_norm=True"``) needs a loss implementing ``protocol``."""
    if not isinstance(loss, protocol):
        needs = [
            n
            for n in ("__call__", "num_samples", "select", "configure", "lambdas", "last_error")
            if hasattr(protocol, n)
        ]
        raise ValueError(
            f"{setting} needs a loss with {', '.join(needs)} (minirso.optim.amc_loss."
            f"{protocol.__name__}), e.g. minirso.optim.ModelLoss; {type(loss).__name__} lacks "
            f"{', '.join(n for n in needs if not hasattr(loss, n))}"
        )
    return loss
