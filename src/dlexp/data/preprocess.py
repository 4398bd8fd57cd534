"""Preprocessing fitted on the training split only, then applied to every split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dlexp.errors import ConfigError

# channel/feature: statistics of the train split; dataset: the published per-channel statistics
NORMALIZE_MODES = ("none", "channel", "feature", "dataset")
Normalize = Literal[NORMALIZE_MODES]  # the type of every dataset.normalize key


@dataclass
class Normalizer:
    """x -> (x - mean) / std with statistics from the training split."""

    mean: Optional[Tensor] = None
    std: Optional[Tensor] = None

    @classmethod
    def fit(cls, x: Tensor, mode: str, stats: Optional[tuple] = None) -> "Normalizer":
        """``stats`` = the dataset's published per-channel (mean, std), used by mode "dataset"."""
        if mode == "none":
            return cls()
        if mode == "dataset":
            return cls.published(stats, x.dim())
        if mode == "channel":  # one statistic per channel of (N, C, ...) data
            dims = [0] + list(range(2, x.dim()))
            mean, std = x.mean(dim=dims, keepdim=True)[0], x.std(dim=dims, keepdim=True)[0]
        else:  # one statistic per feature: every position of an example
            mean, std = x.mean(dim=0), x.std(dim=0)
        return cls(mean=mean, std=std.clamp_min(1e-6))  # constant features stay finite

    @classmethod
    def published(cls, stats: Optional[tuple], dim: int) -> "Normalizer":
        if stats is None:
            raise ConfigError("dataset.normalize=dataset needs published statistics, which this dataset has not; use channel")
        if dim != 4:
            raise ConfigError(f"dataset.normalize=dataset is for images (N, C, H, W); this data has {dim} dims; use feature")
        shape = (len(stats[0]), 1, 1)  # broadcasts over (N, C, H, W)
        return cls(mean=torch.tensor(stats[0]).view(shape), std=torch.tensor(stats[1]).view(shape))

    def __call__(self, x: Tensor) -> Tensor:
        if self.mean is None:
            return x
        if self.mean.device != x.device:  # fitted on the CPU, applied to batches on the device (streamed data)
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x - self.mean) / self.std


def resize_images(x: Tensor, size: Optional[int]) -> Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear, done once for the whole tensor."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    if x.dim() != 4:
        raise ConfigError(f"dataset.resize needs image data (N, C, H, W); this dataset has shape {tuple(x.shape)}")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def nan_mean_std(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-column mean and (population) std of (N, D) ``x`` over the values present; NaN means missing."""
    count = (~x.isnan()).sum(dim=0).clamp_min(1)
    mean = x.nan_to_num(0.0).sum(dim=0) / count
    std = (((x - mean).nan_to_num(0.0) ** 2).sum(dim=0) / count).sqrt()
    return mean, std
