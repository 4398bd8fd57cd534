"""Learning-rate schedulers: per epoch or per optimizer step, with an optional linear warmup.

Scheduler builders take ``(optimizer, intervals, mode)`` positionally: the run's length in the
scheduler's intervals and the monitored metric's mode (for plateau); their keyword-only
parameters are the keys of ``conf/scheduler/*.yaml``, plus the ``ScheduleTiming`` keys every
scheduler takes.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Annotated, List, Literal, Optional, Union

import torch
from annotated_types import Interval
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from dlexp.config.constraints import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from dlexp.config.registry import Registry, builder_kwargs
from dlexp.errors import ConfigError


@dataclass
class ScheduleTiming:
    """Keys every scheduler takes: when it steps, and an optional linear warmup before it."""

    interval: Literal["epoch", "step"] = "epoch"  # step once per epoch, or after every optimizer step
    warmup_steps: NonNegativeInt = 0  # lr rises linearly from lr/warmup_steps to lr over this many intervals


SCHEDULERS = Registry("scheduler", common=ScheduleTiming, context=("optimizer", "epochs", "mode"))
Schedule = Union[LRScheduler, ReduceLROnPlateau]  # ReduceLROnPlateau steps on the monitored value


# Schedulers step once per epoch, or per optimizer step with scheduler.interval=step; their own keys then
# count steps (e.g. step_size). Context: (optimizer, epochs, mode of the monitored metric).


@SCHEDULERS.register("none")
def no_schedule(optimizer: torch.optim.Optimizer, epochs: int, mode: str) -> None:
    return None


@SCHEDULERS.register("step")
def step(optimizer: torch.optim.Optimizer, epochs: int, mode: str, *, step_size: PositiveInt = 10, gamma: PositiveFloat = 0.1):
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)


@SCHEDULERS.register("multistep")
def multistep(optimizer: torch.optim.Optimizer, epochs: int, mode: str, *, milestones: List[PositiveInt] = (15, 25), gamma: PositiveFloat = 0.1):
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)


@SCHEDULERS.register("exponential")
def exponential(optimizer: torch.optim.Optimizer, epochs: int, mode: str, *, gamma: PositiveFloat = 0.95):
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


@SCHEDULERS.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, epochs: int, mode: str, *, t_max: Optional[PositiveInt] = None, eta_min: NonNegativeFloat = 0.0):
    """Cosine decay to ``eta_min`` over ``t_max`` epochs (None = the whole run)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max or epochs, eta_min=eta_min)


@SCHEDULERS.register("plateau")
def plateau(
    optimizer: torch.optim.Optimizer,
    epochs: int,
    mode: str,
    *,
    factor: Annotated[float, Interval(gt=0, lt=1)] = 0.1,  # new lr = factor * lr
    patience: NonNegativeInt = 5,
    min_lr: NonNegativeFloat = 0.0,
):
    """Cut the lr by ``factor`` when the monitored val metric stalls ``patience`` epochs.

    ``mode`` (min/max) follows the monitored metric.
    """
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr)


@SCHEDULERS.register("inverse_sqrt")
def inverse_sqrt(optimizer: torch.optim.Optimizer, epochs: int, mode: str, *, timescale: PositiveInt = 1000):
    """lr x sqrt(timescale / (timescale + t)) at interval t after the warmup: the Transformer's decay
    (it halves after 3 x timescale intervals); use it with scheduler.interval=step and a warmup."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: math.sqrt(timescale / (timescale + t)))


def schedule_horizon(cfg: DictConfig, train_batches: int) -> int:
    """The run's length in its scheduler's intervals: epochs, or optimizer steps with ``scheduler.interval=step``
    (``train_batches`` a full epoch, cut by ``trainer.limit_train_batches``)."""
    if cfg.scheduler.interval != "step":
        return cfg.trainer.epochs
    limit = cfg.trainer.limit_train_batches
    return cfg.trainer.epochs * min(train_batches, limit or train_batches)


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, epochs: int, monitor_mode: str) -> Optional[Schedule]:
    """The scheduler of ``cfg``, preceded by its linear warmup if any. ``epochs``: the run's length in the
    scheduler's intervals (optimizer steps with interval=step); the main schedule gets what the warmup leaves."""
    kwargs = builder_kwargs(cfg)
    timing = ScheduleTiming(**{k: kwargs.pop(k) for k in ScheduleTiming.__dataclass_fields__ if k in kwargs})
    main = SCHEDULERS.build(cfg.name, optimizer, max(1, epochs - timing.warmup_steps), monitor_mode, **kwargs)
    plateau = isinstance(main, torch.optim.lr_scheduler.ReduceLROnPlateau)
    if plateau and (timing.warmup_steps or timing.interval == "step"):
        raise ConfigError("scheduler=plateau steps once per epoch on the val metric and has no warmup; "
                          "remove scheduler.warmup_steps and scheduler.interval=step, or pick another scheduler")
    if not timing.warmup_steps:
        return main
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / timing.warmup_steps, total_iters=timing.warmup_steps)
    if main is None:
        return warmup
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[timing.warmup_steps])


def step_scheduler(scheduler: Optional[Schedule], monitored_value: float) -> None:
    """Advance one epoch; ReduceLROnPlateau needs the monitored value."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(monitored_value)
    else:
        scheduler.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the first parameter group (every group shares it)."""
    return optimizer.param_groups[0]["lr"]


# --------------------------------------------------------------------------
# A resumed run whose length changed (resume= with another trainer.epochs)


def lr_trajectory(cfg: DictConfig, horizon: int, base_lr: float, intervals: int, mode: str) -> list[float]:
    """The lr of ``cfg``'s schedule over ``horizon`` intervals at intervals 0 .. ``intervals`` - 1, worked out on a
    stand-in optimizer (the run's own is not touched)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = build_scheduler(cfg, optimizer, horizon, mode)
    lrs = []
    with warnings.catch_warnings():  # scheduler.step() without optimizer.step(): on purpose here
        warnings.simplefilter("ignore")
        for _ in range(intervals):
            lrs.append(current_lr(optimizer))
            if scheduler is not None:
                scheduler.step()
    return lrs


def extend_schedule(cfg: DictConfig, optimizer: torch.optim.Optimizer, scheduler: Optional[Schedule], old: int, new: int,
                    mode: str) -> tuple[Optional[Schedule], Optional[str]]:
    """The schedule a resumed run goes on with when its length changed from ``old`` to ``new`` intervals, and
    the line that says so. A schedule whose shape depends on the run's length (cosine over the whole run)
    is rebuilt over the new length, at the interval the run has reached: it never climbs back up past
    its old end. One that does not (step, multistep, exponential, warmup, plateau) continues as it was."""
    if scheduler is None or old == new or isinstance(scheduler, ReduceLROnPlateau):
        return scheduler, None
    done, base = scheduler.last_epoch, optimizer.param_groups[0].get("initial_lr", current_lr(optimizer))
    unit = "step" if cfg.scheduler.interval == "step" else "epoch"
    before, after = (lr_trajectory(cfg.scheduler, h, base, new + 1, mode) for h in (old, new))
    if all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in zip(before[done:new], after[done:new])):
        return scheduler, (f"the {cfg.scheduler.name} schedule does not depend on the run's length and continues: "
                           f"{unit} {done + 1} at lr {after[done]:.3g}")
    for group in optimizer.param_groups:
        group["lr"] = group.get("initial_lr", group["lr"])  # the rebuilt schedule starts from the base lr
    rebuilt = build_scheduler(cfg.scheduler, optimizer, new, mode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(done):  # to the interval the run has reached
            rebuilt.step()
    rest = before[done:new]
    kept = (f"would have risen again from lr {rest[0]:.3g} to {max(rest):.3g}" if max(rest) > rest[0] else
            f"would have given lr {rest[0]:.3g}")
    return rebuilt, (f"the {cfg.scheduler.name} schedule depends on the run's length: it is rebuilt over {new} {unit}s "
                     f"(it was over {old}), so {unit} {done + 1} uses lr {after[done]:.3g} and the last one "
                     f"{after[new - 1]:.3g} (the {old}-{unit} schedule {kept})")
