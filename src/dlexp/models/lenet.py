"""LeNet-5 (LeCun et al., 1998) as the textbook builds it, and its BatchNorm version.

conv5x5(6, pad 2) -> act -> pool2 -> conv5x5(16) -> act -> pool2 -> FC 120 -> act -> FC 84 -> act -> FC classes.
On 1x28x28 input with 10 classes that is 61,706 parameters.
"""
from __future__ import annotations

from typing import Literal

from torch import nn

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.base import INPUT_SIZES, MODELS, InputSize
from dlexp.models.layers import activation as make_activation
from dlexp.models.layers import Activation, feature_shape, flat_features, head_dropout, image_channels, narrow

POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}  # the 1998 net subsampled by averaging
Pool = Literal["avg", "max"]
# the 5x5 conv after the first pool needs 6 pixels there for the second pool: 12 at the input
INPUT_SIZES["lenet_bn"] = InputSize(minimum=12, textbook=28)
# Without BatchNorm the sigmoid net does not learn from 12x12 inputs (digits with optim=sgd_momentum stay at
# chance until early stopping ends the run; at 28x28 they reach 0.95), so dataset.resize=auto brings small
# images up to 28.
INPUT_SIZES["lenet"] = InputSize(minimum=12, textbook=28, learns_from=28)


@MODELS.register("lenet")
def lenet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    activation: Activation = "sigmoid",
    pool: Pool = "avg",
    width_div: PositiveInt = 1,
    dropout: Fraction = 0.0,
) -> nn.Sequential:
    return _lenet(input_shape, num_classes, activation, pool, width_div, dropout, batchnorm=False, name="LeNet")


@MODELS.register("lenet_bn")
def lenet_bn(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    activation: Activation = "sigmoid",
    pool: Pool = "avg",
    width_div: PositiveInt = 1,
    dropout: Fraction = 0.0,
) -> nn.Sequential:
    """LeNet with BatchNorm between every conv / hidden FC layer and its activation."""
    return _lenet(input_shape, num_classes, activation, pool, width_div, dropout, batchnorm=True, name="LeNet-BN")


def _lenet(
    input_shape: tuple[int, ...],
    num_classes: int,
    activation: str,
    pool: str,
    width_div: int,
    dropout: float,
    *,
    batchnorm: bool,
    name: str,
) -> nn.Sequential:
    c1, c2, h1, h2 = (narrow(w, width_div) for w in (6, 16, 120, 84))

    def stage(layer: nn.Module, width: int, norm: type) -> list[nn.Module]:
        return [layer, norm(width), make_activation(activation)] if batchnorm else [layer, make_activation(activation)]

    # A layer followed by BatchNorm needs no bias: BN's shift replaces it.
    bias = not batchnorm
    body = nn.Sequential(
        *stage(nn.Conv2d(image_channels(input_shape, name), c1, 5, padding=2, bias=bias), c1, nn.BatchNorm2d),
        POOLS[pool](kernel_size=2, stride=2),  # (B, 6, 14, 14) at 28x28
        *stage(nn.Conv2d(c1, c2, 5, bias=bias), c2, nn.BatchNorm2d),
        POOLS[pool](kernel_size=2, stride=2),  # (B, 16, 5, 5) at 28x28
        nn.Flatten(),  # (B, 400) at 28x28
    )
    flat = flat_features(feature_shape(body, input_shape, model=name, resize=28))
    return nn.Sequential(
        *body,
        *stage(nn.Linear(flat, h1, bias=bias), h1, nn.BatchNorm1d),
        *stage(nn.Linear(h1, h2, bias=bias), h2, nn.BatchNorm1d),
        *head_dropout(dropout),  # the 1998 net had none: before the classifier, when asked for
        nn.Linear(h2, num_classes),
    )
