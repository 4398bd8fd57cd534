"""Bundled, offline data sources: scikit-learn's digits, the textbook's synthetic data, a wedge and blobs."""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from typing import Annotated, List

import numpy as np
import torch
from annotated_types import Ge, MinLen

from dlexp.config.constraints import Fraction, NonNegativeFloat, NonNegativeInt, PositiveInt, Seed
from dlexp.data.base import DATASETS, Source
from dlexp.data.preprocess import Normalize, Resize
from dlexp.data.splits import shuffled_split
from dlexp.errors import DataError


def digits_file() -> Path:
    """The UCI digits as scikit-learn ships them (``sklearn/datasets/data/digits.csv.gz``), found without
    importing scikit-learn: the same file ``load_digits`` reads, without a second of imports."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        raise DataError("dataset=digits reads the digits that ship with scikit-learn, which is not installed here; "
                        "pip install scikit-learn")
    return path


@functools.lru_cache(maxsize=1)
def _digits_table(path: Path) -> np.ndarray:
    """The digits file, read once per process (a sweep's jobs each build the source); read-only, since each
    run's tensors are copies taken from it."""
    table = np.loadtxt(path, delimiter=",")
    table.flags.writeable = False
    return table


@DATASETS.register("digits")
def digits(
    *,
    test_fraction: Fraction = 0.2,
    test_seed: Seed = 0,
    resize: Resize = "auto",  # "auto": up to the model's minimum side; or pixels per side; null = the native 8x8
    normalize: Normalize = "channel",
) -> Source:
    """1,797 real 8x8 handwritten digits (UCI, shipped with scikit-learn), 10 classes.

    The test split is stratified and fixed by ``test_seed`` (not the run seed), so
    runs with different seeds are scored on the same test images.
    """
    table = _digits_table(digits_file())  # (1797, 65): 64 pixel counts in 0..16, then the label
    x = torch.from_numpy(table[:, :-1].reshape(-1, 1, 8, 8).astype(np.float32) / 16.0)  # (N, 1, 8, 8) in [0, 1]
    labels = table[:, -1].astype(np.int64)
    y = torch.from_numpy(labels)  # (N,)
    train_idx, test_idx = shuffled_split(len(y), math.ceil(test_fraction * len(y)), test_seed, labels)
    return Source(
        train=(x[train_idx], y[train_idx]),
        test=(x[test_idx], y[test_idx]),
        task="classification",
        num_classes=10,
        normalize=normalize,
        resize=resize,
    )


@DATASETS.register("synthetic_linear")
def synthetic_linear(
    *,
    num_examples: PositiveInt = 1000,
    num_test: NonNegativeInt = 200,
    w: Annotated[List[float], MinLen(1)] = (2.0, -3.4),  # one weight per feature
    b: float = 4.2,
    noise: NonNegativeFloat = 0.01,  # std of the Gaussian noise on y
    data_seed: Seed = 0,
) -> Source:
    """y = Xw + b + eps with X ~ N(0, 1) and eps ~ N(0, noise^2), as in the textbook."""
    gen = torch.Generator().manual_seed(data_seed)
    weight = torch.tensor(w, dtype=torch.float32)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, len(weight), generator=gen)  # (n, d)
        y = x @ weight + b + noise * torch.randn(n, generator=gen)  # (n,)
        return x, y.unsqueeze(1)  # targets as (n, 1): one regression output

    return Source(
        train=draw(num_examples), test=draw(num_test), task="regression", num_classes=1, normalize="none"
    )


@DATASETS.register("poly")
def poly(
    *,
    degree: NonNegativeInt = 20,
    n_train: PositiveInt = 100,
    n_val: NonNegativeInt = 100,
    n_test: NonNegativeInt = 100,
    noise: NonNegativeFloat = 0.1,
    data_seed: Seed = 0,
) -> Source:
    """The textbook's polynomial: y = 5 + 1.2x - 3.4x^2/2! + 5.6x^3/3! + eps, x ~ N(0, 1), eps ~ N(0, noise^2).

    Features are x^i/i! for i = 0..degree (the i! keeps high powers from exploding). degree=3 is the true
    model; degree=1 underfits; degree=20 with few training examples overfits. ``n_val`` > 0 gives a fixed
    val set, so ``n_train`` examples are trained on; n_val=0 lets the split group carve val out of them.
    """
    gen = torch.Generator().manual_seed(data_seed)
    powers = torch.arange(max(degree, 3) + 1, dtype=torch.float32)
    scale = torch.exp(torch.lgamma(powers + 1))  # i!
    true_w = torch.tensor([5.0, 1.2, -3.4, 5.6])

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 1, generator=gen)
        features = x**powers / scale  # (n, max(degree, 3) + 1)
        y = features[:, :4] @ true_w + noise * torch.randn(n, generator=gen)  # (n,)
        return features[:, : degree + 1], y.unsqueeze(1)

    train, val, test = draw(n_train), draw(n_val), draw(n_test)
    return Source(
        train=train, val=val if n_val else None, test=test if n_test else None,
        task="regression", num_classes=1, normalize="none",
    )


@DATASETS.register("highdim_linear")
def highdim_linear(
    *,
    n_train: PositiveInt = 20,
    n_val: NonNegativeInt = 100,
    n_test: NonNegativeInt = 100,
    num_inputs: PositiveInt = 200,
    noise: NonNegativeFloat = 0.01,
    data_seed: Seed = 0,
) -> Source:
    """The textbook's weight-decay data: y = 0.05 + sum_i 0.01 x_i + eps, x ~ N(0, I_d), eps ~ N(0, noise^2).

    With d = 200 inputs and 20 training examples, an unregularized linear model fits the
    training set exactly and the held-out loss stays high; L2 weight decay fixes that.
    ``n_val`` > 0 gives a fixed val set, so exactly ``n_train`` examples are trained on.
    """
    gen = torch.Generator().manual_seed(data_seed)
    true_w = torch.full((num_inputs,), 0.01)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, num_inputs, generator=gen)  # (n, d)
        y = x @ true_w + 0.05 + noise * torch.randn(n, generator=gen)  # (n,)
        return x, y.unsqueeze(1)

    train, val, test = draw(n_train), draw(n_val), draw(n_test)
    return Source(
        train=train, val=val if n_val else None, test=test if n_test else None,
        task="regression", num_classes=1, normalize="none",
    )


@DATASETS.register("wedge")
def wedge(
    *,
    num_examples: PositiveInt = 1000,
    num_test: NonNegativeInt = 500,
    slope: NonNegativeFloat = 1.5,
    data_seed: Seed = 0,
) -> Source:
    """Two classes in the plane: x ~ N(0, I_2), class 1 where x2 > slope * |x1| (a wedge opening upwards).

    The boundary bends at the origin, so the best straight line differs from region to region: a linear
    model trained around the origin misplaces its boundary on inputs shifted away from it (covariate shift).
    """
    gen = torch.Generator().manual_seed(data_seed)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 2, generator=gen)  # (n, 2)
        return x, (x[:, 1] > slope * x[:, 0].abs()).long()  # (n,) class indices

    return Source(
        train=draw(num_examples), test=draw(num_test) if num_test else None, task="classification",
        num_classes=2, normalize="none",
    )


@DATASETS.register("blobs")
def blobs(
    *,
    num_examples: PositiveInt = 3000,
    num_test: NonNegativeInt = 3000,
    classes: Annotated[int, Ge(2)] = 3,
    spread: NonNegativeFloat = 1.0,
    data_seed: Seed = 0,
) -> Source:
    """Overlapping Gaussian classes in the plane: balanced classes, x | y=j ~ N(m_j, I_2), the means m_j
    evenly spaced on a circle of radius ``spread``. The classes overlap, so where they do the best
    prediction depends on the class priors (label shift)."""
    gen = torch.Generator().manual_seed(data_seed)
    angle = 2 * math.pi * torch.arange(classes) / classes
    means = spread * torch.stack([angle.cos(), angle.sin()], dim=1)  # (classes, 2)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes  # (n,) balanced
        return means[y] + torch.randn(n, 2, generator=gen), y

    return Source(
        train=draw(num_examples), test=draw(num_test) if num_test else None, task="classification",
        num_classes=classes, normalize="none",
    )
