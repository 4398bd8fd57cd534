"""Bundled, offline data sources: scikit-learn's digits and the textbook's synthetic linear data."""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from dlexp.data import DATASETS, Source
from dlexp.data.preprocess import resize_images


@DATASETS.register("digits")
def digits(
    *,
    test_fraction: float = 0.2,
    test_seed: int = 0,
    resize: Optional[int] = None,
    normalize: str = "channel",
) -> Source:
    """1,797 real 8x8 handwritten digits (UCI, shipped with scikit-learn), 10 classes.

    The test split is stratified and fixed by ``test_seed`` (not the run seed), so
    runs with different seeds are scored on the same test images.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    y = torch.from_numpy(bunch.target.astype(np.int64))  # (N,)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=test_seed, stratify=bunch.target
    )
    x = resize_images(x, resize)
    return Source(
        train=(x[train_idx], y[train_idx]),
        test=(x[test_idx], y[test_idx]),
        task="classification",
        num_classes=10,
        normalize=normalize,
    )


@DATASETS.register("synthetic_linear")
def synthetic_linear(
    *,
    num_examples: int = 1000,
    num_test: int = 200,
    w: List[float] = (2.0, -3.4),
    b: float = 4.2,
    noise: float = 0.01,
    data_seed: int = 0,
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
