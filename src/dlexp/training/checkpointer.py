"""When a run checkpoints: ``last.pt`` after every epoch (and on a stop mid-epoch), ``best.pt`` when val improves."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from dlexp.hooks import point
from dlexp.runs.checkpoint import load_checkpoint, save_checkpoint
from dlexp.runs.files import BEST_CHECKPOINT, LAST_CHECKPOINT
from dlexp.runs.writer import BackgroundWriter, snapshot


class Checkpointer:
    """``checkpoints/last.pt`` after every epoch (and on a stop mid-epoch), ``best.pt`` when val improves.

    Every checkpoint also records the resolved config and the command-line overrides,
    so ``resume=`` can recompose the same run. ``save`` takes a snapshot of the state and
    hands the files to a writer thread, so the next epoch does not wait for the disk;
    ``wait`` returns when they are written (the Trainer calls it when its loop ends).
    """

    def __init__(self, directory: Path, *, enabled: bool, config: dict[str, Any], overrides: list[str],
                 plugins: Optional[dict[str, str]] = None):
        self.directory, self.enabled = Path(directory), enabled
        self.extra = {"config": config, "overrides": overrides, "plugins": plugins or {}}
        self.last_save = time.monotonic()  # for trainer.checkpoint_every_minutes
        self.writer = BackgroundWriter("dlexp-checkpoints")

    def save(self, state: dict[str, Any], best: bool = False) -> None:
        self.last_save = time.monotonic()
        if not self.enabled:
            return
        state = {**snapshot(state), **self.extra}  # the tensors as they are now: training goes on meanwhile
        self.writer.submit(_save_last, self.directory / LAST_CHECKPOINT, state)
        if best:
            self.writer.submit(save_checkpoint, self.directory / BEST_CHECKPOINT, state)

    def wait(self) -> None:
        """Every checkpoint handed over is on disk (or its write's error is raised here)."""
        self.writer.wait()

    def load_best_model(self) -> Optional[dict[str, Any]]:
        """The model weights of ``best.pt``, e.g. when the best epoch came before a resume; None if absent."""
        self.wait()
        path = self.directory / BEST_CHECKPOINT
        return load_checkpoint(path)["model"] if path.is_file() else None


def _save_last(path: Path, state: dict[str, Any]) -> None:
    """``last.pt``, then the moment it is on disk (on the writer thread): the point a kill leaves it resumable from."""
    save_checkpoint(path, state)
    point("checkpoint_written")
