"""aMC's loss: ``U(params)`` of a minirso model on its data, with the signal-norm statistics.

The policy (aMC) asks this object "the loss U(x) of the current parameters"; how it is computed
(plain forward, or the fused small-MLP kernel on a GPU) is decided here (policy versus evaluator,
docs/design.md).  :class:`ModelLoss` implements every protocol of :mod:`minirso.optim.amc_loss`:
:class:`~minirso.optim.amc_loss.MinibatchLoss` and :class:`~minirso.optim.amc_loss.RecordingLoss`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from .. import kernels
from ..backend import Array, get_array_module
from ..losses import LOSSES, resolve_loss
from ..nn import Dense, ReLU, Softmax, Tanh
from .evaluate import check_class_labels

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ..nn.sequential import Sequential

__all__ = ["ModelLoss", "mlp_layout"]


class ModelLoss:
    """``U(params)`` of a minirso model on ``(x, y)``: the loss callable aMC needs.

    * ``loss``: ``"mse"`` (default; the aMC paper: one-hot targets for integer
      labels), ``"cross_entropy"`` (summed, float64), ``"cross_entropy_mean"``
      or a callable ``fn(outputs, targets) -> scalar``.
    * ``select(rows)`` restricts the next evaluations to a minibatch (``None``:
      all data); aMC calls it in minibatch mode.
    * With ``signal_stats`` on, every evaluation records the statistics of
      aMC eq. (17) in the same forward pass, and :meth:`lambdas` returns the
      lambda_i of eq. (18) for the last evaluated parameters: no extra pass.
    * ``last_error``: classification error of the last evaluation (integer
      labels only, else None), computed only while ``track_error`` is on
      (aMC's progressive batching, sec. II F, asks for it): it costs an argmax
      and a host sync per evaluation that nothing else reads.

    Both are off unless asked for, at construction or by :meth:`configure` (which
    :class:`~minirso.optim.AMC` calls with what its hyperparameters need).

    ``loss(params)`` first copies ``params`` into ``model.params`` unless it IS
    that buffer (the usual case: aMC moves the model's buffer in place).
    """

    def __init__(
        self,
        model: Sequential,
        x: Array,
        y: Array,
        loss: str | Callable[[Array, Array], Any] = "mse",
        *,
        signal_stats: bool = False,
        track_error: bool = False,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"ModelLoss: x has {x.shape[0]} samples but y has {y.shape[0]}")
        self.model, self.x, self.y = model, x, y
        self.loss_name, self.loss_fn = resolve_loss(loss)
        check_class_labels(model, x, y, self.loss_name, "ModelLoss")
        self.rows, self._batch = None, None
        self.last_error = None
        self.configure(signal_stats=signal_stats, track_error=track_error)
        self._layout = False  # the fused kernel's plan of the net (see _fused): False = not made yet

    def configure(self, *, signal_stats: bool = False, track_error: bool = False) -> None:
        """What every evaluation records from now on besides U: eq. (17) statistics, the classification error."""
        self._signal_stats, self._track_error = bool(signal_stats), bool(track_error)

    @property
    def signal_stats(self) -> bool:
        """True while evaluations record the signal-norm statistics (:meth:`lambdas`)."""
        return self._signal_stats

    @property
    def track_error(self) -> bool:
        """True while evaluations compute ``last_error``."""
        return self._track_error

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def select(self, rows: Array | None) -> None:
        """Evaluate on ``x[rows]`` from now on (``None``: the full data set).

        The rows are gathered here, once: aMC evaluates U(x) and U(x') on the same minibatch.
        """
        self.rows = rows
        self._batch = None if rows is None else (self.x[rows], self.y[rows])  # (B, ...), (B,)

    def __call__(self, params: Array) -> float:
        model = self.model
        if params is not model.params:
            model.params[...] = params
        x, y = (self.x, self.y) if self._batch is None else self._batch
        fused = self._fused(x, y)
        if fused is not None:
            return fused
        if self.signal_stats:
            with model.signal_stats():
                out = model.forward(x)
        else:
            out = model.forward(x)
        if self.track_error and y.dtype.kind in "iu" and out.ndim == 2:
            self.last_error = 1.0 - float((out.argmax(axis=1) == y).mean())  # host sync
        loss = float(self.loss_fn(out, y))  # host sync: the accept/reject decision is made on the host
        return loss

    # the loss code of MLP_SOURCE and what its row sum is divided by, per loss name
    _FUSED_LOSSES = {"mse": (0, "elements"), "cross_entropy": (1, None), "cross_entropy_mean": (1, "rows")}

    def _fused(self, x, y):
        """U from the fused small-MLP kernel (:func:`minirso.kernels.mlp_tail`), or None where it does not apply.

        On a GPU the plain forward of aMC's Fig. 1 net is about 20 launches, each costing more than its
        arithmetic; here it is the first product (cuBLAS) and ONE kernel for everything after it.  Used on
        CuPy for chains of Dense layers with tanh / ReLU / softmax (:func:`mlp_layout`) and the built-in
        losses, while no signal-norm statistics or errors are recorded (those need the plain forward).
        The kernel sums in another order than the plain path: the two agree to float32 rounding.
        """
        xp = get_array_module(x)
        if self.signal_stats or self.track_error or not kernels.enabled(xp) or self.loss_name not in self._FUSED_LOSSES:
            return None
        if self.loss_fn is not LOSSES[self.loss_name]:  # a user's callable that merely shares a built-in's name
            return None
        if self._layout is False:  # not looked at yet: once per ModelLoss (the net does not change shape)
            plan = mlp_layout(self.model)
            self._layout = None if plan is None else (xp.asarray(plan[0]), plan[1], int(plan[0][-1, 3]))
        if self._layout is None:
            return None
        layout, softmax, out_width = self._layout
        first = self.model.layers[0]
        code, divide = self._FUSED_LOSSES[self.loss_name]
        labels = targets = None
        if y.dtype.kind in "iu":
            labels = y
        elif code == 0 and y.size == x.shape[0] * out_width:
            targets = y.reshape(x.shape[0], out_width)
        if (
            (labels is None and targets is None)
            or x.ndim != 2
            or x.dtype != numpy.float32
            or x.shape[1] != first.in_features
            or y.shape[0] != x.shape[0]
        ):
            return None  # the plain path handles (or reports) anything else
        z1 = x @ first.weight.T  # (N, W1): the product Dense.forward makes
        total = kernels.mlp_tail(z1, self.model.params, layout, labels, targets, softmax, code)
        if total is None:
            return None
        n = {"elements": x.shape[0] * out_width, "rows": x.shape[0], None: 1}[divide]
        return float(total) / n  # host sync: the accept/reject decision is made on the host

    def lambdas(self) -> Array:
        """lambda_i (aMC eq. 18) from the statistics of the last evaluation, aligned with ``model.params``."""
        if not self.signal_stats:
            raise RuntimeError(
                "ModelLoss.lambdas(): configure(signal_stats=True) before evaluating (AMC(signal_norm=True) does this)"
            )
        return self.model.signal_norm_lambda()


def mlp_layout(model: Sequential) -> tuple[numpy.ndarray, bool] | None:
    """``(layout, softmax)`` of a plain fully connected net for :data:`minirso.kernels.MLP_SOURCE`, else None.

    The net must be Dense layers, each optionally followed by Tanh or ReLU, optionally ending in
    Softmax, with every Dense output at most :data:`minirso.kernels.MLP_MAX_WIDTH` wide (the aMC
    paper's Fig. 1 and Fig. 6 nets).  ``layout`` is an (L, 5) int64 NumPy array, one row per Dense
    layer: weight and bias offsets in ``model.params`` (-1: no bias), inputs, outputs, activation
    (0 none, 1 tanh, 2 relu).
    """
    start = {g.name: g.slice.start for g in model.param_groups}  # "fc1.weight" -> its offset in model.params
    layers, rows, softmax, i = list(model.layers), [], False, 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Softmax) and i == len(layers) - 1 and rows:
            softmax = True
            break
        if not isinstance(layer, Dense) or layer.out_features > kernels.MLP_MAX_WIDTH:
            return None
        if rows and rows[-1][3] != layer.in_features:
            return None
        act = 0
        if i + 1 < len(layers) and isinstance(layers[i + 1], (Tanh, ReLU)):
            act = 1 if isinstance(layers[i + 1], Tanh) else 2
            i += 1
        rows.append(
            [
                start[f"{layer.name}.weight"],
                start.get(f"{layer.name}.bias", -1),
                layer.in_features,
                layer.out_features,
                act,
            ]
        )
        i += 1
    return (numpy.array(rows, dtype=numpy.int64), softmax) if rows else None
