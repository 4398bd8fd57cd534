"""In-memory batching: whole datasets as tensors on the training device, batched by index.

For data that fits in memory this replaces a DataLoader: no per-sample Python
work, no collation, no host-to-device copy per batch. One ``randperm`` per epoch
gives the shuffle, and the generator's state makes the order reproducible.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor


class TensorLoader:
    """Iterate over (x, y) batches of tensors that already live on ``x.device``."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        transform: Optional[Callable[[Tensor], Tensor]] = None,
        augment: Optional[Callable[[Tensor], Tensor]] = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        # CPU generator: its state is a plain tensor, so it checkpoints and
        # reproduces the same order on any device.
        self.generator = torch.Generator().manual_seed(seed)
        self.transform = transform  # every batch, e.g. a resize too big to apply to the whole set at once
        self.augment = augment  # random per-example ops on whole batches; only the training loader gets one

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    @property
    def num_examples(self) -> int:
        return len(self.x)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.transform is None and self.augment is None:
            yield from self._batches()
            return
        for x, y in self._batches():
            if self.transform is not None:
                x = self.transform(x)
            if self.augment is not None:
                x = self.augment(x)
            yield x, y

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.x)
        if self.shuffle:
            order: Optional[Tensor] = torch.randperm(n, generator=self.generator).to(self.x.device)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield self.x[idx], self.y[idx]
        else:  # contiguous slices are views: no copy at all
            for start in range(0, n, self.batch_size):
                yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
