"""The default MLP recipe against scikit-learn's ``MLPClassifier(hidden_layer_sizes=(256,))`` on small
standard problems other than the digits it was tuned on.

Each problem is standardized with the training split's mean and std, then both sides get the same
training and test arrays. dlexp runs ``python -m dlexp dataset=arrays dataset.path=<file>`` with every
other setting at its default (MLP 256, dropout 0.3, Adam lr 0.003, cosine decay, 40 epochs, early
stopping on a validation split it holds out of the training data); scikit-learn runs its defaults (Adam
lr 0.001, up to 200 epochs, no early stopping). Test accuracy, mean ± std over the seeds.

Usage:
    python benchmarks/bench_sklearn.py [--seeds 0 1 2] [--threads 2] [--problems wine] [--set trainer.epochs=80]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

Problem = Callable[[int], tuple[np.ndarray, np.ndarray]]
PROBLEMS: dict[str, tuple[str, Problem]] = {
    "classification_10x40": (
        "10 classes, 40 features (20 informative), 4,000 train / 1,000 test (make_classification)",
        lambda seed: datasets.make_classification(5000, 40, n_informative=20, n_classes=10, random_state=seed)),
    "breast_cancer": ("2 classes, 30 features, 569 tumours (load_breast_cancer)",
                      lambda seed: datasets.load_breast_cancer(return_X_y=True)),
    "wine": ("3 classes, 13 features, 178 wines (load_wine)", lambda seed: datasets.load_wine(return_X_y=True)),
    "moons": ("2 classes, 2 features, 2,000 points, noise 0.3 (make_moons)",
              lambda seed: datasets.make_moons(2000, noise=0.3, random_state=seed)),
}


def split(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """80/20 stratified; standardized with the training part's statistics; float32 features, int64 labels."""
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    return {"x": ((x_train - mean) / std).astype(np.float32), "y": y_train.astype(np.int64),
            "x_test": ((x_test - mean) / std).astype(np.float32), "y_test": y_test.astype(np.int64)}


def dlexp_acc(arrays: dict[str, np.ndarray], seed: int, threads: int, work: Path, extra: list[str]) -> float:
    from hydra import compose, initialize_config_dir

    from dlexp.config.files import CONFIG_DIR
    from dlexp.train import train

    path = work / f"data-{seed}.npz"
    np.savez(path, **arrays)
    overrides = ["dataset=arrays", f"dataset.path={path}", f"seed={seed}", f"trainer.num_threads={threads}",
                 "trainer.progress=false", *extra]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        result = train(cfg, work / f"run-{seed}-{time.monotonic_ns()}")
    return float(result.summary["test/acc"])


def sklearn_acc(arrays: dict[str, np.ndarray], seed: int) -> float:
    model = MLPClassifier(hidden_layer_sizes=(256,), random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 200 epochs without converging, on some problems
        model.fit(arrays["x"], arrays["y"])
    return float(model.score(arrays["x_test"], arrays["y_test"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for dlexp's side")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print("| problem | dlexp default MLP | sklearn MLPClassifier(256,) | dlexp - sklearn |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.problems:
            about, make = PROBLEMS[name]
            ours, theirs = [], []
            for seed in args.seeds:
                arrays = split(*make(seed), seed)
                ours.append(dlexp_acc(arrays, seed, args.threads, Path(tmp), args.set))
                theirs.append(sklearn_acc(arrays, seed))
            ms = lambda v: f"{statistics.mean(v):.3f} ± {statistics.stdev(v) if len(v) > 1 else 0:.3f}"
            diff = statistics.mean(ours) - statistics.mean(theirs)
            print(f"| {name}: {about} | {ms(ours)} | {ms(theirs)} | {diff:+.3f} |", flush=True)


if __name__ == "__main__":
    main()
