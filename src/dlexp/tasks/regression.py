"""Regression: outputs (B, targets) against float targets (B, targets); MSE and RMSE.

A dataset may name its own score in ``Source.task_args`` (house_prices: ``log_rmse``), and ask for
standardized targets (csv: ``standardize``).
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
from torch import Tensor, nn

from dlexp.data.base import Batch
from dlexp.tasks.base import LOSSES, TASKS, StepOutput, Task


@LOSSES.register("mse")
def mse() -> nn.Module:
    return nn.MSELoss()  # outputs and targets both (B, targets)


@TASKS.register("regression")
class Regression(Task):
    """``standardize``: the model learns the targets divided by their standard deviation over the fold's train
    part (``for_targets`` fits it), so targets in any units train at the usual learning rates. The loss is
    that of the standardized targets; outputs, metrics and predictions are in the targets' own units."""

    name = "regression"
    default_loss = "mse"
    default_metric = "rmse"

    def __init__(self, *, standardize: bool = False, **settings: Any):
        super().__init__(**settings)
        self.standardize = standardize
        self.scale: Optional[Tensor] = None  # (targets,) the train part's std; None: the targets are learned as given

    def for_targets(self, targets: Optional[Tensor]) -> "Regression":
        if not self.standardize or targets is None or len(targets) == 0:
            return self
        fitted = copy.copy(self)
        fitted.scale = targets.float().std(dim=0, unbiased=False).clamp_min(1e-6)  # constant targets stay finite
        return fitted

    def prior_outputs(self, targets: Tensor) -> Tensor:
        """The mean of the train targets (B, targets)."""
        return targets.float().mean(dim=0, keepdim=True)  # (1, targets)

    def prior(self, targets: Optional[Tensor]) -> Optional[dict[str, Any]]:
        found = super().prior(targets)
        if found is None or self.scale is None:
            return found
        return {**found, "loss": super().prior(targets / self.scale)["loss"]}  # the loss of the standardized targets

    def step(self, model: nn.Module, batch: Batch) -> StepOutput:
        if self.scale is None:
            return super().step(model, batch)
        out = super().step(model, Batch(batch.inputs, batch.targets / self.scale, batch.extras))  # standardized loss
        return StepOutput(out.loss, out.weight, out.outputs * self.scale)  # (B, targets) in the targets' units

    @torch.no_grad()
    def predict(self, model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
        outputs = super().predict(model, x, batch_size)
        return outputs if self.scale is None else outputs * self.scale.cpu()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scale is None else {"target_scale": self.scale.tolist()}  # outputs * scale: the targets' units
