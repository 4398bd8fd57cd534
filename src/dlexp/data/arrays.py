"""Bring your own tensors: a ``.npz`` or ``.pt`` file with ``x`` and ``y``, plus optional
``x_val``/``y_val`` and ``x_test``/``y_test``. ``x`` may have any shape per example:
vectors (N, D), sequences (N, T, D), images (N, C, H, W).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
import torch
from torch import Tensor

from dlexp.constraints import Fraction, PositiveInt, Seed
from dlexp.data.base import DATASETS, Source
from dlexp.data.checks import numeric_array
from dlexp.data.preprocess import Normalize
from dlexp.data.splits import carve_test
from dlexp.errors import DataError

ArrayTask = Literal["auto", "classification", "regression", "binary"]


def _load(path: str) -> dict[str, Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"dataset.path={path} does not exist; give a .npz or .pt file with arrays x and y")
    try:
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as npz:
                data: Any = {k: torch.from_numpy(numeric_array(_read_array(npz, k, path), k, path)) for k in npz.files}
        elif file.suffix in (".pt", ".pth"):
            data = torch.load(file, map_location="cpu", weights_only=True)
        else:
            raise DataError(f"dataset.path={path} must end in .npz, .pt or .pth")
    except (ValueError, OSError, RuntimeError, EOFError) as err:
        raise DataError(f"cannot read {path}: {str(err).strip().splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a dict of arrays (x, y, ...), not a {type(data).__name__}")
    try:
        return {k: torch.as_tensor(v) for k, v in data.items()}
    except (TypeError, ValueError, RuntimeError):
        bad = next(k for k, v in data.items() if not isinstance(v, Tensor))
        raise DataError(f"{path}: '{bad}' is not an array of numbers; save tensors of numbers (class indices for labels)") from None


def _read_array(npz: Any, key: str, path: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError:  # an object array: np.load refuses to unpickle it
        raise DataError(f"{path}: array '{key}' holds Python objects, not numbers; save it with a numeric dtype") from None


def _infer_task(y: Tensor) -> str:
    if y.dtype == torch.bool:
        return "binary"
    return "regression" if y.is_floating_point() else "classification"


def _targets(y: Tensor, task: str, key: str) -> Tensor:
    if task == "classification":
        if y.dim() != 1 or (y.is_floating_point() and not torch.equal(y, y.round())):
            raise DataError(f"classification needs '{key}' as (N,) class indices, got {tuple(y.shape)} {y.dtype}")
        return y.long()
    y = y.float()
    if task == "binary" and not bool(((y == 0) | (y == 1)).all()):
        raise DataError(f"dataset.task=binary needs 0/1 values in '{key}'")
    return y.unsqueeze(1) if y.dim() == 1 else y.reshape(len(y), -1)  # (N, targets)


@DATASETS.register("arrays")
def arrays(
    *,
    path: str,
    task: ArrayTask = "auto",
    num_classes: Optional[PositiveInt] = None,
    normalize: Normalize = "none",
    test_fraction: Fraction = 0.0,
    test_seed: Seed = 0,
) -> Source:
    """``task=auto``: integer y -> classification, float y -> regression, bool y -> binary (logistic)."""
    data = _load(path)
    if "x" not in data or "y" not in data:
        raise DataError(f"{path} must hold arrays named x and y; it has {', '.join(sorted(data)) or 'none'}")
    task = _infer_task(data["y"]) if task == "auto" else task
    parts: dict[str, tuple[Tensor, Tensor]] = {}
    for part, suffix in (("train", ""), ("val", "_val"), ("test", "_test")):
        xk, yk = f"x{suffix}", f"y{suffix}"
        if (xk in data) != (yk in data):
            raise DataError(f"{path} has {xk if xk in data else yk} without {yk if xk in data else xk}")
        if xk not in data:
            continue
        x, y = data[xk], data[yk]
        if len(x) != len(y):
            raise DataError(f"{path}: {xk} has {len(x)} rows but {yk} has {len(y)}")
        if x.shape[1:] != data["x"].shape[1:]:
            raise DataError(f"{path}: {xk} examples are {tuple(x.shape[1:])}, x examples {tuple(data['x'].shape[1:])}")
        parts[part] = (x.float(), _targets(y, task, yk))
    outputs = _outputs(parts, task, num_classes, path)
    if "test" not in parts and test_fraction > 0:
        x, y = parts["train"]
        pool_idx, test_idx = carve_test(y, task, test_fraction, test_seed)
        parts["train"], parts["test"] = (x[pool_idx], y[pool_idx]), (x[test_idx], y[test_idx])
    return Source(
        train=parts["train"], val=parts.get("val"), test=parts.get("test"),
        task=task, num_classes=outputs, normalize=normalize,
    )


def _outputs(parts: dict[str, tuple[Tensor, Tensor]], task: str, num_classes: Optional[int], path: str) -> int:
    """Model outputs: classes for classification (``num_classes`` or max label + 1), else target columns."""
    if task != "classification":
        return parts["train"][1].shape[1]
    top = max(int(y.max()) for _, y in parts.values() if len(y))
    low = min(int(y.min()) for _, y in parts.values() if len(y))
    classes = num_classes if num_classes is not None else top + 1
    if low < 0 or top >= classes:
        raise DataError(f"{path}: class labels must be in [0, {classes}), found {low}..{top}; fix y or dataset.num_classes")
    return classes
