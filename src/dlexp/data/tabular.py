"""Tabular data in Kaggle's house-prices layout, and predictions written as a submission file.

``house_prices`` reads ``Id, <features...>, SalePrice`` CSVs. Features are kept raw
(numbers with NaN, categories as integer codes) until a fold's train part is known;
then ``TabularEncoder`` is fitted on that part only: numeric columns standardized
with its mean/std (a missing value becomes 0, the training mean), categorical
columns one-hot over the categories it contains plus an NA column. The model
learns log(SalePrice) (centered on the train part's mean), so its RMSE is Kaggle's log-RMSE.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from dlexp.config.constraints import Fraction, Seed
from dlexp.data.base import DATASETS, Predictions, Source
from dlexp.data.preprocess import nan_mean_std
from dlexp.data.splits import carve_test
from dlexp.errors import DataError
from dlexp.runs.files import SUBMISSION_FILE, atomic_write


@dataclass
class TabularEncoder:
    """Raw (N, numeric + categorical) features -> (N, D) model inputs, with statistics of the train split."""

    n_numeric: int
    mean: Tensor  # (n_numeric,)
    std: Tensor  # (n_numeric,)
    categories: list[Tensor]  # per categorical column: the codes present in the train split

    @classmethod
    def fit(cls, x: Tensor, *, n_numeric: int) -> "TabularEncoder":
        num = x[:, :n_numeric]
        mean, std = nan_mean_std(num)  # over the values present
        std = torch.where(std > 1e-6, std, torch.ones_like(std))  # constant or empty columns stay finite
        categories = [torch.unique(col[~col.isnan()]) for col in x[:, n_numeric:].T]
        return cls(n_numeric, mean, std, categories)

    def __call__(self, x: Tensor) -> Tensor:
        n = self.n_numeric
        blocks = [((x[:, :n] - self.mean) / self.std).nan_to_num(0.0)]  # (N, n_numeric); missing -> the mean
        for j, cats in enumerate(self.categories):
            col = x[:, n + j]
            blocks.append((col[:, None] == cats[None, :]).float())  # (N, categories); unseen -> all zero
            blocks.append(col.isnan().float()[:, None])  # (N, 1): the NA dummy
        return torch.cat(blocks, dim=1)


def _read_csv(path: str, key: str) -> Any:
    import pandas as pd

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"dataset.{key}={path} does not exist (relative paths start in {os.getcwd()})")
    try:
        return pd.read_csv(file)
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read dataset.{key}={path} as CSV: {str(err).strip().splitlines()[0]}") from None


def _encode(frame: Any, numeric: list[str], categorical: list[str]) -> Tensor:
    """(N, numeric + categorical) float32: numbers with NaN for missing, categories as codes with NaN for NA."""
    import pandas as pd

    columns = [frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in numeric]
    for c in categorical:
        codes, _ = pd.factorize(frame[c])  # the vocabulary of the files; -1 for NA
        columns.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
    return torch.from_numpy(np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))).float()


def _log_target(frame: Any, column: str, where: str) -> Tensor:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).any() or (values <= 0).any():
        raise DataError(f"column '{column}' of {where} needs a positive number in every row (its log is learned)")
    return torch.from_numpy(np.log(values)).float().unsqueeze(1)  # (N, 1)


def _submission_writer(ids: np.ndarray, id_column: str, target_column: str) -> Callable[[Path, Tensor], None]:
    def write(run_dir: Path, outputs: Tensor) -> None:  # outputs: (N, 1) predicted log prices
        import pandas as pd

        frame = pd.DataFrame({id_column: ids, target_column: outputs[:, 0].double().exp().numpy()})
        atomic_write(run_dir / SUBMISSION_FILE, frame.to_csv(index=False))

    return write


@DATASETS.register("house_prices")
def house_prices(
    *,
    train_csv: str,
    test_csv: Optional[str] = None,
    id_column: str = "Id",
    target_column: str = "SalePrice",
    test_fraction: Fraction = 0.0,
    test_seed: Seed = 0,
) -> Source:
    """Kaggle's house prices: learn log(SalePrice) from the other columns of ``train_csv``.

    ``test_csv`` (same columns, usually without SalePrice) gets predictions in submission.csv;
    if it has SalePrice it is also scored as the test set. ``test_fraction`` > 0 holds out
    part of ``train_csv`` as a labeled test set instead.
    """
    train = _read_csv(train_csv, "train_csv")
    for key, col in (("id_column", id_column), ("target_column", target_column)):
        if col not in train.columns:
            raise DataError(f"dataset.{key}='{col}' is not a column of {train_csv}; columns: {', '.join(map(str, train.columns[:8]))}, ...")
    features = [c for c in train.columns if c not in (id_column, target_column)]
    test = _read_csv(test_csv, "test_csv") if test_csv else None
    if test is not None:
        missing = [c for c in [id_column, *features] if c not in test.columns]
        if missing:
            raise DataError(f"{test_csv} lacks column(s) {', '.join(missing[:5])} of {train_csv}")
    import pandas as pd

    both = pd.concat([train[features], test[features]] if test is not None else [train[features]], ignore_index=True)
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(both[c])]
    categorical = [c for c in features if c not in numeric]
    raw = _encode(both, numeric, categorical)
    x, y = raw[: len(train)], _log_target(train, target_column, train_csv)

    labeled_test = test is not None and target_column in test.columns and test[target_column].notna().all()
    test_pair = (raw[len(train) :], _log_target(test, target_column, test_csv)) if labeled_test else None
    if test_pair is None and test_fraction > 0:
        pool_idx, test_idx = carve_test(y, "regression", test_fraction, test_seed)
        (x, y), test_pair = (x[pool_idx], y[pool_idx]), (x[test_idx], y[test_idx])
    predict = None
    if test is not None:
        predict = Predictions(raw[len(train) :], _submission_writer(test[id_column].to_numpy(), id_column, target_column))
    mask = torch.zeros(raw.shape[1], dtype=torch.bool)
    mask[: len(numeric)] = True  # a covariate shift moves numeric columns, never category codes
    return Source(
        train=(x, y),
        test=test_pair,
        task="regression",
        num_classes=1,
        preprocess=partial(TabularEncoder.fit, n_numeric=len(numeric)),
        task_args={"metric": "log_rmse"},  # Kaggle's score: the RMSE of log prices
        center_targets=True,  # log prices sit near 12: start the model at the train mean, not at 0
        covariate_mask=mask,
        predict=predict,
    )
