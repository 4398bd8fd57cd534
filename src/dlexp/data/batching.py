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

from dlexp.data.base import Batch



class ShuffleState:
    """The loaders' shared order state: a CPU generator for the shuffle and the augmentation seeds.

    A CPU generator's state is a plain tensor, so it checkpoints and reproduces the
    same order on any device. ``epoch_start_state`` lets a checkpoint taken
    mid-epoch replay the same permutation.
    """

    augment: Optional[Callable[[Tensor, int], Tensor]] = None

    def _init_order(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start_state = self.generator.get_state()

    def _start_epoch(self) -> None:
        """Mark where this epoch's order comes from."""
        self.epoch_start_state = self.generator.get_state()

    def _epoch_augment_seed(self) -> int:
        """Drawn after the epoch's order, so the order is the same with and without augmentation."""
        if self.augment is None:
            return 0
        return int(torch.randint(2**62, (1,), generator=self.generator))

    def state_dict(self, mid_epoch: bool = False) -> dict[str, Tensor]:
        """The shuffle generator's state: at the start of the current epoch if ``mid_epoch``, else now."""
        state = self.epoch_start_state if mid_epoch else self.generator.get_state()
        return {"generator": state.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])


class TensorLoader(ShuffleState):
    """Iterate over ``Batch``es of tensors that already live on ``x.device``."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        transform: Optional[Callable[[Tensor], Tensor]] = None,
        augment: Optional[Callable[[Tensor, int], Tensor]] = None,
        shard: tuple[int, int] = (0, 1),
        extras: Optional[dict[str, Tensor]] = None,
    ):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x, self.y = x, y
        # per-example tensors indexed like y, e.g. {"weight": (N,)}: each batch's rows in Batch.extras
        self.extras = dict(extras or {})
        for name, value in self.extras.items():
            if len(value) != len(y):
                raise ValueError(f"extras['{name}'] and y differ in length: {len(value)} vs {len(y)}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._init_order(seed)
        self.transform = transform  # every batch, e.g. a resize too big to apply to the whole set at once
        # (batch, seed) -> augmented batch; only the training loader gets one. Its seed is drawn from
        # this loader's generator once per epoch, plus the batch index: a resumed epoch replays it exactly.
        self.augment = augment
        # (rank, world size): every rank draws the same global order and takes its part of each
        # global batch (``batch_size`` is global). A training loader drops a last global batch too
        # small to give every rank an example, since every rank must take part in every step.
        self.rank, self.world_size = shard
        self.drop_small_last = shuffle and self.world_size > 1 and 0 < len(x) % batch_size < self.world_size

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size) - int(self.drop_small_last)

    def _local(self, start: int, end: int) -> tuple[int, int]:
        """This rank's part [lo, hi) of the global batch [start, end), as ``tensor_split`` divides it."""
        size, parts = end - start, self.world_size
        lo = start + self.rank * (size // parts) + min(self.rank, size % parts)
        return lo, lo + size // parts + int(self.rank < size % parts)

    @property
    def num_examples(self) -> int:
        return len(self.x)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()

    def batches(self, skip: int = 0) -> Iterator[Batch]:
        """One epoch of batches, leaving out the first ``skip`` (to resume mid-epoch)."""
        n = len(self.x)
        starts = range(skip * self.batch_size, len(self) * self.batch_size, self.batch_size)
        order: Optional[Tensor] = None
        if self.shuffle:
            self._start_epoch()
            order = self._order(n).to(self.x.device)
        seed = self._epoch_augment_seed()
        for i, start in enumerate(starts, skip):
            lo, hi = self._local(start, min(start + self.batch_size, n))
            if order is None:  # contiguous slices are views: no copy at all
                batch = Batch(self._finish(self.x[lo:hi], seed + i), self.y[lo:hi], {k: v[lo:hi] for k, v in self.extras.items()})
            else:
                idx = order[lo:hi]
                batch = Batch(self._finish(self.x[idx], seed + i), self.y[idx], {k: v[idx] for k, v in self.extras.items()})
            yield self._shape(batch, i)

    def _order(self, n: int) -> Tensor:
        """One epoch's order of the n examples, drawn from ``self.generator``."""
        return torch.randperm(n, generator=self.generator)

    def _shape(self, batch: Batch, i: int) -> Batch:
        """The i-th global batch of the epoch as the model gets it (subclasses may trim it)."""
        return batch

    def _finish(self, x: Tensor, seed: int) -> Tensor:
        if self.transform is not None:
            x = self.transform(x)
        if self.augment is not None:
            x = self.augment(x, seed)
        return x


class BucketLoader(TensorLoader):
    """Training batches of right-padded sequences of similar lengths (``dataset.bucket=true``).

    Each epoch: a random permutation, stably sorted by total length (so equal lengths come in random
    order), cut into global batches, whose order is shuffled (the short remainder stays last, so every
    batch before it is full). Each batch is trimmed to its longest input and target, which saves the
    compute spent on padding. Every draw comes from the loader's generator, so a checkpoint's
    ``epoch_start_state`` replays the same epoch and a mid-epoch resume is exact.
    """

    def __init__(self, x: Tensor, y: Tensor, batch_size: int, *, lengths: Tensor, **kwargs):
        super().__init__(x, y, batch_size, **kwargs)
        self.lengths = lengths.cpu()  # (N, 2) int64: real (non-pad) tokens of each input and target
        self.widths: list[Tensor] = []  # per global batch of the epoch: (2,) its longest input and target

    def _order(self, n: int) -> Tensor:
        perm = torch.randperm(n, generator=self.generator)
        by_length = perm[torch.argsort(self.lengths[perm].sum(dim=1), stable=True)]
        full = n // self.batch_size * self.batch_size
        chunks = by_length[:full].view(-1, self.batch_size)  # (batches, batch_size)
        order = torch.cat([chunks[torch.randperm(len(chunks), generator=self.generator)].flatten(), by_length[full:]])
        self.widths = [self.lengths[order[s : s + self.batch_size]].amax(dim=0) for s in range(0, n, self.batch_size)]
        return order

    def _shape(self, batch: Batch, i: int) -> Batch:
        if not self.shuffle:
            return batch
        src_width, tgt_width = self.widths[i].tolist()
        return Batch(batch.inputs[:, :src_width], batch.targets[:, :tgt_width], batch.extras)
