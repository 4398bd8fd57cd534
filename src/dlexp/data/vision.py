"""The course's image datasets through torchvision's own dataset classes and on-disk formats.

MNIST and Fashion-MNIST are IDX files (``<root>/<Class>/raw/``), CIFAR-10/100 the
python pickle batches (``<root>/cifar-10-batches-py/``, ``<root>/cifar-100-python/``).
Files are downloaded into ``dataset.root`` on first use; the default root is the
cache dir ``$DLEXP_DATA_DIR`` or ``~/.cache/dlexp/data``. Each class's whole
``.data``/``.targets`` arrays become one tensor per split, once: no per-example
transforms (see ``dlexp.data.batching``).
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from dlexp.data.base import DATASETS, Source
from dlexp.data.preprocess import Normalize, Resize
from dlexp.errors import DataError

DEFAULT_ROOT = "~/.cache/dlexp/data"
DOWNLOAD_TIMEOUT_S = 60  # per socket operation, so a firewalled network fails instead of hanging


@dataclass(frozen=True)
class VisionSpec:
    cls: str  # torchvision.datasets class name
    folder: str  # where the class looks under root
    files: tuple[str, ...]  # what must be there
    num_classes: int
    mean: tuple[float, ...]  # published per-channel statistics of the training set
    std: tuple[float, ...]


_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SPECS = {
    "mnist": VisionSpec("MNIST", "MNIST/raw", _IDX, 10, (0.1307,), (0.3081,)),
    "fashion_mnist": VisionSpec("FashionMNIST", "FashionMNIST/raw", _IDX, 10, (0.2860,), (0.3530,)),
    "cifar10": VisionSpec(
        "CIFAR10", "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
        10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": VisionSpec(
        "CIFAR100", "cifar-100-python", ("train", "test", "meta"), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    ),
}


def data_root(root: Optional[str]) -> Path:
    """``dataset.root``, else $DLEXP_DATA_DIR, else ~/.cache/dlexp/data."""
    return Path(root or os.environ.get("DLEXP_DATA_DIR") or DEFAULT_ROOT).expanduser()


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _archive_hint(spec: VisionSpec, root: Path) -> str:
    import torchvision.datasets

    tarball = getattr(getattr(torchvision.datasets, spec.cls), "filename", None)  # CIFAR ships as one archive
    return f" (or {tarball} in {root})" if tarball else " (or the same names + .gz)"


def _open(name: str, spec: VisionSpec, root: Path, download: bool, train: bool) -> Any:
    """The torchvision dataset for one split; a missing, undownloadable or corrupt file is a DataError."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, spec.cls)
    folder = root / spec.folder
    _unpack_archives(spec, cls, root)
    missing = [f for f in spec.files if not (folder / f).is_file()]
    if missing and download:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                return cls(str(root), train=train, download=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision wraps some in RuntimeError
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise DataError(
                f"could not download {name} ({reason}); place {', '.join(spec.files)} in {folder}"
                f"{_archive_hint(spec, root)}, or set dataset.root=<folder that has {spec.folder}/>"
            ) from None
    if missing:
        raise DataError(
            f"{name} files missing in {folder}: {', '.join(missing)}; place them there{_archive_hint(spec, root)}, "
            f"set dataset.root=<folder that has {spec.folder}/>, or set dataset.download=true"
        )
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError as err:
        raise DataError(_corrupt_message(name, spec, root, cls) or f"could not read {name} from {folder}: {err}") from None


def _unpack_archives(spec: VisionSpec, cls: Any, root: Path) -> None:
    """Archives placed by hand (MNIST's .gz IDX files, CIFAR's .tar.gz) are unpacked, no download needed."""
    from torchvision.datasets.utils import extract_archive

    folder = root / spec.folder
    for f in spec.files:
        if not (folder / f).is_file() and (folder / f"{f}.gz").is_file():
            extract_archive(str(folder / f"{f}.gz"), str(folder))
    tarball = root / getattr(cls, "filename", "")  # CIFAR's cifar-10-python.tar.gz
    if hasattr(cls, "filename") and tarball.is_file() and not all((folder / f).is_file() for f in spec.files):
        extract_archive(str(tarball), str(root))


def _corrupt_message(name: str, spec: VisionSpec, root: Path, cls: Any) -> Optional[str]:
    """torchvision's CIFAR classes md5-check every file; say which ones fail and what to do."""
    from torchvision.datasets.utils import check_integrity

    expected = getattr(cls, "train_list", []) + getattr(cls, "test_list", [])
    if hasattr(cls, "meta"):
        expected = expected + [[cls.meta["filename"], cls.meta["md5"]]]
    bad = [f for f, md5 in expected if not check_integrity(str(root / spec.folder / f), md5)]
    if not bad:
        return None
    return (
        f"{name} file(s) {', '.join(bad)} in {root / spec.folder} fail the published md5 checksum (corrupt or not the "
        f"original files); delete them and run again with dataset.download=true, or place the original files there"
    )


def _tensors(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset's whole arrays as (N, C, H, W) float in [0, 1] and (N,) int64 labels."""
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    x = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, H, W) gray or (N, H, W, C) RGB
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return x.float().div_(255.0).contiguous(), y


def load_vision(name: str, root: Optional[str], download: bool, resize: Optional[str], normalize: str) -> Source:
    spec = SPECS[name]
    base = data_root(root)
    (x_train, y_train), (x_test, y_test) = (_tensors(_open(name, spec, base, download, train)) for train in (True, False))
    for y in (y_train, y_test):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= spec.num_classes):
            raise DataError(f"{name} labels in {base / spec.folder} must be in [0, {spec.num_classes}); the files are not {name}")
    return Source(
        train=(x_train, y_train),
        test=(x_test, y_test),
        task="classification",
        num_classes=spec.num_classes,
        normalize=normalize,
        stats=(spec.mean, spec.std),
        resize=resize,
    )


# One builder per dataset: the keys are the same, the files differ.
# normalize: channel = statistics of this run's train split; dataset = the published ones; none.


@DATASETS.register("mnist")
def mnist(*, root: Optional[str] = None, download: bool = True, resize: Resize = "auto", normalize: Normalize = "channel") -> Source:
    """LeCun's handwritten digits: 60,000 + 10,000 gray 28x28 images, 10 classes."""
    return load_vision("mnist", root, download, resize, normalize)


@DATASETS.register("fashion_mnist")
def fashion_mnist(
    *, root: Optional[str] = None, download: bool = True, resize: Resize = "auto", normalize: Normalize = "channel"
) -> Source:
    """Zalando's clothing images: 60,000 + 10,000 gray 28x28 images, 10 classes."""
    return load_vision("fashion_mnist", root, download, resize, normalize)


@DATASETS.register("cifar10")
def cifar10(*, root: Optional[str] = None, download: bool = True, resize: Resize = "auto", normalize: Normalize = "channel") -> Source:
    """50,000 + 10,000 RGB 32x32 images, 10 classes."""
    return load_vision("cifar10", root, download, resize, normalize)


@DATASETS.register("cifar100")
def cifar100(*, root: Optional[str] = None, download: bool = True, resize: Resize = "auto", normalize: Normalize = "channel") -> Source:
    """50,000 + 10,000 RGB 32x32 images, 100 fine classes."""
    return load_vision("cifar100", root, download, resize, normalize)
