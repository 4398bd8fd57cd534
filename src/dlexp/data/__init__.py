"""Datasets, splits and batching.

A dataset builder (registered in ``DATASETS``) returns a ``Source``: the training
pool, an optional fixed test set, and what the task is. ``load_data`` then splits
the pool into train/val with the ``split`` group, fits preprocessing on the train
part only, moves everything to the device and wraps each part in a loader.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from dlexp.errors import ConfigError, DataError
from dlexp.config import builder_kwargs
from dlexp.registry import Registry

DATASETS = Registry("dataset")
SPLITS = Registry("split")

TASKS = ("classification", "regression")
Pair = tuple[Tensor, Tensor]  # (x, y): x is (N, *example_shape); y is (N,) int64 or (N, targets) float


@dataclass
class Source:
    train: Pair  # the pool that the split divides into train and val
    test: Optional[Pair]  # fixed test set; never used for model selection
    task: str  # one of TASKS
    num_classes: int  # classes, or regression targets
    normalize: str = "none"  # preprocess.NORMALIZE_MODES, fitted on the train split
    val: Optional[Pair] = None  # a given val set; when present the split group is not used


@dataclass
class DataBundle:
    train: "TensorLoader"
    val: "TensorLoader"
    test: Optional["TensorLoader"]
    task: str
    input_shape: tuple[int, ...]  # one example, e.g. (1, 8, 8)
    num_classes: int


from dlexp.data import sources, splits  # noqa: E402,F401  (register the entries)
from dlexp.data.batching import TensorLoader  # noqa: E402
from dlexp.data.preprocess import Normalizer  # noqa: E402


def load_data(cfg: DictConfig, *, seed: int, device: torch.device) -> DataBundle:
    """Build the dataset and split named in ``cfg`` (a validated run config)."""
    source: Source = DATASETS.build(cfg.dataset.name, **builder_kwargs(cfg.dataset))
    if source.task not in TASKS:
        raise ValueError(f"dataset '{cfg.dataset.name}' returned unknown task '{source.task}'")
    if len(source.train[0]) == 0:
        raise DataError(f"dataset '{cfg.dataset.name}' has no training examples; check its files and settings")
    train, val = _split(source, cfg, seed)
    for part, pair in (("train", train), ("val", val)):
        if len(pair[0]) == 0:
            raise DataError(f"the {part} split of dataset '{cfg.dataset.name}' is empty; use more data or change split.*")
    normalizer = Normalizer.fit(train[0], source.normalize)

    trainer = cfg.trainer
    if trainer.batch_size < 1:
        raise ConfigError(f"trainer.batch_size must be >= 1, got {trainer.batch_size}")
    if trainer.batch_size > len(train[0]):
        raise ConfigError(
            f"trainer.batch_size={trainer.batch_size} is larger than the {len(train[0])} training examples; "
            f"use trainer.batch_size<={len(train[0])}"
        )
    eval_bs = trainer.eval_batch_size or 4 * trainer.batch_size

    def to_device(pair: Pair) -> Pair:
        x, y = pair
        return normalizer(x.float()).to(device), y.to(device)

    return DataBundle(
        train=TensorLoader(*to_device(train), trainer.batch_size, shuffle=True, seed=seed),
        val=TensorLoader(*to_device(val), eval_bs),
        test=TensorLoader(*to_device(source.test), eval_bs) if source.test is not None else None,
        task=source.task,
        input_shape=tuple(train[0].shape[1:]),
        num_classes=source.num_classes,
    )


def _split(source: Source, cfg: DictConfig, seed: int) -> tuple[Pair, Pair]:
    if source.val is not None:
        return source.train, source.val
    x, y = source.train
    labels = y.numpy() if source.task == "classification" else None
    try:
        folds = SPLITS.build(cfg.split.name, len(x), labels, seed, **builder_kwargs(cfg.split))
    except ValueError as err:  # e.g. too few examples of a class to stratify
        raise DataError(
            f"cannot split the {len(x)} training examples of '{cfg.dataset.name}' with split={cfg.split.name}: "
            f"{str(err).splitlines()[0]}; change split.* (e.g. split.stratify=false)"
        ) from None
    train_idx, val_idx = folds[0]
    train_idx, val_idx = torch.from_numpy(np.asarray(train_idx)), torch.from_numpy(np.asarray(val_idx))
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])
