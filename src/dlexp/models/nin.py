"""Network in Network (Lin et al., 2013): conv blocks with 1x1 convs as per-pixel MLPs, and no FC layers.

The last NiN block has one output channel per class and global average pooling
turns each channel into a logit, so the head has no parameters to size and the
net takes any input of at least 67x67 (its 11x11/4 conv and three 3x3/2 pools).
"""
from __future__ import annotations

from torch import nn

from dlexp.models.base import INPUT_SIZES, MODELS, InputSize
from dlexp.models.layers import activation as make_activation
from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.layers import Activation, feature_shape, image_channels, narrow

INPUT_SIZES["nin"] = InputSize(minimum=67, textbook=224)  # the 11x11/4 conv and three 3x3/2 pools


@MODELS.register("nin")
def nin(
    input_shape: tuple[int, ...], num_classes: int, *, activation: Activation = "relu", dropout: Fraction = 0.5, width_div: PositiveInt = 1
) -> nn.Sequential:
    c1, c2, c3 = (narrow(w, width_div) for w in (96, 256, 384))

    def block(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
        """One spatial conv, then two 1x1 convs: an MLP applied at every pixel."""
        return nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding), make_activation(activation),
            nn.Conv2d(cout, cout, kernel_size=1), make_activation(activation),
            nn.Conv2d(cout, cout, kernel_size=1), make_activation(activation),
        )

    net = nn.Sequential(
        block(image_channels(input_shape, "NiN"), c1, kernel=11, stride=4, padding=0),  # (B, 96, 54, 54) at 224
        nn.MaxPool2d(3, stride=2),
        block(c1, c2, kernel=5, stride=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        block(c2, c3, kernel=3, stride=1, padding=1),
        nn.MaxPool2d(3, stride=2),  # (B, 384, 5, 5) at 224
        nn.Dropout(dropout),
        block(c3, num_classes, kernel=3, stride=1, padding=1),  # (B, classes, 5, 5)
        nn.AdaptiveAvgPool2d((1, 1)),  # global average pooling: (B, classes, 1, 1)
        nn.Flatten(),  # (B, classes)
    )
    feature_shape(net, input_shape, model="NiN", resize=224)  # fails early, with a hint, if the input is too small
    return net
