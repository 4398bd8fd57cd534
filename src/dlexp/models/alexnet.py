"""AlexNet (Krizhevsky et al., 2012) as the textbook adapts it to one-channel images resized to 224x224.

Five convs (11x11/4 with 96 channels, 5x5 with 256, three 3x3) with three 3x3/2
max-pools, then two hidden FC layers with dropout. At 1x224x224 the convs end at
(256, 5, 5), so the first FC layer takes 6,400 features.
"""
from __future__ import annotations

from torch import nn

from dlexp.models.base import INPUT_SIZES, MODELS, InputSize
from dlexp.models.layers import activation as make_activation
from dlexp.config.constraints import Fraction, PositiveInt
from dlexp.models.layers import Activation, feature_shape, flat_features, image_channels, narrow

INPUT_SIZES["alexnet"] = InputSize(minimum=65, textbook=224)  # the 11x11/4 conv and three 3x3/2 pools


@MODELS.register("alexnet")
def alexnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    activation: Activation = "relu",
    dropout: Fraction = 0.5,
    width_div: PositiveInt = 1,
    fc_width: PositiveInt = 4096,
) -> nn.Sequential:
    c1, c2, c3, c4 = (narrow(w, width_div) for w in (96, 256, 384, 256))

    def act() -> nn.Module:
        return make_activation(activation)

    body = nn.Sequential(
        # a large 11x11 window with stride 4 shrinks the 224px image fast: (B, 96, 54, 54)
        nn.Conv2d(image_channels(input_shape, "AlexNet"), c1, kernel_size=11, stride=4, padding=1), act(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 96, 26, 26)
        nn.Conv2d(c1, c2, kernel_size=5, padding=2), act(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 12, 12)
        nn.Conv2d(c2, c3, kernel_size=3, padding=1), act(),
        nn.Conv2d(c3, c3, kernel_size=3, padding=1), act(),
        nn.Conv2d(c3, c4, kernel_size=3, padding=1), act(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # (B, 256, 5, 5)
        nn.Flatten(),
    )
    flat = flat_features(feature_shape(body, input_shape, model="AlexNet", resize=224))
    hidden = fc_width
    return nn.Sequential(
        *body,
        nn.Linear(flat, hidden), act(), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), act(), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )
