"""Data: sources, splits, preprocessing, augmentation, distribution shift and loaders that yield ``Batch``es.

A dataset builder (registered in ``DATASETS``) returns a ``Source``: the training
pool, an optional fixed test set, and which task's target layout it has. ``load_folds``
then splits the pool into train/val folds with the ``split`` group, fits preprocessing
on each train part only, applies the ``shift`` group to the test set, moves everything
to the device and wraps each part in a loader (``dlexp.data.folds``). Every module here is
imported with the package, so a new source of data is one new file.

May import models (their minimum input sizes), runs (file names) and config; never a task:
what the data needs of the model's outputs after training comes in as a function (``OutputsOf``).
"""
from __future__ import annotations

import importlib
import pkgutil

import torch
from omegaconf import DictConfig

from dlexp.data.base import (  # noqa: F401  (re-exported)
    AUGMENTS, DATASETS, SHIFTS, SPLITS, Batch, DataBundle, Pair, Pool, Predictions, Source, class_labels,
)
from dlexp.data.batching import TensorLoader  # noqa: F401  (the in-memory loader, for tools and tests)
from dlexp.data.folds import Folds, build_source, load_folds  # noqa: F401
from dlexp.data.images import ImageFiles  # noqa: F401


for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registers its datasets, splits, ...: a new one is one file


def load_data(cfg: DictConfig, *, seed: int, device: torch.device) -> DataBundle:
    """The first (for a holdout split, the only) fold of the dataset and split named in ``cfg``."""
    return load_folds(cfg, seed=seed, device=device)[0]
