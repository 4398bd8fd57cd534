"""Checkpoints are atomic, load with weights_only=True, and a corrupt one gives a clear error."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dlexp.runs.checkpoint import load_checkpoint, save_checkpoint
from dlexp.errors import UserError


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((3,), value)}, "epoch": int(value), "config": {"seed": 0}}


def test_round_trip_with_weights_only(tmp_path):
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint(path, _state(2.0))
    assert torch.load(path, weights_only=True)["epoch"] == 2
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((3,), 2.0))
    assert os.listdir(path.parent) == ["last.pt"]  # no temp file left behind


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(UserError, match="could not write checkpoint .*No space left on device"):
        save_checkpoint(path, _state(2.0))
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("damage, says", [("truncate", "is corrupt or truncated"),
                                          ("garbage", "is not a checkpoint .not a file torch.save wrote."),
                                          ("empty", "is not a checkpoint .not a file torch.save wrote.")])
def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, damage, says):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(UserError, match=says):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(Path(tmp_path) / "nope.pt")
