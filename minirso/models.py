"""The papers' networks, ready-made.

RSO (Tripathi & Singh 2020; the authors' ``train.py`` at commit e174f3c, github rohun-tripathi/RSO-gradient-free):

* :func:`rso_mnist` - 6 conv layers (3x3, pad 1, 16 filters, no bias), per
  layer ``conv -> [2x2 avg pool after conv 2 and 4] -> BatchNorm``, with the
  ReLU at the START of the next layer; the last BatchNorm goes WITHOUT ReLU
  into global MAX pooling and a 16 -> 10 dense layer without bias.
* :func:`rso_cifar` - Table 3's Depth-3 / Depth-5 / Depth-10 nets.

Both take ``recipe`` (see :func:`rso_mnist`): ``"authors"`` (default) builds the network of the
authors' code, which produced the published numbers; ``"paper"`` follows sec. 4.1's text where it
speaks.  Where the text is silent (the kind of global pooling, BatchNorm's epsilon) both use the
code's choice.

aMC (Whitelam et al. 2022):

* :func:`mlp` - fully connected tanh/ReLU nets, optional LayerNorm, e.g. the
  784-16-16-10 tanh + softmax net of Fig. 1 (13,002 parameters);
* :func:`amc_deep_tanh` - the deep narrow tanh nets of Fig. 6;
* :func:`amc_rnn_classifier` - the 2-layer tanh RNN of Fig. 5.

Every builder takes ``seed`` and ``init`` (see :mod:`minirso.nn.init`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .nn import (
    GRU,
    RNN,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dense,
    GlobalAvgPool2d,
    GlobalMaxPool2d,
    LayerNorm,
    ReLU,
    Residual,
    Sequential,
    Softmax,
    Tanh,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["rso_mnist", "rso_cifar", "mlp", "amc_deep_tanh", "amc_rnn_classifier", "RECIPES"]

#: the RSO recipes: "authors" (their train.py, which produced the published numbers) and "paper" (sec. 3 / 4.1's
#: text where it speaks, the code where it is silent); see :class:`minirso.optim.RSO` for the optimizer's side
RECIPES = ("authors", "paper")
_GLOBAL_POOLS = {"max": GlobalMaxPool2d, "avg": GlobalAvgPool2d}


def _conv(cin, cout, name):
    return Conv2d(cin, cout, 3, padding=1, bias=False, name=name)


def _check_recipe(who, recipe, global_pool):
    if recipe not in RECIPES:
        raise ValueError(f"{who}: recipe must be one of {list(RECIPES)}, got {recipe!r}")
    if global_pool not in _GLOBAL_POOLS:
        raise ValueError(f"{who}: global_pool must be 'max' (the authors' code) or 'avg', got {global_pool!r}")


def _head(recipe, global_pool, width, num_classes, last):
    """``[ReLU (paper only)] -> global pool -> dense`` after the last BatchNorm.

    The code feeds the last BatchNorm straight into the global pool (train.py l.446-451: ReLU is applied at the
    start of the NEXT conv layer, and there is none); sec. 4.1 says every conv is "followed by a Batch Norm layer
    and then a ReLU operator", the last one included.
    """
    out = [ReLU(name=f"relu{last}")] if recipe == "paper" else []
    name = "gmp" if global_pool == "max" else "gap"
    return out + [_GLOBAL_POOLS[global_pool](name=name), Dense(width, num_classes, bias=False, name="fc")]


def rso_mnist(
    seed: int = 0,
    init: str | tuple = "kaiming",
    in_channels: int = 1,
    num_classes: int = 10,
    channels: int = 16,
    bn_eps: float = 1e-3,
    global_pool: str = "max",
    recipe: str = "authors",
) -> Sequential:
    """The RSO paper's MNIST network (sec. 4.1): 12,016 parameters.

    ``recipe="authors"`` (default) is the network of the authors' train.py, item by item:

    * conv 3x3, pad 1, 16 filters, no bias (l.421-423), 2x2 average pool after conv 2 and conv 4 only
      (``pool_index = [0, 1, 0, 1, 0, 0]``, l.281), BEFORE the BatchNorm (l.440-444);
    * ReLU at the start of the next layer (l.416-418), so the last BatchNorm has none;
    * global MAX pooling (l.451: ``nd.Pooling(global_pool=True)``, MXNet's default ``pool_type="max"``);
    * BatchNorm epsilon 1e-3 (MXNet's ``nd.BatchNorm`` default; PyTorch's and Gluon's is 1e-5);
    * a 16 -> 10 dense layer without bias (l.453).

    ``recipe="paper"`` follows sec. 4.1's text where it differs: "Every second convolution layer is followed by
    a 2 x 2 average pool operator" (conv 2, 4 AND 6; still before the BatchNorm, as the code) and "Each
    convolution layer is followed by a Batch Norm layer and then a ReLU operator" (a ReLU after bn6 too).  The
    text only says "pooled globally" and names no epsilon, so ``global_pool`` and ``bn_eps`` default to the
    code's in both recipes; ``global_pool="avg"`` gives global average pooling.

    Layers named ``conv1..conv6``, ``pool2``, ``pool4`` (``pool6``), ``bn1..bn6``, ``relu1..relu5`` (``relu6``),
    ``gmp`` (``gap`` for average pooling), ``fc``.  ``channels`` changes the width (16 in the paper).
    """
    _check_recipe("rso_mnist", recipe, global_pool)
    pools = (2, 4) if recipe == "authors" else (2, 4, 6)
    layers, cin = [], in_channels
    for i in range(1, 7):
        if i > 1:
            layers.append(ReLU(name=f"relu{i - 1}"))  # the authors apply ReLU at the start of the next layer
        layers.append(_conv(cin, channels, f"conv{i}"))
        if i in pools:
            layers.append(AvgPool2d(2, name=f"pool{i}"))
        layers.append(BatchNorm2d(channels, eps=bn_eps, name=f"bn{i}"))
        cin = channels
    layers += _head(recipe, global_pool, channels, num_classes, 6)
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
    body = [
        ReLU(name=f"relu{i - 1}"),
        _conv(cin, cout, f"conv{i}"),
        BatchNorm2d(cout, eps=eps, name=f"bn{i}"),
        ReLU(name=f"relu{i}"),
        _conv(cout, cout, f"conv{i + 1}"),
    ]
    shortcut = (
        []
        if cin == cout
        else [Conv2d(cin, cout, 1, bias=False, name="proj"), BatchNorm2d(cout, eps=eps, name="proj_bn")]
    )
    out = [Residual(body, shortcut, name=f"res{i}")]
    if pool:
        out.append(AvgPool2d(2, name=f"pool{i + 1}"))
    return out + [BatchNorm2d(cout, eps=eps, name=f"bn{i + 1}")]


def rso_cifar(
    depth: int = 10,
    seed: int = 0,
    init: str | tuple = "kaiming",
    in_channels: int = 3,
    num_classes: int = 10,
    bn_eps: float = 1e-3,
    global_pool: str = "max",
    recipe: str = "authors",
) -> Sequential:
    """The RSO paper's CIFAR-10 nets (Table 3); ``depth`` = conv layers + 1.

    * Depth-3: conv(32) [pool] -> conv(32);
    * Depth-5: conv(16) -> conv(16) [pool] -> conv(32) [pool] -> conv(32);
    * Depth-10 (the authors' ``--layers 9``): conv1(16), then residual blocks
      <conv2, conv3>(16) [pool], <conv4, conv5>(32, projection skip) [pool],
      <conv6, conv7>(32), <conv8, conv9>(32): skips (p, q) = (0,2), (2,4), (4,6), (6,8).

    Each conv is 3x3, pad 1, no bias, followed (after the pool) by BatchNorm;
    ReLU starts the next layer; global pooling and a dense layer without bias end the net.
    ``bn_eps``, ``global_pool`` and ``recipe`` as in :func:`rso_mnist` (max pooling and epsilon 1e-3 are the
    code's; ``recipe="paper"`` adds the ReLU after the last BatchNorm that sec. 4.2's "Batch Norm layer and a
    ReLU activation" after each convolution implies; Table 3 places no pools, so both recipes pool as the code).
    """
    _check_recipe("rso_cifar", recipe, global_pool)
    e = bn_eps
    if depth == 3:
        layers = _stage(1, in_channels, 32, True, e) + _stage(2, 32, 32, False, e)
    elif depth == 5:
        layers = (
            _stage(1, in_channels, 16, False, e)
            + _stage(2, 16, 16, True, e)
            + _stage(3, 16, 32, True, e)
            + _stage(4, 32, 32, False, e)
        )
    elif depth == 10:
        layers = (
            _stage(1, in_channels, 16, False, e)
            + _block(2, 16, 16, True, e)
            + _block(4, 16, 32, True, e)
            + _block(6, 32, 32, False, e)
            + _block(8, 32, 32, False, e)
        )
    else:
        raise ValueError(f"rso_cifar: depth must be 3, 5 or 10 (RSO paper Table 3), got {depth!r}")
    width = layers[-1].num_features
    layers += _head(recipe, global_pool, width, num_classes, depth - 1)
    return Sequential(layers, seed=seed, init=init)


_ACTIVATIONS = {"tanh": Tanh, "relu": ReLU}


def mlp(
    sizes: Sequence[int],
    activation: str = "tanh",
    layer_norm: bool = False,
    output: str | None = None,
    seed: int = 0,
    init: str | tuple = "kaiming",
) -> Sequential:
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


def amc_deep_tanh(depth: int, seed: int = 0, init: str | tuple = ("gaussian", 1e-2)) -> Sequential:
    """The aMC paper's deep narrow net (sec. II E, Fig. 6): 1 input, ``depth`` hidden tanh layers
    (4 neurons each but the last, which has 10), 1 output; "all neurons have tanh activation functions".

    Default init N(0, 1e-2^2), one of the paper's two (the other is ``init="kaiming"``).
    """
    if depth < 1:
        raise ValueError(f"amc_deep_tanh: depth must be >= 1, got {depth}")
    return mlp([1] + [4] * (depth - 1) + [10, 1], activation="tanh", output="tanh", seed=seed, init=init)


def amc_rnn_classifier(
    hidden_size: int = 64,
    input_size: int = 2,
    num_classes: int = 2,
    cell: str = "rnn",
    seed: int = 0,
    init: str | tuple = "kaiming",
) -> Sequential:
    """The aMC paper's RNN (sec. II D, Fig. 5): a 2-layer stack of tanh RNNs (hidden 64) reading a
    pixel sequence one-hot encoded in 2 values, the last hidden state into a linear classifier.

    ``cell="gru"`` gives the authors' code's GRU variant.
    """
    cells = {"rnn": RNN, "gru": GRU}
    if cell not in cells:
        raise ValueError(f"amc_rnn_classifier: cell must be 'rnn' or 'gru', got {cell!r}")
    c = cells[cell]
    return Sequential(
        [
            c(input_size, hidden_size, return_sequences=True, name=f"{cell}1"),
            c(hidden_size, hidden_size, name=f"{cell}2"),
            Dense(hidden_size, num_classes, name="fc"),
        ],
        seed=seed,
        init=init,
    )
