"""Datasets, splits and batching.

A dataset builder (registered in ``DATASETS``) returns a ``Source``: the training
pool, an optional fixed test set, and what the task is. ``load_folds`` then splits
the pool into train/val folds with the ``split`` group, fits preprocessing on each
train part only, applies the ``shift`` group to the test set, moves everything to
the device and wraps each part in a loader (``dlexp.data.folds``).
"""
from __future__ import annotations

from omegaconf import DictConfig
import torch

from dlexp.data.base import AUGMENTS, DATASETS, SHIFTS, SPLITS, DataBundle, Pair, Pool, Source  # noqa: F401
from dlexp.data import augment, shift, sources, splits  # noqa: E402,F401  (register the entries)
from dlexp.data import arrays, images, tabular, vision  # noqa: E402,F401
from dlexp.data import text  # noqa: F401  (after vision: it reuses the download helpers)
from dlexp.data.batching import TensorLoader  # noqa: F401  (the in-memory loader, for tools and tests)
from dlexp.data.folds import Folds, load_folds  # noqa: E402,F401
from dlexp.data.images import ImageFiles  # noqa: E402,F401
from dlexp.data.tabular import Predictions  # noqa: E402,F401


def load_data(cfg: DictConfig, *, seed: int, device: torch.device) -> DataBundle:
    """The first (for a holdout split, the only) fold of the dataset and split named in ``cfg``."""
    return load_folds(cfg, seed=seed, device=device)[0]
