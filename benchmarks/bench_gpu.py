"""GPU benchmark (make bench-gpu): images/s and MFU of dlexp's training step, eager vs bf16 vs bf16 + compile.

Synthetic data on the device, so the numbers measure the model step alone:
- ResNet-18 on CIFAR-shaped inputs (3x32x32, 10 classes, batch 512);
- LeNet on Fashion-MNIST-shaped inputs (1x28x28, 10 classes, batch 1024; the d2l book reports
  about 89k images/s for it on a V100).
Each model runs as eager fp32, bf16 autocast, and bf16 + torch.compile + channels_last, through
``dlexp.engine.training_step`` with the Runtime's settings. FLOPs per step come from
``torch.utils.flop_counter``; MFU is achieved FLOP/s over the card's dense bf16 peak.

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


def measure(model_name: str, shape: tuple[int, int, int], batch: int, mode: str, steps: int) -> dict[str, Any]:
    from dlexp.device import Runtime
    from dlexp.engine import StepConfig, training_step
    from dlexp.tasks import Batch, build_task

    device = torch.device("cuda")
    runtime = Runtime(device=device, precision="32" if mode == "fp32" else "bf16",
                      compile="compile" in mode, channels_last="compile" in mode)
    torch.manual_seed(0)
    model, raw = runtime.prepare_model(build(model_name, *shape[:2]))
    optimizer = torch.optim.SGD(raw.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(10, (batch,), device=device)
    data = runtime.prepare_batch(Batch(x, y))
    flops = step_flops(raw, x, y)
    task, step = build_task("classification"), StepConfig(autocast=runtime.autocast)
    for _ in range(10 if "compile" in mode else 3):  # warm-up: kernels, autotuning, compilation
        training_step(model, data, task, optimizer, step)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        training_step(model, data, task, optimizer, step)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = peak_tflops(torch.cuda.get_device_name(device))
    return {"model": model_name, "mode": mode, "img_s": batch / seconds, "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / 1e12 / peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA device here; nothing to measure (run it on a GPU machine)")
        return 0
    name = torch.cuda.get_device_name()
    print(f"{name}, torch {torch.__version__}, bf16 peak {peak_tflops(name):.0f} TFLOP/s, {args.steps} timed steps")
    print(f"{'model':<10}{'mode':<26}{'images/s':>12}{'TFLOP/s':>10}{'MFU':>8}")
    cases = [("resnet18", (3, 32, 32), 512), ("lenet", (1, 28, 28), 1024)]
    for model_name, shape, batch in cases:
        for mode in ("fp32", "bf16", "bf16+compile+channels_last"):
            r = measure(model_name, shape, batch, mode, args.steps)
            print(f"{r['model']:<10}{r['mode']:<26}{r['img_s']:>12,.0f}{r['tflops']:>10.1f}{r['mfu']:>8.1%}")
    print("goals: resnet18 >= 40% MFU at bf16; lenet > 89,000 images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
