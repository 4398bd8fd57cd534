"""Train/validation splits of the training pool. The test set is never touched here.

A split builder returns a list of folds, each a (train indices, val indices) pair
into the pool: one for ``holdout``, k for ``kfold`` (one training per fold).
scikit-learn (about a second to import) is imported when a split is drawn, not
with this module, so commands that build no data never pay for it.
"""
from __future__ import annotations

import math
from typing import Annotated, Optional

import numpy as np
from annotated_types import Ge, Interval

from dlexp.data.base import SPLITS
from dlexp.errors import ConfigError, DataError
from dlexp.tasks import labels_of

Fold = tuple[np.ndarray, np.ndarray]  # (train indices, val indices)


def _can_stratify(labels: Optional[np.ndarray], min_per_class: int, min_part: int) -> bool:
    """Stratify only when every class has enough members, and the smaller part room for every class."""
    if labels is None:
        return False
    counts = np.unique(labels, return_counts=True)[1]
    return counts.min() >= min_per_class and min_part >= len(counts)


@SPLITS.register("holdout")
def holdout(
    num_examples: int,
    labels: Optional[np.ndarray],
    seed: int,
    *,
    val_fraction: Annotated[float, Interval(gt=0, lt=1)] = 0.15,
    stratify: bool = True,

) -> list[Fold]:
    """One seeded split; stratified by class when ``labels`` are given and ``stratify``."""
    from sklearn.model_selection import train_test_split
    if num_examples < 2:
        raise DataError(f"a train/val split needs at least 2 examples, got {num_examples}")
    idx = np.arange(num_examples)
    n_val = math.ceil(val_fraction * num_examples)  # as train_test_split rounds
    strata = labels if stratify and _can_stratify(labels, 2, min(n_val, num_examples - n_val)) else None
    train_idx, val_idx = train_test_split(idx, test_size=val_fraction, random_state=seed % 2**32, stratify=strata)
    return [(np.sort(train_idx), np.sort(val_idx))]


@SPLITS.register("kfold")
def kfold(
    num_examples: int, labels: Optional[np.ndarray], seed: int, *, k: Annotated[int, Ge(2)] = 5, stratify: bool = True
) -> list[Fold]:
    """k seeded folds whose val parts are disjoint and cover the pool once; stratified by class
    when ``labels`` are given, ``stratify`` is set and every class has at least k members."""
    from sklearn.model_selection import KFold, StratifiedKFold
    if k > num_examples:
        raise ConfigError(f"split.k={k} is more than the {num_examples} examples in the pool; use split.k<={num_examples}")
    idx = np.arange(num_examples)
    if stratify and _can_stratify(labels, k, num_examples // k):
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32).split(idx, labels)
    else:
        folds = KFold(n_splits=k, shuffle=True, random_state=seed % 2**32).split(idx)
    return [(np.sort(train_idx), np.sort(val_idx)) for train_idx, val_idx in folds]


def carve_test(targets, task: str, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices, test indices): a seeded holdout of ``fraction`` of the examples as a fixed test set,
    stratified by class for classification tasks. ``seed`` is the dataset's ``test_seed``, not the run's."""
    return holdout(len(targets), labels_of(task, targets), seed, val_fraction=fraction)[0]
