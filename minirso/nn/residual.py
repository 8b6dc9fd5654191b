"""Residual block (He et al. 2016): ``y = body(x) + shortcut(x)``.

The shortcut is the identity (empty list) or, when channel counts differ, a
projection such as ``[Conv2d(16, 32, 1, bias=False), BatchNorm2d(32)]`` (the
authors' RSO code searches that projection's weights too).

Activation caching treats a block as ONE layer: the model caches the block's
input, and a trial of any weight inside it runs the whole block from there.
That keeps the cache a single array per layer (the skip source IS the block
input) at the price of re-running the block's earlier convolutions.
"""

from __future__ import annotations

from .layer import Layer

__all__ = ["Residual"]


def _run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


class Residual(Layer):
    """``y = body(x) + shortcut(x)``; ``body`` and ``shortcut`` are lists of layers (shortcut empty = identity).

    Sub-layers without a name are called ``body0, body1, ...`` and ``shortcut0, ...``;
    their parameters are named ``<block>.<sub-layer>.<tensor>``.
    """

    def __init__(self, body, shortcut=None, name=None):
        super().__init__(name)
        self.body, self.shortcut = list(body), list(shortcut or [])
        if not self.body:
            raise ValueError("Residual: body must contain at least one layer")
        for prefix, layers in (("body", self.body), ("shortcut", self.shortcut)):
            for j, layer in enumerate(layers):
                if not isinstance(layer, Layer):
                    raise TypeError(f"Residual: {prefix}[{j}] is {type(layer).__name__}, not a minirso Layer")
                if layer.name is None:
                    layer.name = f"{prefix}{j}"

    def config(self):
        return {"body": [l.to_dict() for l in self.body], "shortcut": [l.to_dict() for l in self.shortcut]}

    @classmethod
    def _from_config(cls, config, name):
        return cls(
            [Layer.from_dict(d) for d in config["body"]],
            [Layer.from_dict(d) for d in config.get("shortcut", [])],
            name=name,
        )

    def children(self):
        return self.body + self.shortcut

    def forward(self, x):
        x = self._check(x, None, "(N, ...)")
        y = _run(self.body, x)
        s = _run(self.shortcut, x)
        if y.shape != s.shape:
            raise ValueError(
                f"{self._label()}: body output {tuple(y.shape)} and shortcut output "
                f"{tuple(s.shape)} differ; use a projection shortcut"
            )
        return y + s
