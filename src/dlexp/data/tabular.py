"""What the table sources share: reading a table file, raw feature columns, and the encoder fitted per fold.

Features stay raw (numbers with NaN for missing, categories as integer codes with NaN
for NA) until a fold's train part is known; then ``TabularEncoder`` is fitted on that
part only: numeric columns standardized with its mean/std (a missing value becomes 0,
the training mean), categorical columns one-hot over the categories it contains plus an
NA column. ``house_prices`` (Kaggle's layout) and ``csv`` (any table, the target by
name) build their ``Source`` with ``tabular_source``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from dlexp.data.base import Pair, Predictions, Source
from dlexp.data.preprocess import nan_mean_std
from dlexp.errors import DataError


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


# -- reading ---------------------------------------------------------------------------------------

PARQUET_MAGIC = b"PAR1"  # the first (and last) four bytes of every Parquet file
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")  # pandas decompresses these CSVs by their suffix
SEPARATORS = ",;\t|"  # a CSV's separator is the one its header line holds most of
# what a file that is not a table usually is, by its first bytes
NOT_TABLES = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"%PDF": "a PDF",
              b"PK\x03\x04": "a zip archive (an Excel .xlsx workbook is one: save it as CSV)", b"\x93NUMPY": "a NumPy array"}


def read_table(path: str, key: str) -> Any:
    """``dataset.<key>=path`` as a pandas DataFrame: a Parquet file (by its first bytes or its suffix) or a CSV
    whose separator (comma, semicolon, tab or pipe) is found from its header line (with a semicolon, a decimal
    comma is read too). A missing, empty or binary file, or one pandas cannot parse, is a one-line DataError
    that names it."""
    import pandas as pd

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"dataset.{key}={path} does not exist (relative paths start in {os.getcwd()})")
    compressed = file.suffix.lower() in COMPRESSED_SUFFIXES
    with open(file, "rb") as handle:
        head = b"" if compressed else handle.read(1 << 16)
    if head.startswith(PARQUET_MAGIC) or file.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(file, head, path, key)
    _check_text(head, path, key)
    sep = _separator(head)
    try:  # a semicolon-separated CSV is the spreadsheets' form for locales that write 2,5 for 2.5
        frame = pd.read_csv(file, sep=sep, decimal="," if sep == ";" else ".")
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset.{key}={path} is empty; a table needs a header line of column names, then one row "
                        f"per example") from None
    except UnicodeDecodeError as err:
        raise DataError(f"dataset.{key}={path} is not UTF-8 text (it holds byte {err.object[err.start]:#04x}); "
                        f"save it as a UTF-8 CSV") from None
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read dataset.{key}={path} as CSV: {_first_line(err)}") from None
    if frame.empty:
        raise DataError(f"dataset.{key}={path} has a header line but no rows")
    frame.attrs["format"] = "csv"  # row i of the frame is line i + 2 of the file
    return frame


def _read_parquet(file: Path, head: bytes, path: str, key: str) -> Any:
    import pandas as pd

    if not head.startswith(PARQUET_MAGIC):
        _check_text(head, path, key)
        raise DataError(f"dataset.{key}={path} is not a Parquet file (it does not start with {PARQUET_MAGIC.decode()})")
    try:
        frame = pd.read_parquet(file)
    except ImportError:
        raise DataError("reading Parquet files needs pyarrow: pip install pyarrow") from None
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"cannot read dataset.{key}={path} as Parquet: {_first_line(err)}") from None
    if frame.empty:
        raise DataError(f"dataset.{key}={path} has no rows")
    frame.attrs["format"] = "parquet"
    return frame


def _check_text(head: bytes, path: str, key: str) -> None:
    """A DataError for a file whose first bytes show it is not text: an image, an archive, any binary."""
    what = next((name for magic, name in NOT_TABLES.items() if head.startswith(magic)), None)
    if what is None and b"\x00" in head:  # no text format holds NUL bytes
        what = "a binary file"
    if what is not None:
        raise DataError(f"dataset.{key}={path} is {what}, not a table; give a CSV or Parquet file")


def _separator(head: bytes) -> str:
    header = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# -- features --------------------------------------------------------------------------------------


def raw_features(frame: Any, numeric: list[str], categorical: list[str]) -> Tensor:
    """(N, numeric + categorical) float32: numbers with NaN for missing, categories as codes with NaN for NA.
    ``numeric`` columns must hold numbers (or NaN) already."""
    import pandas as pd

    columns = [frame[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in numeric]
    for c in categorical:
        codes, _ = pd.factorize(frame[c])  # the vocabulary of the files; -1 for NA
        columns.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
    return torch.from_numpy(np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))).float()


def tabular_source(train: Pair, test: Optional[Pair], *, n_numeric: int, task: str, num_classes: int,
                   predict: Optional[Predictions] = None, **kw: Any) -> Source:
    """A ``Source`` of raw tabular features whose first ``n_numeric`` columns are numbers and the rest category
    codes: ``TabularEncoder`` is fitted on each fold's train part, and a covariate shift moves the numbers only.
    ``kw``: more ``Source`` fields (``task_args``, ``center_targets``)."""
    mask = torch.zeros(train[0].shape[1], dtype=torch.bool)
    mask[:n_numeric] = True  # a covariate shift moves numeric columns, never category codes
    return Source(train=train, test=test, task=task, num_classes=num_classes,
                  preprocess=partial(TabularEncoder.fit, n_numeric=n_numeric), covariate_mask=mask, predict=predict, **kw)
