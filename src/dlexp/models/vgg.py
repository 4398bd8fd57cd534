"""VGG (Simonyan & Zisserman, 2014): repeated blocks of 3x3 convs, each block closed by a 2x2 max-pool.

``conv_arch`` lists the blocks as [num_convs, channels]; the default is VGG-11
(8 convs + 3 FC layers). Each block halves the height and width, so five blocks
need at least 32x32 inputs and turn 224x224 into 7x7.
"""
from __future__ import annotations

from typing import Annotated, List

from annotated_types import Len, MinLen
from torch import nn

from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.base import INPUT_SIZES, MODELS, InputSize
from dlexp.models.layers import activation as make_activation
from dlexp.models.layers import Activation, feature_shape, flat_features, image_channels, narrow

VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))
# model.conv_arch: one or more [num_convs, channels] pairs of positive ints
ConvArch = Annotated[List[Annotated[List[PositiveInt], Len(2, 2)]], MinLen(1)]

# every block's 2x2/2 pool halves the side: n blocks need 2**n pixels
INPUT_SIZES["vgg"] = InputSize(
    minimum=2 ** len(VGG11), textbook=224, minimum_of=lambda kw: 2 ** len(kw.get("conv_arch", VGG11))
)


@MODELS.register("vgg")
def vgg(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    conv_arch: ConvArch = VGG11,
    activation: Activation = "relu",
    dropout: Fraction = 0.5,
    width_div: PositiveInt = 1,
    fc_width: PositiveInt = 4096,
) -> nn.Sequential:
    """``width_div`` narrows the conv channels only; the textbook's small VGG-11 uses width_div=4."""
    blocks: list[nn.Module] = []
    in_channels = image_channels(input_shape, "VGG")
    for num_convs, channels in conv_arch:
        out_channels = narrow(channels, width_div)
        blocks.append(_block(num_convs, in_channels, out_channels, activation))
        in_channels = out_channels
    body = nn.Sequential(*blocks, nn.Flatten())
    flat = flat_features(feature_shape(body, input_shape, model="VGG", resize=224))
    hidden = fc_width
    return nn.Sequential(
        *body,
        nn.Linear(flat, hidden), make_activation(activation), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), make_activation(activation), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def _block(num_convs: int, in_channels: int, out_channels: int, activation: str) -> nn.Sequential:
    """num_convs x (3x3 conv, padding 1: size kept) then a 2x2/2 max-pool: (B, C, H, W) -> (B, C', H/2, W/2)."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), make_activation(activation)]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)

