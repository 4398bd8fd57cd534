"""What logging to MLflow costs a run: the same run with ``logger=default`` and with ``logger=mlflow``.

    python benchmarks/bench_mlflow.py [--epochs 40] [--repeats 4] [--tracking-uri http://127.0.0.1:5000] [--set KEY=VALUE ...]

Each run is a fresh ``python -m dlexp`` process, the two sides interleaved (ABBA) so that drift on a
shared machine hits both. Without ``--tracking-uri`` the MLflow side logs to a SQLite store in a
temporary folder, made by one run that is not counted (a store that already exists, as a user's
does after their first run). Printed per side, the median over the repeats of:

- ``epoch``: the median of the run's ``epoch_seconds`` (metrics.csv): what the training loop pays per
  epoch, where the MLflow side only queues each row for its background thread;
- ``epochs``: the sum of its ``epoch_seconds``;
- ``process``: the whole process, wall clock: imports, data, training, the plots, and for the MLflow
  side the wait at the end until the tracker has the run's last items;
- ``cpu``: the process's CPU seconds (user + sys), its threads' included: what tracking costs the machine,
  and a number that other work on a shared machine inflates less than the wall clock.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], cwd: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dlexp", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"error: python -m dlexp {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    run_dir = Path(cwd) / next(a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir="))
    with open(run_dir / "metrics.csv", newline="") as handle:
        epochs = [float(row["epoch_seconds"]) for row in csv.DictReader(handle)]
    return {"epoch": statistics.median(epochs), "epochs": sum(epochs), "process": wall, "cpu": cpu}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU") \
        if Path("/proc/cpuinfo").is_file() else platform.processor()
    return f"{model}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=4, help="runs per side, interleaved (even: ABBA)")
    parser.add_argument("--threads", type=int, default=1, help="trainer.num_threads of every run")
    parser.add_argument("--tracking-uri", default=None, help="an MLflow server (or database) to log to instead")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more overrides for both sides")
    args = parser.parse_args()
    import mlflow  # noqa: F401  (the MLflow side needs it: say so before any run)

    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        cwd = Path(tmp)
        uri = args.tracking_uri or f"sqlite:///{cwd / 'store' / 'mlflow.db'}"
        base = [f"trainer.epochs={args.epochs}", "trainer.progress=false", f"trainer.num_threads={args.threads}",
                "trainer.early_stopping.patience=null", *args.set]
        sides = {"default": ["logger=default"],
                 "mlflow": ["logger=mlflow", f"logger.tracking_uri={uri}", "logger.experiment=bench"]}
        run([*base, *sides["mlflow"], "trainer.epochs=1", "hydra.run.dir=warmup"], cwd)  # makes the store
        order = [name for i in range(args.repeats) for name in (("default", "mlflow") if i % 2 == 0 else ("mlflow", "default"))]
        results: dict[str, list[dict[str, float]]] = {"default": [], "mlflow": []}
        for i, name in enumerate(order):
            results[name].append(run([*base, *sides[name], f"hydra.run.dir=runs/{i}-{name}"], cwd))
            last = results[name][-1]
            print(f"  {name:<8} epoch {last['epoch'] * 1000:7.1f} ms   epochs {last['epochs']:6.2f} s   process "
                  f"{last['process']:6.2f} s   cpu {last['cpu']:6.2f} s", flush=True)
    shown = f" with {' '.join(args.set)}" if args.set else " (MLP on digits)"
    print(f"\n{machine()}; {args.epochs} epochs of the default run{shown}, "
          f"{args.threads} thread(s), {args.repeats} runs per side; MLflow store: "
          f"{args.tracking_uri or 'SQLite in a temporary folder'}")
    keys = ("epoch", "epochs", "process", "cpu")
    print(f"{'':<10}{'epoch (ms)':>12}{'epochs (s)':>12}{'process (s)':>13}{'cpu (s)':>10}")
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in results.items()}
    for name, m in medians.items():
        print(f"{name:<10}{m['epoch'] * 1000:>12.1f}{m['epochs']:>12.2f}{m['process']:>13.2f}{m['cpu']:>10.2f}")
    ratio = {k: medians["mlflow"][k] / medians["default"][k] for k in keys}
    print(f"{'ratio':<10}{ratio['epoch']:>12.3f}{ratio['epochs']:>12.3f}{ratio['process']:>13.3f}{ratio['cpu']:>10.3f}")
    print(f"MLflow adds {(medians['mlflow']['epoch'] - medians['default']['epoch']) * 1000:+.1f} ms to an epoch, "
          f"{medians['mlflow']['process'] - medians['default']['process']:+.2f} s to the process, "
          f"{medians['mlflow']['cpu'] - medians['default']['cpu']:+.2f} s of CPU")


if __name__ == "__main__":
    main()
