"""Linear and softmax regression: one affine layer on the flattened input."""
from __future__ import annotations

from torch import nn

from dlexp.models.base import MODELS
from dlexp.models.layers import flat_features, head_dropout


@MODELS.register("linreg")
def linreg(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> nn.Module:
    """y_hat = Xw + b; ``num_classes`` is the number of regression targets here. ``dropout`` drops input features."""
    return nn.Sequential(nn.Flatten(), *head_dropout(dropout), nn.Linear(flat_features(input_shape), num_classes))


@MODELS.register("softmax")
def softmax(input_shape: tuple[int, ...], num_classes: int, *, dropout: float = 0.0) -> nn.Module:
    """Logits o = Xw + b; the softmax lives in the cross-entropy loss for stability. ``dropout`` drops input features."""
    return nn.Sequential(nn.Flatten(), *head_dropout(dropout), nn.Linear(flat_features(input_shape), num_classes))
