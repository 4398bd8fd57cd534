"""The CUDA paths: precision, torch.compile with channels_last, NCCL under torchrun, resume on the GPU.

Skipped where no GPU is present (as in CI); run them on a GPU machine with
``pytest tests/test_gpu.py``. Each is a real CLI run to files on disk, on the bundled digits.
"""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import read_json, run_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# LeNet with BatchNorm: a conv net (channels_last on CUDA) with BN under autocast; it learns digits in 3 epochs
LENET = ["model=lenet_bn", "trainer.progress=false", "trainer.early_stopping.patience=null"]


def _completed_on_cuda(run_dir: Path, proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["device"].startswith("cuda"), summary
    losses = [float(row["train/loss"]) for row in csv.DictReader(open(run_dir / "metrics.csv"))]
    assert losses and all(loss == loss for loss in losses)  # no NaN
    return summary


def test_the_default_experiment_runs_on_the_gpu(tmp_path):
    proc = run_cli("trainer.epochs=5", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert _completed_on_cuda(tmp_path / "run", proc)["test/acc"] > 0.9  # 10 classes: chance is 0.1


@pytest.mark.parametrize("precision, compile_", [("bf16", "false"), ("16", "false"), ("bf16", "true")])
def test_mixed_precision_and_compile_train_lenet_bn(tmp_path, precision, compile_):
    run_dir = tmp_path / "run"
    proc = run_cli(*LENET, "trainer.epochs=3", f"trainer.precision={precision}", f"trainer.compile={compile_}",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=600)
    assert _completed_on_cuda(run_dir, proc)["test/acc"] > 0.5
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in state["model"])  # the raw model's keys
    assert (state["scaler"] is not None) == (precision == "16")  # float16 alone needs (and saves) a GradScaler


def test_torchrun_uses_nccl_on_the_gpu_and_resumes(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "dlexp"]
    run_dir = tmp_path / "run"
    proc = subprocess.run([*torchrun, *LENET, "trainer.epochs=2", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    _completed_on_cuda(run_dir, proc)
    proc = subprocess.run([*torchrun, f"resume={run_dir}", "trainer.epochs=3"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    summary = _completed_on_cuda(run_dir, proc)
    assert summary["epochs_run"] == 3


@pytest.mark.parametrize("optim", ["sgd_momentum", "adam", "adamw", "adagrad"])
def test_each_fused_optimizer_steps_under_float16(tmp_path, optim):
    run_dir = tmp_path / "run"
    proc = run_cli(*LENET, f"optim={optim}", "trainer.epochs=1", "trainer.precision=16", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path)
    _completed_on_cuda(run_dir, proc)
