"""Classification: logits (B, C) against class indices (B,); cross-entropy and accuracy."""
from __future__ import annotations

from typing import Optional

import numpy as np
from torch import Tensor, nn

from dlexp.tasks.base import LOSSES, TASKS, Task


@LOSSES.register("cross_entropy")
def cross_entropy() -> nn.Module:
    return nn.CrossEntropyLoss()  # takes logits (B, C) and class indices (B,)


@TASKS.register("classification")
class Classification(Task):
    name = "classification"
    default_loss = "cross_entropy"
    default_metric = "acc"

    @staticmethod
    def labels(targets: Tensor) -> Optional[np.ndarray]:
        return targets.cpu().numpy()
