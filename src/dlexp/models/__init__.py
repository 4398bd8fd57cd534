"""Model registry. Each family lives in its own module and registers its builders.

A model builder takes ``(input_shape, num_classes)`` positionally, where
``input_shape`` is one example's shape, e.g. (C, H, W) or (D,), and
``num_classes`` is the number of outputs (targets, for regression); its
keyword-only parameters are the keys of its YAML in ``conf/model/``. Every
model's YAML also carries the init keys (``init``, ``init_sigma``, ...; see
``dlexp.models.init``), which ``build_model`` applies after the builder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from omegaconf import DictConfig
from torch import nn

from dlexp.config import builder_kwargs
from dlexp.models.init import InitConfig, apply_init, split_init
from dlexp.registry import Registry

MODELS = Registry("model", common=InitConfig)  # every model also takes model.init*


@dataclass(frozen=True)
class InputSize:
    """The square image sides (pixels) a conv net family is built for; flat models have none."""

    minimum: int  # the smallest side its convs and pools accept at the YAML's architecture
    textbook: int  # the side the textbook trains it at
    # for families whose depth is configurable: builder kwargs -> the smallest side of that architecture
    minimum_of: Optional[Callable[[dict[str, Any]], int]] = None


INPUT_SIZES: dict[str, InputSize] = {}  # model name -> its sizes; each family module fills in its own


def input_size(name: str, kwargs: dict[str, Any]) -> Optional[tuple[int, int]]:
    """(minimum side, textbook side) of model ``name`` built with ``kwargs``; None for flat models."""
    sizes = INPUT_SIZES.get(name)
    if sizes is None:
        return None
    minimum = sizes.minimum_of(kwargs) if sizes.minimum_of is not None else sizes.minimum
    return minimum, sizes.textbook


# Import the families so their @MODELS.register decorators run.
from dlexp.models import alexnet, densenet, googlenet, lenet, linear, mlp, nin, resnet, vgg  # noqa: E402,F401


def build_model(
    cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, dropout: Optional[float] = None
) -> nn.Module:
    """Build ``cfg.name`` and initialize it as ``cfg.init`` says.

    ``dropout`` (regularizer.dropout) overrides the model's own when given; every model takes it.
    """
    init, kwargs = split_init(builder_kwargs(cfg))
    if dropout is not None:
        kwargs["dropout"] = dropout
    model = MODELS.build(cfg.name, tuple(input_shape), num_classes, **kwargs)
    return apply_init(model, init)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
