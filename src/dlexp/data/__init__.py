"""Datasets, splits and batching.

A dataset builder (registered in ``DATASETS``) returns a ``Source``: the training
pool, an optional fixed test set, and what the task is. ``load_folds`` then splits
the pool into train/val folds with the ``split`` group, fits preprocessing on each
train part only, applies the ``shift`` group to the test set, moves everything to
the device and wraps each part in a loader (``dlexp.data.folds``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
from omegaconf import DictConfig
from torch import Tensor

from dlexp.registry import Registry

DATASETS = Registry("dataset")
SPLITS = Registry("split")
AUGMENTS = Registry("augment")
SHIFTS = Registry("shift")

TASKS = ("classification", "regression", "binary")
Pair = tuple[Tensor, Tensor]  # (x, y): x is (N, *example_shape); y is (N,) int64 or (N, targets) float
Pool = Union[Pair, "ImageFiles"]  # tensors in memory, or image files streamed by a DataLoader


@dataclass
class Source:
    train: Pool  # the pool that the split divides into train and val
    test: Optional[Pool]  # fixed test set; never used for model selection
    task: str  # one of TASKS; "binary" has y (N, 1) in {0., 1.}
    num_classes: int  # classes, or regression targets (1 for binary)
    normalize: str = "none"  # preprocess.NORMALIZE_MODES, fitted on the train split
    val: Optional[Pool] = None  # a given val set; when present the split group is not used
    stats: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None  # published per-channel (mean, std): normalize=dataset
    # dataset.resize: images to (resize, resize) before normalization, once or per batch when too big;
    # "auto" = up to the model's minimum side when smaller (dlexp.data.preprocess.choose_resize)
    resize: Union[int, str, None] = None
    preprocess: Optional[Callable[[Tensor], Callable[[Tensor], Tensor]]] = None  # fit(train x) -> transform; replaces normalize
    metric: str = "auto"  # the metric when trainer.metric=auto; "auto" = the task's default
    center_targets: bool = False  # regression: learn y - (train-split mean of y); errors and RMSE are unchanged
    covariate_mask: Optional[Tensor] = None  # (features,) bool: what shift=covariate may move in tabular data; None = all
    predict: Optional["Predictions"] = None  # unlabeled inputs whose predictions are written after training


@dataclass
class DataBundle:
    train: "TensorLoader"
    val: "TensorLoader"
    test: Optional["TensorLoader"]
    task: str
    input_shape: tuple[int, ...]  # one example, e.g. (1, 8, 8)
    num_classes: int
    metric: str = "auto"  # the source's default metric (e.g. log_rmse)
    extra_tests: dict[str, Any] = field(default_factory=dict)  # more test loaders, e.g. {"test_shifted": ...}
    after_fit: Optional[Callable[[torch.nn.Module, Any], None]] = None  # (model with best weights, run dir) -> files
    preprocess: Optional[Callable[[Tensor], Tensor]] = None  # what was fitted on this fold's train part


from dlexp.data import augment, shift, sources, splits  # noqa: E402,F401  (register the entries)
from dlexp.data import arrays, images, tabular, vision  # noqa: E402,F401
from dlexp.data.batching import TensorLoader  # noqa: E402
from dlexp.data.folds import Folds, load_folds  # noqa: E402,F401
from dlexp.data.images import ImageFiles  # noqa: E402,F401
from dlexp.data.tabular import Predictions  # noqa: E402,F401


def load_data(cfg: DictConfig, *, seed: int, device: torch.device) -> DataBundle:
    """The first (for a holdout split, the only) fold of the dataset and split named in ``cfg``."""
    return load_folds(cfg, seed=seed, device=device)[0]
