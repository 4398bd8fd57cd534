"""Learning-rate schedules per optimizer step: linear warmup on any scheduler, inverse square root."""
from __future__ import annotations

import csv
import math

import pytest
import torch
from omegaconf import OmegaConf

from dlexp.errors import ConfigError
from dlexp.training.schedulers import build_scheduler


def _lrs(cfg: dict, steps: int, horizon: int = 100) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(OmegaConf.create(cfg), optimizer, horizon, "max")
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_then_inverse_square_root():
    lrs = _lrs({"name": "inverse_sqrt", "timescale": 4, "interval": "step", "warmup_steps": 4}, 9)
    assert lrs[:5] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0])  # linear from lr/4 to lr
    assert lrs[5:] == pytest.approx([math.sqrt(4 / (4 + t)) for t in range(1, 5)])


def test_warmup_on_another_scheduler_leaves_it_the_rest_of_the_run():
    lrs = _lrs({"name": "cosine", "t_max": None, "eta_min": 0.0, "interval": "step", "warmup_steps": 2}, 12, horizon=12)
    assert lrs[:3] == pytest.approx([0.5, 0.75, 1.0])
    assert lrs[3:] == pytest.approx([(1 + math.cos(math.pi * t / 10)) / 2 for t in range(1, 10)])  # 10 = 12 - 2


def test_plateau_has_no_warmup():
    with pytest.raises(ConfigError, match="scheduler=plateau steps once per epoch"):
        _lrs({"name": "plateau", "factor": 0.1, "patience": 5, "min_lr": 0.0, "interval": "epoch", "warmup_steps": 3}, 1)


def test_a_per_step_cosine_reaches_its_floor_at_the_end_of_the_run(run_train):
    """The Trainer counts the run in optimizer steps for interval=step: lr at epoch starts follows the cosine."""
    _, run_dir = run_train("trainer=smoke", "scheduler=cosine", "scheduler.interval=step", "optim.lr=0.01")
    with open(run_dir / "metrics.csv", newline="") as handle:
        lrs = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert lrs == pytest.approx([0.01, 0.01 * (1 + math.cos(math.pi * 5 / 10)) / 2])  # 2 epochs x 5 steps
