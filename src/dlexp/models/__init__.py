"""Models: one module per family, each registering its builders in ``MODELS`` (``dlexp.models.base``)."""
from __future__ import annotations

from typing import Any, Optional

from omegaconf import DictConfig
from torch import nn

from dlexp.registry import builder_kwargs
from dlexp.models import alexnet, densenet, googlenet, lenet, linear, mlp, nin, resnet, vgg  # noqa: F401  (register)
from dlexp.models import seq2seq, transformer  # noqa: F401  (translation models)
from dlexp.models.base import INPUT_SIZES, MODELS, InputSize, input_size  # noqa: F401  (re-exported)
from dlexp.models.init import apply_init, split_init


def build_model(
    cfg: DictConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: Optional[float] = None,
    context: Optional[dict[str, Any]] = None,
) -> nn.Module:
    """Build ``cfg.name`` and initialize it as ``cfg.init`` says.

    ``dropout`` (regularizer.dropout) overrides the model's own when given; every model takes it.
    ``context`` holds facts of the data that a builder may take by keyword (e.g. a
    source vocabulary's size); they are not config keys.
    """
    init, kwargs = split_init(builder_kwargs(cfg))
    if dropout is not None:
        kwargs["dropout"] = dropout
    model = MODELS.build(cfg.name, tuple(input_shape), num_classes, **(context or {}), **kwargs)
    return apply_init(model, init)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
