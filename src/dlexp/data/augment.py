"""Training-set augmentation applied to whole batches on the device.

Each op draws per-example random parameters as tensors (masks, angles, offsets)
and transforms the batch with vectorized tensor ops: no per-example Python work.
Ops run on batches already normalized, so zero padding is the training mean.
Only the training loader is given an ``Augmenter``; val and test batches never are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, List

import torch
import torch.nn.functional as F
from annotated_types import Gt, Interval, Len
from torch import Tensor

from dlexp.config.constraints import PositiveFloat, PositiveInt, Probability
from dlexp.data.base import AUGMENTS
from dlexp.errors import ConfigError


class Augmenter:
    """Applies ``ops`` in order to a training batch, drawing from a generator on the data's device.

    The loader passes a seed per batch (drawn from its shuffle generator once per epoch, plus the
    batch index), so the random parameters follow from the run seed and replay exactly on resume.
    """

    def __init__(self, ops: list, *, device: torch.device):
        self.ops = ops
        self.generator = torch.Generator(device=device)

    def __call__(self, x: Tensor, seed: int) -> Tensor:
        self.generator.manual_seed(seed)
        for op in self.ops:
            x = op(x, self.generator)
        return x


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


@dataclass
class Flip:
    p: float
    horizontal: bool
    vertical: bool
    needs_images = True

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:  # x: (B, C, H, W)
        for enabled, dim in ((self.horizontal, 3), (self.vertical, 2)):
            if enabled:
                flip = torch.rand(len(x), generator=gen, device=x.device) < self.p  # (B,) which examples flip
                x = torch.where(flip[:, None, None, None], x.flip(dim), x)
        return x


@dataclass
class Crop:
    padding: int
    needs_images = True

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """Zero-pad by ``padding`` and cut a random (H, W) window per example, by gathered indices."""
        b, _, h, w = x.shape
        pad = self.padding
        padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # (B, H+2p, W+2p, C)
        dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=x.device)  # window offsets, (B, 1)
        dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=x.device)
        rows = (dy + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
        cols = (dx + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
        batch = torch.arange(b, device=x.device)[:, None, None]  # (B, 1, 1)
        return padded[batch, rows, cols].permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Resample each image of (B, C, H, W) through its own affine map ``theta`` (B, 2, 3)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class Rotate:
    degrees: float
    needs_images = True

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        b, _, h, w = x.shape
        angle = _uniform(b, -self.degrees, self.degrees, gen, x.device) * (math.pi / 180)  # (B,) radians
        cos, sin = angle.cos(), angle.sin()
        theta = torch.zeros(b, 2, 3, device=x.device)
        # grid coordinates are normalized to [-1, 1] per axis; the aspect terms keep non-square rotations rigid
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        return _warp(x, theta)


@dataclass
class Scale:
    area: List[float]  # (min, max) fraction of the image area kept
    ratio: List[float]  # (min, max) aspect ratio (width / height) of the kept window

    needs_images = True

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        """Random resized crop: a random window per example, stretched back to (H, W)."""
        b, dev = len(x), x.device
        area = _uniform(b, self.area[0], self.area[1], gen, dev)
        log_ratio = _uniform(b, math.log(self.ratio[0]), math.log(self.ratio[1]), gen, dev)
        ratio = log_ratio.exp()
        sw, sh = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)  # window size / image size
        cx = _uniform(b, -1.0, 1.0, gen, dev) * (1 - sw)  # window centre, keeping the window inside the image
        cy = _uniform(b, -1.0, 1.0, gen, dev) * (1 - sh)
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sw, cx, sh, cy
        return _warp(x, theta)


@dataclass
class Noise:
    std: float  # in units of the normalized inputs
    needs_images = False

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        return x + self.std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


# [min, max] pairs; the bounds of each value are declared, their order is checked by _check_order
AreaRange = Annotated[List[Annotated[float, Interval(gt=0, le=1)]], Len(2, 2)]  # fractions of the image area
RatioRange = Annotated[List[Annotated[float, Gt(0)]], Len(2, 2)]  # width / height


def _check_order(key: str, pair: List[float]) -> None:
    if not pair[0] <= pair[1]:
        raise ConfigError(f"augment.{key} must be [min, max] with min <= max, got {list(pair)}")


@AUGMENTS.register("none")
def none() -> list:
    return []


@AUGMENTS.register("flip")
def flip(*, p: Probability = 0.5, horizontal: bool = True, vertical: bool = False) -> list:
    """Mirror each example with probability ``p``, left-right and/or upside down."""
    return [Flip(p, horizontal, vertical)]


@AUGMENTS.register("rotate")
def rotate(*, degrees: Annotated[float, Interval(gt=0, le=180)] = 15.0) -> list:
    """Rotate each example by an angle drawn uniformly from [-degrees, degrees]."""
    return [Rotate(degrees)]


@AUGMENTS.register("scale")
def scale(*, area: AreaRange = (0.25, 1.0), ratio: RatioRange = (0.75, 1.3333)) -> list:
    """Random resized crop: keep a random ``area`` fraction with a random aspect ``ratio``, resized back."""
    _check_order("area", area)
    _check_order("ratio", ratio)
    return [Scale(list(area), list(ratio))]


@AUGMENTS.register("crop")
def crop(*, padding: PositiveInt = 4) -> list:
    """Pad by ``padding`` pixels and cut a random window of the original size."""
    return [Crop(padding)]


@AUGMENTS.register("noise")
def noise(*, std: PositiveFloat = 0.1) -> list:
    """Add Gaussian noise N(0, std^2) to every input value; works for any input shape."""
    return [Noise(std)]


@AUGMENTS.register("standard")
def standard(*, p: Probability = 0.5, padding: PositiveInt = 4) -> list:
    """The usual CIFAR recipe: random horizontal flip, then pad + random crop."""
    return flip(p=p) + crop(padding=padding)
