"""Kill a 20-trial Optuna search with ``kill -9`` at a random moment, run the same command again, and check
that the study ends with exactly 20 finished trials (complete + pruned), none run twice; repeat.

    python benchmarks/kill_search.py [--attempts 10] [--trials 20] [--seed 0]

"None run twice": every trial number has one dir, each dir's ``metrics.csv`` counts its epochs once
(a resumed trial continues from its checkpoint, it does not start over), and no two trials share
their sampled values. The search runs 2 slots on the CPU; its sweep process is the one killed (its
slots die with it, as on a crash or a preemption).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState


def command(trials: int) -> list[str]:
    return [sys.executable, "-m", "dlexp", "-m", "hparams_search=optuna", f"hparams_search.n_trials={trials}",
            "hparams_search.slots=2", "trainer=smoke", "trainer.epochs=4", "trainer.limit_train_batches=12",
            "trainer.progress=false", "sweep.name=killed"]


def check(cwd: Path, trials: int) -> str:
    """'' if the study is right, else what is wrong."""
    sweep_dir = cwd / "outputs" / "multirun" / "killed"
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    study = optuna.load_study(study_name="killed", storage=storage)
    counted = [t for t in study.get_trials() if not t.system_attrs.get("dlexp:surplus")]
    finished = [t for t in counted if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    problems = []
    if len(finished) != trials or len(counted) != trials:
        states = [t.state.name for t in counted]
        problems.append(f"{len(finished)} finished of {len(counted)} counted: {states}")
    dirs = sorted(p.name for p in sweep_dir.glob("trial_*"))
    if dirs != sorted(f"trial_{t.number}" for t in counted):
        problems.append(f"trial dirs {dirs} do not match the trials")
    for trial in finished:
        run_dir = sweep_dir / f"trial_{trial.number}"
        with open(run_dir / "metrics.csv", newline="") as handle:
            epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
        if epochs != list(range(1, len(epochs) + 1)):
            problems.append(f"trial {trial.number} ran epochs {epochs}")
        status = json.loads((run_dir / "summary.json").read_text())["status"]
        if status != {"COMPLETE": "completed", "PRUNED": "pruned"}[trial.state.name]:
            problems.append(f"trial {trial.number} is {trial.state.name} in the study but {status} on disk")
    params = [tuple(sorted(t.params.items())) for t in counted]
    if len(set(params)) != len(params):
        problems.append("two trials share their values")
    return "; ".join(problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:  # how long an uninterrupted search takes here: kills land all over it
        started = time.perf_counter()
        subprocess.run(command(args.trials), cwd=tmp, capture_output=True, check=True, timeout=1800)
        whole = time.perf_counter() - started
    print(f"an uninterrupted {args.trials}-trial search takes {whole:.1f} s here; kills land in 3 s .. {0.9 * whole:.1f} s")
    good = 0
    for attempt in range(1, args.attempts + 1):
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            delay = rng.uniform(3.0, max(3.5, 0.9 * whole))
            proc = subprocess.Popen(command(args.trials), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGKILL)  # the sweep's process; its slots die with it
            proc.wait()
            time.sleep(0.5)
            again = subprocess.run(command(args.trials), cwd=cwd, capture_output=True, text=True, timeout=1800)
            first = next((line for line in again.stdout.splitlines() if line.startswith("search ")), "")
            wrong = check(cwd, args.trials) if again.returncode == 0 else f"rerun exited {again.returncode}: {again.stderr[-300:]}"
            good += not wrong
            print(f"attempt {attempt}: killed at {delay:.1f} s; rerun: {first.split(': ', 1)[-1].split(';')[0]}: "
                  f"{'exactly ' + str(args.trials) + ' finished, none twice' if not wrong else 'WRONG: ' + wrong}", flush=True)
    print(f"{good} of {args.attempts} attempts ended with exactly {args.trials} finished trials, none run twice")
    return 0 if good == args.attempts else 1


if __name__ == "__main__":
    sys.exit(main())
