"""Building blocks shared by the model families: activations by name, widths, input-size checks."""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from dlexp.errors import ConfigError
from dlexp.config.registry import Registry

ACTIVATIONS = Registry("activation")
_ACTIVATION_CLASSES = {
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
}
for _name, _cls in _ACTIVATION_CLASSES.items():
    ACTIVATIONS.register(_name)(_cls)

# The type of every model's ``activation`` key: the config check offers these names.
Activation = Literal[tuple(_ACTIVATION_CLASSES)]  # type: ignore[valid-type]


def activation(name: str) -> nn.Module:
    """A fresh activation module, e.g. ``activation("relu")``."""
    return ACTIVATIONS.build(name)


def flat_features(input_shape: tuple[int, ...]) -> int:
    """Number of features after flattening one example of ``input_shape``."""
    n = 1
    for dim in input_shape:
        n *= dim
    return n


def image_channels(input_shape: tuple[int, ...], model: str) -> int:
    """The channel count C of (C, H, W) examples; anything else cannot feed a conv net."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"{model} needs image examples (channels, height, width), but the dataset gives shape "
            f"{tuple(input_shape)}; use an image dataset or a flat model such as model=mlp"
        )
    return input_shape[0]


def narrow(width: int, width_div: int) -> int:
    """``width`` divided by ``width_div`` (model.width_div >= 1, for quick narrow variants), at least 1."""
    return max(1, width // width_div)


def feature_shape(body: nn.Module, input_shape: tuple[int, ...], *, model: str, resize: int) -> tuple[int, ...]:
    """Shape of one example after ``body``, found with a dummy forward pass at build time.

    This is how classifiers size themselves to the data (e.g. LeNet's first FC
    layer takes 16*5*5 inputs at 28x28 but 16*6*6 at 32x32). When the input is
    too small for the body's convs and pools, the error names the smallest size
    that works and suggests ``dataset.resize`` (``resize``: the size the model was
    designed for).
    """
    was_training = body.training
    body.eval()  # BatchNorm on a single example; no dropout noise
    try:
        out = _probe(body, input_shape)
        if out is None:
            smallest = _smallest_size(body, input_shape[0])
            height, width = input_shape[1:]
            raise ConfigError(
                f"{model} needs images of at least {smallest}x{smallest} but the data is {height}x{width}; "
                f"use dataset.resize={max(resize, smallest)}"
            )
    finally:
        body.train(was_training)
    return out


@torch.no_grad()
def _probe(body: nn.Module, input_shape: tuple[int, ...]) -> Optional[tuple[int, ...]]:
    """Output shape for one zero example, or None if the input is too small for some layer."""
    param = next(body.parameters(), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else "cpu")
    try:
        return tuple(body(x).shape[1:])
    except RuntimeError:  # "Output size is too small", "Kernel size can't be greater than ..."
        return None


def _smallest_size(body: nn.Module, channels: int, limit: int = 1024) -> int:
    """Smallest square side s such that (channels, s, s) goes through ``body``."""
    works = 8
    while _probe(body, (channels, works, works)) is None:
        works *= 2
        if works > limit:  # not a size problem: let the real error surface
            with torch.no_grad():
                body(torch.zeros(1, channels, limit, limit))
            raise RuntimeError(f"no input size up to {limit}x{limit} fits this model")
    fails = works // 2 if works > 8 else 0  # invariant: fails does not fit, works fits
    while works - fails > 1:
        mid = (works + fails) // 2
        if _probe(body, (channels, mid, mid)) is None:
            fails = mid
        else:
            works = mid
    return works


def positive(key: str, value: int) -> int:
    """``value`` if >= 1, else a ConfigError naming ``model.<key>``."""
    if value < 1:
        raise ConfigError(f"model.{key} must be >= 1, got {value}")
    return value


def dropout_layer(p: float) -> nn.Dropout:
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {p}")
    return nn.Dropout(p)


def head_dropout(p: float) -> list[nn.Module]:
    """Dropout before the final classifier layer (timm's ``drop_rate``), for the families the
    textbook gives none: no layer at all for p=0, so such a model's layers stay the textbook's."""
    return [] if p == 0 else [dropout_layer(p)]  # dropout_layer rejects p outside [0, 1)
