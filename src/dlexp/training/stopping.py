"""Early stopping: the best value of the monitored val metric so far, and when to stop."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class EarlyStopping:
    """Tracks the best value of the monitored metric and says when to stop."""

    monitor: str  # e.g. "val/acc"
    mode: str  # "min" or "max"
    patience: Optional[int] = None  # None: never stop early, only track the best
    min_delta: float = 0.0
    best: float = field(default=math.nan)
    best_epoch: int = 0
    bad_epochs: int = 0
    # An accuracy on a small val set ties often and stops rising once it reaches 1.0 (21 val wines), while
    # the model goes on improving: a tie on the monitor goes to the epoch with the lower val loss.
    best_loss: float = field(default=math.nan)

    def update(self, value: float, epoch: int, loss: float = math.nan) -> bool:
        """Record an epoch's value (and its val loss, the tie-break); True if it is a new best.

        A tie won on the val loss moves the best epoch but not the patience, which counts the epochs
        since the monitor itself last improved: early stopping stops when it did before."""
        if math.isnan(self.best) or self._better(value, self.best):
            self.best, self.best_epoch, self.bad_epochs, self.best_loss = value, epoch, 0, loss
            return True
        self.bad_epochs += 1
        if value == self.best and loss < self.best_loss:
            self.best_epoch, self.best_loss = epoch, loss
            return True
        return False

    def _better(self, value: float, best: float) -> bool:
        if self.mode == "max":
            return value > best + self.min_delta
        return value < best - self.min_delta

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "best_loss": self.best_loss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        self.best_loss = state.get("best_loss", math.nan)  # checkpoints written before the tie-break had none
