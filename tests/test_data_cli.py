"""The data layer end to end through the real CLI: files in real formats on disk in, summaries, per-fold
results and a submission file out. The commands run in this process (a data loader's worker processes
start from it)."""
from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

from conftest import read_json
from datafiles import write_house_prices, write_mnist, write_png_folder

SMOKE = ["trainer=smoke", "trainer.progress=false"]


def test_vision_sweep_from_the_cache_dir_with_augment_and_shift(tmp_path, in_process):
    cache = tmp_path / "cache"
    write_mnist(cache, "MNIST")
    write_mnist(cache, "FashionMNIST", seed=5)
    sweep = tmp_path / "sweep"
    # root=null: the files are found in $DLEXP_DATA_DIR, so nothing is downloaded
    proc = in_process(
        "-m", *SMOKE, "dataset=mnist,fashion_mnist", "augment=standard", "shift=covariate",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, env={"DLEXP_DATA_DIR": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr
    summaries = {read_json(p)["dataset"]: read_json(p) for p in sweep.glob("*/summary.json")}
    assert set(summaries) == {"mnist", "fashion_mnist"}
    for summary in summaries.values():
        assert summary["status"] == "completed" and summary["epochs_run"] == 2
        assert 0.0 <= summary["test/acc"] <= 1.0 and 0.0 <= summary["test_shifted/acc"] <= 1.0
        assert summary["test_shifted/loss"] != summary["test/loss"]
    assert "train/val/test=170/30/60" in proc.stdout  # 200 training images: 15% val; the 60 test images


@pytest.mark.slow  # 3 folds x 25 epochs; the fast tier loads house_prices (test_config) and runs k-fold (test_data)
def test_house_prices_kfold_writes_fold_results_and_a_submission(tmp_path, in_process):
    train_csv, test_csv = write_house_prices(tmp_path / "house", n_train=150, n_test=40)
    run_dir = tmp_path / "run"
    proc = in_process(
        "dataset=house_prices", f"dataset.train_csv={train_csv}", f"dataset.test_csv={test_csv}", "split=kfold",
        "split.k=3", "trainer.epochs=25", "trainer.batch_size=16", "trainer.checkpoints=false", "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = read_json(run_dir / "summary.json")
    folds = [read_json(run_dir / f"fold_{i}" / "summary.json") for i in (1, 2, 3)]
    assert summary["folds"] == 3 and summary["monitor"] == "val/log_rmse"
    scores = [f["best/val/log_rmse"] for f in folds]
    assert summary["best/val/log_rmse"] == pytest.approx(np.mean(scores))
    assert summary["std/best/val/log_rmse"] == pytest.approx(np.std(scores, ddof=1))
    assert summary["best/val/log_rmse"] < 0.3  # log prices vary by ~0.4; the model explains most of it
    for i in (1, 2, 3):
        with open(run_dir / f"fold_{i}" / "metrics.csv", newline="") as handle:
            assert list(csv.DictReader(handle))[0].keys() >= {"train/log_rmse", "val/log_rmse"}

    truth = pd.read_csv(tmp_path / "house" / "test_prices.csv")
    submission = pd.read_csv(run_dir / "submission.csv")
    assert list(submission.columns) == ["Id", "SalePrice"]
    assert submission["Id"].tolist() == pd.read_csv(test_csv)["Id"].tolist()
    assert (submission["SalePrice"] > 0).all()
    log_rmse = np.sqrt(np.mean((np.log(submission["SalePrice"]) - np.log(truth["SalePrice"])) ** 2))
    assert log_rmse < 0.3
    fold_logs = np.stack([np.log(pd.read_csv(run_dir / f"fold_{i}" / "submission.csv")["SalePrice"]) for i in (1, 2, 3)])
    assert np.allclose(np.log(submission["SalePrice"]), fold_logs.mean(axis=0), atol=1e-5)  # the folds' ensemble


def test_streamed_image_folder_through_dataloader_workers(tmp_path, in_process):
    root = write_png_folder(tmp_path / "photos", per_class=20, size=16)
    run_dir = tmp_path / "run"
    proc = in_process(
        *SMOKE, "dataset=image_folder", f"dataset.root={root}", "dataset.in_memory=false", "dataset.num_workers=2",
        "augment=flip", "trainer.batch_size=8", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["num_params"] == 3 * 16 * 16 * 256 + 256 + 256 * 3 + 3
    assert "train/val/test=40/8/12" in proc.stdout
    assert summary["test/acc"] >= 0.75  # one colour channel per class: easy


def test_missing_dataset_files_are_one_line_errors(tmp_path, in_process):
    proc = in_process(*SMOKE, "dataset=cifar10", "dataset.download=false", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path, env={"DLEXP_DATA_DIR": str(tmp_path / "empty")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: cifar10 files missing in {tmp_path / 'empty' / 'cifar-10-batches-py'}: data_batch_1, ")
    assert "dataset.download=true" in errors[0]
