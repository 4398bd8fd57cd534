"""Train/validation splits of the training pool. The test set is never touched here."""
from __future__ import annotations

from typing import Optional

import numpy as np
from sklearn.model_selection import train_test_split

from dlexp.data import SPLITS
from dlexp.errors import ConfigError

Fold = tuple[np.ndarray, np.ndarray]  # (train indices, val indices)


@SPLITS.register("holdout")
def holdout(
    num_examples: int, labels: Optional[np.ndarray], seed: int, *, val_fraction: float = 0.15, stratify: bool = True
) -> list[Fold]:
    """One seeded split; stratified by class when ``labels`` are given and ``stratify``."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"split.val_fraction must be in (0, 1), got {val_fraction}")
    idx = np.arange(num_examples)
    train_idx, val_idx = train_test_split(
        idx, test_size=val_fraction, random_state=seed, stratify=labels if stratify else None
    )
    return [(np.sort(train_idx), np.sort(val_idx))]
