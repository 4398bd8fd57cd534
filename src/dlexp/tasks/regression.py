"""Regression: outputs (B, targets) against float targets (B, targets); MSE and RMSE.

A dataset may name its own score in ``Source.task_args`` (house_prices: ``log_rmse``).
"""
from __future__ import annotations

from torch import Tensor, nn

from dlexp.tasks.base import LOSSES, TASKS, Task


@LOSSES.register("mse")
def mse() -> nn.Module:
    return nn.MSELoss()  # outputs and targets both (B, targets)


@TASKS.register("regression")
class Regression(Task):
    name = "regression"
    default_loss = "mse"
    default_metric = "rmse"

    def prior_outputs(self, targets: Tensor) -> Tensor:
        """The mean of the train targets (B, targets)."""
        return targets.float().mean(dim=0, keepdim=True)  # (1, targets)
