"""The data layer's registries and the structures that pass between its steps.

A dataset builder (``DATASETS``) returns a ``Source``; ``dlexp.data.folds`` turns
it into one ``DataBundle`` per fold, whose loaders yield ``Batch`` objects. This
module imports nothing else of dlexp's data package, so every source module can
import it without a cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Union

import numpy as np
import torch
from torch import Tensor

from dlexp.config.registry import Registry

DATASETS = Registry("dataset")
SPLITS = Registry("split")
AUGMENTS = Registry("augment")
SHIFTS = Registry("shift")


@dataclass
class Batch:
    """One batch: the model's inputs, the targets, and optional extras (masks, lengths, weights)."""

    inputs: Tensor  # (B, ...) e.g. images (B, C, H, W) or token ids (B, S)
    targets: Optional[Tensor]  # (B,) class indices, (B, targets) floats, (B, T) token ids; None: unlabeled
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        """The batch on ``device``: the one place a batch moves between devices."""
        return Batch(
            self.inputs.to(device, non_blocking=non_blocking),
            None if self.targets is None else self.targets.to(device, non_blocking=non_blocking),
            {k: v.to(device, non_blocking=non_blocking) for k, v in self.extras.items()},
        )


class Loader(Protocol):
    """What the training loop needs of a loader: in memory (``dlexp.data.batching``) or streamed from files
    (``dlexp.data.images``)."""

    @property
    def num_examples(self) -> int: ...  # this process's examples per pass

    def __len__(self) -> int: ...  # batches per pass

    def __iter__(self) -> Iterator[Batch]: ...

    def batches(self, skip: int = 0) -> Iterator[Batch]: ...  # one pass, after the first ``skip`` batches

    def state_dict(self, mid_epoch: bool = False) -> dict[str, Any]: ...  # the shuffle's position, for checkpoints

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


Pair = tuple[Tensor, Tensor]  # (x, y): x is (N, *example_shape); y is (N,) int64 or (N, targets) float


class StreamedPool(Protocol):
    """Examples read from files on demand rather than held as tensors (image files: ``dlexp.data.images``)."""

    y: Tensor  # (N,) int64 classes, or (N, 1) float targets
    size: tuple[int, int]  # (H, W) every example is resized to
    channels: int

    def __len__(self) -> int: ...

    def subset(self, idx: Any) -> "StreamedPool": ...


Pool = Union[Pair, StreamedPool]  # tensors in memory, or files streamed by a DataLoader


def class_labels(task: str, targets: Tensor) -> Optional[np.ndarray]:
    """(N,) class index per example, for stratified splits and label shift; None for targets without classes.

    The target layouts the data builders make: ``classification`` (N,) int64 class indices,
    ``binary`` (N, 1) floats in {0, 1}; ``regression`` and ``translation`` targets have no classes."""
    if task == "classification":
        return targets.cpu().numpy()
    if task == "binary":
        return targets[:, 0].long().cpu().numpy()
    return None


# (inputs (N, ...) as the model sees them, batch size) -> the model's outputs (N, ...) on the CPU:
# what a fold's after-fit hook gets to score or write predictions with the best weights
OutputsOf = Callable[[Tensor, int], Tensor]


@dataclass
class Predictions:
    """Unlabeled inputs (e.g. Kaggle's test.csv) whose predictions are written to a file after training."""

    x: Tensor  # raw inputs, preprocessed with the fold's fitted preprocessing like the test set
    write_file: Callable[[Path, Tensor], None]  # (dir, model outputs (N, outputs) on the CPU) -> writes the file
    outputs: list[Tensor] = field(default_factory=list)  # the outputs of each fold written so far

    def write(self, run_dir: Path, outputs: Tensor) -> None:
        self.outputs.append(outputs)
        self.write_file(Path(run_dir), outputs)

    def write_mean(self, run_dir: Path) -> None:
        """The folds' models as one ensemble: the mean of their outputs (of log prices: a geometric mean)."""
        if self.outputs:
            self.write_file(Path(run_dir), torch.stack(self.outputs).mean(dim=0))


@dataclass
class Source:
    """What a dataset builder returns: the examples of a dataset and how to learn them.

    ``train`` is the pool that ``split`` divides into train and val (a given ``val`` replaces the split);
    ``test`` a fixed test set, never used to choose a model. Each pool is a pair of tensors ``(x, y)``: x is
    (N, *example_shape) float (or token ids), y is (N,) int64 class indices 0 .. num_classes - 1
    (classification), (N, 1) 0/1 floats (binary) or (N, targets) floats (regression). ``task`` names a
    registered task (classification, binary, regression, translation, or your own); ``num_classes`` its
    classes or targets; ``normalize`` is none, channel, feature or dataset (with ``stats``), fitted on the
    train split. The rest are for dlexp's own sources."""

    train: Pool  # the pool that the split divides into train and val
    test: Optional[Pool]  # fixed test set; never used for model selection
    task: str  # a dlexp.tasks name: classification, regression, binary ("binary" has y (N, 1) in {0., 1.})
    num_classes: int  # classes, or regression targets (1 for binary)
    normalize: str = "none"  # preprocess.NORMALIZE_MODES, fitted on the train split
    val: Optional[Pool] = None  # a given val set; when present the split group is not used
    stats: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None  # published per-channel (mean, std): normalize=dataset
    # dataset.resize: images to (resize, resize) before normalization, once or per batch when too big;
    # "auto" = up to the model's minimum side when smaller (dlexp.data.preprocess.choose_resize)
    resize: Union[int, str, None] = None
    preprocess: Optional[Callable[[Tensor], Callable[[Tensor], Tensor]]] = None  # (train x) -> its transform; replaces normalize
    task_args: dict[str, Any] = field(default_factory=dict)  # for the task's builder, e.g. {"metric": "log_rmse"}
    center_targets: bool = False  # regression: learn y - (train-split mean of y); errors and RMSE are unchanged
    covariate_mask: Optional[Tensor] = None  # (features,) bool: what shift=covariate may move in tabular data; None = all
    predict: Optional[Predictions] = None  # unlabeled inputs whose predictions are written after training
    context: dict[str, Any] = field(default_factory=dict)  # facts models and tasks need, e.g. vocabularies
    # True: in-memory batches carry extras["row"] (B,) int64, each example's row in the train pool, or
    # len(train pool) + its row in the test set, so a task can look up per-example facts in ``context``
    # (e.g. the untruncated reference sentence)
    row_ids: bool = False
    # dataset.bucket: (x, y) -> (N, 2) real lengths of right-padded input and target sequences; the
    # training loader then batches similar lengths together (dlexp.data.batching.BucketLoader)
    bucket: Optional[Callable[[Tensor, Tensor], Tensor]] = None


@dataclass
class DataBundle:
    """One fold, ready to train on: loaders that yield ``Batch`` objects, and what they hold."""

    train: Loader  # TensorLoader or StreamLoader
    val: Loader
    test: Optional[Loader]
    task: str  # the Source's task name
    input_shape: tuple[int, ...]  # one example, e.g. (1, 8, 8)
    num_classes: int
    task_args: dict[str, Any] = field(default_factory=dict)  # the Source's, e.g. {"metric": "log_rmse"}
    context: dict[str, Any] = field(default_factory=dict)  # the Source's, e.g. vocabularies
    extra_tests: dict[str, Loader] = field(default_factory=dict)  # more test loaders, e.g. {"test_shifted": ...}
    # (the best weights' outputs, run dir) -> files written, and extra summary entries (or None), e.g. a shift correction's
    after_fit: Optional[Callable[[OutputsOf, Any], Optional[dict[str, Any]]]] = None
    preprocess: Optional[Callable[[Tensor], Tensor]] = None  # what was fitted on this fold's train part
    train_targets: Optional[Tensor] = None  # (N, ...) the train part's targets as the loss sees them (its prior)
