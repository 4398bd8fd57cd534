"""The training step, the epoch loop over a loader, and early stopping.

Running sums stay on the device as tensors and are read once per epoch (and
once per progress-bar refresh), so the hot loop does not stall on host syncs.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from dlexp.optim import l1_penalty
from dlexp.tasks import Metric


@dataclass
class StepConfig:
    l1: float = 0.0  # coefficient of the L1 penalty added to the training loss
    grad_clip: Optional[float] = None  # max global L2 norm of the gradients


class Diverged(Exception):
    """The training loss or gradient norm became non-finite."""

    def __init__(self, step: int, what: str):
        super().__init__(f"{what} became non-finite at step {step}")
        self.step, self.what = step, what


def training_step(
    model: nn.Module, x: Tensor, y: Tensor, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, step: StepConfig
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    """One optimizer step on a batch; returns (data loss, outputs, grad norm or None), all detached."""
    outputs = model(x)  # (B, num_classes)
    loss = loss_fn(outputs, y)
    objective = loss + step.l1 * l1_penalty(model) if step.l1 > 0 else loss
    optimizer.zero_grad(set_to_none=True)
    objective.backward()
    grad_norm = None
    if step.grad_clip is not None:  # the total norm before clipping comes for free
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), step.grad_clip)
    optimizer.step()
    return loss.detach(), outputs.detach(), grad_norm


@dataclass
class EpochProgress:
    """Running sums of one pass; checkpointed when a run stops mid-epoch."""

    loss_sum: Tensor  # sum of per-example losses, 0-d tensor on the device
    stat_sum: Tensor  # the metric's running statistic
    examples: int = 0
    elements: int = 0  # target elements, for per-element metrics
    batches: int = 0  # batches done so far this epoch

    @classmethod
    def start(cls, device: torch.device, saved: Optional[dict[str, Any]] = None) -> "EpochProgress":
        saved = saved or {}
        return cls(
            loss_sum=torch.tensor(saved.get("loss_sum", 0.0), device=device),
            stat_sum=torch.tensor(saved.get("stat_sum", 0.0), device=device),
            examples=saved.get("examples", 0),
            elements=saved.get("elements", 0),
            batches=saved.get("batches", 0),
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_sum": self.loss_sum.item(), "stat_sum": self.stat_sum.item(),
            "examples": self.examples, "elements": self.elements, "batches": self.batches,
        }

    def result(self, metric: Metric) -> dict[str, float]:
        if self.examples == 0:
            return {"loss": math.nan, metric.name: math.nan}
        return {"loss": self.loss_sum.item() / self.examples, metric.name: metric.reduce(self.stat_sum.item(), self.elements)}


def run_epoch(
    model: nn.Module,
    loader: Any,
    loss_fn: nn.Module,
    metric: Metric,
    *,
    optimizer: Optional[torch.optim.Optimizer] = None,
    step: Optional[StepConfig] = None,
    limit_batches: Optional[int] = None,
    progress: Any = None,
    log_every: int = 20,
    state: Optional[EpochProgress] = None,
    should_stop: Callable[[], bool] = lambda: False,
    check_every: int = 1,
) -> Optional[dict[str, float]]:
    """Train (when ``optimizer`` is given) or evaluate for one pass over ``loader``.

    Returns the example-weighted mean loss and the metric, e.g.
    ``{"loss": 0.12, "acc": 0.97}``, or None when ``should_stop()`` turned true
    between two training steps (``state`` then holds the partial sums).
    Training checks the loss (and the gradient norm, when clipping) every
    ``check_every`` steps and raises ``Diverged`` when one is not finite.
    """
    training = optimizer is not None
    step = step or StepConfig()
    model.train(training)
    device = next(model.parameters()).device
    state = state or EpochProgress.start(device)
    grad_sum = torch.zeros((), device=device)  # non-finite iff some clipped step's grad norm was
    total = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    task = progress.add_task("train" if training else "eval", total=total, completed=state.batches, loss="-", speed="-") if progress else None
    start, start_examples = time.perf_counter(), state.examples
    batches = loader.batches(skip=state.batches) if hasattr(loader, "batches") else itertools.islice(loader, state.batches, None)
    with torch.set_grad_enabled(training):
        for x, y in batches:
            if state.batches >= total:
                break
            if training:
                loss, outputs, grad_norm = training_step(model, x, y, loss_fn, optimizer, step)
                if grad_norm is not None:
                    grad_sum += grad_norm
            else:
                outputs = model(x)
                loss = loss_fn(outputs, y)
            batch = y.shape[0]
            state.loss_sum.add_(loss, alpha=batch)  # one fused op: sum of per-example losses
            state.stat_sum.add_(metric.batch_sum(outputs, y))
            state.examples += batch
            state.elements += metric.count(y)
            state.batches += 1
            if training and (state.batches % check_every == 0 or state.batches == total):
                _check_finite(state.loss_sum, grad_sum if step.grad_clip is not None else None, state.batches)
            if task is not None and (state.batches % log_every == 0 or state.batches == total):
                speed = (state.examples - start_examples) / max(time.perf_counter() - start, 1e-9)
                progress.update(task, completed=state.batches, loss=f"{state.loss_sum.item() / state.examples:.4f}", speed=f"{speed:,.0f}")
            if training and should_stop():
                break
    if task is not None:
        progress.remove_task(task)
    if training and state.batches < total:
        return None  # stopped early on request
    return state.result(metric)


def _check_finite(loss_sum: Tensor, grad_sum: Optional[Tensor], step: int) -> None:
    """One host sync: a non-finite loss or grad norm poisons its running sum."""
    if not math.isfinite(loss_sum.item()):
        raise Diverged(step, "the training loss")
    if grad_sum is not None and not math.isfinite(grad_sum.item()):
        raise Diverged(step, "the gradient norm")


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
