"""GoogLeNet (Szegedy et al., 2014) as the textbook builds it for 96x96 inputs: nine Inception blocks.

Every stage ends with a 3x3/2 max-pool with padding 1, which never shrinks a
side below 1, and global average pooling feeds the single FC layer, so any
input size works; 96x96 is the size the textbook trains at.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.base import INPUT_SIZES, MODELS, InputSize
from dlexp.models.layers import activation as make_activation
from dlexp.models.layers import Activation, head_dropout, image_channels, narrow


class Inception(nn.Module):
    """Four parallel paths whose outputs are concatenated along the channels.

    1x1 conv | 1x1 conv -> 3x3 conv | 1x1 conv -> 5x5 conv | 3x3 max-pool -> 1x1 conv.
    Every path keeps H and W, so the output is (B, c1 + c2[1] + c3[1] + c4, H, W).
    The 1x1 convs before the 3x3 and 5x5 ones cut the channels, and so the cost.
    """

    def __init__(self, in_channels: int, c1: int, c2: Sequence[int], c3: Sequence[int], c4: int, activation: str):
        super().__init__()

        def conv(cin: int, cout: int, kernel: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), make_activation(activation)]

        self.p1 = nn.Sequential(*conv(in_channels, c1, 1))
        self.p2 = nn.Sequential(*conv(in_channels, c2[0], 1), *conv(c2[0], c2[1], 3))
        self.p3 = nn.Sequential(*conv(in_channels, c3[0], 1), *conv(c3[0], c3[1], 5))
        self.p4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), *conv(in_channels, c4, 1))
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], dim=1)


# Inception widths (c1, (c2 reduce, c2), (c3 reduce, c3), c4) per stage, as in the paper's table 1
STAGE3 = [(64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)]
STAGE4 = [
    (192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
    (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128),
]
STAGE5 = [(256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)]

INPUT_SIZES["googlenet"] = InputSize(minimum=1, textbook=96)  # padded pools never shrink a side below 1


@MODELS.register("googlenet")
def googlenet(
    input_shape: tuple[int, ...], num_classes: int, *, activation: Activation = "relu", width_div: PositiveInt = 1,
    dropout: Fraction = 0.0,
) -> nn.Sequential:
    def w(n: int) -> int:
        return narrow(n, width_div)

    def pool() -> nn.Module:
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # halves H and W (rounding up)

    c64, c192 = w(64), w(192)
    b1 = nn.Sequential(  # (B, 64, 24, 24) at 96x96
        nn.Conv2d(image_channels(input_shape, "GoogLeNet"), c64, kernel_size=7, stride=2, padding=3),
        make_activation(activation), pool(),
    )
    b2 = nn.Sequential(  # (B, 192, 12, 12)
        nn.Conv2d(c64, c64, kernel_size=1), make_activation(activation),
        nn.Conv2d(c64, c192, kernel_size=3, padding=1), make_activation(activation), pool(),
    )
    channels = c192
    stages = []
    for widths, tail in ((STAGE3, pool()), (STAGE4, pool()), (STAGE5, nn.AdaptiveAvgPool2d((1, 1)))):
        blocks = []
        for c1, c2, c3, c4 in widths:
            block = Inception(channels, w(c1), [w(c) for c in c2], [w(c) for c in c3], w(c4), activation)
            blocks.append(block)
            channels = block.out_channels
        stages.append(nn.Sequential(*blocks, tail))  # (B, 480, 6, 6), (B, 832, 3, 3), (B, 1024, 1, 1)
    # the paper puts dropout (0.4) between the pooled features and the FC layer; the textbook drops it
    return nn.Sequential(b1, b2, *stages, nn.Flatten(), *head_dropout(dropout), nn.Linear(channels, num_classes))
