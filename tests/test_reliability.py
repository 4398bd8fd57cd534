"""Exact resume, atomic checkpoints under kill -9, graceful SIGTERM, divergence, and bad inputs.

Kills, signals, a limit on file size and the exit code of a diverged run (set by ``os._exit``) are a real
process's; the other commands run in this process, the resumes after a kill included, on copies of runs
trained once (``finished_run``, ``reference``)."""
from __future__ import annotations

import multiprocessing
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error, copied, read_json, run_cli, run_in, untimed_rows
from dlexp.runs.checkpoint import load_checkpoint, save_checkpoint

# Big enough that an epoch takes a fraction of a second, so signals land mid-run.
SLOW = [
    "model.hidden=[512,512]", "trainer.batch_size=8", "trainer.epochs=3", "trainer.early_stopping.patience=null",
    "trainer.num_threads=1", "trainer.progress=false",
]
SMOKE = ["trainer=smoke", "trainer.progress=false"]


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    return untimed_rows(run_dir)


def _results(run_dir: Path) -> dict:
    summary = read_json(run_dir / "summary.json")
    return {k: v for k, v in summary.items() if k.startswith(("test/", "best/")) or k in ("epochs_run", "best_epoch", "status")}


def _start(run_dir: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dlexp", *SLOW, *extra, f"hydra.run.dir={run_dir}"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_rows(run_dir: Path, proc: subprocess.Popen, rows: int, timeout: float = 120) -> None:
    """Block until metrics.csv has ``rows`` epochs (the run is then mid-way through the next)."""
    deadline = time.time() + timeout
    path = run_dir / "metrics.csv"
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= rows + 1:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("the run did not reach the expected epoch in time")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of the SLOW config."""
    root = tmp_path_factory.mktemp("reference")
    proc = run_in(root, *SLOW, f"hydra.run.dir={root / 'run'}")
    assert proc.returncode == 0, proc.stderr
    return root / "run"


@pytest.mark.slow  # the fast tier kills a sweep and signals a run (test_lifecycle.py); here a slower run, killed or stopped
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path, in_process, reference, sig):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, tmp_path)
    _wait_for_rows(run_dir, proc, 1)  # the kill lands in epoch 2, or between epoch 1's row and its checkpoint:
    proc.send_signal(sig)  # either way the run continues to the same result (no outcome depends on the timing)
    out, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, err
        summary = read_json(run_dir / "summary.json")
        assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
        assert f"resume={run_dir}" in summary["resume_with"]
        assert [line for line in err.splitlines() if line.strip()] == [
            f"interrupted by SIGTERM: checkpoint saved; continue with: python -m dlexp resume={run_dir}"], err
        state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        assert state["partial"] is None or state["partial"]["batches"] > 0
    else:
        assert proc.returncode == -signal.SIGKILL

    resumed = in_process(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from epoch" in resumed.stdout or "starting that run again" in resumed.stdout
    assert _metrics(run_dir) == _metrics(reference)  # no duplicate, no missing epoch, same numbers
    assert _results(run_dir) == _results(reference)
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == (reference / ".hydra" / "overrides.yaml").read_text().replace(
        str(reference), str(run_dir)
    )


def _write_forever(path: Path, seed: int) -> None:
    """Child process: overwrite one checkpoint again and again with states of growing size."""
    torch.manual_seed(seed)
    i = 0
    while True:
        i += 1
        save_checkpoint(path, {"model": {"w": torch.randn(200_000 + i)}, "epoch": i, "check": float(i)})


def test_repeated_kills_during_checkpoint_writes_leave_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(3)}, "epoch": 0, "check": 0.0})
    ctx = multiprocessing.get_context("fork")
    for attempt in range(12):
        child = ctx.Process(target=_write_forever, args=(path, attempt))
        child.start()
        time.sleep(random.uniform(0.02, 0.3))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        state = load_checkpoint(path)  # never torn: the old file or the new one
        assert state["check"] == float(state["epoch"])
        assert state["epoch"] == 0 or state["model"]["w"].numel() == 200_000 + state["epoch"]
    stray = [p.name for p in path.parent.iterdir() if p.name != "last.pt"]
    assert all(name.startswith(".last.pt.") and name.endswith(".tmp") for name in stray)  # only killed temp files


@pytest.mark.slow  # exit code 3 through os._exit in a real process; in the fast tier: test_honest_runs.py, in this process
def test_huge_lr_stops_with_status_diverged(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("optim=sgd", "optim.lr=1e4", "model.dropout=0", "scheduler=none", "trainer.progress=false", "trainer.epochs=5",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 3
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "diverged"
    assert summary["diverged_at"]["epoch"] >= 1 and summary["diverged_at"]["step"] >= 1
    assert "optim.lr" in summary["hint"] and "trainer.grad_clip" in summary["hint"]
    said = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith(f"error: training diverged: {summary['hint']}")
    rows = _metrics(run_dir)
    assert len(rows) == summary["diverged_at"]["epoch"] - 1  # epochs before the bad one are kept


def test_grad_clip_is_applied(run_train):
    _, run_dir = run_train("optim=sgd", "optim.lr=1e4", "trainer.grad_clip=1e-6", "trainer.epochs=2")
    assert read_json(run_dir / "summary.json")["status"] == "completed"  # tiny steps: no divergence


def test_diverged_job_is_a_result_in_a_sweep(tmp_path, in_process):
    sweep = tmp_path / "sweep"
    proc = in_process("-m", *SMOKE, "optim=sgd", "optim.lr=1e4,0.01", "trainer.limit_train_batches=null", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    statuses = {read_json(p)["status"] for p in sweep.glob("*/summary.json")}
    assert statuses == {"diverged", "completed"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    proc = run_in(root, *SMOKE, f"hydra.run.dir={root / 'run'}")
    assert proc.returncode == 0, proc.stderr
    return root / "run"


def test_corrupt_checkpoint_on_resume(tmp_path, in_process, finished_run):
    run_dir = copied(finished_run, tmp_path / "run")
    last = run_dir / "checkpoints" / "last.pt"
    damaged = last.read_bytes()[:1000]
    last.write_bytes(damaged)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    proc = in_process(f"resume={run_dir}", "trainer.epochs=4", cwd=tmp_path)
    assert_one_line_error(proc, "is corrupt or truncated")
    assert last.read_bytes() == damaged
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_resume_refuses_a_conflicting_config_and_accepts_more_epochs(tmp_path, in_process, finished_run):
    run_dir = copied(finished_run, tmp_path / "run")
    assert_one_line_error(in_process(f"resume={run_dir}", "model=softmax", cwd=tmp_path), "cannot resume with model=softmax: the checkpoint was trained with model=mlp")
    assert_one_line_error(in_process(f"resume={run_dir}", "optim.lr=0.5", cwd=tmp_path), "cannot resume with optim.lr=0.5")
    proc = in_process(f"resume={run_dir / 'checkpoints' / 'last.pt'}", "trainer.epochs=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [int(r["epoch"]) for r in _metrics(run_dir)] == [1, 2, 3]
    assert read_json(run_dir / "summary.json")["epochs_run"] == 3
    assert (run_dir / ".hydra_resume" / "overrides.yaml").is_file()
    assert "trainer=smoke" in (run_dir / ".hydra" / "overrides.yaml").read_text()  # original record kept


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # writes past 20 kB fail: a full disk


@pytest.mark.slow  # a real process under a file-size limit; in the fast tier: tests/test_checkpoint.py
def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, finished_run):
    run_dir = copied(finished_run, tmp_path / "run")
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "dlexp", f"resume={run_dir}", "trainer.epochs=3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size,
    )
    assert_one_line_error(proc, "could not write checkpoint")
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 2
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["resume=does/not/exist"], "no such run dir or checkpoint"),
        (["+model._target_=os.system"], "unknown config key 'model._target_'"),
        (["+_target_=os.system"], "unknown top-level config key '_target_'"),
        (["trainer.grad_clip=-1"], "trainer.grad_clip must be > 0"),
        (["dataset=synthetic_linear", "model=linreg", "dataset.num_examples=0"], "dataset.num_examples must be >= 1"),
    ],
)
def test_bad_inputs_fail_cleanly(tmp_path, in_process, args, message):
    proc = in_process(*SMOKE, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, message)
    assert not (tmp_path / "does").exists()
