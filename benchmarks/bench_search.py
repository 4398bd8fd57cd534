"""Two Optuna searches on digits side by side in one run: asynchronous with a pruner (successive halving), and
synchronous without one (Hydra's Optuna sweeper's way: batches that wait for their slowest trial).

    python benchmarks/bench_search.py [--trials 40] [--slots 2] [--epochs 20]

The same search space (lr, weight decay, dropout), seed and trial budget. It prints, for each search,
the best val accuracy, the training epochs all its trials ran together, the slots' busy share of the
wall time, and the wall time. The goals: the pruned search's best within 0.5 points of the unpruned
one, in at most half its epochs, and slots idle at most 5% of the time.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def search(cwd: Path, name: str, args: argparse.Namespace, extra: list[str]) -> dict[str, float]:
    command = [sys.executable, "-m", "dlexp", "-m", "hparams_search=optuna", f"hparams_search.n_trials={args.trials}",
               f"hparams_search.slots={args.slots}", f"trainer.epochs={args.epochs}", "trainer.progress=false",
               f"sweep.name={name}", *extra]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{name}: exited {proc.returncode}: {proc.stderr[-500:]}")
    sweep_dir = cwd / "outputs" / "multirun" / name
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("trial_*/summary.json")]
    busy = float(re.search(r"slots busy ([\d.]+)%", proc.stdout).group(1))
    return {
        "best val/acc": max(s["best/val/acc"] for s in summaries),
        "epochs": sum(s["epochs_run"] for s in summaries),
        "pruned": sum(s["status"] == "pruned" for s in summaries),
        "busy %": busy,
        "wall s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pruner", default="successive_halving", help="the pruned search's hparams_search.pruner")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        pruned = search(cwd, "async_pruned", args, [f"hparams_search.pruner={args.pruner}"])
        plain = search(cwd, "sync_unpruned", args, ["hparams_search.pruner=none", "hparams_search.synchronous=true"])
    print(f"{args.trials} trials, {args.slots} slots, {args.epochs} epochs at most per trial (digits, MLP, Adam)")
    print(f"{'search':<36}{'best val/acc':>13}{'epochs':>8}{'pruned':>8}{'busy %':>8}{'wall s':>8}")
    for name, row in ((f"asynchronous, {args.pruner}", pruned), ("synchronous, no pruner", plain)):
        print(f"{name:<36}{row['best val/acc']:>13.4f}{row['epochs']:>8.0f}{row['pruned']:>8.0f}{row['busy %']:>8.1f}"
              f"{row['wall s']:>8.1f}")
    gap = 100 * (plain["best val/acc"] - pruned["best val/acc"])
    share = pruned["epochs"] / plain["epochs"]
    print(f"pruned best is {gap:+.2f} points behind (goal <= 0.5); it ran {100 * share:.0f}% of the epochs (goal <= 50%); "
          f"slots idle {100 - pruned['busy %']:.1f}% of the wall time (goal <= 5%)")
    return 0 if gap <= 0.5 and share <= 0.5 and pruned["busy %"] >= 95 else 1


if __name__ == "__main__":
    sys.exit(main())
