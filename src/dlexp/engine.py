"""The training step, the epoch loop over a loader, and early stopping.

Running sums stay on the device as tensors and are read once per epoch (and
once per progress-bar refresh), so the hot loop does not stall on host syncs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from dlexp.optim import l1_penalty
from dlexp.tasks import Metric


@dataclass
class StepConfig:
    l1: float = 0.0  # coefficient of the L1 penalty added to the training loss
    grad_clip: Optional[float] = None  # max global L2 norm of the gradients


def training_step(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, step: StepConfig
) -> tuple[Tensor, Tensor]:
    """One optimizer step on a batch; returns (data loss, outputs), both detached."""
    outputs = model(x)  # (B, num_classes)
    loss = loss_fn(outputs, y)
    objective = loss + step.l1 * l1_penalty(model) if step.l1 > 0 else loss
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    if step.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), step.grad_clip)
    optimizer.step()
    return loss.detach(), outputs.detach()


def run_epoch(
    model: nn.Module,
    loader: Any,
    loss_fn: nn.Module,
    metric: Metric,
    *,
    optimizer: Optional[torch.optim.Optimizer] = None,
    step: StepConfig = StepConfig(),
    limit_batches: Optional[int] = None,
    progress: Any = None,
    log_every: int = 20,
) -> dict[str, float]:
    """Train (when ``optimizer`` is given) or evaluate for one pass over ``loader``.

    Returns the example-weighted mean loss and the metric, e.g.
    ``{"loss": 0.12, "acc": 0.97}``.
    """
    training = optimizer is not None
    model.train(training)
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)  # sum of per-example losses
    stat_sum = torch.zeros((), device=device)  # the metric's running statistic
    examples = elements = 0
    total = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    task = progress.add_task("train" if training else "eval", total=total, loss="-", speed="-") if progress else None
    start = time.perf_counter()
    with torch.set_grad_enabled(training):
        for batch_idx, (x, y) in enumerate(loader):
            if batch_idx >= total:
                break
            if training:
                loss, outputs = training_step(model, x, y, loss_fn, optimizer, step)
            else:
                outputs = model(x)
                loss = loss_fn(outputs, y)
            batch = y.shape[0]
            loss_sum += loss * batch
            stat_sum += metric.batch_sum(outputs, y)
            examples += batch
            elements += metric.count(y)
            if task is not None and ((batch_idx + 1) % log_every == 0 or batch_idx + 1 == total):
                speed = examples / max(time.perf_counter() - start, 1e-9)
                progress.update(task, completed=batch_idx + 1, loss=f"{loss_sum.item() / examples:.4f}", speed=f"{speed:,.0f}")
    if task is not None:
        progress.remove_task(task)
    if examples == 0:
        return {"loss": math.nan, metric.name: math.nan}
    return {"loss": loss_sum.item() / examples, metric.name: metric.reduce(stat_sum.item(), elements)}


@dataclass
class EarlyStopping:
    """Tracks the best value of the monitored metric and says when to stop."""

    monitor: str  # e.g. "val/acc"
    mode: str  # "min" or "max"
    patience: Optional[int] = None  # None: never stop early, only track the best
    min_delta: float = 0.0
    best: float = field(default=math.nan)
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True if it is a new best."""
        if math.isnan(self.best) or self._better(value, self.best):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def _better(self, value: float, best: float) -> bool:
        if self.mode == "max":
            return value > best + self.min_delta
        return value < best - self.min_delta

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
