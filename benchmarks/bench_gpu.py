"""GPU benchmark (make bench-gpu): images/s and MFU of dlexp's training step, eager vs bf16 vs bf16 + compile.

Synthetic data on the device, so the numbers measure the model step alone:
- ResNet-18 on CIFAR-shaped inputs (3x32x32, 10 classes, batch 512);
- LeNet on Fashion-MNIST-shaped inputs (1x28x28, 10 classes, batch 1024; the d2l book reports
  about 89k images/s for it on a V100).
Each model runs as eager fp32, bf16 autocast, and bf16 + torch.compile + channels_last, through
``dlexp.training.step.training_step`` with the Runtime's settings. FLOPs per step come from
``torch.utils.flop_counter``; MFU is achieved FLOP/s over the card's dense bf16 peak.

Then whole epochs: LeNet over 60,000 Fashion-MNIST-shaped images held in GPU memory at the book's
batch size 256, ``dlexp.training.step.run_epoch`` (TensorLoader, on-device metric sums, a divergence
check every ``Runtime.check_every`` steps) against a bare loop (randperm, index, step) on the
same tensors: the loop's overhead on a GPU, where host syncs cost most.

Without a GPU it prints why and exits 0.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

import torch

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) by card name fragment.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "V100": 125.0}


def peak_tflops(name: str) -> float:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), float("nan"))


def build(model_name: str, channels: int, size: int) -> torch.nn.Module:
    from dlexp.models import MODELS

    return MODELS.build(model_name, (channels, size, size), 10)


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one forward + backward (torch's counter, multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


# mode name -> (trainer.precision, trainer.compile, trainer.channels_last), as a run would set them
MODES: dict[str, tuple[str, Any, bool]] = {
    "fp32": ("32", False, False),
    "bf16": ("bf16", False, False),
    "bf16+compile+channels_last": ("bf16", True, True),
    "bf16+reduce-overhead+cl": ("bf16", "reduce-overhead", True),  # compile with CUDA graphs
}


def measure(model_name: str, shape: tuple[int, int, int], batch: int, mode: str, steps: int) -> dict[str, Any]:
    from dlexp.training.runtime import Runtime
    from dlexp.training.step import StepConfig, training_step
    from dlexp.tasks import Batch, build_task

    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True  # as every CUDA run sets it
    torch._dynamo.reset()  # compile each case from scratch, as a fresh process would
    precision, compile_, channels_last = MODES[mode]
    runtime = Runtime(device=device, precision=precision, compile=compile_, channels_last=channels_last)
    torch.manual_seed(0)
    model, raw = runtime.prepare_model(build(model_name, *shape[:2]))
    optimizer = torch.optim.SGD(raw.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(10, (batch,), device=device)
    data = runtime.prepare_batch(Batch(x, y))
    flops = step_flops(raw, x, y)
    task, step = build_task("classification"), StepConfig(autocast=runtime.autocast)
    for _ in range(10 if compile_ else 3):  # warm-up: kernels, autotuning, compilation
        training_step(model, data, task, optimizer, step)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        training_step(model, data, task, optimizer, step)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = peak_tflops(torch.cuda.get_device_name(device))
    return {"model": model_name, "batch": batch, "mode": mode, "img_s": batch / seconds, "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / 1e12 / peak}


def bare_epoch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int, optimizer: Any) -> None:
    """The shortest correct epoch on device tensors: the reference for run_epoch."""
    model.train()
    order = torch.randperm(len(x), device=x.device)
    for start in range(0, len(x), batch):
        idx = order[start : start + batch]
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def epoch_rates(model_name: str = "lenet", n: int = 60_000, batch: int = 256, repeats: int = 3,
                device: str = "cuda") -> dict[str, float]:
    """Images/s of a whole training epoch: dlexp's run_epoch vs the bare loop (best of ``repeats``, interleaved)."""
    from dlexp.data.batching import TensorLoader
    from dlexp.training.runtime import Runtime
    from dlexp.training.step import Pass, run_epoch
    from dlexp.tasks import build_task

    runtime = Runtime(device=torch.device(device), precision="32")
    x = torch.randn(n, 1, 28, 28, device=device)  # (N, 1, 28, 28), already normalized
    y = torch.randint(10, (n,), device=device)
    task, loader = build_task("classification"), TensorLoader(x, y, batch, shuffle=True, seed=0)
    torch.manual_seed(0)
    model = build(model_name, 1, 28).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    how = Pass(optimizer=optimizer, check_every=runtime.check_every)
    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)
    best = {"bare loop": float("inf"), "dlexp run_epoch": float("inf")}
    for i in range(repeats + 1):  # the first round warms kernels and the allocator up
        for name, fn in (("bare loop", lambda: bare_epoch(model, x, y, batch, optimizer)),
                         ("dlexp run_epoch", lambda: run_epoch(model, loader, task, how))):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if i:
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: n / seconds for name, seconds in best.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--resnet-batches", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA device here; nothing to measure (run it on a GPU machine)")
        return 0
    name = torch.cuda.get_device_name()
    print(f"{name}, torch {torch.__version__}, bf16 peak {peak_tflops(name):.0f} TFLOP/s, {args.steps} timed steps")
    print(f"{'model':<10}{'batch':>6}  {'mode':<28}{'images/s':>12}{'TFLOP/s':>10}{'MFU':>8}")
    for model_name, shape, batch in [("resnet18", (3, 32, 32), b) for b in args.resnet_batches] + [("lenet", (1, 28, 28), 1024)]:
        for mode in args.modes:
            r = measure(model_name, shape, batch, mode, args.steps)
            print(f"{r['model']:<10}{r['batch']:>6}  {r['mode']:<28}{r['img_s']:>12,.0f}{r['tflops']:>10.1f}{r['mfu']:>8.1%}",
                  flush=True)
    rates = epoch_rates()
    print("\nlenet, whole epochs of 60,000 28x28 images in GPU memory, batch 256, fp32, best of 3")
    for name, rate in rates.items():
        print(f"{name:<36}{rate:>12,.0f} images/s")
    print(f"dlexp / bare loop time: {rates['bare loop'] / rates['dlexp run_epoch']:.3f}x")
    print("goals: resnet18 >= 40% MFU at bf16; lenet > 89,000 images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
