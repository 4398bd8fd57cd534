"""Throughput of a pass: examples per second, and real (non-pad) tokens per second for tasks that count them.

The counts are host integers, or one device sum for tokens, read once when the pass ends: the hot loop
stays free of host syncs. The seconds run from the pass's first batch to its result (whose read of the
metric sums waits for the device), so on a GPU they cover the work and not only its launches.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from torch import Tensor

COLUMNS = ("train_examples_per_s", "train_tokens_per_s", "val_examples_per_s", "val_tokens_per_s")


@dataclass
class Meter:
    """What one pass processed and how long it took (filled by ``run_epoch``)."""

    examples: int = 0
    tokens: Optional[Union[int, Tensor]] = None  # None: the task counts no tokens
    seconds: float = 0.0

    def add(self, examples: int, tokens: Optional[Union[int, Tensor]]) -> None:
        self.examples += examples
        if tokens is not None:
            self.tokens = tokens if self.tokens is None else self.tokens + tokens

    def rates(self, split: str) -> dict[str, float]:
        """``{"<split>_examples_per_s": ..., "<split>_tokens_per_s": ...}`` (tokens only when counted)."""
        seconds = max(self.seconds, 1e-9)
        out = {f"{split}_examples_per_s": round(self.examples / seconds, 1)}
        if self.tokens is not None:
            out[f"{split}_tokens_per_s"] = round(int(self.tokens) / seconds, 1)
        return out


def median_rates(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The summary's throughput: for each throughput column, its median over the epochs that report it."""
    out: dict[str, float] = {}
    for column in COLUMNS:
        values = [float(r[column]) for r in rows if column in r and _finite(r[column])]
        if values:
            out[column] = round(statistics.median(values), 1)
    return out


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def is_timing(column: str) -> bool:
    """A metrics.csv column that measures time (``epoch_seconds``, ``*_per_s``): it differs between two runs
    of the same config, unlike every other number."""
    return column == "epoch_seconds" or column.endswith("_per_s")
