"""Train/validation splits of the training pool, the test split a source carves before them, and the
in-place reorder that applies a split to tensors without a second copy of the data.

A split builder returns a list of folds, each a (train indices, val indices) pair
into the pool: one for ``holdout``, k for ``kfold`` (one training per fold).
Holdout splits are drawn here with numpy (``shuffled_split``), in the same random
stream as scikit-learn's ``train_test_split``, so a run needs no scikit-learn import
(about a second); k-fold uses scikit-learn's ``KFold``/``StratifiedKFold``, imported
when those folds are drawn.
"""
from __future__ import annotations

import math
from typing import Annotated, Optional

import numpy as np
import torch
from annotated_types import Ge, Interval
from torch import Tensor

from dlexp.data.base import SPLITS, Pair, class_labels
from dlexp.errors import ConfigError, DataError

Fold = tuple[np.ndarray, np.ndarray]  # (train indices, val indices)


def _can_stratify(labels: Optional[np.ndarray], min_per_class: int, min_part: int) -> bool:
    """Stratify only when every class has enough members, and the smaller part room for every class."""
    if labels is None:
        return False
    counts = np.unique(labels, return_counts=True)[1]
    return counts.min() >= min_per_class and min_part >= len(counts)


def shuffled_split(num_examples: int, n_test: int, seed: int, labels: Optional[np.ndarray] = None) -> Fold:
    """(train indices, test indices): ``n_test`` of range(num_examples) drawn at random with ``seed``,
    stratified by ``labels`` when given (every class keeps its share in both parts, to within one).

    The draws follow scikit-learn's ``train_test_split(random_state=seed)`` (ShuffleSplit, or
    StratifiedShuffleSplit with ``stratify=labels``) number for number: the same legacy Mersenne
    Twister stream, the same draws in the same order, so both give the same indices in the same
    order, and results computed on them before this function existed stay the same. A test
    compares the two over many sizes, class mixes and seeds.
    """
    rng = np.random.RandomState(seed % 2**32)
    if labels is None:
        order = rng.permutation(num_examples)
        return order[n_test:], order[:n_test]
    _, class_of, counts = np.unique(labels, return_inverse=True, return_counts=True)
    members = np.split(np.argsort(class_of, kind="stable"), np.cumsum(counts)[:-1])  # each class's indices, ascending
    train_counts = _proportional_counts(counts, num_examples - n_test, rng)
    test_counts = _proportional_counts(counts - train_counts, n_test, rng)
    train, test = [], []
    for idx, n_train_i, n_test_i in zip(members, train_counts, test_counts):
        shuffled = idx[rng.permutation(len(idx))]
        train.append(shuffled[:n_train_i])
        test.append(shuffled[n_train_i : n_train_i + n_test_i])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _proportional_counts(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``n_draws`` each class gets: the floor of its share of ``counts``, then one more for
    the classes with the largest fractional parts until ``n_draws`` are given; ties drawn at random."""
    share = counts / counts.sum() * n_draws
    given = np.floor(share)
    left = int(n_draws - given.sum())
    fraction = share - given
    for value in np.unique(fraction)[::-1]:  # largest fractional part first
        if left == 0:
            break
        tied = np.flatnonzero(fraction == value)
        chosen = rng.choice(tied, size=min(len(tied), left), replace=False)
        given[chosen] += 1
        left -= len(chosen)
    return given.astype(int)


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
    if num_examples < 2:
        raise DataError(f"a train/val split needs at least 2 examples, got {num_examples}; use more data "
                        f"(or, for datasets that hold out a test set, a smaller dataset.test_fraction)")
    n_val = math.ceil(val_fraction * num_examples)  # as train_test_split rounds
    if n_val >= num_examples:
        raise DataError(f"val_fraction={val_fraction} of {num_examples} examples leaves none to train on; "
                        f"use a smaller fraction or more data")
    strata = labels if stratify and _can_stratify(labels, 2, min(n_val, num_examples - n_val)) else None
    train_idx, val_idx = shuffled_split(num_examples, n_val, seed, strata)
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
    return holdout(len(targets), class_labels(task, targets), seed, val_fraction=fraction)[0]


def partition_in_place(pool: Pair, train_idx: np.ndarray, val_idx: np.ndarray) -> tuple[Pair, Pair]:
    """(train, val) as views of the pool's own storage, its rows reordered in place (train rows first, in
    order, then val rows), so that a holdout split costs no second copy of the data, nor a copy of the
    val rows: the peak stays at one copy of the data plus one row. The pool is consumed."""
    order = np.concatenate([train_idx, val_idx])  # order[k]: the row that ends at position k
    for t in pool:  # x (N, ...), then y (N,)
        permute_rows_in_place(t, order)
    n_train = len(train_idx)
    (x, y) = pool
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def permute_rows_in_place(t: Tensor, order: np.ndarray) -> None:
    """t[k] = old t[order[k]] for every k, one row of scratch memory: each cycle of the permutation is
    walked once, its first row held aside while the others shift along it. Rows already in place
    (a prefix of train rows, typically) are skipped. Rows move through a numpy view of the storage
    (about a microsecond a row); a tensor numpy cannot view is gathered instead."""
    try:
        rows = t.numpy()
    except (RuntimeError, TypeError):  # e.g. a tensor on a GPU: one gathered copy
        t.copy_(t[torch.from_numpy(order)])
        return
    placed = order == np.arange(len(order))
    for start in np.flatnonzero(~placed):
        if placed[start]:
            continue
        held, k = rows[start].copy(), start
        while order[k] != start:
            rows[k] = rows[order[k]]
            placed[k] = True
            k = order[k]
        rows[k] = held
        placed[k] = True
