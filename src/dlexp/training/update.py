"""After training: updates on newly labelled examples of a shifted distribution (``DataBundle.new_labels``).

Concept shift's remedy (``shift=concept shift.correct=finetune``) is to start from the trained weights and
take a few steps on new labels; the control is the same steps' worth of training from scratch. For each
set size k the model takes full-batch steps of the run's own optimizer (``optim.*``, a fresh state) on
the first k examples, from the trained weights and from fresh weights, and is scored on the shifted test
set. The run's own model ends with its trained weights, as it began.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from omegaconf import DictConfig
from torch import nn

from dlexp.data.base import DataBundle, Loader, NewLabels
from dlexp.data.batching import TensorLoader
from dlexp.models import build_model
from dlexp.tasks.base import Task
from dlexp.training.optim import build_optimizer
from dlexp.training.step import Pass, StepConfig, run_epoch


def update_on_new_labels(model: nn.Module, data: DataBundle, task: Task, cfg: DictConfig,
                         evaluate: Callable[[Loader], dict[str, float]]) -> dict[str, Any]:
    """``{test_shifted_finetune_<k>/acc: ..., test_shifted_scratch_<k>/acc: ...}`` for every k of
    ``data.new_labels``; ``model`` holds the trained weights (and holds them again afterwards)."""
    new: NewLabels = data.new_labels
    scored_on = data.extra_tests[new.scored_on]
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.manual_seed(cfg.seed)  # fresh weights drawn like a run's own first model, the same for every k
    fresh = build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularizer.dropout, task.model_args())
    fresh = {k: v.to(trained[k].device) for k, v in fresh.state_dict().items()}
    step = StepConfig(l1=cfg.regularizer.l1, grad_clip=cfg.trainer.grad_clip)
    scores: dict[str, Any] = {}
    for k in new.sizes:
        examples = TensorLoader(new.x[:k], new.y[:k], k)  # one batch: each pass is one full-batch step
        for how, start, steps in (("finetune", trained, new.update_steps), ("scratch", fresh, new.scratch_steps)):
            model.load_state_dict(start)
            optimizer = build_optimizer(cfg.optim, model, cfg.regularizer.weight_decay)
            for _ in range(steps):
                run_epoch(model, examples, task, Pass(optimizer=optimizer, step=step))
            scores.update({f"{new.scored_on}_{how}_{k}/{m}": v for m, v in evaluate(scored_on).items()})
    model.load_state_dict(trained)
    return scores
