"""Your own images: a folder with one sub-folder per class, or a CSV of image paths and numeric targets.

Images are decoded once, in parallel DataLoader workers, into one tensor when the
whole set fits in ``max_memory_mb`` (then batched like every in-memory dataset).
A set too big for memory stays on disk as ``ImageFiles`` and is streamed by a
``StreamLoader``: DataLoader workers decode, the device normalizes and augments.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from dlexp.config.constraints import Fraction, NonNegativeInt, PositiveInt, Seed
from dlexp.data.base import DATASETS, Batch, Source
from dlexp.data.batching import ShuffleState
from dlexp.data.preprocess import Normalize, Normalizer, Resize
from dlexp.data.splits import carve_test
from dlexp.errors import ConfigError, DataError

STATS_MAX_IMAGES = 5000  # channel statistics of a streamed train split come from at most this many of its images
DECODE_BATCH = 256


class _ImageDataset(Dataset):
    """(C, H, W) float in [0, 1] and the target, for one image file (torchvision's PIL loader and transforms)."""

    def __init__(self, paths: list[str], y: Tensor, size: tuple[int, int], channels: int):
        from torchvision import transforms

        self.paths, self.y, self.mode = paths, y, "L" if channels == 1 else "RGB"
        self.transform = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.paths[i]) as image:
                image = image.convert(self.mode)
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"cannot read image {self.paths[i]}: {err}") from None
        return self.transform(image), self.y[i]


@dataclass
class ImageFiles:
    """Image files and their targets, read on demand."""

    paths: list[str]
    y: Tensor  # (N,) int64 classes, or (N, 1) float targets
    size: tuple[int, int]  # (H, W) every image is resized to
    channels: int  # 1 (gray) or 3 (RGB)
    num_workers: int = 2  # DataLoader decoding processes

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: Any) -> "ImageFiles":
        idx = np.asarray(idx, dtype=np.int64)
        return replace(self, paths=[self.paths[i] for i in idx], y=self.y[torch.from_numpy(idx)])

    def dataset(self) -> _ImageDataset:
        return _ImageDataset(self.paths, self.y, self.size, self.channels)

    def batches(self, batch_size: int = DECODE_BATCH, **kw: Any) -> DataLoader:
        return DataLoader(self.dataset(), batch_size=batch_size, num_workers=self.num_workers, **kw)

    def load_all(self) -> Tensor:
        """Decode every image once: (N, C, H, W) float in [0, 1]."""
        try:
            return torch.cat([x for x, _ in self.batches()]) if self.paths else torch.zeros(0, self.channels, *self.size)
        except DataError as err:  # re-raised from a worker with its traceback: keep the one-line message
            raise DataError(str(err).strip().splitlines()[-1].removeprefix("dlexp.errors.DataError: ")) from None


class StreamLoader(ShuffleState):
    """Batches of ``ImageFiles`` decoded by DataLoader workers, then on the device: the test shift
    (if any), the normalization fitted on the train split, and augmentation (training only)."""

    def __init__(
        self,
        files: ImageFiles,
        batch_size: int,
        *,
        device: torch.device,
        preprocess: Callable[[Tensor], Tensor],
        shuffle: bool = False,
        seed: int = 0,
        augment: Optional[Callable[[Tensor, int], Tensor]] = None,
        shift: Optional[Callable[[Tensor], Tensor]] = None,
        shard: tuple[int, int] = (0, 1),
    ):
        self.files, self.batch_size, self.device = files, batch_size, device
        self.preprocess, self.augment, self.shift = preprocess, augment, shift
        self._init_order(seed)  # the shuffle order, as in TensorLoader
        self.epoch = 0  # DistributedSampler's epoch: its shuffle is seeded by (seed, epoch)
        dataset: Dataset = files.dataset()
        rank, world = shard
        if world > 1 and not shuffle:  # evaluation: every world-th image, no padding and no repeats
            dataset = Subset(dataset, range(rank, len(dataset), world))
        self.sampler = _sampler(dataset, shuffle, self.generator, seed, shard)
        self.loader = DataLoader(
            dataset, batch_size=batch_size // world, sampler=self.sampler,  # batch_size is global
            num_workers=files.num_workers, pin_memory=device.type == "cuda",
        )

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def num_examples(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()

    def state_dict(self, mid_epoch: bool = False) -> dict[str, Any]:
        """The generator's state, and the DistributedSampler's epoch (the one running, if ``mid_epoch``)."""
        return {**super().state_dict(mid_epoch), "epoch": self.epoch - int(mid_epoch)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.epoch = state.get("epoch", 0)

    def batches(self, skip: int = 0) -> Iterator[Batch]:
        """One epoch. Resuming mid-epoch restores ``epoch_start_state`` and skips batches (decoded again)."""
        self._start_epoch()
        seed = self._epoch_augment_seed()
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        for i, (x, y) in enumerate(self.loader):  # the sampler draws this epoch's order from self.generator
            if i < skip:
                continue
            batch = Batch(x, y).to(self.device, non_blocking=True)
            x = batch.inputs
            if self.shift is not None:
                x = self.shift(x)
            x = self.preprocess(x)
            if self.augment is not None:
                x = self.augment(x, seed + i)
            yield Batch(x, batch.targets)


def _sampler(dataset: Dataset, shuffle: bool, generator: torch.Generator, seed: int, shard: tuple[int, int]) -> Any:
    """Training: a RandomSampler on the loader's generator, or under torchrun a DistributedSampler (equal
    shards; the few images past a multiple of the world size are left out each epoch). Evaluation: none."""
    from torch.utils.data import DistributedSampler, RandomSampler

    rank, world = shard
    if not shuffle:
        return None
    if world == 1:
        return RandomSampler(dataset, generator=generator)
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)


def fit_stream_normalizer(files: ImageFiles, mode: str, stats: Optional[tuple]) -> Normalizer:
    """Normalization for streamed images, fitted on (at most STATS_MAX_IMAGES of) the train split."""
    if mode in ("none", "dataset"):
        return Normalizer.fit(torch.zeros(1, files.channels, 1, 1), mode, stats)
    if mode != "channel":
        raise ConfigError(f"dataset.normalize={mode} needs the images in memory; use channel, or dataset.in_memory=true")
    pick = np.random.default_rng(0).permutation(len(files))[:STATS_MAX_IMAGES]
    total = torch.zeros(files.channels, dtype=torch.float64)
    squares = torch.zeros(files.channels, dtype=torch.float64)
    count = 0
    for x, _ in files.subset(np.sort(pick)).batches():
        x = x.double()
        total += x.sum(dim=(0, 2, 3))
        squares += (x**2).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    variance = (squares / count - mean**2).clamp_min(0) * count / max(count - 1, 1)  # unbiased, as Tensor.std
    std = variance.sqrt().clamp_min(1e-6)
    return Normalizer(mean=mean.float().view(-1, 1, 1), std=std.float().view(-1, 1, 1))


# -- building a Source from image files ----------------------------------------


def _first_size(path: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    return height, width


Channels = Literal[1, 3]  # gray or RGB
ImageTask = Literal["auto", "regression", "binary", "classification"]


def image_source(
    parts: dict[str, tuple[list[str], Tensor]],
    *,
    task: str,
    num_classes: int,
    image_size: Optional[int],
    resize: Optional[str],
    channels: int,
    test_fraction: float,
    test_seed: int,
    normalize: str,
    in_memory: Optional[bool],
    max_memory_mb: int,
    num_workers: int,
) -> Source:
    """``parts`` maps train (and optionally val, test) to (paths, targets); carves a test split when none is given."""
    paths, y = parts["train"]
    if "test" not in parts and test_fraction > 0:
        pool_idx, test_idx = carve_test(y, task, test_fraction, test_seed)
        parts = {**parts, "train": ([paths[i] for i in pool_idx], y[pool_idx]), "test": ([paths[i] for i in test_idx], y[test_idx])}
    size = (image_size, image_size) if image_size else _first_size(parts["train"][0][0])
    files = {k: ImageFiles(p, t, size, channels, num_workers) for k, (p, t) in parts.items()}
    need_mb = sum(len(f) for f in files.values()) * channels * size[0] * size[1] * 4 / 2**20  # float32 tensors
    fits = need_mb <= max_memory_mb if in_memory is None else in_memory
    pools: dict[str, Any] = {k: (f.load_all(), f.y) for k, f in files.items()} if fits else files
    return Source(
        train=pools["train"], val=pools.get("val"), test=pools.get("test"),
        task=task, num_classes=num_classes, normalize=normalize, center_targets=True, resize=resize,
    )


def _folder_samples(folder: Path, class_to_idx: Optional[dict[str, int]] = None) -> tuple[list[str], Tensor, list[str]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, found = find_classes(folder)
        samples = make_dataset(folder, class_to_idx or found, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:
        raise DataError(f"{str(err).strip().splitlines()[0]} (image folders need one sub-folder of images per class)") from None
    return [p for p, _ in samples], torch.tensor([c for _, c in samples], dtype=torch.int64), classes


@DATASETS.register("image_folder")
def image_folder(
    *,
    root: str,
    image_size: Optional[PositiveInt] = None,  # pixels per side; None = the first image's size
    channels: Channels = 3,
    test_fraction: Fraction = 0.2,
    test_seed: Seed = 0,
    resize: Resize = "auto",  # "auto": up to the model's minimum side when smaller; or a side in pixels; null keeps
    normalize: Normalize = "channel",
    in_memory: Optional[bool] = None,
    max_memory_mb: PositiveInt = 2048,
    num_workers: NonNegativeInt = 2,
) -> Source:
    """``root/<class>/<image>``: one sub-folder per class. With ``root/train/<class>/`` plus ``root/val/``
    and/or ``root/test/``, those splits are used as given."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(f"dataset.root={root} is not a folder; point it at a folder with one sub-folder of images per class")
    given = [s for s in ("val", "test") if (base / s).is_dir()]
    if (base / "train").is_dir() and given:
        paths, y, classes = _folder_samples(base / "train")
        parts = {"train": (paths, y)}
        mapping = {c: i for i, c in enumerate(classes)}
        for split in given:
            parts[split] = _folder_samples(base / split, mapping)[:2]
    else:
        paths, y, classes = _folder_samples(base)
        parts = {"train": (paths, y)}
    if len(classes) < 2:
        raise DataError(f"{base} has {len(classes)} class folder(s); classification needs at least 2")
    return image_source(
        parts, task="classification", num_classes=len(classes), image_size=image_size, resize=resize, channels=channels,
        test_fraction=test_fraction, test_seed=test_seed, normalize=normalize, in_memory=in_memory,
        max_memory_mb=max_memory_mb, num_workers=num_workers,
    )


def _read_targets(frame: Any, column: str, task: str, where: str) -> tuple[Tensor, str, int]:
    import pandas as pd

    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(f"column '{column}' of {where} needs a number in every row; row {row + 1} has {frame[column].iloc[row]!r}")
    arr = values.to_numpy(dtype=np.float64)
    if task == "auto":
        task = "binary" if set(np.unique(arr)) <= {0.0, 1.0} else "regression"
    if task == "binary":
        if not set(np.unique(arr)) <= {0.0, 1.0}:
            raise DataError(f"dataset.task=binary needs 0/1 targets, but column '{column}' of {where} has other values")
        return torch.tensor(arr, dtype=torch.float32).unsqueeze(1), task, 1
    if task == "classification":
        if np.any(arr != np.round(arr)) or arr.min() < 0:
            raise DataError(f"dataset.task=classification needs class indices 0, 1, ... in column '{column}' of {where}")
        return torch.tensor(arr, dtype=torch.int64), task, int(arr.max()) + 1
    return torch.tensor(arr, dtype=torch.float32).unsqueeze(1), task, 1  # regression


@DATASETS.register("image_csv")
def image_csv(
    *,
    root: str,
    csv: str = "labels.csv",
    image_column: Optional[str] = None,
    target_column: Optional[str] = None,
    task: ImageTask = "auto",
    image_size: Optional[PositiveInt] = None,  # pixels per side; None = the first image's size
    channels: Channels = 3,
    test_fraction: Fraction = 0.2,
    test_seed: Seed = 0,
    resize: Resize = "auto",  # see image_folder
    normalize: Normalize = "channel",
    in_memory: Optional[bool] = None,
    max_memory_mb: PositiveInt = 2048,
    num_workers: NonNegativeInt = 2,
) -> Source:
    """A CSV with an image path (relative to ``root``) and a numeric target per row. ``task=auto``:
    0/1 targets give logistic regression (BCE, accuracy), other numbers regression (MSE, RMSE)."""
    import pandas as pd

    base = Path(root).expanduser()
    csv_path = base / csv if (base / csv).is_file() else Path(csv).expanduser()
    if not csv_path.is_file():
        raise DataError(f"dataset.csv={csv} not found in {base} or the working directory")
    try:
        frame = pd.read_csv(csv_path)
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read {csv_path} as CSV: {str(err).strip().splitlines()[0]}") from None
    columns = list(frame.columns)
    image_col = image_column or columns[0]
    target_col = target_column or columns[-1]
    for key, col in (("image_column", image_col), ("target_column", target_col)):
        if col not in columns:
            raise DataError(f"dataset.{key}='{col}' is not a column of {csv_path}; columns: {', '.join(map(str, columns))}")
    if image_col == target_col or frame.empty:
        raise DataError(f"{csv_path} needs an image column and a target column, and at least one row")
    y, task, outputs = _read_targets(frame, target_col, task, str(csv_path))
    paths = [str(p) if Path(p).is_absolute() else str(base / p) for p in frame[image_col].astype(str)]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError(f"{len(missing)} image file(s) listed in {csv_path} do not exist, e.g. {missing[0]}")
    return image_source(
        {"train": (paths, y)}, task=task, num_classes=outputs, image_size=image_size, resize=resize, channels=channels,
        test_fraction=test_fraction, test_seed=test_seed, normalize=normalize, in_memory=in_memory,
        max_memory_mb=max_memory_mb, num_workers=num_workers,
    )
