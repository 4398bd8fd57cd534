"""DenseNet (Huang et al., 2017) as the textbook builds it: dense blocks joined by transition layers.

In a dense block each conv sees the concatenation of the block's input and every
earlier conv's output, so a block of n convs adds n * growth_rate channels. A
transition layer halves the channels (1x1 conv) and the size (2x2/2 average
pool). Global average pooling feeds the FC layer; the textbook trains at 96x96.
"""
from __future__ import annotations

from typing import Annotated, List

import torch
from torch import Tensor, nn

from annotated_types import MinLen

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.base import INPUT_SIZES, MODELS, InputSize
from dlexp.models.layers import activation as make_activation
from dlexp.models.layers import Activation, feature_shape, head_dropout, image_channels, narrow


def _norm_act_conv(in_channels: int, out_channels: int, kernel: int, activation: str) -> nn.Sequential:
    """The pre-activation order of DenseNet: BN -> act -> conv (size kept)."""
    return nn.Sequential(
        nn.BatchNorm2d(in_channels), make_activation(activation),
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2),
    )


class DenseBlock(nn.Module):
    """(B, C, H, W) -> (B, C + num_convs * growth_rate, H, W)."""

    def __init__(self, num_convs: int, in_channels: int, growth_rate: int, activation: str):
        super().__init__()
        self.convs = nn.ModuleList(
            _norm_act_conv(in_channels + i * growth_rate, growth_rate, 3, activation) for i in range(num_convs)
        )
        self.out_channels = in_channels + num_convs * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = torch.cat([x, conv(x)], dim=1)  # every later conv sees all earlier outputs
        return x


def _transition(in_channels: int, out_channels: int, activation: str) -> nn.Sequential:
    """Halve the channels and the size: (B, C, H, W) -> (B, C', H/2, W/2)."""
    return nn.Sequential(_norm_act_conv(in_channels, out_channels, 1, activation), nn.AvgPool2d(kernel_size=2, stride=2))


def _smallest_side(kwargs: dict) -> int:
    """The stem quarters the side (rounding up); each of the n - 1 transitions' 2x2 pools then needs 2 pixels
    more than the last, so the stem must leave 2**(n-1): a side of 4 * (2**(n-1) - 1) + 1 (29 for 4 blocks)."""
    transitions = max(len(kwargs.get("block_convs", (4, 4, 4, 4))) - 1, 0)
    return 4 * (2**transitions - 1) + 1


INPUT_SIZES["densenet"] = InputSize(minimum=29, textbook=96, minimum_of=_smallest_side)


@MODELS.register("densenet")
def densenet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    block_convs: Annotated[List[PositiveInt], MinLen(1)] = (4, 4, 4, 4),  # convs per dense block
    growth_rate: PositiveInt = 32,
    activation: Activation = "relu",
    width_div: PositiveInt = 1,
    dropout: Fraction = 0.0,
) -> nn.Sequential:
    """``width_div`` divides the stem's 64 channels and the growth rate."""
    channels, growth = narrow(64, width_div), narrow(growth_rate, width_div)
    layers: list[nn.Module] = [
        nn.Sequential(  # (B, 64, 24, 24) at 96x96
            nn.Conv2d(image_channels(input_shape, "DenseNet"), channels, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(channels), make_activation(activation),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
    ]
    for i, num_convs in enumerate(block_convs):
        block = DenseBlock(num_convs, channels, growth, activation)
        layers.append(block)
        channels = block.out_channels
        if i < len(block_convs) - 1:  # a transition between blocks, none after the last
            layers.append(_transition(channels, channels // 2, activation))
            channels //= 2
    layers += [nn.BatchNorm2d(channels), make_activation(activation), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()]
    body = nn.Sequential(*layers)
    feature_shape(body, input_shape, model="DenseNet", resize=96)  # each transition's 2x2 pool needs 2 pixels
    return nn.Sequential(*body, *head_dropout(dropout), nn.Linear(channels, num_classes))
