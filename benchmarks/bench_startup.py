"""Start-up cost of the command line, each case in a fresh Python process.

    python benchmarks/bench_startup.py [--repeats 3] [--top 15]

Cases: ``import torch`` alone (the floor), ``import torch._dynamo`` (the floor of any
run that steps a ``torch.optim`` optimizer: its ``step`` imports it), ``python -m dlexp --help``
and a default run with ``trainer.epochs=1``. For each: wall-clock and CPU seconds (user + sys
of the child, which a busy machine inflates less than wall-clock), the median of
``--repeats``. For the run, the time spent in its one training epoch (from
metrics.csv) is subtracted to give the fixed overhead, and ``-X importtime``
gives the modules that cost the most to import (cumulative, in seconds).
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["trainer.epochs=1", "trainer.progress=false", "trainer.checkpoints=false"]


def timed(cmd: list[str], cwd: str, env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, child CPU seconds, the finished process) for one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def epoch_seconds(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return sum(float(row["epoch_seconds"]) for row in csv.DictReader(handle))


def import_breakdown(stderr: str, top: int, max_depth: int = 2) -> list[tuple[float, str]]:
    """The ``top`` costliest imports (cumulative seconds) nested at most ``max_depth`` levels deep."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip())) // 2  # importtime indents each nested import by 2
        if depth <= max_depth:
            rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:top]


# Where a default run's time goes, from inside one process: (module, function, phase name). The child
# imports these modules first (torch with them), then times each call of each function.
PHASES = [
    ("dlexp.cli.preflight", "preflight", "argument checks (before Hydra)"),
    ("dlexp.train", "prepare", "prepare: every check, data and model (after Hydra composed the config)"),
    ("dlexp.train", "train", "train: the run in its dir"),
    ("dlexp.train", "validate", "config checks"),
    ("dlexp.train", "build_source", "data: load, split, normalize"),
    ("dlexp.train", "load_folds", "data: load, split, normalize"),
    ("dlexp.train", "_open_log", "run log: TensorBoard writer, files"),
    ("dlexp.training.trainer", "Trainer.__init__", "trainer: model, optimizer (imports torch._dynamo)"),
    ("dlexp.training.trainer", "Trainer.fit", "training (1 epoch) and test"),
    ("dlexp.train", "plots_after_training", "plots: import matplotlib, draw 2 PNGs"),
]
TOP_PHASES = ("argument checks (before Hydra)", "prepare: every check, data and model (after Hydra composed the config)",
              "train: the run in its dir")


def phase_child(run_dir: str) -> None:
    """Run the default 1-epoch run in this process and print each phase's seconds (one ``phase|s`` line each)."""
    import importlib

    start = time.perf_counter()
    spent: dict[str, float] = {}

    def timed_call(fn, name):
        def inner(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
        return inner

    for module, attr, name in PHASES:
        owner = importlib.import_module(module)
        if "." in attr:
            owner, attr = getattr(owner, attr.split(".")[0]), attr.split(".")[1]
        setattr(owner, attr, timed_call(getattr(owner, attr), name))
    imported = time.perf_counter() - start
    from dlexp.cli.entry import cli

    sys.argv = ["dlexp", *RUN, f"hydra.run.dir={run_dir}"]
    try:
        cli()
    except SystemExit:
        pass
    total = time.perf_counter() - start
    outside = total - imported - sum(spent.get(name, 0.0) for name in TOP_PHASES)
    rows = [("imports: dlexp, torch, hydra", imported), ("Hydra: compose the config, make the run dir", outside),
            *((name, spent.get(name, 0.0)) for _, _, name in PHASES), ("total in process", total)]
    for name, seconds in rows:
        print(f"phase\t{name}\t{seconds}")


def phase_table(tmp: str, env: dict) -> list[tuple[str, float]]:
    """The median over 3 child processes of each phase's seconds."""
    runs = []
    for i in range(3):
        proc = subprocess.run([sys.executable, __file__, "--phase-child", str(Path(tmp, f"phases{i}"))],
                              cwd=tmp, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"error: the phase-timing run failed:\n{proc.stderr[-3000:]}")
        lines = [line.split("\t")[1:] for line in proc.stdout.splitlines() if line.startswith("phase\t")]
        runs.append({name: float(seconds) for name, seconds in lines})
    return [(name, statistics.median(run[name] for run in runs)) for name in runs[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--phase-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase_child:
        return phase_child(args.phase_child)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "import torch": [py, "-c", "import torch"],
            # torch.optim's step() and add_param_group() import torch._dynamo on their first call, so no
            # training run with a torch.optim optimizer starts faster than this
            "import torch, _dynamo": [py, "-c", "import torch._dynamo"],
            "dlexp --help": [py, "-m", "dlexp", "--help"],
            "default run, 1 epoch": [py, "-m", "dlexp", *RUN],
        }
        results: dict[str, tuple[float, float, float]] = {}
        for name, cmd in cases.items():
            walls, cpus, trains = [], [], []
            for i in range(args.repeats):
                run_dir = Path(tmp, f"run{i}")
                full = cmd + [f"hydra.run.dir={run_dir}"] if name.startswith("default") else cmd
                wall, cpu, _ = timed(full, tmp, env)
                walls.append(wall)
                cpus.append(cpu)
                trains.append(epoch_seconds(run_dir) if name.startswith("default") else 0.0)
            results[name] = (statistics.median(walls), statistics.median(cpus), statistics.median(trains))
        _, _, proc = timed([py, "-X", "importtime", "-m", "dlexp", *RUN, f"hydra.run.dir={Path(tmp, 'imports')}"], tmp, env)
        phases = phase_table(tmp, env)
    floor, optim_floor = results["import torch"][0], results["import torch, _dynamo"][0]
    print(f"{'case':<24} {'wall s':>8} {'cpu s':>8} {'training s':>11} {'overhead s':>11} {'vs torch':>9} {'vs torch+dynamo':>16}")
    for name, (wall, cpu, train) in results.items():
        overhead = wall - train
        print(f"{name:<24} {wall:8.2f} {cpu:8.2f} {train:11.2f} {overhead:11.2f} {overhead - floor:+9.2f} {overhead - optim_floor:+16.2f}")
    print("\nphases of the default run inside its process (median of 3; nested phases are part of 'run'):")
    for name, seconds in phases:
        print(f"  {seconds:6.2f}  {name}")
    print(f"\nmedian of {args.repeats}; costliest imports of the default run (cumulative s, -X importtime):")
    for seconds, module in import_breakdown(proc.stderr, args.top):
        print(f"  {seconds:6.2f}  {module}")


if __name__ == "__main__":
    main()
