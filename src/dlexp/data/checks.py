"""Content checks on loaded data, before any training.

A bad value in the data otherwise surfaces late and disguised: a NaN input makes
the first loss NaN, which reads as a learning rate that is too high. These
checks name the split, how many values are bad, and what to do about it.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from dlexp.errors import DataError


def numeric_array(array: np.ndarray, key: str, path: str) -> np.ndarray:
    """``array`` (one array of an .npz file) if it holds numbers or booleans, else a DataError naming it."""
    if array.dtype.kind in "biuf":
        return array
    kind = {"U": "strings", "S": "byte strings", "O": "Python objects"}.get(array.dtype.kind, f"dtype {array.dtype}")
    fix = "map each label to a class index 0, 1, ... (e.g. np.unique(y, return_inverse=True)[1])" if key.startswith("y") else (
        "convert it to numbers (e.g. x.astype(np.float32))"
    )
    raise DataError(f"{path}: array '{key}' holds {kind}, not numbers; {fix}")


def check_source(source: Any, name: str) -> None:
    """Every split of a loaded ``Source`` is non-empty and free of NaN/inf (inputs and float targets).

    Sources with their own ``preprocess`` (tabular data) keep NaN as "missing" for it to
    fill in, so only inf is refused in their inputs.
    """
    for split in ("train", "val", "test"):
        pool = getattr(source, split)
        if pool is None or not isinstance(pool, tuple):  # absent, or image files decoded later (uint8: finite)
            continue
        x, y = pool
        if len(x) == 0:
            hint = "check its files and settings" if split == "train" else "drop it or give it examples"
            raise DataError(f"the {split} split of dataset '{name}' is empty; {hint}")
        what, allow_nan = f"the {split} inputs of dataset '{name}'", source.preprocess is not None
        # a chunk of rows at a time: the check's temporaries (isfinite builds several) stay O(chunk), and
        # memory-mapped rows are never all read at once
        chunks = x.chunks(CHUNK_ROWS) if hasattr(x, "chunks") else (x[i : i + CHUNK_ROWS] for i in range(0, len(x), CHUNK_ROWS))
        for start, chunk in zip(range(0, len(x), CHUNK_ROWS), chunks):
            _check_finite(chunk, what, allow_nan=allow_nan, offset=start)
        if y.is_floating_point():
            _check_finite(y, f"the {split} targets of dataset '{name}'", allow_nan=False)
        _check_targets(y, source, f"the {split} targets of dataset '{name}'")


def check_fields(source: Any, name: str, tasks: Any, normalize_modes: Any) -> None:
    """A ``Source``'s own settings (a user's dataset builder makes them): a known task and normalization."""
    if source.task not in tasks:
        raise DataError(f"dataset '{name}' returns a Source of task '{source.task}', which is not a task; use one of "
                        f"{', '.join(sorted(tasks))} (or register yours)")
    if source.normalize not in normalize_modes:
        raise DataError(f"dataset '{name}' returns a Source with normalize='{source.normalize}'; use one of "
                        f"{', '.join(normalize_modes)}")


def _check_targets(y: Tensor, source: Any, what: str) -> None:
    """Class indices for classification (integers in 0 .. num_classes - 1), 0/1 for binary: what the losses
    take; otherwise the first step fails deep in the loss, far from the data that caused it."""
    if source.task == "classification":
        if y.is_floating_point() or y.dtype == torch.bool:
            raise DataError(f"{what} are {y.dtype}, but a classification task takes class indices (int64 0, 1, ...); "
                            "convert them (e.g. y.long()), or make the task regression")
        low, high = (int(y.min()), int(y.max())) if len(y) else (0, 0)
        if low < 0 or high >= source.num_classes:
            raise DataError(f"{what} hold class {low if low < 0 else high}, outside 0 .. {source.num_classes - 1} "
                            f"for num_classes={source.num_classes}; give the Source num_classes={max(high + 1, 1)}, "
                            "or map the labels to 0 .. classes - 1")
    elif source.task == "binary" and len(y) and not bool(((y == 0) | (y == 1)).all()):
        raise DataError(f"{what} hold values other than 0 and 1, which a binary task takes; use classification or "
                        "regression")


CHUNK_ROWS = 4096


def _check_finite(t: Tensor, what: str, *, allow_nan: bool, offset: int = 0) -> None:
    if not t.is_floating_point():
        return  # integers cannot hold NaN or inf
    bad = torch.isinf(t) if allow_nan else ~torch.isfinite(t)
    count = int(bad.sum())
    if count == 0:
        return
    first: Optional[int] = offset + int(bad.reshape(len(t), -1).any(dim=1).nonzero()[0, 0])
    kinds = "inf" if allow_nan else "NaN or inf"
    raise DataError(
        f"{what} hold {count} {kinds} value(s) (first in example {first}); "
        f"drop those examples or fill the values in (e.g. with the column mean) before training"
    )
