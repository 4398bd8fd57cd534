"""Pools of examples as the folds use them: their size and targets, a subset of rows, and the
in-place reorder that lets a holdout split cost no second copy of the data."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dlexp.data.arrays import MemmapRows
from dlexp.data.base import Pair, Pool
from dlexp.data.images import ImageFiles


def pool_size(pool: Pool) -> int:
    return len(pool) if isinstance(pool, ImageFiles) else len(pool[0])


def pool_targets(pool: Pool) -> Tensor:
    return pool.y if isinstance(pool, ImageFiles) else pool[1]


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


def take(pool: Pool, idx: np.ndarray) -> Pool:
    if isinstance(pool, ImageFiles):
        return pool.subset(idx)
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    if isinstance(pool[0], MemmapRows):  # row numbers only: the inputs stay on disk
        return pool[0].subset(idx), pool[1][index]
    return pool[0][index], pool[1][index]
