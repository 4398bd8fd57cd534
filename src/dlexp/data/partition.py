"""Pools of examples as the folds use them: their size and targets, and a subset of rows (the in-place
reorder that lets a holdout split cost no second copy of the data is ``dlexp.data.splits.partition_in_place``)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dlexp.data.arrays import MemmapRows
from dlexp.data.base import Pool
from dlexp.data.images import ImageFiles


def pool_size(pool: Pool) -> int:
    return len(pool) if isinstance(pool, ImageFiles) else len(pool[0])


def pool_targets(pool: Pool) -> Tensor:
    return pool.y if isinstance(pool, ImageFiles) else pool[1]


def take(pool: Pool, idx: np.ndarray) -> Pool:
    if isinstance(pool, ImageFiles):
        return pool.subset(idx)
    index = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    if isinstance(pool[0], MemmapRows):  # row numbers only: the inputs stay on disk
        return pool[0].subset(idx), pool[1][index]
    return pool[0][index], pool[1][index]
