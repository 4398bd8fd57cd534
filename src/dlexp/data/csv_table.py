"""``dataset=csv``: any table, a CSV or a Parquet file, with the target column named; the rest is inferred.

- The task, from the target column: text, booleans, or integers with at most ``MAX_AUTO_CLASSES``
  distinct values are classes (labels sorted: class i is the i-th label), floats and other integers
  a regression. ``task`` overrides it (``binary``: two classes, one logit).
- The features, from each column's type: numbers and ISO dates (as days since 1970-01-01) are
  numeric, text and booleans categorical; ``categorical`` names more (e.g. integer codes). A column
  of numbers with a few text cells is refused, naming the column and a row.
- Id columns (every value different: text, or a run of consecutive integers) are left out;
  ``drop`` names the columns to leave out instead.

The features are then encoded per fold as ``house_prices``' are (``dlexp.data.tabular``). A
regression target is centered on the train part's mean and standardized with its std (the
regression task's ``standardize``), so its metrics and predictions stay in the target's units.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Literal, Optional

import numpy as np
import torch
from torch import Tensor

from dlexp.config.constraints import Fraction, Seed, did_you_mean
from dlexp.data.base import DATASETS, Source
from dlexp.data.splits import carve_test
from dlexp.data.tabular import raw_features, read_table, tabular_source
from dlexp.errors import DataError

CsvTask = Literal["auto", "classification", "regression", "binary"]
MAX_AUTO_CLASSES = 20  # integer targets with at most this many distinct values are classes, with more a regression
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?")  # 2024-03-01, 2024-03-01 12:30:00


@DATASETS.register("csv")
def csv(
    *,
    path: str,
    target: str,
    task: CsvTask = "auto",
    categorical: List[str] = (),
    drop: Optional[List[str]] = None,
    test_fraction: Fraction = 0.2,
    test_seed: Seed = 0,
) -> Source:
    """Learn column ``target`` of the table at ``path`` from its other columns (see the module docstring)."""
    frame = read_table(path, "path")
    where = Where(path, lines=frame.attrs.get("format") == "csv")
    frame.columns = [str(c) for c in frame.columns]
    _check_names(frame, where, target, list(categorical), drop)
    y, task, classes = _target(frame[target], task, where)
    columns = _feature_columns(frame.drop(columns=[target]), list(categorical), drop, where)
    x = raw_features(_numbers_and_codes(frame, columns), columns.numeric, columns.categorical)
    _check_finite(x, y, columns.numeric, target, where)
    test = None
    if test_fraction > 0:  # stratified by class for classification, fixed by test_seed
        pool_idx, test_idx = carve_test(y, task, test_fraction, test_seed)
        (x, y), test = (x[pool_idx], y[pool_idx]), (x[test_idx], y[test_idx])
    print(_inferred(target, task, classes, columns), flush=True)
    return tabular_source(
        (x, y), test, n_numeric=len(columns.numeric), task=task, num_classes=len(classes) if task == "classification" else 1,
        task_args={"standardize": True} if task == "regression" else {},
        center_targets=True,  # regression: learn y - (train part's mean of y); errors unchanged
    )


@dataclass(frozen=True)
class Where:
    """The table file, in messages: its path, and how to name a row of it."""

    path: str
    lines: bool  # a CSV: data row i (from 1) is on line i + 1, after the header line

    def __str__(self) -> str:
        return self.path

    def row(self, index: int) -> str:
        """Row ``index`` (from 0) as a user finds it: 'row 7 (line 8)' in a CSV, 'row 7' in a Parquet file."""
        return f"row {index + 1} (line {index + 2})" if self.lines else f"row {index + 1}"


@dataclass
class Columns:
    """The feature columns of a table by kind, in the order the model's raw inputs hold them."""

    numeric: list[str] = field(default_factory=list)  # numbers, and the dates below as days since 1970-01-01
    categorical: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)  # ISO dates (text) or Parquet timestamps, also in numeric
    left_out: list[str] = field(default_factory=list)  # id columns found, or those dataset.drop names
    ids: bool = False  # whether left_out was found (True) or given by dataset.drop


def _check_names(frame: Any, where: Where, target: str, categorical: list[str], drop: Optional[list[str]]) -> None:
    """Every column the config names is a column of the table; the target is neither a feature nor dropped."""
    names = list(frame.columns)
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} columns)" if len(names) > 20 else "")
    for key, wanted in (("target", [target]), ("categorical", categorical), ("drop", drop or [])):
        for name in wanted:
            if name not in names:
                raise DataError(f"dataset.{key} names '{name}', which is not a column of {where}.{did_you_mean(name, names)} "
                                f"Columns: {shown}")
            if key != "target" and name == target:
                raise DataError(f"dataset.{key} names '{name}', the target column; list feature columns only")
    both = sorted(set(categorical) & set(drop or []))
    if both:
        raise DataError(f"column '{both[0]}' is in both dataset.categorical and dataset.drop; keep it in one")
    if len(names) - 1 - len(drop or []) < 1:
        raise DataError(f"{where} has no feature column besides the target '{target}' (and those dropped)")


def _target(column: Any, task: str, where: Where) -> tuple[Tensor, str, list]:
    """(y, task, class labels): (N,) class indices, (N, 1) 0/1 floats (binary) or (N, 1) floats (regression)."""
    import pandas as pd

    name = column.name
    missing = np.flatnonzero(column.isna().to_numpy())
    if len(missing):
        raise DataError(f"the target column '{name}' of {where} is empty in {len(missing)} row(s), first in {where.row(missing[0])}; "
                        f"fill them in or drop those rows")
    if task in ("auto", "regression") and _mostly_numbers(column):  # numbers written as text, maybe with a typo
        column = _as_numbers(column, where, f"the target column '{name}' of {where} holds numbers",
                             "correct it, or set dataset.task=classification if the values are labels")
    if task == "auto":
        task = _infer_task(column, where)
    if task == "regression":
        values = _as_numbers(column, where, f"dataset.task=regression needs a number in every row of the target column "
                                            f"'{name}' of {where}", "use dataset.task=classification for labels")
        if values.nunique() < 2:
            raise DataError(f"the target column '{name}' of {where} holds one value ({values.iloc[0]!r}) in every row: "
                            f"nothing to learn; is dataset.target the right column?")
        return torch.tensor(values.to_numpy(dtype=np.float32)).unsqueeze(1), task, []
    classes = _sorted(column.unique())
    if len(classes) < 2:
        raise DataError(f"the target column '{name}' of {where} has one class ({classes[0]!r}) in every row: a classifier "
                        f"needs at least 2; is dataset.target the right column?")
    if task == "binary" and len(classes) != 2:
        raise DataError(f"dataset.task=binary needs two classes, but the target column '{name}' of {where} has "
                        f"{len(classes)} ({_listed(classes)}); use dataset.task=classification")
    codes = torch.from_numpy(pd.Categorical(column, categories=classes).codes.astype(np.int64))  # class i: the i-th label
    return (codes.float().unsqueeze(1) if task == "binary" else codes), task, classes


def _check_finite(x: Tensor, y: Tensor, numeric: list[str], target: str, where: Where) -> None:
    """No infinite number (a cell reading inf) in the features or a regression target, named by its row in the
    file: once the test split is carved, the data checks could only name its place in a split."""
    for values, names in ((x, numeric), (y.float(), [target])):
        bad = torch.isinf(values).nonzero()
        if len(bad):
            row, col = int(bad[0, 0]), int(bad[0, 1]) if values.dim() == 2 else 0
            raise DataError(f"column '{names[col]}' of {where} holds an infinite number in {where.row(row)}; "
                            f"correct it (an empty cell means missing)")


def _infer_task(column: Any, where: Where) -> str:
    import pandas as pd

    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "classification"
    if pd.api.types.is_float_dtype(dtype):
        return "regression"
    if pd.api.types.is_integer_dtype(dtype):
        return "classification" if column.nunique() <= MAX_AUTO_CLASSES else "regression"
    classes = column.nunique()
    if classes > max(MAX_AUTO_CLASSES, len(column) // 2):
        raise DataError(f"the target column '{column.name}' of {where} has {classes} different values in {len(column)} rows: "
                        f"too many to be classes; is dataset.target the right column? (dataset.task=classification insists)")
    return "classification"


def _feature_columns(frame: Any, categorical: list[str], drop: Optional[list[str]], where: Where) -> Columns:
    """Each feature column's kind: ``categorical`` and ``drop`` as given, the others by their values."""
    columns = Columns(ids=drop is None)
    for name in frame.columns:
        col = frame[name]
        if drop is not None and name in drop:
            columns.left_out.append(name)
        elif name in categorical:
            columns.categorical.append(name)
        else:
            kind = _kind(col, where)
            if drop is None and _looks_like_id(col, kind):
                columns.left_out.append(name)
            elif kind == "categorical":
                columns.categorical.append(name)
            else:
                columns.numeric.append(name)
                if kind == "date":
                    columns.dates.append(name)
    if not columns.numeric and not columns.categorical:
        raise DataError(f"{where} has no feature column left besides the target: {', '.join(columns.left_out)} "
                        f"{'look like ids' if columns.ids else 'are dropped'}; set dataset.drop=[] to keep them")
    return columns


def _kind(col: Any, where: Where) -> str:
    """numeric, date or categorical, by the column's type and values; a DataError for numbers with text cells."""
    import pandas as pd

    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    present = col.dropna()
    if present.map(lambda v: isinstance(v, (bool, np.bool_))).all():  # TRUE/FALSE with empty cells: pandas keeps objects
        return "categorical"
    if _mostly_numbers(col):
        _as_numbers(col, where, f"column '{col.name}' of {where} holds numbers",
                    "correct it (an empty cell means missing), or list the column in dataset.categorical if its values are categories")
        return "numeric"  # numbers stored as text (e.g. a Parquet string column): read as numbers
    present = present.astype(str)
    if len(present) and present.str.fullmatch(ISO_DATE).all() and _days(present).notna().all():
        return "date"
    return "categorical"


def _looks_like_id(col: Any, kind: str) -> bool:
    """Every row has its own value, and the values are text or a run of consecutive integers (row numbers)."""
    import pandas as pd

    if len(col) < 2 or col.isna().any() or col.nunique() != len(col):
        return False
    if kind == "categorical":
        return not pd.api.types.is_bool_dtype(col.dtype)
    return pd.api.types.is_integer_dtype(col.dtype) and int(col.max()) - int(col.min()) + 1 == len(col)


def _numbers_and_codes(frame: Any, columns: Columns) -> Any:
    """The feature columns ready for ``raw_features``: numbers (dates as days) as floats, categories as they are."""
    import pandas as pd

    table = {name: _days(frame[name]) if name in columns.dates else pd.to_numeric(frame[name], errors="coerce")
             for name in columns.numeric}
    table.update({name: frame[name] for name in columns.categorical})
    return pd.DataFrame(table)


def _days(col: Any) -> Any:
    """ISO date text or timestamps -> float days since 1970-01-01 (NaN where missing or not a date)."""
    import pandas as pd

    stamps = pd.to_datetime(col, format="ISO8601", errors="coerce", utc=True).dt.tz_localize(None)
    return (stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)


def _mostly_numbers(col: Any) -> bool:
    """Whether at least half of the column's present cells are numbers written as text."""
    import pandas as pd

    present = col.dropna()
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.5


def _as_numbers(col: Any, where: Where, says: str, fix: str) -> Any:
    """The column as numbers (NaN where missing), or a DataError naming the first cell that is text:
    "<says>, but row 7 has 'n.a.'; <fix>"."""
    import pandas as pd

    values = pd.to_numeric(col, errors="coerce")
    text = np.flatnonzero((values.isna() & col.notna()).to_numpy())
    if len(text):
        row = int(text[0])
        more = f" (and {len(text) - 1} more cell(s))" if len(text) > 1 else ""
        raise DataError(f"{says}, but {where.row(row)} has {col.iloc[row]!r}{more}; {fix}")
    return values


def _sorted(values: Any) -> list:
    """Class labels in a stable order: sorted (numbers by value, text alphabetically)."""
    labels = [v.item() if hasattr(v, "item") else v for v in values]
    try:
        return sorted(labels)
    except TypeError:  # labels of mixed types (a Parquet object column)
        return sorted(labels, key=str)


def _listed(labels: list, most: int = 6) -> str:
    shown = ", ".join(str(c) for c in labels[:most])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > most else "")


def _inferred(target: str, task: str, classes: list, columns: Columns) -> str:
    """One line of what dataset=csv made of the table, so a surprise shows before any training."""
    if task == "regression":
        what = "regression (centered and standardized on the train part; metrics in its units)"
    else:
        what = f"{task}, {len(classes)} classes: " + _listed([f"{c}={i}" for i, c in enumerate(classes)])
    kinds = [f"{len(columns.numeric) - len(columns.dates)} numeric", f"{len(columns.categorical)} categorical"]
    if columns.dates:
        kinds.append(f"{len(columns.dates)} date ({', '.join(columns.dates)})")
    line = f"dataset=csv: target '{target}' is {what}; features: {', '.join(kinds)}"
    if columns.left_out:
        line += f"; left out: {', '.join(columns.left_out)}" + (" (ids: every value different; dataset.drop=[] keeps them)"
                                                                 if columns.ids else " (dataset.drop)")
    return line
