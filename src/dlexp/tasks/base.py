"""What a task is: how a batch feeds the model, its loss and weight, its metrics, its monitor, its outputs.

The training loop knows nothing of the batch layout: it calls ``task.step`` and
``task.evaluate_batch`` and adds up what they return. A task is one class in one
file of this package, registered in ``TASKS`` under the name a dataset's
``Source.task`` gives.
"""
from __future__ import annotations

import copy
import math
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor, nn

from dlexp.config.registry import Registry
from dlexp.config.schema import DecodeConfig
from dlexp.data.base import Batch, Loader
from dlexp.errors import ConfigError
from dlexp.tasks.metrics import METRICS, Metric

TASKS = Registry("task")
LOSSES = Registry("loss")


@dataclass
class StepOutput:
    loss: Tensor  # 0-d: the batch mean that is differentiated
    weight: Union[int, Tensor]  # how many items the mean is over: examples, or tokens
    outputs: Tensor  # the model's outputs, for the metrics


class Task:
    """Supervised learning of ``targets`` from ``inputs`` with one loss; subclasses set the defaults."""

    name = ""
    default_loss = ""
    default_metric = ""
    decodes = False  # True: the task reads the ``decode`` settings (beam size, ...)
    starts_near_prior = False  # True: a freshly initialized model's loss is about the prior's (a classifier's ln C)

    def __init__(self, *, loss: str = "auto", metric: str = "auto", context: Optional[dict[str, Any]] = None,
                 label_smoothing: float = 0.0, decode: Optional[DecodeConfig] = None):
        self.context = context or {}
        self.loss_fn: nn.Module = build_loss(self.default_loss if loss == "auto" else loss, label_smoothing)
        self._per_example_loss: Optional[nn.Module] = None  # the loss with reduction="none", made when first needed
        self.metric_name = self.default_metric if metric == "auto" else metric
        self.metrics()  # an unknown metric name fails here, before any data moves
        self.decode = decode  # a dlexp.config.schema.DecodeConfig, or None
        if decode is not None and not self.decodes:
            changed = [f"decode.{f.name}={getattr(decode, f.name)}" for f in dataclasses.fields(decode)
                       if getattr(decode, f.name) != f.default]
            if changed:
                raise ConfigError(f"{', '.join(changed)} is set, but a {self.name} task does not decode sequences; "
                                  "remove decode.* (it applies to translation datasets only)")

    def metrics(self) -> list[Metric]:
        """Fresh accumulators for one pass."""
        return [METRICS.build(self.metric_name)]

    @property
    def monitor_metric(self) -> Metric:
        return self.metrics()[0]

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(batch.inputs)

    def for_targets(self, targets: Optional[Tensor]) -> "Task":
        """This task for a fold whose train targets (N, ...), as the loss sees them, are ``targets``: a task that
        fits something to them (a regression's target scale) returns a fitted copy, the others themselves."""
        return self

    def expected_outputs(self, num_classes: int) -> Optional[int]:
        """How many outputs per example a model of this task gives (its last dimension): the data's classes or
        targets; None where it is not that simple (a translation model's vocabulary)."""
        return num_classes

    def prior_outputs(self, targets: Tensor) -> Optional[Tensor]:
        """(1, outputs): the best a model can predict without looking at the inputs, from the train targets
        (class frequencies, the mean); None: the task has no such baseline."""
        return None

    def prior(self, targets: Optional[Tensor]) -> Optional[dict[str, Any]]:
        """``{"loss", "metric", "starts_near"}`` of predicting ``prior_outputs`` for every train example: the level a run must
        beat to have learned anything from its inputs (the diagnosis compares the curves with it)."""
        constant = None if targets is None or len(targets) == 0 else self.prior_outputs(targets)
        if constant is None:
            return None
        outputs = constant.expand(len(targets), *constant.shape[1:])
        metric = self.monitor_metric
        loss = float(self.loss_fn(outputs, targets))
        if metric.needs_decode:
            return {"loss": loss, "metric": math.nan, "starts_near": self.starts_near_prior}
        metric.reset(targets.device)
        metric.update(outputs, Batch(outputs, targets))
        return {"loss": loss, "metric": metric.compute(), "starts_near": self.starts_near_prior}

    def step(self, model: nn.Module, batch: Batch) -> StepOutput:
        """Forward and loss; the weight is the number of examples.

        With ``batch.extras["weight"]`` (B,) the loss is the weighted mean of the per-example losses,
        sum(w * loss) / sum(w) (e.g. importance weights under covariate shift); without it, the plain loss.
        """
        outputs = self.forward(model, batch)
        weight = batch.extras.get("weight")
        if weight is None:
            return StepOutput(self.loss_fn(outputs, batch.targets), len(batch), outputs)
        per_example = self.per_example_loss(outputs, batch.targets)  # (B,)
        loss = (weight * per_example).sum() / weight.sum().clamp_min(torch.finfo(per_example.dtype).tiny)
        return StepOutput(loss, len(batch), outputs)

    def per_example_loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """(B,) the loss of each example: a copy of the loss with reduction="none", averaged over any
        further dimensions (e.g. the targets of a multi-output regression)."""
        if self._per_example_loss is None:
            if getattr(self.loss_fn, "reduction", None) != "mean":
                raise ConfigError(f"the loss {type(self.loss_fn).__name__} cannot take per-example weights; "
                                  "use a mean-reduced loss such as cross_entropy, bce or mse")
            self._per_example_loss = copy.copy(self.loss_fn)
            self._per_example_loss.reduction = "none"
        losses = self._per_example_loss(outputs, targets)
        return losses.reshape(len(losses), -1).mean(dim=1)

    def count_tokens(self, batch: Batch) -> Optional[Tensor]:
        """The batch's real tokens, for throughput; None for tasks without tokens."""
        return None

    def evaluate_batch(self, model: nn.Module, batch: Batch) -> tuple[StepOutput, Optional[Any]]:
        """The step without gradients, plus decoded outputs for metrics that need them (None here)."""
        return self.step(model, batch), None

    @torch.no_grad()
    def predict(self, model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
        """Model outputs for unlabeled inputs ``x`` (preprocessed, on the model's device), in eval mode,
        ``batch_size`` rows at a time, on the CPU as float: e.g. predictions to write, or BBSE's logits."""
        model.eval()
        chunks = (Batch(x[i : i + batch_size], targets=None) for i in range(0, len(x), batch_size))
        return torch.cat([self.forward(model, batch).float().cpu() for batch in chunks])

    def model_args(self) -> dict[str, Any]:
        """Facts of the data a model builder takes by keyword besides the input shape and the number of
        outputs (e.g. a source vocabulary's size); not config keys."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Facts of the data that the weights cannot be used without (plain containers, for checkpoints)."""
        return {}

    def check_model(self, name: str) -> None:
        """Raise ConfigError if the model ``name`` cannot learn this task (before it is built)."""

    def write_outputs(self, model: nn.Module, loader: Loader, run_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
        """After the test: the task's own files in ``run_dir`` (e.g. translations) with the best weights;
        returns entries for summary.json. ``say`` prints a console line."""
        return {}


TASKS.kind_of = Task  # every task is a Task subclass, built-in or a user's


def build_loss(name: str, label_smoothing: float = 0.0) -> nn.Module:
    """The loss ``name``; ``label_smoothing`` > 0 only for the losses that take it (cross-entropies)."""
    if not label_smoothing:
        return LOSSES.build(name)
    if "label_smoothing" not in LOSSES.config_keys(name):
        takes = ", ".join(n for n in LOSSES.names() if "label_smoothing" in LOSSES.config_keys(n))
        raise ConfigError(f"trainer.label_smoothing={label_smoothing} applies to a cross-entropy loss ({takes}), not to "
                          f"loss '{name}'; set trainer.label_smoothing=0")
    return LOSSES.build(name, label_smoothing=label_smoothing)


def build_task(name: str, task_args: Optional[dict[str, Any]] = None, *, context: Optional[dict[str, Any]] = None,
               loss: str = "auto", metric: str = "auto", **settings: Any) -> Task:
    """The task ``name`` with the data's ``task_args`` and ``context`` (e.g. vocabularies); ``auto`` loss and
    metric (``trainer.loss``, ``trainer.metric``) mean the data's choice (e.g. house_prices' log_rmse), else
    the task's default. ``settings``: run settings every task takes (``label_smoothing``, ``decode``)."""
    args = dict(task_args or {})
    data_metric = args.pop("metric", "auto")
    return TASKS.build(name, loss=loss, metric=data_metric if metric == "auto" else metric, context=context,
                       **args, **settings)


def resolve_monitor(monitor: str, mode: str, task: Task) -> tuple[str, str]:
    """(monitored key, min|max) from ``trainer.early_stopping``; ``auto`` means the task's val metric."""
    metric = task.monitor_metric
    name = f"val/{metric.name}" if monitor == "auto" else monitor
    if name not in (f"val/{metric.name}", "val/loss"):
        raise ConfigError(f"trainer.early_stopping.monitor='{name}' is not logged; use val/{metric.name} or val/loss")
    if mode == "auto":
        mode = metric.mode if name == f"val/{metric.name}" else "min"
    return name, mode
