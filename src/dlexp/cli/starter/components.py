"""This project's own components, registered with dlexp by name: a model and a dataset.

dlexp imports this file because the project's preset names it (``plugins: [components.py]`` in its
conf/experiment/ file); then ``model=small_mlp`` and ``dataset=blobs_2d`` work like dlexp's own.
A builder's keyword-only parameters are the keys its YAML (conf/model/, conf/dataset/) may set; their
annotations are checked when the config is composed.
"""
import torch
from torch import nn

from dlexp import Source, register_dataset, register_model


@register_model("small_mlp")
def small_mlp(input_shape, num_classes, *, width: int = 64, depth: int = 2, dropout: float = 0.0):
    """An MLP on flattened inputs: ``depth`` hidden layers of ``width`` ReLU units. ``input_shape`` is one
    example's shape, e.g. (2,); ``num_classes`` the number of outputs."""
    size = 1
    for side in input_shape:
        size *= side
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
        size = width
    layers.append(nn.Linear(size, num_classes))
    return nn.Sequential(*layers)


@register_dataset("blobs_2d")
def blobs_2d(*, n: int = 1200, classes: int = 4, spread: float = 0.6, test_fraction: float = 0.2, seed: int = 0):
    """``classes`` Gaussian blobs in the plane, ``n`` points in all; a test set held out, the rest for train
    and val (dlexp splits it). Seeded: the same settings give the same data."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    angle = 2 * torch.pi * y.float() / classes
    centres = torch.stack([angle.cos(), angle.sin()], dim=1) * 2.0
    x = centres + spread * torch.randn(n, 2, generator=g)  # (n, 2)
    test = int(n * test_fraction)
    return Source(train=(x[test:], y[test:]), test=(x[:test], y[:test]), task="classification", num_classes=classes,
                  normalize="feature")
