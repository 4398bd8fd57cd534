"""Tabular data in Kaggle's house-prices layout, and predictions written as a submission file.

``house_prices`` reads ``Id, <features...>, SalePrice`` CSVs; the features are encoded per fold
as every table is (``dlexp.data.tabular``). The model learns log(SalePrice) (centered on the
train part's mean), so its RMSE is Kaggle's log-RMSE.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from dlexp.config.constraints import Fraction, Seed
from dlexp.data.base import DATASETS, Predictions, Source
from dlexp.data.splits import carve_test
from dlexp.data.tabular import raw_features, read_table, tabular_source
from dlexp.errors import DataError
from dlexp.runs.files import SUBMISSION_FILE, atomic_write


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
    train = read_table(train_csv, "train_csv")
    for key, col in (("id_column", id_column), ("target_column", target_column)):
        if col not in train.columns:
            raise DataError(f"dataset.{key}='{col}' is not a column of {train_csv}; columns: {', '.join(map(str, train.columns[:8]))}, ...")
    features = [c for c in train.columns if c not in (id_column, target_column)]
    test = read_table(test_csv, "test_csv") if test_csv else None
    if test is not None:
        missing = [c for c in [id_column, *features] if c not in test.columns]
        if missing:
            raise DataError(f"{test_csv} lacks column(s) {', '.join(missing[:5])} of {train_csv}")
    import pandas as pd

    both = pd.concat([train[features], test[features]] if test is not None else [train[features]], ignore_index=True)
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(both[c])]
    categorical = [c for c in features if c not in numeric]
    raw = raw_features(both, numeric, categorical)
    x, y = raw[: len(train)], _log_target(train, target_column, train_csv)

    labeled_test = test is not None and target_column in test.columns and test[target_column].notna().all()
    test_pair = (raw[len(train) :], _log_target(test, target_column, test_csv)) if labeled_test else None
    if test_pair is None and test_fraction > 0:
        pool_idx, test_idx = carve_test(y, "regression", test_fraction, test_seed)
        (x, y), test_pair = (x[pool_idx], y[pool_idx]), (x[test_idx], y[test_idx])
    predict = None
    if test is not None:
        predict = Predictions(raw[len(train) :], _submission_writer(test[id_column].to_numpy(), id_column, target_column))
    return tabular_source(
        (x, y), test_pair, n_numeric=len(numeric), task="regression", num_classes=1, predict=predict,
        task_args={"metric": "log_rmse"},  # Kaggle's score: the RMSE of log prices
        center_targets=True,  # log prices sit near 12: start the model at the train mean, not at 0
    )
