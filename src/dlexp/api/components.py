"""Registering a user's own components, by name, exactly as dlexp registers its own.

    from dlexp import register_model

    @register_model("tiny_cnn")
    def tiny_cnn(input_shape, num_classes, *, width: int = 16, dropout: float = 0.0):
        ...  # (C, H, W), classes -> nn.Module

A builder's positional parameters are what the run passes it (a model gets the input shape and the number
of outputs); its keyword-only parameters are the keys its YAML file may set, and their annotations (with
``annotated_types`` limits) are checked when the config is composed. A name that dlexp (or another plugin)
already has is refused. The module that holds them is named in ``plugins=[...]`` (``dlexp.config.plugins``).
"""
from __future__ import annotations

from typing import Callable

from dlexp.data.base import DATASETS, Batch, Source
from dlexp.models.base import MODELS
from dlexp.tasks.base import LOSSES, TASKS, StepOutput, Task
from dlexp.tasks.metrics import METRICS, MeanMetric, Metric
from dlexp.training.optim import OPTIMIZERS
from dlexp.training.schedulers import SCHEDULERS

__all__ = [
    "register_model", "register_dataset", "register_task", "register_loss", "register_metric", "register_optimizer",
    "register_scheduler", "Source", "Batch", "Task", "StepOutput", "Metric", "MeanMetric",
]

Decorator = Callable[[Callable], Callable]


def register_model(name: str) -> Decorator:
    """``builder(input_shape, num_classes, *, <keys>) -> nn.Module``; its YAML is ``conf/model/<option>.yaml``
    with ``name: <name>``. It takes ``dropout`` if ``regularizer.dropout`` (or a search over it) may set it."""
    return MODELS.register(name)


def register_dataset(name: str) -> Decorator:
    """``builder(*, <keys>) -> dlexp.Source``: the train pool (x, y), an optional test set, the task's name
    (classification, regression, binary, or a registered one) and the number of classes or targets."""
    return DATASETS.register(name)


def register_task(name: str) -> Decorator:
    """A ``dlexp.Task`` subclass: how a batch becomes a loss and outputs, its default loss and metric."""
    return TASKS.register(name)


def register_loss(name: str) -> Decorator:
    """``builder(*, <keys>) -> nn.Module``, chosen with ``trainer.loss=<name>``."""
    return LOSSES.register(name)


def register_metric(name: str) -> Decorator:
    """``builder() -> dlexp.Metric``, chosen with ``trainer.metric=<name>``."""
    return METRICS.register(name)


def register_optimizer(name: str) -> Decorator:
    """``builder(params, *, <keys>) -> torch.optim.Optimizer``; ``params`` are parameter groups."""
    return OPTIMIZERS.register(name)


def register_scheduler(name: str) -> Decorator:
    """``builder(optimizer, epochs, mode, *, <keys>)``: ``epochs`` is the run's length in the scheduler's
    intervals, ``mode`` the monitored metric's direction (min or max)."""
    return SCHEDULERS.register(name)
