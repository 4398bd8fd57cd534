"""A model's layers as a table: each layer's output shape for one example and its parameter count
(``python -m dlexp.summary``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class LayerRow:
    name: str  # qualified module name, e.g. "3" or "3.1.p2"
    kind: str  # class name, e.g. "Conv2d"
    level: int  # nesting depth, 1 = a top-level layer
    params: int  # trainable parameters of this layer, its sub-layers included
    shape: Optional[tuple[int, ...]] = None  # output shape for one example; None if never called


def layer_rows(model: nn.Module, feed: Callable[[nn.Module], Any], depth: int = 1) -> list[LayerRow]:
    """Run one example through ``model`` (``feed(model)`` calls it, as the task feeds it a batch) and
    describe every layer down to ``depth``."""
    rows, hooks = [], []
    for name, module in model.named_modules():
        level = name.count(".") + 1 if name else 0
        if not 1 <= level <= depth:
            continue
        row = LayerRow(name, type(module).__name__, level, count_parameters(module))
        rows.append(row)

        def record(mod: Any, inputs: Any, output: Any, row: LayerRow = row) -> None:
            row.shape = tuple(output.shape) if hasattr(output, "shape") else None

        hooks.append(module.register_forward_hook(record))
    model.eval()  # BatchNorm on one example; no dropout
    try:
        with torch.no_grad():
            feed(model)
    finally:
        for hook in hooks:
            hook.remove()
    return rows
