"""Kill a sweep with ``kill -9`` at a random moment, run the same command again, and compare its summary
tables with those of a sweep that was never interrupted; repeat.

The tests kill sweeps at fixed points (``tests/test_lifecycle.py``); this script kills at random
moments, as a crash or a preemption would, to check that no moment loses or changes a result:

    python benchmarks/kill_sweep.py [--trials 10] [--seed 0]

Every number of ``summary.csv`` and ``jobs.csv`` must be equal (the jobs' wall times excepted).
"""
from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# 6 jobs (3 learning rates x 2 seeds), each long enough (4 epochs of 12 batches) that kills land everywhere
SWEEP = ["-m", "trainer=smoke", "trainer.progress=false", "trainer.epochs=4", "trainer.limit_train_batches=12",
         "optim.lr=0.001,0.003,0.01", "seed=0,1", "sweep.name=killed"]
NOT_COMPARED = {"wall_seconds"}


def run(cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlexp", *SWEEP], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def tables(cwd: Path) -> list[dict[str, str]]:
    sweep_dir = cwd / "outputs" / "multirun" / "killed"
    rows = []
    for name in ("summary.csv", "jobs.csv"):
        with open(sweep_dir / name, newline="") as handle:
            rows += [{k: v for k, v in row.items() if k not in NOT_COMPARED} for row in csv.DictReader(handle)]
    return rows


def trial(root: Path, delay: float) -> tuple[bool, int]:
    """(the continued sweep's tables equal the reference's, how many jobs had completed at the kill)."""
    proc = subprocess.Popen([sys.executable, "-m", "dlexp", *SWEEP], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((root / "outputs" / "multirun" / "killed").glob("*/summary.json")))
    again = run(root)
    if again.returncode != 0:
        print(again.stderr[-2000:], file=sys.stderr)
        return False, done
    return tables(root) == REFERENCE, done


def main() -> int:
    global REFERENCE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "reference").mkdir()
        start = time.perf_counter()
        reference = run(Path(tmp) / "reference")
        total = time.perf_counter() - start
        assert reference.returncode == 0, reference.stderr
        REFERENCE = tables(Path(tmp) / "reference")
        print(f"reference sweep: 6 jobs in {total:.1f} s; killing at random moments within that")
        same = 0
        for i in range(args.trials):
            root = Path(tmp) / f"trial{i}"
            root.mkdir()
            delay = rng.uniform(0.5, total)
            equal, done = trial(root, delay)
            same += equal
            print(f"trial {i + 1}: kill -9 after {delay:5.1f} s ({done} of 6 jobs done): "
                  f"{'identical tables' if equal else 'DIFFERENT'}", flush=True)
    print(f"{same} of {args.trials} continued sweeps gave the uninterrupted sweep's tables")
    return 0 if same == args.trials else 1


REFERENCE: list[dict[str, str]] = []

if __name__ == "__main__":
    sys.exit(main())
