"""The data layer's registries and the two structures that pass between its steps.

A dataset builder (``DATASETS``) returns a ``Source``; ``dlexp.data.folds`` turns
it into one ``DataBundle`` per fold. This module imports nothing else of dlexp's
data package, so every source module can import it without a cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
from torch import Tensor

from dlexp.registry import Registry

if TYPE_CHECKING:  # for annotations only: these modules import this one
    from dlexp.data.images import ImageFiles
    from dlexp.data.tabular import Predictions

DATASETS = Registry("dataset")
SPLITS = Registry("split")
AUGMENTS = Registry("augment")
SHIFTS = Registry("shift")

Pair = tuple[Tensor, Tensor]  # (x, y): x is (N, *example_shape); y is (N,) int64 or (N, targets) float
Pool = Union[Pair, "ImageFiles"]  # tensors in memory, or image files streamed by a DataLoader


@dataclass
class Source:
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
    preprocess: Optional[Callable[[Tensor], Callable[[Tensor], Tensor]]] = None  # fit(train x) -> transform; replaces normalize
    task_args: dict[str, Any] = field(default_factory=dict)  # for the task's builder, e.g. {"metric": "log_rmse"}
    center_targets: bool = False  # regression: learn y - (train-split mean of y); errors and RMSE are unchanged
    covariate_mask: Optional[Tensor] = None  # (features,) bool: what shift=covariate may move in tabular data; None = all
    predict: Optional["Predictions"] = None  # unlabeled inputs whose predictions are written after training
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
    """One fold, ready to train on: loaders that yield ``dlexp.tasks.Batch`` objects, and what they hold."""

    train: Any  # TensorLoader or StreamLoader
    val: Any
    test: Optional[Any]
    task: str  # the Source's task name
    input_shape: tuple[int, ...]  # one example, e.g. (1, 8, 8)
    num_classes: int
    task_args: dict[str, Any] = field(default_factory=dict)  # the Source's, e.g. {"metric": "log_rmse"}
    context: dict[str, Any] = field(default_factory=dict)  # the Source's, e.g. vocabularies
    extra_tests: dict[str, Any] = field(default_factory=dict)  # more test loaders, e.g. {"test_shifted": ...}
    # (model with best weights, run dir) -> files written, and extra summary entries (or None), e.g. a shift correction's
    after_fit: Optional[Callable[[torch.nn.Module, Any], Optional[dict[str, Any]]]] = None
    preprocess: Optional[Callable[[Tensor], Tensor]] = None  # what was fitted on this fold's train part
