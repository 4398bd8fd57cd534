"""Classification: logits (B, C) against class indices (B,); cross-entropy and accuracy."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dlexp.tasks.base import LOSSES, TASKS, Task


@LOSSES.register("cross_entropy")
def cross_entropy(*, label_smoothing: float = 0.0) -> nn.Module:
    # takes logits (B, C) and class indices (B,); label_smoothing moves that share of the target's mass
    # evenly onto all C classes (trainer.label_smoothing)
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


@TASKS.register("classification")
class Classification(Task):
    name = "classification"
    starts_near_prior = True  # logits near zero at initialization: a loss of about ln(classes)
    default_loss = "cross_entropy"
    default_metric = "acc"

    def prior_outputs(self, targets: Tensor) -> Tensor:
        """The log of each class's frequency among the train targets (B,): logits whose softmax is the prior."""
        frequency = torch.bincount(targets.long().flatten()).float() / targets.numel()
        return frequency.clamp_min(1e-12).log()[None]  # (1, classes)
