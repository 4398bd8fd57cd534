"""Multilayer perceptron: [Linear -> (BatchNorm) -> activation -> (Dropout)] x len(hidden) -> Linear."""
from __future__ import annotations

from typing import List

from torch import nn

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.base import MODELS
from dlexp.models.layers import Activation
from dlexp.models.layers import activation as make_activation
from dlexp.models.layers import flat_features, head_dropout


@MODELS.register("mlp")
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    hidden: List[PositiveInt] = (256,),  # units per hidden layer; [] = softmax regression
    activation: Activation = "relu",
    dropout: Fraction = 0.0,
    batchnorm: bool = False,
) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]  # (B, *input_shape) -> (B, D)
    width = flat_features(input_shape)
    for units in hidden:
        layers.append(nn.Linear(width, units))
        if batchnorm:  # BN before the nonlinearity, as in Ioffe & Szegedy
            layers.append(nn.BatchNorm1d(units))
        layers.append(make_activation(activation))
        layers += head_dropout(dropout)
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
