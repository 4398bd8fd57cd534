"""Models: one module per family, each registering its builders in ``MODELS`` (``dlexp.models.base``);
every module here is imported with the package, so a new family is one new file.

Also the pieces families share (``layers``, ``init``, ``attention``, the translation-model interface
``seq2seq_base``), greedy and beam-search ``decoding``, and the layer table (``summary``).

May import config and errors only: a model knows nothing of the data, the task or the run.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Optional

from omegaconf import DictConfig
from torch import nn

from dlexp.config.registry import builder_kwargs
from dlexp.models.base import INPUT_SIZES, MODELS, InputSize, input_size  # noqa: F401  (re-exported)
from dlexp.models.init import apply_init, split_init
from dlexp.models.summary import count_parameters  # noqa: F401  (re-exported)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # each family registers its builders: a new one is one file


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
