"""Building blocks shared by the model families: activations by name."""
from __future__ import annotations

from torch import nn

from dlexp.registry import Registry

ACTIVATIONS = Registry("activation")

for _name, _cls in {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "relu6": nn.ReLU6,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "gelu": nn.GELU,
}.items():
    ACTIVATIONS.register(_name)(_cls)


def activation(name: str) -> nn.Module:
    """A fresh activation module, e.g. ``activation("relu")``."""
    return ACTIVATIONS.build(name)


def flat_features(input_shape: tuple[int, ...]) -> int:
    """Number of features after flattening one example of ``input_shape``."""
    n = 1
    for dim in input_shape:
        n *= dim
    return n
