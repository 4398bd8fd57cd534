"""Binary classification (logistic regression): one logit (B, 1) against 0/1 float targets (B, 1)."""
from __future__ import annotations

from torch import nn

from dlexp.tasks.base import LOSSES, TASKS, Task


@LOSSES.register("bce")
def bce() -> nn.Module:
    return nn.BCEWithLogitsLoss()  # takes logits (B, 1) and 0/1 float targets (B, 1)


@TASKS.register("binary")
class Binary(Task):
    name = "binary"
    default_loss = "bce"
    default_metric = "binary_acc"
