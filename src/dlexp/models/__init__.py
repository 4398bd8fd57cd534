"""Model registry. Each family lives in its own module and registers its builders.

A model builder takes ``(input_shape, num_classes)`` positionally, where
``input_shape`` is one example's shape, e.g. (C, H, W) or (D,), and
``num_classes`` is the number of outputs (targets, for regression); its
keyword-only parameters are the keys of its YAML in ``conf/model/``. Every
model's YAML also carries the init keys (``init``, ``init_sigma``, ...; see
``dlexp.models.init``), which ``build_model`` applies after the builder.
"""
from __future__ import annotations

from typing import Any, Optional

from omegaconf import DictConfig
from torch import nn

from dlexp.config import builder_kwargs
from dlexp.models.init import InitConfig, apply_init, split_init
from dlexp.registry import Registry

MODELS = Registry("model", common=InitConfig)  # every model also takes model.init*

# Import the families so their @MODELS.register decorators run.
from dlexp.models import alexnet, densenet, googlenet, lenet, linear, mlp, nin, resnet, vgg  # noqa: E402,F401
from dlexp.models import seq2seq, transformer  # noqa: E402,F401  (translation models)


def build_model(
    cfg: DictConfig, input_shape: tuple[int, ...], num_classes: int, dropout: Optional[float] = None, **data: Any
) -> nn.Module:
    """Build ``cfg.name`` and initialize it as ``cfg.init`` says.

    ``dropout`` (regularizer.dropout) overrides the model's own when given. ``data``: what else the
    data layer tells the builder, e.g. ``src_vocab_size`` for a translation model.
    """
    init, kwargs = split_init(builder_kwargs(cfg))
    if dropout is not None and "dropout" in MODELS.config_keys(cfg.name):
        kwargs["dropout"] = dropout
    model = MODELS.build(cfg.name, tuple(input_shape), num_classes, **data, **kwargs)
    return apply_init(model, init)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
