"""A real SLURM: a single-node cluster on localhost (``tests/services.py``), a sweep through
``hydra/launcher=submitit_slurm``, and a job requeued mid-run that resumes from its checkpoint."""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import read_json
from dlexp.training.throughput import is_timing
from services import wait_for

COMMON = ["trainer=smoke", "trainer.progress=false", "trainer.epochs=4", "trainer.limit_train_batches=8"]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without its timings (epoch_seconds, the *_per_s throughputs)."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if not is_timing(k)} for row in csv.DictReader(handle)]


@pytest.mark.services
def test_a_slurm_sweep_whose_requeued_job_resumes_and_ends_as_if_never_stopped(tmp_path, in_process, slurm_env):
    hold = tmp_path / "held_job"
    env = {**slurm_env, "PYTHONUNBUFFERED": "1", "DLEXP_HOLD_AT": "end_epoch@2", "DLEXP_HOLD_FILE": str(hold)}
    env.pop("DLEXP_TRACEBACK", None)
    sweep = subprocess.Popen(
        [sys.executable, "-m", "dlexp", "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.mem_gb=1",
         "hydra.launcher.timeout_min=10", *COMMON, "seed=0,1", "sweep.name=slurm"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # one job stops after its 2nd epoch (its checkpoint written) until it is requeued: a preemption
    wait_for(lambda: hold.is_file() and hold.read_text().endswith("\n") or sweep.poll() is not None, 240,
             "a SLURM job to reach its 2nd epoch")
    assert sweep.poll() is None, sweep.communicate()
    job_id = hold.read_text().strip()
    requeue = subprocess.run(["scontrol", "requeue", job_id], env=slurm_env, capture_output=True, text=True)
    assert requeue.returncode == 0, requeue.stderr

    def pending() -> bool:
        state = subprocess.run(["squeue", "-h", "-o", "%A %T"], env=slurm_env, capture_output=True, text=True)
        return f"{job_id} PENDING" in state.stdout.splitlines() or sweep.poll() is not None

    wait_for(pending, 120, f"SLURM to requeue job {job_id}")
    # SLURM holds a requeued job for 2 minutes (its BeginTime); a cluster would run it later, the test now
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=slurm_env, capture_output=True)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, err[-3000:]
    assert "2 completed" in out

    sweep_dir = tmp_path / "outputs" / "multirun" / "slurm"
    jobs = sorted(p.parent for p in sweep_dir.glob("*/summary.json"))
    assert len(jobs) == 2 and all(read_json(j / "summary.json")["status"] == "completed" for j in jobs)
    logs = {p: p.read_text() for p in (sweep_dir / ".submitit").rglob("*.out")}
    resumed = [p for p, text in logs.items() if re.search(r"resuming from epoch [23] \(checkpoint of [12]", text)]
    assert len(resumed) == 1, list(logs)  # the requeued job continued from its checkpoint (of 2 epochs, as a rule)
    seeds = {j: next(o for o in (j / ".hydra" / "overrides.yaml").read_text().split() if "seed=" in o) for j in jobs}

    # each job (the requeued one included) against a run of its config that nobody stopped (in this process):
    # the same numbers, the same weights
    for job in jobs:
        seed = seeds[job].split("=", 1)[1]
        plain = in_process(*COMMON, f"seed={seed}", f"hydra.run.dir=plain_{seed}", cwd=tmp_path)
        assert plain.returncode == 0, plain.stderr
        assert _metrics(job) == _metrics(tmp_path / f"plain_{seed}")
        ours = torch.load(job / "checkpoints" / "last.pt", weights_only=True)["model"]
        theirs = torch.load(tmp_path / f"plain_{seed}" / "checkpoints" / "last.pt", weights_only=True)["model"]
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert os.environ.get("SLURM_CONF") is None  # the cluster's settings stayed in the test's own environment
