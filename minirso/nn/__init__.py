"""Forward-only layers and the Sequential model (see each file's docstring)."""

from .activation import Flatten, Identity, ReLU, Softmax, Tanh
from .conv import Conv2d
from .dense import Dense
from .layer import LAYER_TYPES, Layer
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pool import AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d
from .recurrent import GRU, RNN
from .residual import Residual
from .sequential import Sequential

__all__ = [
    "Layer",
    "LAYER_TYPES",
    "Sequential",
    "Dense",
    "Conv2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "LayerNorm",
    "AvgPool2d",
    "MaxPool2d",
    "GlobalAvgPool2d",
    "GlobalMaxPool2d",
    "ReLU",
    "Tanh",
    "Softmax",
    "Identity",
    "Flatten",
    "Residual",
    "RNN",
    "GRU",
]
