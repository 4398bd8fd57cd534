"""Losses and metrics, and which ones each task uses by default.

A metric is accumulated as a running *sum* on the device (e.g. the number of
correct predictions, the sum of squared errors) and turned into a value once per
epoch, so the hot loop never waits on the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import Tensor, nn

from dlexp.errors import ConfigError
from dlexp.registry import Registry

LOSSES = Registry("loss")
METRICS = Registry("metric")

# task -> (default loss, default metric)
TASK_DEFAULTS = {
    "classification": ("cross_entropy", "acc"),
    "regression": ("mse", "rmse"),
    "binary": ("bce", "binary_acc"),  # 0/1 targets: logistic regression on one logit
}


@dataclass(frozen=True)
class Metric:
    name: str
    mode: str  # "max" if higher is better, else "min"
    batch_sum: Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> summed statistic, 0-d tensor
    per_element: bool  # count target elements (regression) rather than examples
    reduce: Callable[[float, int], float]  # (epoch total, count) -> metric value

    def count(self, targets: Tensor) -> int:
        return targets.numel() if self.per_element else targets.shape[0]


@LOSSES.register("cross_entropy")
def cross_entropy() -> nn.Module:
    return nn.CrossEntropyLoss()  # takes logits (B, C) and class indices (B,)


@LOSSES.register("mse")
def mse() -> nn.Module:
    return nn.MSELoss()  # outputs and targets both (B, targets)


@LOSSES.register("bce")
def bce() -> nn.Module:
    return nn.BCEWithLogitsLoss()  # takes logits (B, 1) and 0/1 float targets (B, 1)


@METRICS.register("acc")
def accuracy() -> Metric:
    return Metric(
        name="acc",
        mode="max",
        batch_sum=lambda out, y: (out.argmax(dim=1) == y).sum(),  # correct predictions
        per_element=False,
        reduce=lambda total, n: total / n,
    )


@METRICS.register("rmse")
def rmse() -> Metric:
    return Metric(
        name="rmse",
        mode="min",
        batch_sum=lambda out, y: ((out - y) ** 2).sum(),  # sum of squared errors
        per_element=True,
        reduce=lambda total, n: math.sqrt(total / n),
    )


@METRICS.register("binary_acc")
def binary_accuracy() -> Metric:
    """Accuracy of 0/1 predictions from logits: logit > 0 means class 1. Logged as ``acc``."""
    return Metric(
        name="acc",
        mode="max",
        batch_sum=lambda out, y: ((out > 0) == (y > 0.5)).sum(),
        per_element=True,
        reduce=lambda total, n: total / n,
    )


@METRICS.register("log_rmse")
def log_rmse() -> Metric:
    """RMSE between log predictions and log targets (Kaggle's house-prices score). For datasets whose
    targets are already logarithms (house_prices learns log SalePrice), so it is the RMSE of the outputs."""
    return Metric(
        name="log_rmse",
        mode="min",
        batch_sum=lambda out, y: ((out - y) ** 2).sum(),
        per_element=True,
        reduce=lambda total, n: math.sqrt(total / n),
    )


def resolve_task(task: str, loss: str = "auto", metric: str = "auto") -> tuple[nn.Module, Metric]:
    """The loss module and metric for ``task``, with ``auto`` meaning the task's default."""
    if task not in TASK_DEFAULTS:
        raise ConfigError(f"unknown task '{task}'. Choices: {', '.join(TASK_DEFAULTS)}")
    default_loss, default_metric = TASK_DEFAULTS[task]
    loss_fn = LOSSES.build(default_loss if loss == "auto" else loss)
    return loss_fn, METRICS.build(default_metric if metric == "auto" else metric)


def monitor_mode(monitor: str, metric: Metric) -> str:
    """min/max for a monitored name such as ``val/acc`` or ``val/loss``."""
    return metric.mode if monitor.endswith("/" + metric.name) else "min"


