"""Every image model on the bundled digits with the optimizer the README shows it with (optim=sgd_momentum):
wall time, epochs run, status and test accuracy of ``python -m dlexp model=<name> optim=sgd_momentum``.

A full default run (40 epochs, early stopping after 10 without a better val accuracy) of the large models
takes many minutes on 2 CPU cores, so ``--epochs N`` runs N epochs of each instead and the table says so.
Usage:
    python benchmarks/bench_models.py [--epochs 5] [--threads 2] [--models lenet,alexnet]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE_MODELS = ["mlp", "softmax", "lenet", "lenet_bn", "alexnet", "vgg11", "nin", "googlenet", "resnet18", "densenet"]


def run(model: str, epochs: int | None, threads: int, root: Path) -> dict:
    run_dir = root / model
    args = [sys.executable, "-m", "dlexp", f"model={model}", "optim=sgd_momentum", "trainer.progress=false",
            f"trainer.num_threads={threads}", f"hydra.run.dir={run_dir}"]
    if epochs is not None:
        args.append(f"trainer.epochs={epochs}")
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    return {"model": model, "exit": proc.returncode, "status": summary.get("status", "none"),
            "epochs": summary.get("epochs_run"), "best_epoch": summary.get("best_epoch"),
            "test_acc": summary.get("test/acc"), "params": summary.get("num_params"), "wall_s": round(wall, 1),
            "recipe": summary.get("recipe", "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per model (default: the default run's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(IMAGE_MODELS))
    args = parser.parse_args()
    print("| model | params | epochs run | status | test acc | wall time (s) | recipe |")
    print("|---|---:|---:|---|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            r = run(model, args.epochs, args.threads, Path(tmp))
            acc = f"{r['test_acc']:.3f}" if isinstance(r["test_acc"], float) else "none"
            print(f"| {r['model']} | {r['params'] or 0:,} | {r['epochs']} | {r['status']} | {acc} | {r['wall_s']} | "
                  f"{r['recipe']} |", flush=True)


if __name__ == "__main__":
    main()
