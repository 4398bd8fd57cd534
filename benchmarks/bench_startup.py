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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
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
    floor, optim_floor = results["import torch"][0], results["import torch, _dynamo"][0]
    print(f"{'case':<24} {'wall s':>8} {'cpu s':>8} {'training s':>11} {'overhead s':>11} {'vs torch':>9} {'vs torch+dynamo':>16}")
    for name, (wall, cpu, train) in results.items():
        overhead = wall - train
        print(f"{name:<24} {wall:8.2f} {cpu:8.2f} {train:11.2f} {overhead:11.2f} {overhead - floor:+9.2f} {overhead - optim_floor:+16.2f}")
    print(f"\nmedian of {args.repeats}; costliest imports of the default run (cumulative s, -X importtime):")
    for seconds, module in import_breakdown(proc.stderr, args.top):
        print(f"  {seconds:6.2f}  {module}")


if __name__ == "__main__":
    main()
