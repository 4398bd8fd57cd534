"""Sweep benchmark: a course-scale sweep through the command line against a bare loop over the same configs.

Both sides train the default experiment (the digits MLP: one hidden layer of 256 ReLU units, dropout 0.3,
Adam at lr 0.003 with a cosine decay, batch 64) for --epochs epochs with a val pass each epoch and a test
pass at the end, once per seed 0 .. --jobs - 1, and each is timed as a whole process, start-up included:

- **bare**: this script with ``--bare``, one process, a plain PyTorch loop over the seeds (the digits read
  from the file dlexp reads, split 80/20 stratified into train+val and test, then 85/15 into train and
  val, normalized with the train split's statistics);
- **dlexp**: ``python -m dlexp -m seed=0,...,N-1 trainer.epochs=E`` on the default launcher, and (``--slots``)
  the same on ``hydra/launcher=slots``.

The sides alternate order each repeat (ABBA). Printed: each side's wall seconds per repeat, the medians,
and the ratio dlexp / bare. Then a breakdown of one dlexp sweep, run in this process with a timer around
each part (composition, planning, the data and model, the record, training, val, test, logging,
checkpoints, plots, the jobs manifest, the sweep's own summary): seconds per job, and what is left outside
the run's own training, val and test.

``--record FILE`` also writes what it prints to FILE, under a line naming the machine, its load and the
commit (``make bench`` records docs/benchmarks/bench_sweep.txt, which the benchmarks page shows).

Usage:
    python benchmarks/bench_sweep.py [--jobs 16] [--epochs 2 10] [--repeats 2] [--slots] [--no-breakdown]
                                     [--record FILE]
"""
from __future__ import annotations

import argparse
import functools
import importlib
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable


# ---- the bare loop (child process) ------------------------------------------------------------------------------

def bare(jobs: int, epochs: int) -> None:
    """The same configs as the sweep, one after another, in a plain loop; prints the seconds of each job."""
    import numpy as np
    import torch
    from torch import nn

    from dlexp.data.sources import digits_file
    from dlexp.data.splits import shuffled_split

    table = np.loadtxt(digits_file(), delimiter=",")
    x_all = torch.from_numpy(table[:, :-1].astype(np.float32) / 16.0)  # (1797, 64)
    labels = table[:, -1].astype(np.int64)
    y_all = torch.from_numpy(labels)
    pool_idx, test_idx = shuffled_split(len(labels), math.ceil(0.2 * len(labels)), 0, labels)
    for seed in range(jobs):
        started = time.perf_counter()
        torch.manual_seed(seed)
        train_idx, val_idx = shuffled_split(len(pool_idx), math.ceil(0.15 * len(pool_idx)), seed, labels[pool_idx])
        x, y = x_all[pool_idx], y_all[pool_idx]
        mean, std = x[train_idx].mean(), x[train_idx].std()
        parts = {name: ((x_all[idx] if name == "test" else x[idx]) - mean) / std for name, idx in
                 (("train", train_idx), ("val", val_idx), ("test", test_idx))}
        targets = {"train": y[train_idx], "val": y[val_idx], "test": y_all[test_idx]}
        model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(train_idx))
            for start in range(0, len(order), 64):
                batch = order[start:start + 64]
                loss = loss_fn(model(parts["train"][batch]), targets["train"][batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            schedule.step()
            _evaluate(model, parts["val"], targets["val"], loss_fn)
        _evaluate(model, parts["test"], targets["test"], loss_fn)
        print(f"job\t{time.perf_counter() - started}", flush=True)


def _evaluate(model: Any, x: Any, y: Any, loss_fn: Any) -> tuple[float, float]:
    import torch

    model.eval()
    with torch.no_grad():
        out = model(x)
        return float(loss_fn(out, y)), float((out.argmax(1) == y).float().mean())


# ---- timing whole processes ---------------------------------------------------------------------------------------

def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def sides(jobs: int, epochs: int, slots: bool, root: Path) -> dict[str, list[str]]:
    seeds = ",".join(map(str, range(jobs)))
    sweep = [sys.executable, "-m", "dlexp", "-m", f"seed={seeds}", f"trainer.epochs={epochs}", "trainer.progress=false"]
    out = {"bare": [sys.executable, str(Path(__file__).resolve()), "--bare", "--jobs", str(jobs), "--epochs", str(epochs)],
           "dlexp": [*sweep, f"hydra.sweep.dir={root / 'basic'}"]}
    if slots:
        out["dlexp slots"] = [*sweep, "hydra/launcher=slots", f"hydra.sweep.dir={root / 'slots'}"]
    return out


def compare(jobs: int, epochs: int, repeats: int, slots: bool) -> None:
    print(f"\n== {jobs} jobs of {epochs} epoch(s): whole processes, start-up included ==")
    seconds: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            order = list(sides(jobs, epochs, slots, Path(tmp) / str(repeat)).items())
            for name, command in (order if repeat % 2 == 0 else order[::-1]):
                seconds[name].append(timed(command, Path(tmp)))
    bare_s = statistics.median(seconds["bare"])
    for name, values in seconds.items():
        ratio = "" if name == "bare" else f"  {statistics.median(values) / bare_s:.2f}x the bare loop"
        print(f"{name:<12} {statistics.median(values):6.2f} s  (repeats: {', '.join(f'{v:.2f}' for v in values)}){ratio}")


# ---- where a sweep's time goes (one sweep, in this process) ----------------------------------------------------

PARTS = [  # (module, attribute, part): a timer around each call
    ("dlexp.search.compose", "SweepComposer.__call__", "composition (a job's config)"),
    ("dlexp.cli.plan", "plan_job", "plan (what the job's dir holds)"),
    ("dlexp.train", "prepare", "prepare (checks, data, model)"),
    ("dlexp.cli.plan", "accept", "record (.hydra/)"),
    ("dlexp.training.trainer", "Trainer.train_epoch", "training"),
    ("dlexp.training.trainer", "Trainer.end_epoch", "epoch's end (log, early stopping, checkpoint)"),
    ("dlexp.training.trainer", "Trainer.test", "test"),
    ("dlexp.train", "_open_log", "run log (TensorBoard writer)"),
    ("dlexp.train", "_close_log", "summary, plots"),
    ("dlexp.train", "plots_after_training", "plots"),
    ("dlexp.runs.sweep", "mark", "jobs manifest"),
    ("dlexp.cli.sweep", "SweepSummary.on_multirun_end", "the sweep's summary (tables, plots)"),
]
RUN_OWN = ("training", "test")


def breakdown(jobs: int, epochs: int) -> None:
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timer(fn: Callable, part: str) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[part] += time.perf_counter() - started
                calls[part] += 1
        return inner

    import dlexp.training.trainer as trainer_module

    real_evaluate = trainer_module.Trainer.evaluate

    def evaluate(self: Any, loader: Any, *args: Any, **kwargs: Any) -> Any:  # val inside the loop, test inside test()
        started = time.perf_counter()
        try:
            return real_evaluate(self, loader, *args, **kwargs)
        finally:
            if loader is self.data.val:
                spent["val"] += time.perf_counter() - started

    trainer_module.Trainer.evaluate = evaluate
    for module, attr, part in PARTS:
        owner = importlib.import_module(module)
        if "." in attr:
            owner, attr = getattr(owner, attr.split(".")[0]), attr.split(".")[1]
        setattr(owner, attr, timer(getattr(owner, attr), part))
    from dlexp.cli.entry import cli

    with tempfile.TemporaryDirectory() as tmp:
        sys.argv = ["dlexp", "-m", f"seed={','.join(map(str, range(jobs)))}", f"trainer.epochs={epochs}",
                    "trainer.progress=false", f"hydra.sweep.dir={tmp}/sweep"]
        started = time.perf_counter()
        with open(os.devnull, "w") as quiet, _redirect(quiet):
            try:
                cli()
            except SystemExit:
                pass
        total = time.perf_counter() - started
    own = spent["training"] + spent["val"] + spent["test"]
    print(f"\n== where a sweep of {jobs} jobs of {epochs} epoch(s) spends its time (this process, after its imports) ==")
    print(f"{'part':<50} {'s per job':>10}")
    for part in [p for _, _, p in PARTS[:5]] + ["val"] + [p for _, _, p in PARTS[5:]]:
        print(f"{part:<50} {spent[part] / jobs:10.4f}")
    print(f"{'the run own training, val and test':<50} {own / jobs:10.4f}")
    print(f"{'everything else (the launcher, Hydra, the app)':<50} {(total - own) / jobs:10.4f}")
    print(f"{'the whole sweep, per job':<50} {total / jobs:10.4f}")


class _redirect:
    """stdout and stderr into ``handle`` (the sweep's console lines are not what is measured)."""

    def __init__(self, handle: Any):
        self.handle = handle

    def __enter__(self) -> None:
        self.saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self.handle

    def __exit__(self, *exc: Any) -> None:
        sys.stdout, sys.stderr = self.saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slots", action="store_true", help="also time the sweep on hydra/launcher=slots")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--record", type=Path, help="also write the output to this file, with the machine it ran on")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)  # the child process of the bare side
    args = parser.parse_args()
    if args.bare:
        bare(args.jobs, args.epochs[0])
        return
    tee = _Tee(sys.stdout) if args.record else None
    if tee is not None:
        sys.stdout = tee
        print(machine_line())
    for epochs in args.epochs:
        compare(args.jobs, epochs, args.repeats, args.slots)
    if not args.no_breakdown:
        breakdown(args.jobs, args.epochs[0])
    if tee is not None:
        sys.stdout = tee.out
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text("".join(tee.text))
        print(f"recorded in {args.record}")


class _Tee:
    """Writes go to ``out`` and are kept, for --record."""

    def __init__(self, out: Any):
        self.out, self.text = out, []

    def write(self, text: str) -> int:
        self.text.append(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def machine_line() -> str:
    """Where and when: the CPU, cores, the load when it started, torch, the dlexp commit."""
    import platform
    from importlib import metadata

    from dlexp.course.curriculum import machine

    repo = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"# bench_sweep.py, dlexp {metadata.version('dlexp')} commit {commit or 'unknown'}: {machine()}, "
            f"Python {platform.python_version()}, load average {load:.1f} at the start")


if __name__ == "__main__":
    main()
