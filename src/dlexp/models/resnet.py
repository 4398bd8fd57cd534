"""ResNet-18 (He et al., 2015) as the textbook builds it: four stages of two residual blocks, with BatchNorm.

Each block learns a residual f(x) and outputs act(f(x) + x); when a block
changes the channels or halves the size, a 1x1 conv (with the same stride)
reshapes x so the two can be added. Global average pooling feeds the FC layer,
so any input size works; the textbook trains at 96x96.
"""
from __future__ import annotations

from torch import Tensor, nn

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.base import INPUT_SIZES, MODELS, InputSize
from dlexp.models.layers import activation as make_activation
from dlexp.models.layers import Activation, head_dropout, image_channels, narrow


class Residual(nn.Module):
    """conv3x3(stride) -> BN -> act -> conv3x3 -> BN, plus the (1x1-conv'd) input, then act."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str):
        super().__init__()
        # bias=False: the BatchNorm right after each conv has its own shift
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        reshape = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride) if reshape else nn.Identity()
        self.act1, self.act2 = make_activation(activation), make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))  # (B, out_channels, H / stride, W / stride)


INPUT_SIZES["resnet18"] = InputSize(minimum=1, textbook=96)  # padded strides never shrink a side below 1


@MODELS.register("resnet18")
def resnet18(
    input_shape: tuple[int, ...], num_classes: int, *, activation: Activation = "relu", width_div: PositiveInt = 1,
    dropout: Fraction = 0.0,
) -> nn.Sequential:
    c64 = narrow(64, width_div)
    stem = nn.Sequential(  # (B, 64, 24, 24) at 96x96
        nn.Conv2d(image_channels(input_shape, "ResNet-18"), c64, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(c64), make_activation(activation),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )
    stages, channels = [], c64
    for i, width in enumerate((64, 128, 256, 512)):
        out = narrow(width, width_div)
        stride = 1 if i == 0 else 2  # the stem already pooled; later stages halve H and W
        stages.append(nn.Sequential(Residual(channels, out, stride, activation), Residual(out, out, 1, activation)))
        channels = out
    return nn.Sequential(
        stem, *stages,  # (B, 512, 3, 3) at 96x96
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),  # (B, 512)
        *head_dropout(dropout),
        nn.Linear(channels, num_classes),
    )
