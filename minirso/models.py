"""The papers' networks, ready-made.

RSO (Tripathi & Singh 2020) and its authors' code (``../shared/reference``):

* :func:`rso_mnist` - 6 conv layers (3x3, pad 1, 16 filters, no bias), per
  layer ``conv -> [2x2 avg pool after conv 2 and 4] -> BatchNorm``, with the
  ReLU at the START of the next layer; the last BatchNorm goes WITHOUT ReLU
  into global average pooling and a 16 -> 10 dense layer without bias.
* :func:`rso_cifar` - Table 3's Depth-3 / Depth-5 / Depth-10 nets.

aMC (Whitelam et al. 2022):

* :func:`mlp` - fully connected tanh/ReLU nets, optional LayerNorm, e.g. the
  784-16-16-10 tanh + softmax net of Fig. 1 (13,002 parameters);
* :func:`amc_deep_tanh` - the deep narrow tanh nets of Fig. 6;
* :func:`amc_rnn_classifier` - the 2-layer tanh RNN of Fig. 5.

Every builder takes ``seed`` and ``init`` (see :mod:`minirso.nn.init`).
"""

from __future__ import annotations

from .nn import (
    GRU, RNN, AvgPool2d, BatchNorm2d, Conv2d, Dense, GlobalAvgPool2d, LayerNorm, ReLU, Residual, Sequential,
    Softmax, Tanh,
)

__all__ = ["rso_mnist", "rso_cifar", "mlp", "amc_deep_tanh", "amc_rnn_classifier"]


def _conv(cin, cout, name):
    return Conv2d(cin, cout, 3, padding=1, bias=False, name=name)


def rso_mnist(seed: int = 0, init="kaiming", in_channels: int = 1, num_classes: int = 10,
              channels: int = 16, bn_eps: float = 1e-5) -> Sequential:
    """The RSO paper's MNIST network (sec. 4.1) as the authors built it: 12,016 parameters.

    Layers named ``conv1..conv6``, ``pool2``, ``pool4``, ``bn1..bn6``,
    ``relu1..relu5``, ``gap``, ``fc``.  ``channels`` changes the width (16 in the paper).
    ``bn_eps``: BatchNorm epsilon; 1e-5 (PyTorch's and Gluon's default) here, while
    MXNet's ``nd.BatchNorm`` defaults to 1e-3: pass that for the closest reproduction.
    """
    layers, cin = [], in_channels
    for i in range(1, 7):
        if i > 1:
            layers.append(ReLU(name=f"relu{i - 1}"))  # the authors apply ReLU at the start of the next layer
        layers.append(_conv(cin, channels, f"conv{i}"))
        if i in (2, 4):
            layers.append(AvgPool2d(2, name=f"pool{i}"))
        layers.append(BatchNorm2d(channels, eps=bn_eps, name=f"bn{i}"))
        cin = channels
    layers += [GlobalAvgPool2d(name="gap"), Dense(channels, num_classes, bias=False, name="fc")]
    return Sequential(layers, seed=seed, init=init)


def _stage(i, cin, cout, pool, eps):
    """Plain RSO layer i: [ReLU] conv [pool] BN (ReLU omitted for i = 1)."""
    out = [] if i == 1 else [ReLU(name=f"relu{i - 1}")]
    out.append(_conv(cin, cout, f"conv{i}"))
    if pool:
        out.append(AvgPool2d(2, name=f"pool{i}"))
    return out + [BatchNorm2d(cout, eps=eps, name=f"bn{i}")]


def _block(i, cin, cout, pool, eps):
    """Residual RSO layers i, i+1: the pre-ReLU output of layer i-1 is added to conv{i+1}'s output.

    ``Residual(body=[ReLU, conv_i, BN_i, ReLU, conv_{i+1}], shortcut)`` then
    ``[pool]`` and ``BN_{i+1}`` (the addition comes before them, as in the
    authors' code); the shortcut is a 1x1 conv + BN when channels change.
    """
    body = [ReLU(name=f"relu{i - 1}"), _conv(cin, cout, f"conv{i}"), BatchNorm2d(cout, eps=eps, name=f"bn{i}"),
            ReLU(name=f"relu{i}"), _conv(cout, cout, f"conv{i + 1}")]
    shortcut = [] if cin == cout else [Conv2d(cin, cout, 1, bias=False, name="proj"),
                                       BatchNorm2d(cout, eps=eps, name="proj_bn")]
    out = [Residual(body, shortcut, name=f"res{i}")]
    if pool:
        out.append(AvgPool2d(2, name=f"pool{i + 1}"))
    return out + [BatchNorm2d(cout, eps=eps, name=f"bn{i + 1}")]


def rso_cifar(depth: int = 10, seed: int = 0, init="kaiming", in_channels: int = 3, num_classes: int = 10,
              bn_eps: float = 1e-5) -> Sequential:
    """The RSO paper's CIFAR-10 nets (Table 3); ``depth`` = conv layers + 1.

    * Depth-3: conv(32) [pool] -> conv(32);
    * Depth-5: conv(16) -> conv(16) [pool] -> conv(32) [pool] -> conv(32);
    * Depth-10 (the authors' ``--layers 9``): conv1(16), then residual blocks
      <conv2, conv3>(16) [pool], <conv4, conv5>(32, projection skip) [pool],
      <conv6, conv7>(32), <conv8, conv9>(32): skips (p, q) = (0,2), (2,4), (4,6), (6,8).

    Each conv is 3x3, pad 1, no bias, followed (after the pool) by BatchNorm;
    ReLU starts the next layer; global average pool and a dense layer without bias end the net.
    ``bn_eps`` as in :func:`rso_mnist`.
    """
    e = bn_eps
    if depth == 3:
        layers = _stage(1, in_channels, 32, True, e) + _stage(2, 32, 32, False, e)
    elif depth == 5:
        layers = (_stage(1, in_channels, 16, False, e) + _stage(2, 16, 16, True, e) + _stage(3, 16, 32, True, e)
                  + _stage(4, 32, 32, False, e))
    elif depth == 10:
        layers = (_stage(1, in_channels, 16, False, e) + _block(2, 16, 16, True, e) + _block(4, 16, 32, True, e)
                  + _block(6, 32, 32, False, e) + _block(8, 32, 32, False, e))
    else:
        raise ValueError(f"rso_cifar: depth must be 3, 5 or 10 (RSO paper Table 3), got {depth!r}")
    width = layers[-1].num_features
    layers += [GlobalAvgPool2d(name="gap"), Dense(width, num_classes, bias=False, name="fc")]
    return Sequential(layers, seed=seed, init=init)


_ACTIVATIONS = {"tanh": Tanh, "relu": ReLU}


def mlp(sizes, activation: str = "tanh", layer_norm: bool = False, output: str | None = None,
        seed: int = 0, init="kaiming") -> Sequential:
    """Fully connected net ``sizes[0] -> ... -> sizes[-1]``.

    Hidden layers: ``Dense -> [LayerNorm] -> activation``; ``output``: None
    (linear), ``"softmax"`` or ``"tanh"``.  Examples: the aMC paper's Fig. 1 net
    is ``mlp([784, 16, 16, 10], output="softmax", init=("gaussian", s))``;
    the authors' LayerNorm example is ``mlp([784, 64, 64, 64, 64, 10], layer_norm=True)``.
    Names: ``fc1.., ln1.., act1.., out``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp: sizes needs at least 2 positive entries, got {sizes}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"mlp: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    outputs = {None: None, "softmax": Softmax, "tanh": Tanh}
    if output not in outputs:
        raise ValueError(f"mlp: output must be None, 'softmax' or 'tanh', got {output!r}")
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers.append(Dense(a, b, name=f"fc{i}"))
        if i < len(sizes) - 1:
            if layer_norm:
                layers.append(LayerNorm(b, name=f"ln{i}"))
            layers.append(_ACTIVATIONS[activation](name=f"act{i}"))
    if outputs[output] is not None:
        layers.append(outputs[output](name="out"))
    return Sequential(layers, seed=seed, init=init)


def amc_deep_tanh(depth: int, seed: int = 0, init=("gaussian", 1e-2)) -> Sequential:
    """The aMC paper's deep narrow net (sec. II E, Fig. 6): 1 input, ``depth`` hidden tanh layers
    (4 neurons each but the last, which has 10), 1 output; "all neurons have tanh activation functions".

    Default init N(0, 1e-2^2), one of the paper's two (the other is ``init="kaiming"``).
    """
    if depth < 1:
        raise ValueError(f"amc_deep_tanh: depth must be >= 1, got {depth}")
    return mlp([1] + [4] * (depth - 1) + [10, 1], activation="tanh", output="tanh", seed=seed, init=init)


def amc_rnn_classifier(hidden_size: int = 64, input_size: int = 2, num_classes: int = 2, cell: str = "rnn",
                       seed: int = 0, init="kaiming") -> Sequential:
    """The aMC paper's RNN (sec. II D, Fig. 5): a 2-layer stack of tanh RNNs (hidden 64) reading a
    pixel sequence one-hot encoded in 2 values, the last hidden state into a linear classifier.

    ``cell="gru"`` gives the authors' code's GRU variant.
    """
    cells = {"rnn": RNN, "gru": GRU}
    if cell not in cells:
        raise ValueError(f"amc_rnn_classifier: cell must be 'rnn' or 'gru', got {cell!r}")
    c = cells[cell]
    return Sequential([c(input_size, hidden_size, return_sequences=True, name=f"{cell}1"),
                       c(hidden_size, hidden_size, name=f"{cell}2"),
                       Dense(hidden_size, num_classes, name="fc")], seed=seed, init=init)
