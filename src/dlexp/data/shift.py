"""Distribution shift applied to the test set, so a run reports clean and shifted test metrics.

A ``Shift`` transforms the raw test inputs (covariate shift) or resamples which
test examples are kept (label shift), before the preprocessing fitted on the
training split is applied, as data met after deployment would be.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge
from torch import Tensor

from dlexp.constraints import NonNegativeFloat, Seed
from dlexp.data.base import SHIFTS
from dlexp.data.preprocess import nan_mean_std


@dataclass
class Shift:
    select: Optional[Callable[[np.ndarray], np.ndarray]] = None  # class labels (N,) -> indices of kept examples
    inputs: Optional[Callable[..., Tensor]] = None  # (raw x, covariate mask or None) -> shifted x


def image_shift(x: Tensor, brightness: float, contrast: float, rotate: float) -> Tensor:
    """(N, C, H, W) raw images: contrast about each image's mean, plus brightness, then a fixed rotation.

    Images stored in [0, 1] stay in [0, 1] (a camera saturates).
    """
    in_unit_range = bool(x.min() >= 0) and bool(x.max() <= 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    x = (x - mean) * contrast + mean + brightness
    if rotate:
        n, _, h, w = x.shape
        a = math.radians(rotate)
        theta = torch.tensor([[math.cos(a), -math.sin(a) * h / w, 0.0], [math.sin(a) * w / h, math.cos(a), 0.0]])
        grid = F.affine_grid(theta.expand(n, 2, 3).to(x), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x.clamp(0, 1) if in_unit_range else x


def feature_shift(x: Tensor, shift: float, mask: Optional[Tensor]) -> Tensor:
    """Move the mean of every feature by ``shift`` of its standard deviation (NaNs stay missing).

    ``mask`` (features,) picks the features that may move (e.g. numeric columns, not category codes).
    """
    flat = x.reshape(len(x), -1)  # (N, features)
    _, std = nan_mean_std(flat)
    delta = shift * std
    if mask is not None:
        delta = delta * mask.to(delta)
    return (flat + delta).reshape(x.shape)


@SHIFTS.register("none")
def none() -> Optional[Shift]:
    return None


@SHIFTS.register("covariate")
def covariate(
    *, brightness: float = 0.2, contrast: NonNegativeFloat = 0.6, rotate: float = 0.0, feature_shift_std: float = 0.5
) -> Shift:
    """p(x) changes, p(y|x) does not. Images: ``contrast`` factor about each image's mean, ``brightness`` added
    (in raw pixel units, [0, 1] for images) and a fixed ``rotate`` in degrees. Other data: each feature's
    mean moves by ``feature_shift_std`` standard deviations."""

    def inputs(x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        if x.dim() == 4:
            return image_shift(x, brightness, contrast, rotate)
        return feature_shift(x, feature_shift_std, mask)

    return Shift(inputs=inputs)


@SHIFTS.register("label")
def label(*, imbalance: Annotated[float, Ge(1)] = 10.0, seed: Seed = 0) -> Shift:
    """p(y) changes, p(x|y) does not: keep the largest subset of the test set whose class priors fall
    geometrically from the most to the least frequent class by a factor ``imbalance`` (class order
    drawn with ``seed``)."""

    def select(labels: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        classes, counts = np.unique(labels, return_counts=True)
        k = len(classes)
        rank = rng.permutation(k) / max(k - 1, 1)  # 0 for the most frequent class, 1 for the least
        prior = imbalance ** (-rank)
        prior /= prior.sum()
        total = np.min(counts / prior)  # the largest test set with these priors that the examples allow
        keep = np.floor(prior * total + 1e-9).astype(int).clip(min=1)
        chosen = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, keep)]
        return np.sort(np.concatenate(chosen))

    return Shift(select=select)
