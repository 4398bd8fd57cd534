"""Bring your own tensors: a ``.npz`` or ``.pt`` file with ``x`` and ``y``, plus optional
``x_val``/``y_val`` and ``x_test``/``y_test``; or a directory of ``.npy`` files with
those names (``x.npy``, ``y.npy``, ``x_val.npy``, ...). ``x`` may have any shape per
example: vectors (N, D), sequences (N, T, D), images (N, C, H, W).

With ``mmap=true`` (a directory only) the ``x`` arrays stay on disk, opened with
``np.load(mmap_mode="r")``: every batch gathers its rows from the file, so memory
holds one batch of inputs, not the data set (targets are read whole: they are small).
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
from torch import Tensor

from dlexp.config.constraints import Fraction, PositiveInt, Seed
from dlexp.data.base import DATASETS, Source
from dlexp.data.checks import check_source, numeric_array
from dlexp.data.preprocess import Normalize
from dlexp.data.splits import carve_test, partition_in_place
from dlexp.errors import ConfigError, DataError

ArrayTask = Literal["auto", "classification", "regression", "binary"]


@dataclass
class MemmapRows:
    """Rows ``index`` of an (N, *shape) array opened with ``np.load(mmap_mode="r")``, read on demand.

    ``rows[key]`` (an int tensor of positions, or a slice) reads those rows from the file
    as one float32 tensor: the batches of a ``TensorLoader`` over it gather from disk.
    """

    array: np.ndarray  # np.memmap, (N, *shape), any numeric dtype
    index: np.ndarray  # (n,) int64 rows of ``array`` that this pool holds
    device: torch.device = torch.device("cpu")  # where TensorLoader keeps the shuffle order

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.array.shape[1:])

    def __getitem__(self, key: Union[Tensor, slice]) -> Tensor:
        rows = self.index[key.cpu().numpy() if isinstance(key, Tensor) else key]
        return torch.from_numpy(np.asarray(self.array[rows], dtype=np.float32))  # (len(rows), *shape)

    def subset(self, idx: Any) -> "MemmapRows":
        return replace(self, index=self.index[np.asarray(idx, dtype=np.int64)])

    def chunks(self, size: int) -> Any:
        """Every row once, ``size`` at a time, as float32 tensors (for fitting statistics)."""
        return (self[slice(i, i + size)] for i in range(0, len(self), size))


def _load_dir(folder: Path, mmap: bool) -> dict[str, Any]:
    """``<name>.npy`` files of ``folder``; x arrays memory-mapped when ``mmap``."""
    data: dict[str, Any] = {}
    for file in sorted(folder.glob("*.npy")):
        memmap = mmap and file.stem.startswith("x")
        data[file.stem] = np.load(file, mmap_mode="r" if memmap else None, allow_pickle=False)
        if not memmap:
            data[file.stem] = torch.from_numpy(data[file.stem])
    return data


def _load(path: str, mmap: bool = False) -> dict[str, Any]:
    file = Path(path).expanduser()
    if file.is_dir():
        try:
            return _load_dir(file, mmap)
        except (ValueError, OSError) as err:
            raise DataError(f"cannot read the .npy files in {path}: {str(err).strip().splitlines()[0]}") from None
    if mmap:
        raise ConfigError(f"dataset.mmap=true needs dataset.path to be a directory of .npy files (x.npy, y.npy), not {path}")
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
    except (ValueError, OSError, RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot read {path} ({first}): is it a whole .npz/.pt file? Save it again") from None
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


def _inputs(x: Any) -> Union[Tensor, MemmapRows]:
    """Float inputs: a memory-mapped array stays on disk; a float32 tensor is used as is (``.float()`` copies
    only other dtypes)."""
    if isinstance(x, np.ndarray):
        return MemmapRows(x, np.arange(len(x)))
    return x.float()


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
    test_fraction: Fraction = 0.2,
    test_seed: Seed = 0,
    mmap: bool = False,
) -> Source:
    """``task=auto``: integer y -> classification, float y -> regression, bool y -> binary (logistic).
    Without x_test/y_test, ``test_fraction`` of the examples is held out as the test set (stratified by
    class where every class has enough examples), fixed by ``test_seed``.
    ``mmap``: leave the x arrays of a directory of .npy files on disk (see the module docstring)."""
    data = _load(path, mmap)
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
        parts[part] = (_inputs(x), _targets(y, task, yk))
    outputs = _outputs(parts, task, num_classes, path)
    if "test" not in parts and test_fraction > 0:
        # the file's arrays checked before they are shuffled apart, so that a bad value is named by its row in x
        check_source(Source(train=parts["train"], val=parts.get("val"), test=None, task=task, num_classes=outputs), "arrays")
        x, y = parts["train"]
        pool_idx, test_idx = carve_test(y, task, test_fraction, test_seed)
        if isinstance(x, MemmapRows):  # row numbers only: the inputs stay on disk
            parts["train"], parts["test"] = (x.subset(pool_idx), y[pool_idx]), (x.subset(test_idx), y[test_idx])
        else:  # the file's own tensors, reordered in place (test rows last): no second copy of the data
            parts["train"], parts["test"] = partition_in_place((x, y), pool_idx, test_idx)
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
