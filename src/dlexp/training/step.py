"""The training step and one pass over a loader (training or evaluation).

Running sums stay on the device as tensors and are read once per epoch (and
once per progress-bar refresh), so the hot loop does not stall on host syncs.
The batch layout belongs to the task: this module only adds up what
``task.step`` returns.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from dlexp.data.base import Batch, Loader
from dlexp.runs.runlog import Bars
from dlexp.tasks.base import StepOutput, Task
from dlexp.tasks.metrics import LossMean, Metric
from dlexp.training.distributed import COLLECTIVES, all_reduce_max, all_reduce_sum
from dlexp.training.optim import l1_penalty
from dlexp.training.throughput import Meter


def _no_autocast() -> Any:
    return contextlib.nullcontext()


@dataclass
class StepConfig:
    l1: float = 0.0  # coefficient of the L1 penalty added to the training loss
    grad_clip: Optional[float] = None  # max global L2 norm of the gradients
    autocast: Callable[[], Any] = _no_autocast  # the forward pass's precision context (Runtime.autocast)
    scaler: Optional[torch.amp.GradScaler] = None  # for float16; None otherwise
    world_size: int = 1  # processes under torchrun: DDP averages their gradients
    scheduler: Optional[LRScheduler] = None  # stepped after every optimizer step (scheduler.interval=step)


class Diverged(Exception):
    """The training loss or gradient norm became non-finite."""

    def __init__(self, step: int, what: str):
        super().__init__(f"{what} became non-finite at step {step}")
        self.step, self.what = step, what


def training_step(
    model: nn.Module, batch: Batch, task: Task, optimizer: torch.optim.Optimizer, step: StepConfig
) -> tuple[StepOutput, Optional[Tensor]]:
    """One optimizer step on a batch; returns the task's output (loss detached) and the grad norm or None.

    Precision lives here and only here: the forward under autocast, and for float16
    a gradient scaler, unscaled before clipping. A step the scaler skips for an
    overflow reports a zero grad norm: it is not a divergence (the loss check still is).
    """
    with step.autocast():
        out = task.step(model, batch)
        objective = _global_mean(out, step.world_size)
        objective = objective + step.l1 * l1_penalty(model) if step.l1 > 0 else objective
    optimizer.zero_grad(set_to_none=True)
    scaler = step.scaler
    (scaler.scale(objective) if scaler is not None else objective).backward()
    grad_norm = None
    if step.grad_clip is not None:  # the total norm before clipping comes for free
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), step.grad_clip)
        if scaler is not None:  # inf/nan here means the scaler skips this step and lowers its scale
            grad_norm = torch.nan_to_num(grad_norm, nan=0.0, posinf=0.0)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if step.scheduler is not None:  # here, so a checkpoint's scheduler always matches its optimizer steps
        step.scheduler.step()
    outputs = out.outputs.detach()
    return StepOutput(out.loss.detach().float(), out.weight, outputs.float() if outputs.is_floating_point() else outputs), grad_norm


def _global_mean(out: StepOutput, world_size: int) -> Tensor:
    """The loss whose rank-average (what DDP does to gradients) is the mean over the global batch:
    each rank's mean, times its share of the batch's items (examples, or tokens) times the world size."""
    if world_size == 1:
        return out.loss
    local = torch.as_tensor(out.weight, device=out.loss.device, dtype=torch.float32)
    total = all_reduce_sum(local.clone())
    return out.loss * (local * world_size / total)


@dataclass
class EpochProgress:
    """Running sums of one pass; checkpointed when a run stops mid-epoch."""

    loss: LossMean
    metrics: list[Metric]
    batches: int = 0  # batches done so far this pass

    @classmethod
    def start(cls, task: Task, device: torch.device, saved: Optional[dict[str, Any]] = None,
              with_sums: bool = True) -> "EpochProgress":
        """Fresh sums, or those of a checkpointed partial pass (``with_sums=False``: its position only)."""
        loss, metrics = LossMean(), task.metrics()
        for acc in (loss, *metrics):
            acc.reset(device)
        progress = cls(loss, metrics)
        if saved:
            if with_sums:
                loss.load_state_dict(saved["loss"])
                for acc, state in zip(metrics, saved["metrics"]):
                    acc.load_state_dict(state)
            progress.batches = saved["batches"]
        return progress

    def update(self, out: StepOutput, batch: Batch, decoded: Any = None) -> None:
        self.loss.add(out.loss, out.weight)
        for metric in self.metrics:
            metric.update(decoded if metric.needs_decode else out.outputs, batch)
        self.batches += 1

    @property
    def examples(self) -> int:
        return int(self.loss.count)

    def state_dict(self, world_size: int = 1) -> dict[str, Any]:
        """The sums so far; with ``world_size`` > 1 every rank's together (a collective: all ranks call it)."""
        if world_size > 1:
            return {"loss": self.loss.global_state_dict(COLLECTIVES),
                    "metrics": [m.global_state_dict(COLLECTIVES) for m in self.metrics],
                    "batches": self.batches}
        return {"loss": self.loss.state_dict(), "metrics": [m.state_dict() for m in self.metrics], "batches": self.batches}

    def result(self, world_size: int = 1) -> dict[str, float]:
        """The pass's loss and metrics, over every rank's batches when ``world_size`` > 1."""
        if world_size > 1:
            self.sync()
        return {"loss": self.loss.compute(), **{m.name: m.compute() for m in self.metrics}}

    def sync(self) -> None:
        for acc in (self.loss, *self.metrics):
            acc.sync(COLLECTIVES)


@dataclass
class Pass:
    """How one pass over a loader runs: training (with an optimizer) or evaluation."""

    optimizer: Optional[torch.optim.Optimizer] = None
    step: StepConfig = field(default_factory=StepConfig)
    limit_batches: Optional[int] = None
    progress: Optional[Bars] = None  # the live bar, when shown
    log_every: int = 20
    should_stop: Callable[[], bool] = lambda: False
    check_every: int = 1  # steps between divergence checks (each is a host sync)
    world_size: int = 1  # > 1: metrics are all-reduced, and stops are decided by all ranks together
    prepare: Callable[[Batch], Batch] = lambda batch: batch  # the Runtime's per-batch hook
    autocast: Callable[[], Any] = _no_autocast  # evaluation's precision context (training uses step.autocast)
    on_step: Callable[["EpochProgress"], None] = lambda state: None  # after each training step, e.g. checkpoints
    meter: Optional[Meter] = None  # filled with the pass's examples (and tokens) and seconds


def run_epoch(model: nn.Module, loader: Loader, task: Task, how: Optional[Pass] = None,
              state: Optional[EpochProgress] = None) -> Optional[dict[str, float]]:
    """Train (when ``how.optimizer`` is given) or evaluate for one pass over ``loader``.

    Returns the weighted mean loss and the metrics, e.g. ``{"loss": 0.12, "acc": 0.97}``,
    or None when ``how.should_stop()`` turned true between two training steps
    (``state`` then holds the partial sums). Training checks the loss (and the
    gradient norm, when clipping) every ``check_every`` steps and raises
    ``Diverged`` when one is not finite.
    """
    how = how or Pass()
    training = how.optimizer is not None
    model.train(training)
    device = next(model.parameters()).device
    state = state or EpochProgress.start(task, device)
    grad_sum = torch.zeros((), device=device)  # non-finite iff some clipped step's grad norm was
    total = len(loader) if how.limit_batches is None else min(len(loader), how.limit_batches)
    bar = _Bar(how.progress, "train" if training else "eval", total, state, how.log_every)
    meter, started = how.meter, time.perf_counter()
    with torch.set_grad_enabled(training):
        for batch in loader.batches(skip=state.batches):
            if state.batches >= total:
                break
            batch = how.prepare(batch)
            if meter is not None:
                meter.add(len(batch), task.count_tokens(batch))
            if training:
                out, grad_norm = training_step(model, batch, task, how.optimizer, how.step)
                if grad_norm is not None:
                    grad_sum += grad_norm
                state.update(out, batch)
            else:
                with how.autocast():
                    _eval_update(state, task, model, batch)
            bar.update(state)
            if training and _should_stop(state, grad_sum, how, total):
                break
            if training and state.batches < total:
                how.on_step(state)
    bar.close()
    if training and state.batches < total:
        return None  # stopped early on request
    result = state.result(how.world_size)  # reads the sums: the device has finished the pass
    if meter is not None:
        meter.seconds = time.perf_counter() - started
    return result


def _eval_update(state: EpochProgress, task: Task, model: nn.Module, batch: Batch) -> None:
    if len(batch) == 0:  # under torchrun, a rank's part of a small last batch can be empty
        state.batches += 1
        return
    out, decoded = task.evaluate_batch(model, batch)
    state.update(out, batch, decoded)


def _should_stop(state: EpochProgress, grad_sum: Tensor, how: Pass, total: int) -> bool:
    """After a training step: raise ``Diverged`` on a non-finite loss or grad norm, or say whether a signal
    asks to stop. Under torchrun every rank decides at the same steps from the same all-reduced flags,
    so no rank waits in a collective for one that has stopped."""
    grads = grad_sum if how.step.grad_clip is not None else None
    check_now = state.batches % how.check_every == 0 or state.batches == total
    if how.world_size == 1:
        if check_now:
            _check_finite(state.loss.total, grads, state.batches)
        return how.should_stop()
    if not check_now:
        return False
    flags = torch.stack([
        (~torch.isfinite(state.loss.total)).float(),
        (~torch.isfinite(grads)).float() if grads is not None else torch.zeros((), device=grad_sum.device),
        torch.tensor(float(how.should_stop()), device=grad_sum.device),
    ])
    loss_bad, grad_bad, stop = all_reduce_max(flags).tolist()
    if loss_bad:
        raise Diverged(state.batches, "the training loss")
    if grad_bad:
        raise Diverged(state.batches, "the gradient norm")
    return bool(stop)


class _Bar:
    """The progress-bar row of one pass: batches done, running loss, examples per second.

    Drawn every ``log_every`` batches, but no more often than every ``MIN_REDRAW_S`` seconds, and first
    only once the pass has run that long: each draw renders the whole bar (about 2 ms on a CPU), so a
    pass shorter than that (a small validation set) draws nothing, and a fast epoch draws a few times.
    """

    MIN_REDRAW_S = 0.5

    def __init__(self, progress: Optional[Bars], label: str, total: int, state: EpochProgress, log_every: int):
        self.progress, self.label, self.total, self.log_every = progress, label, total, log_every
        self.row: Any = None  # added at the first draw
        self.start = self.last_draw = progress.clock() if progress else 0.0
        self.start_examples = state.examples if progress else 0  # a resumed pass counts only its own speed

    def update(self, state: EpochProgress) -> None:
        if self.progress is None or state.batches % self.log_every != 0 or state.batches == self.total:
            return  # the last batch is not drawn: the row goes when the pass ends
        now = self.progress.clock()
        if now - self.last_draw < self.MIN_REDRAW_S:
            return
        self.last_draw = now
        speed = f"{(state.examples - self.start_examples) / max(now - self.start, 1e-9):,.0f}"
        loss = f"{state.loss.compute():.4f}"
        if self.row is None:
            self.row = self.progress.add(self.label, self.total, state.batches, loss, speed, self.start)  # draws it
            return
        self.progress.update(self.row, state.batches, loss, speed)

    def close(self) -> None:
        if self.row is not None:
            self.progress.remove(self.row)


def _check_finite(loss_sum: Tensor, grad_sum: Optional[Tensor], step: int) -> None:
    """One host sync: a non-finite loss or grad norm poisons its running sum."""
    if not math.isfinite(loss_sum.item()):
        raise Diverged(step, "the training loss")
    if grad_sum is not None and not math.isfinite(grad_sum.item()):
        raise Diverged(step, "the gradient norm")
