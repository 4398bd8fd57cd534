"""Binary classification (logistic regression): one logit (B, 1) against 0/1 float targets (B, 1)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dlexp.tasks.base import LOSSES, TASKS, Task


@LOSSES.register("bce")
def bce() -> nn.Module:
    return nn.BCEWithLogitsLoss()  # takes logits (B, 1) and 0/1 float targets (B, 1)


@TASKS.register("binary")
class Binary(Task):
    name = "binary"
    starts_near_prior = True  # logits near zero at initialization: a loss of about ln(classes)
    default_loss = "bce"
    default_metric = "binary_acc"

    def prior_outputs(self, targets: Tensor) -> Tensor:
        """The logit of the positive class's frequency among the train targets (B, 1)."""
        p = targets.float().mean().clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p)).reshape(1, 1)
