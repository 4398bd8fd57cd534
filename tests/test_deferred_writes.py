"""Checkpoints written by a thread while training goes on: each holds the state of the moment it was
handed over, all are on disk when a run returns (completed or interrupted), and a failed write is an
error of the run. The writes are slowed on purpose, so that a missing wait would be seen."""
from __future__ import annotations

import threading
import time

import pytest
import torch

from conftest import read_json, untimed_rows
from dlexp.errors import UserError
from dlexp.runs.checkpoint import save_checkpoint
from dlexp.training import checkpointer as checkpointer_module
from dlexp.training.checkpointer import Checkpointer
from dlexp.training.trainer import Trainer

SMALL = ["dataset=digits", "model.hidden=[16]", "trainer.batch_size=128"]


def _slow_writes(monkeypatch, seconds: float = 0.3) -> list[str]:
    """Every checkpoint write takes ``seconds`` longer; returns the names written, in order."""
    written = []

    def slow_save(path, state):
        time.sleep(seconds)
        save_checkpoint(path, state)
        written.append(path.name)

    monkeypatch.setattr(checkpointer_module, "save_checkpoint", slow_save)
    return written


def test_a_checkpoint_holds_the_state_it_was_handed_not_a_later_one(tmp_path):
    ckpt = Checkpointer(tmp_path, enabled=True, config={}, overrides=[])
    gate = threading.Event()
    ckpt.writer.submit(gate.wait)  # the writer is busy until the gate opens
    weights = torch.ones(3)
    ckpt.save({"model": {"w": weights}, "epoch": 1})
    weights.mul_(5)  # what the next optimizer step does to the live tensors
    assert ckpt.writer.pending == 2 and not (tmp_path / "last.pt").exists()
    gate.set()
    ckpt.wait()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert torch.equal(state["model"]["w"], torch.ones(3)) and state["epoch"] == 1


def test_a_failed_write_is_raised_by_wait_and_no_later_state_is_written(tmp_path, monkeypatch):
    ckpt = Checkpointer(tmp_path, enabled=True, config={}, overrides=[])
    calls = []

    def failing(path, state):
        calls.append(state["epoch"])
        raise UserError(f"could not write checkpoint {path}: No space left on device")

    monkeypatch.setattr(checkpointer_module, "save_checkpoint", failing)
    ckpt.save({"model": {}, "epoch": 1})
    ckpt.save({"model": {}, "epoch": 2})
    with pytest.raises(UserError, match="No space left on device"):
        ckpt.wait()
    assert calls == [1]


def test_every_checkpoint_is_on_disk_when_a_run_returns(run_train, monkeypatch):
    written = _slow_writes(monkeypatch)
    result, run_dir = run_train(*SMALL, "trainer.epochs=3")
    assert result.summary["status"] == "completed"
    best_epochs = sum(1 for name in written if name == "best.pt")
    assert written.count("last.pt") == 3 and best_epochs >= 1
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and not list((run_dir / "checkpoints").glob(".*.tmp"))
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == read_json(run_dir / "summary.json")["best_epoch"]


def test_an_interrupted_run_returns_with_its_checkpoints_written_and_resumes_exactly(run_train, tmp_path, monkeypatch):
    common = [*SMALL, "trainer.epochs=3"]
    reference, _ = run_train(*common, run_dir=tmp_path / "reference")
    written = _slow_writes(monkeypatch)
    original = Trainer.checkpoint_if_due

    def stop_in_epoch_2(self, progress):  # ask to stop after step 2 of epoch 2, as SIGTERM does
        if self.completed == 1 and progress.batches == 2:
            self.stop.signum = 15
        return original(self, progress)

    monkeypatch.setattr(Trainer, "checkpoint_if_due", stop_in_epoch_2)
    stopped, run_dir = run_train(*common, run_dir=tmp_path / "run")
    assert stopped.summary["status"] == "interrupted"
    assert written[-1] == "last.pt" and written.count("last.pt") == 2  # epoch 1's, then the partial epoch's
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["partial"]["batches"] == 3
    monkeypatch.undo()
    resumed, _ = run_train(*common, f"resume={run_dir}", run_dir=run_dir)
    assert resumed.summary["test/acc"] == reference.summary["test/acc"]
    assert untimed_rows(run_dir) == untimed_rows(tmp_path / "reference")
