"""Preprocessing fitted on the training split only, then applied to every split."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Iterable, Literal, Optional, Union

from annotated_types import Predicate

import torch
import torch.nn.functional as F
from torch import Tensor

from dlexp.errors import ConfigError

if TYPE_CHECKING:
    from dlexp.models.base import Sides

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
    def fit_chunks(cls, chunks: Iterable[Tensor], mode: str, stats: Optional[tuple] = None) -> "Normalizer":
        """``fit`` on the concatenation of ``chunks`` without holding it: float64 sums of x and x^2,
        for data (e.g. images resized per batch) too big to fit at once."""
        if mode in ("none", "dataset") or mode not in NORMALIZE_MODES:
            return cls.fit(torch.zeros(1, 1, 1, 1), mode, stats)  # no statistics to gather (or a bad mode)
        n, total, squares = 0, 0.0, 0.0
        for x in chunks:
            dims = [0] + list(range(2, x.dim())) if mode == "channel" else [0]
            x = x.double()
            n += x.numel() // x.shape[1] if mode == "channel" else len(x)  # values behind each statistic
            total = total + x.sum(dim=dims, keepdim=True)[0]
            squares = squares + (x * x).sum(dim=dims, keepdim=True)[0]
        mean = total / n
        std = ((squares - n * mean * mean) / (n - 1)).clamp_min(0).sqrt()  # unbiased, as Tensor.std
        return cls(mean=mean.float(), std=std.float().clamp_min(1e-6))

    @classmethod
    def published(cls, stats: Optional[tuple], dim: int) -> "Normalizer":
        if stats is None:
            raise ConfigError("dataset.normalize=dataset needs published statistics, which this dataset has not; use channel")
        if dim != 4:
            raise ConfigError(f"dataset.normalize=dataset is for images (N, C, H, W); this data has {dim} dims; use feature")
        shape = (len(stats[0]), 1, 1)  # broadcasts over (N, C, H, W)
        return cls(mean=torch.tensor(stats[0]).view(shape), std=torch.tensor(stats[1]).view(shape))

    def __call__(self, x: Tensor, *, inplace: bool = False) -> Tensor:
        """``inplace``: overwrite ``x`` (a private float copy) instead of allocating two more of its size."""
        if self.mean is None:
            return x
        if self.mean.device != x.device:  # fitted on the CPU, applied to batches on the device (streamed data)
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        if inplace:
            return x.sub_(self.mean).div_(self.std)
        return (x - self.mean) / self.std


RESIZE_AUTO = "auto"


def _is_resize(value: Any) -> bool:
    """be auto, null or a positive number of pixels"""
    text = str(value).lower()
    return text in (RESIZE_AUTO, "none", "null") or (text.isdigit() and int(text) >= 1)


# dataset.resize: "auto", null, or a side in pixels (a string to OmegaConf, which has no int-or-str type)
Resize = Annotated[Optional[str], Predicate(_is_resize)]


def choose_resize(
    requested: Union[int, str, None], image_hw: tuple[int, int], model: str, sizes: Optional[Sides]
) -> tuple[Optional[int], Optional[str]]:
    """The side to resize images to, and a one-line notice when ``auto`` chose it.

    ``requested`` is ``dataset.resize``: an int, None/"none" (keep the size), or
    "auto": up to the model's ``auto`` side (its minimum, or the side it learns
    from) when either side of the images (``image_hw``, pixels) is smaller, else
    keep. ``sizes`` is None for flat models.
    """
    if requested is None or str(requested).lower() in ("none", "null"):
        return None, None
    if str(requested).lower() != RESIZE_AUTO:
        try:
            size = int(requested)
        except ValueError:
            size = 0
        if size < 1:
            raise ConfigError(f"dataset.resize must be auto, null or a positive int, got '{requested}'")
        return size, None
    if sizes is None or min(image_hw) >= sizes.auto:
        return None, None
    why = (f"the smallest {model} accepts" if sizes.auto == sizes.minimum else
           f"the smallest {model} learns from (it accepts {sizes.minimum}x{sizes.minimum})")
    notice = (f"resizing {image_hw[0]}x{image_hw[1]} images to {sizes.auto}x{sizes.auto}, {why}; "
              f"dataset.resize={sizes.textbook} gives the textbook size")
    return sizes.auto, notice


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
