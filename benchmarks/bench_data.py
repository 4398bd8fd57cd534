"""Data-path benchmark: dlexp's in-memory fast path against torchvision's DataLoader, and dlexp's
training epoch against a bare hand-written PyTorch loop.

Writes 60,000 (+10,000 test) 28x28 images as real IDX files into a temp dir and loads them with
torchvision's FashionMNIST class, then measures in one run:

  (a) one training epoch over the 60,000 images with the same model and batch size through
      - torchvision: FashionMNIST(transform=ToTensor+Normalize) + DataLoader, num_workers 0 and 2
      - dlexp: the whole set as one normalized tensor, batched by index (TensorLoader)
      plus the same pipelines iterated without a model (the data path alone);
  (b) dlexp's training epoch (dlexp.training.step.run_epoch: loss and metric sums on the device)
      against a bare loop (randperm, index, forward, loss, backward, step) on the same tensors.

Times are the best of --repeats interleaved runs (as timeit reports: other load only adds). Usage:
    python benchmarks/bench_data.py [--model lenet] [--batch-size 256] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

IMAGE_SHAPE = (1, 28, 28)
MEAN, STD = (0.2860,), (0.3530,)  # Fashion-MNIST's published statistics, as users pass to Normalize


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, type 0x08 (unsigned byte), the number of dims, big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fashion_mnist(root: Path, n_train: int, n_test: int) -> None:
    """Noise images with a class-dependent bright bar, in torchvision's FashionMNIST/raw layout."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 90, (n, 28, 28), dtype=np.uint8)
        rows = 2 * labels.astype(np.int64)[:, None] + np.arange(4)  # (n, 4): the bar's rows
        images[np.arange(n)[:, None], rows] = 220
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)


def model_factory(name: str) -> tuple[Callable[[], nn.Module], str]:
    """A registry model built with its builder's defaults (the YAML's values), for 1x28x28 inputs, 10 classes."""
    from dlexp.models import MODELS

    if name not in MODELS:
        sys.exit(f"unknown model '{name}'; choose one of: {', '.join(MODELS.names())}")
    return (lambda: MODELS.build(name, IMAGE_SHAPE, 10)), f"{name} (dlexp registry)"


def pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) of a DataLoader's [x, y] or a dlexp ``Batch``."""
    return (batch.inputs, batch.targets) if hasattr(batch, "inputs") else (batch[0], batch[1])


def train_batches(model: nn.Module, batches: Iterable, lr: float = 0.1) -> None:
    """The same SGD step for every pipeline in (a)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for x, y in map(pair, batches):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def touch_batches(batches: Iterable) -> None:
    """The data path alone: every batch produced, read once."""
    total = torch.zeros(())
    for x, _ in map(pair, batches):
        total += x[:, 0, 0, 0].sum()


def bare_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
    """(b)'s reference: the shortest correct PyTorch training epoch on in-memory tensors."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        loss = loss_fn(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet", help="registry model name (default lenet: the textbook LeNet-5)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per measurement; the best is shown")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: PyTorch's)")
    parser.add_argument("--n-train", type=int, default=60000)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    from dlexp.data import DATASETS
    from dlexp.data.batching import TensorLoader
    from dlexp.data.preprocess import Normalizer
    from dlexp.training.step import Pass, run_epoch
    from dlexp.tasks import build_task

    make_model, model_desc = model_factory(args.model)
    bs = args.batch_size
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_fashion_mnist(root, args.n_train, 10000)

        # dlexp's fast path: torchvision's class reads the IDX files, one tensor per split, normalized once.
        start = time.perf_counter()
        source = DATASETS.build("fashion_mnist", root=str(root), download=False, normalize="dataset")
        x = Normalizer.fit(source.train[0], "dataset", source.stats)(source.train[0])  # (60000, 1, 28, 28)
        y = source.train[1]
        load_s = time.perf_counter() - start
        ours = TensorLoader(x, y, bs, shuffle=True, seed=0)

        to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
        dataset = FashionMNIST(str(root), train=True, transform=to_tensor)
        loaders = {
            f"torchvision DataLoader, num_workers={w}": DataLoader(dataset, batch_size=bs, shuffle=True, num_workers=w)
            for w in (0, 2)
        }
        loaders["dlexp TensorLoader (in memory)"] = ours

        def fresh_model() -> nn.Module:
            torch.manual_seed(0)
            return make_model()

        task = build_task("classification")
        gen = torch.Generator().manual_seed(0)
        warm = fresh_model()  # first-call costs (allocator, kernels, worker start-up) stay out of the timings
        train_batches(warm, [(x[:bs], y[:bs])] * 3)
        touch_batches(loaders["torchvision DataLoader, num_workers=0"])
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every row alike
            for name, loader in loaders.items():
                times.setdefault(f"data only | {name}", []).append(timed(lambda: touch_batches(loader)))
                model = fresh_model()
                times.setdefault(f"epoch | {name}", []).append(timed(lambda: train_batches(model, loader)))
            model = fresh_model()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            times.setdefault("dlexp run_epoch", []).append(
                timed(lambda: run_epoch(model, ours, task, Pass(optimizer=optimizer)))
            )
            model = fresh_model()
            times.setdefault("bare loop", []).append(timed(lambda: bare_epoch(model, x, y, bs, gen)))

    best = {k: min(v) for k, v in times.items()}  # best of the repeats
    n = len(x)
    print(f"model {model_desc}, batch {bs}, {n:,} images 28x28, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}; dlexp one-time load + normalize {load_s:.2f} s")
    print(f"\n{'(a) pipeline':<62}{'seconds':>9}{'images/s':>12}{'dlexp faster by':>17}")
    fast = "dlexp TensorLoader (in memory)"
    for kind in ("data only", "epoch"):
        for name in loaders:
            key = f"{kind} | {name}"
            ratio = best[key] / best[f"{kind} | {fast}"]
            print(f"{key:<62}{best[key]:>9.3f}{n / best[key]:>12,.0f}{ratio:>16.1f}x")
    print(f"\n{'(b) training epoch on the same in-memory tensors':<62}{'seconds':>9}{'images/s':>12}{'vs bare':>17}")
    for key in ("bare loop", "dlexp run_epoch"):
        print(f"{key:<62}{best[key]:>9.3f}{n / best[key]:>12,.0f}{best[key] / best['bare loop']:>16.3f}x")

    a0 = best["epoch | torchvision DataLoader, num_workers=0"] / best[f"epoch | {fast}"]
    a2 = best["epoch | torchvision DataLoader, num_workers=2"] / best[f"epoch | {fast}"]
    b = best["dlexp run_epoch"] / best["bare loop"]
    print(f"\nratios: (a) epoch speedup vs DataLoader: {a0:.2f}x (num_workers=0), {a2:.2f}x (num_workers=2) "
          f"[goal >= 10x]; (b) dlexp / bare loop: {b:.3f}x [goal <= 1.03x]")


if __name__ == "__main__":
    main()
