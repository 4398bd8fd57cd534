"""Datasets in their real on-disk formats through the real loading code, and what the data layer promises:
folds that partition the pool, preprocessing fitted on training data only, augmentation on training
batches only, shifted test sets, the in-memory and streaming paths agreeing."""
from __future__ import annotations

import csv
import math
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, compose_cfg, read_json
from datafiles import (
    class_images, trust_cifar_files, write_arrays, write_cifar, write_house_prices, write_image_csv, write_mnist,
    write_png_folder,
)
from dlexp.train import validate
from dlexp.data import DATASETS, load_folds
from dlexp.data.preprocess import Normalizer
from dlexp.data.splits import carve_test, holdout, kfold
from dlexp.errors import ConfigError, DataError

CPU = torch.device("cpu")


def folds_for(*overrides: str, seed: int = 0):
    return load_folds(validate(compose_cfg(*overrides)), seed=seed, device=CPU)


def everything(loader) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return torch.cat([b.inputs for b in batches]), torch.cat([b.targets for b in batches])


# -- vision datasets through torchvision's classes ---------------------------------------------


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files_load_through_torchvision(tmp_path, name, folder):
    write_mnist(tmp_path, folder, n_train=50, n_test=20, seed=3)
    source = DATASETS.build(name, root=str(tmp_path), download=False, normalize="none")
    x, y = source.train
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.float32
    expected = class_images(np.arange(50) % 10, (28, 28), 3)  # what write_mnist put in the IDX file
    assert torch.equal(x[:, 0], torch.from_numpy(expected).float() / 255)
    assert torch.equal(y, torch.arange(50) % 10)
    assert source.test[0].shape == (20, 1, 28, 28) and source.num_classes == 10


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_pickles_load_with_their_checksums(tmp_path, monkeypatch, classes):
    md5 = write_cifar(tmp_path, classes=classes, per_file=6, n_test=8)
    name = f"cifar{classes}"
    with pytest.raises(DataError, match=r"fail the published md5 checksum.*delete them") as info:
        DATASETS.build(name, root=str(tmp_path), download=False)  # our tiny files are not the published ones
    assert "\n" not in str(info.value)
    trust_cifar_files(monkeypatch, md5, classes)
    source = DATASETS.build(name, root=str(tmp_path), download=False, normalize="none")
    x, y = source.train
    assert x.shape == (30, 3, 32, 32) and source.num_classes == classes
    first = class_images(np.arange(6) % classes % 10, (32, 32, 3), 0)  # (N, H, W, C) written in CIFAR's row layout
    assert torch.equal(x[:6], torch.from_numpy(first).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(y[:6], torch.arange(6) % classes)
    assert source.test[0].shape == (8, 3, 32, 32)
    victim = "data_batch_2" if classes == 10 else "test"
    folder = tmp_path / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    (folder / victim).write_bytes((folder / victim).read_bytes()[:-10])  # truncated download
    with pytest.raises(DataError, match=f"file\\(s\\) {victim} in .* fail the published md5"):
        DATASETS.build(name, root=str(tmp_path), download=False)


def test_offline_and_missing_files_name_the_files_and_the_folder(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("DLEXP_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError) as info:
        DATASETS.build("fashion_mnist")  # default root: the cache dir, download on first use
    message = str(info.value)
    assert "\n" not in message and message.startswith("could not download fashion_mnist")
    assert "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in message
    assert str(tmp_path / "cache" / "FashionMNIST" / "raw") in message
    with pytest.raises(DataError, match=r"cifar10 files missing in .*cifar-10-batches-py: data_batch_1.*batches.meta; "
                                         r"place them there \(or cifar-10-python.tar.gz in"):
        DATASETS.build("cifar10", root=str(tmp_path), download=False)


def test_resize_once_or_per_batch_gives_the_same_batches(tmp_path, monkeypatch):
    write_mnist(tmp_path, "MNIST", n_train=40, n_test=10)
    args = ("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false", "dataset.resize=32", "trainer.batch_size=8")
    once = folds_for(*args)[0]
    monkeypatch.setattr("dlexp.data.folds.RESIZE_ONCE_MAX_BYTES", 0)  # as if the resized set were huge
    lazy = folds_for(*args)[0]
    assert once.input_shape == lazy.input_shape == (1, 32, 32)
    assert once.val.x.shape[-1] == 32 and lazy.val.x.shape[-1] == 28  # stored small, resized per batch
    assert torch.allclose(everything(once.val)[0], everything(lazy.val)[0], atol=1e-6)


def test_auto_resize_lifts_small_images_to_the_model_minimum_and_says_so(capsys):
    lenet = folds_for("model=lenet_bn")[0]  # dataset.resize=auto is the default; digits are 8x8, LeNet needs 12
    assert lenet.input_shape == (1, 12, 12)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["resizing 8x8 images to 12x12, the smallest lenet_bn accepts; dataset.resize=28 gives the textbook size"]
    assert folds_for("model=lenet")[0].input_shape == (1, 28, 28)  # sigmoid LeNet without BN learns only from 28
    assert capsys.readouterr().out.strip().splitlines() == [
        "resizing 8x8 images to 28x28, the smallest lenet learns from (it accepts 12x12); "
        "dataset.resize=28 gives the textbook size"]
    assert folds_for("model=lenet", "dataset.resize=null")[0].input_shape == (1, 8, 8)  # null keeps the size
    assert folds_for("model=lenet", "dataset.resize=20")[0].input_shape == (1, 20, 20)  # an int still works
    assert folds_for("model=mlp")[0].input_shape == (1, 8, 8)  # flat models take any size
    assert folds_for("model=resnet18")[0].input_shape == (1, 8, 8)  # any size works: auto keeps it
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="dataset.resize must be auto, null or a positive number of pixels, got 'big'"):
        folds_for("model=lenet", "dataset.resize=big")


def test_batch_larger_than_the_training_set_is_capped_with_one_notice(run_train, capsys):
    """The README's overfitting example: 20 training examples and the default batch of 64."""
    result, run_dir = run_train("dataset=poly", "dataset.degree=20", "dataset.n_train=20", "model=linreg", "trainer.epochs=2")
    notices = [line for line in capsys.readouterr().out.splitlines() if "batch_size" in line]
    assert notices == ["trainer.batch_size=64 is larger than the 20 training examples; training on full batches of 20"]
    assert read_json(run_dir / "summary.json")["status"] == "completed"
    kfold = folds_for("dataset=poly", "dataset.n_val=0", "dataset.n_train=20", "split=kfold", "split.k=2", "model=linreg")
    assert [fold.train.batch_size for fold in kfold] == [10, 10]  # every fold capped, one notice per run
    assert len([line for line in capsys.readouterr().out.splitlines() if "batch_size" in line]) == 1


def _npy_dir(tmp_path, **kw) -> Path:
    """write_arrays' data as a directory of .npy files (x.npy, y.npy, x_test.npy, y_test.npy)."""
    folder = tmp_path / "npy"
    folder.mkdir()
    with np.load(write_arrays(tmp_path / "a.npz", **kw)) as npz:
        for key in npz.files:
            np.save(folder / f"{key}.npy", npz[key])
    return folder


def test_mmap_arrays_stay_on_disk_and_batch_like_in_memory_ones(tmp_path, run_train):
    from dlexp.data.arrays import MemmapRows

    folder = _npy_dir(tmp_path, n=120, shape=(1, 6, 6), extra=("test",))
    args = ("dataset=arrays", f"dataset.path={folder}", "dataset.normalize=channel", "model=mlp", "trainer.batch_size=16")
    mapped, loaded = folds_for(*args, "dataset.mmap=true")[0], folds_for(*args)[0]
    for part in ("train", "val", "test"):
        x = getattr(mapped, part).x
        assert isinstance(x, MemmapRows) and isinstance(x.array, np.memmap)  # rows are read per batch
    assert isinstance(loaded.train.x, torch.Tensor)
    for part in ("val", "test"):  # the same rows, normalized with the same train-split statistics
        assert torch.allclose(everything(getattr(mapped, part))[0], everything(getattr(loaded, part))[0], atol=1e-5)
    assert torch.equal(everything(mapped.train)[1].sort().values, everything(loaded.train)[1].sort().values)
    # end to end: the same run as in memory, up to float rounding of the normalization statistics
    _, mapped_dir = run_train(*args, "dataset.mmap=true", "trainer.epochs=3", run_dir=tmp_path / "mapped")
    _, loaded_dir = run_train(*args, "trainer.epochs=3", run_dir=tmp_path / "loaded")
    mapped_run, loaded_run = read_json(mapped_dir / "summary.json"), read_json(loaded_dir / "summary.json")
    assert mapped_run["status"] == loaded_run["status"] == "completed"
    assert math.isclose(mapped_run["test/loss"], loaded_run["test/loss"], rel_tol=1e-4)
    with pytest.raises(ConfigError, match="dataset.mmap=true needs dataset.path to be a directory of .npy files"):
        folds_for("dataset=arrays", f"dataset.path={tmp_path / 'a.npz'}", "dataset.mmap=true", "model=mlp")


def test_in_place_normalization_leaves_the_shared_pool_and_test_set_alone(tmp_path):
    path = write_arrays(tmp_path / "a.npz", n=60, shape=(4,), extra=("test",))
    folds = folds_for("dataset=arrays", f"dataset.path={path}", "dataset.normalize=feature", "split=kfold", "split.k=3",
                      "trainer.batch_size=8")
    pool, test = folds.source.train[0].clone(), folds.source.test[0].clone()
    bundles = list(folds)  # each fold normalizes its own rows in place
    assert torch.equal(folds.source.train[0], pool) and torch.equal(folds.source.test[0], test)
    for bundle in bundles:
        x = bundle.train.x
        assert torch.allclose(x.mean(dim=0), torch.zeros(4), atol=1e-5)  # fitted on, and applied to, this fold
    assert not torch.equal(bundles[0].test.x, bundles[1].test.x)  # each fold's statistics, on an untouched test set


def test_normalizer_fitted_in_chunks_matches_the_whole_fit():
    x = torch.rand(37, 3, 5, 5) * 4 + 1
    for mode in ("channel", "feature"):
        whole, chunked = Normalizer.fit(x, mode), Normalizer.fit_chunks(x.split(8), mode)
        assert torch.allclose(whole.mean, chunked.mean, atol=1e-6) and torch.allclose(whole.std, chunked.std, atol=1e-6)


def test_published_normalization_statistics(tmp_path):
    write_mnist(tmp_path, "FashionMNIST", n_train=40, n_test=10)
    bundle = folds_for("dataset=fashion_mnist", f"dataset.root={tmp_path}", "dataset.download=false", "dataset.normalize=dataset",
                       "trainer.batch_size=8")[0]
    assert bundle.preprocess.mean.flatten().tolist() == pytest.approx([0.2860])
    assert bundle.preprocess.std.flatten().tolist() == pytest.approx([0.3530])


# -- image folders and image CSVs ------------------------------------------------------------------


def test_image_folder_in_memory_and_streamed_agree(tmp_path):
    root = write_png_folder(tmp_path / "photos", classes=("cat", "dog", "owl"), per_class=10, size=12)
    args = ("dataset=image_folder", f"dataset.root={root}", "trainer.batch_size=8", "dataset.num_workers=0")
    memory = folds_for(*args)[0]
    stream = folds_for(*args, "dataset.in_memory=false", "dataset.num_workers=2")[0]
    assert type(memory.val).__name__ == "TensorLoader" and type(stream.val).__name__ == "StreamLoader"
    assert memory.num_classes == 3 and memory.input_shape == stream.input_shape == (3, 12, 12)
    assert memory.train.num_examples + memory.val.num_examples + memory.test.num_examples == 30
    for part in ("val", "test"):  # same files, same decoded pixels, same normalization
        (xm, ym), (xs, ys) = everything(getattr(memory, part)), everything(getattr(stream, part))
        assert torch.equal(ym, ys) and torch.allclose(xm, xs, atol=1e-5)
    # pixels as PIL decodes them: the (raw) first image of class "cat" is dominated by red
    source = DATASETS.build("image_folder", root=str(root), num_workers=0, normalize="none", test_fraction=0.0)
    first = np.asarray(Image.open(root / "cat" / "0.png"), dtype=np.float32) / 255
    assert torch.allclose(source.train[0][0], torch.from_numpy(first).permute(2, 0, 1))
    assert source.train[1].tolist() == [0] * 10 + [1] * 10 + [2] * 10


def test_image_folder_with_given_splits(tmp_path):
    for split, n in (("train", 8), ("val", 3), ("test", 4)):
        write_png_folder(tmp_path / split, classes=("a", "b"), per_class=n, size=8)
    bundle = folds_for("dataset=image_folder", f"dataset.root={tmp_path}", "dataset.num_workers=0", "trainer.batch_size=4")[0]
    assert (bundle.train.num_examples, bundle.val.num_examples, bundle.test.num_examples) == (16, 6, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        DATASETS.build("image_folder", root=str(tmp_path / "nope"))
    (tmp_path / "only").mkdir()
    with pytest.raises(DataError, match="Couldn't find any class folder"):
        DATASETS.build("image_folder", root=str(tmp_path / "only"))


def test_image_csv_regression_and_binary(tmp_path, run_train):
    root = write_image_csv(tmp_path / "faces", n=40, binary=False)
    source = DATASETS.build("image_csv", root=str(root), csv="scores.csv", channels=1, num_workers=0, test_fraction=0.0)
    table = pd.read_csv(root / "scores.csv")
    assert source.task == "regression" and source.num_classes == 1
    assert torch.allclose(source.train[1][:, 0], torch.tensor(table["score"].to_numpy(), dtype=torch.float32))
    assert source.train[0].shape == (40, 1, 10, 10)

    root = write_image_csv(tmp_path / "smiles", n=40, binary=True)
    _, run_dir = run_train(
        "dataset=image_csv", f"dataset.root={root}", "dataset.csv=scores.csv", "dataset.num_workers=0",
        "trainer.batch_size=8", "trainer.epochs=3",
    )
    summary = read_json(run_dir / "summary.json")
    assert summary["monitor"] == "val/acc" and 0.0 <= summary["test/acc"] <= 1.0  # BCE + accuracy
    assert summary["test/loss"] > 0

    (root / "scores.csv").write_text("file,score\nimg/0.png,1\nimg/missing.png,0\n")
    with pytest.raises(DataError, match=r"1 image file\(s\) listed in .* do not exist, e.g. .*missing.png"):
        DATASETS.build("image_csv", root=str(root), csv="scores.csv")


# -- tabular, polynomial and array sources -------------------------------------------------------------


def test_house_prices_encoding_uses_the_training_fold_only(tmp_path):
    train_csv, test_csv = write_house_prices(tmp_path, n_train=60, n_test=10)
    folds = folds_for("dataset=house_prices", f"dataset.train_csv={train_csv}", f"dataset.test_csv={test_csv}",
                      "split=kfold", "split.k=3", "trainer.batch_size=8")
    frame = pd.read_csv(train_csv)
    numeric = ["LotArea", "OverallQual", "LotFrontage"]
    for (train_idx, val_idx), bundle in zip(folds.indices, folds):
        x_train, x_val = bundle.train.x, bundle.val.x
        for j, col in enumerate(numeric):
            values = frame[col].to_numpy()[train_idx]
            present = ~np.isnan(values)
            expected = (values[present] - values[present].mean()) / values[present].std()
            assert torch.allclose(x_train[torch.from_numpy(present), j], torch.tensor(expected, dtype=torch.float32), atol=1e-4)
            assert torch.all(x_train[torch.from_numpy(~present), j] == 0)  # missing -> the training mean
        # one-hot MSZoning over the categories of the train fold, plus the NA dummy
        zoning = frame["MSZoning"].to_numpy()[val_idx]
        block = x_val[:, 3 : 3 + 4]  # 3 numeric columns, then MSZoning: 3 categories + NA
        assert torch.equal(block.sum(dim=1), torch.ones(len(val_idx)))
        assert torch.equal(block[:, 3].bool(), torch.from_numpy(pd.isna(zoning)))
        assert bundle.input_shape == (3 + 4 + 3,)  # + Street: 2 categories + NA
        y = np.log(frame["SalePrice"].to_numpy()[train_idx])
        assert bundle.train.y.mean().item() == pytest.approx(0.0, abs=1e-5)  # centered on the train fold's mean
        assert torch.allclose(bundle.val.y[:, 0] + torch.tensor(y.mean(), dtype=torch.float32),
                              torch.tensor(np.log(frame["SalePrice"].to_numpy()[val_idx]), dtype=torch.float32), atol=1e-4)


def test_house_prices_unseen_category_is_all_zero():
    from dlexp.data.tabular import TabularEncoder

    x_train = torch.tensor([[1.0, 0.0], [3.0, 1.0], [float("nan"), float("nan")]])  # 1 numeric, 1 categorical column
    encoder = TabularEncoder.fit(x_train, n_numeric=1)
    out = encoder(torch.tensor([[2.0, 2.0], [5.0, 0.0]]))  # code 2 never seen in training
    assert out.tolist() == [[0.0, 0.0, 0.0, 0.0], [3.0, 1.0, 0.0, 0.0]]  # (x - 2) / 1, one-hot {0, 1}, NA


def test_poly_features_and_targets():
    source = DATASETS.build("poly", degree=20, n_train=50, n_val=0, n_test=10, noise=0.1)
    x, y = source.train
    assert x.shape == (50, 21) and source.val is None and source.test[0].shape == (10, 21)
    t = x[:, 1]  # x^1 / 1!
    for i in (0, 2, 5, 20):
        assert torch.allclose(x[:, i], t**i / math.factorial(i), rtol=1e-4, atol=1e-30)
    cubic = 5 + 1.2 * t - 3.4 * t**2 / 2 + 5.6 * t**3 / 6
    assert (y[:, 0] - cubic).std().item() == pytest.approx(0.1, abs=0.03)  # the N(0, 0.1^2) noise


@pytest.mark.slow  # 3 runs of 60 epochs: the course's lesson (the fast tier: the features and targets, above)
def test_poly_underfits_fits_and_overfits(run_train, tmp_path):
    common = ("dataset=poly", "model=linreg", "optim=adam", "optim.lr=0.1", "scheduler=none", "trainer.batch_size=20", "trainer.epochs=60",
              "trainer.checkpoints=false", "trainer.early_stopping.patience=null")
    rmse = {}
    for degree, n_train in ((3, 100), (1, 100), (20, 20)):
        _, run_dir = run_train(*common, f"dataset.degree={degree}", f"dataset.n_train={n_train}", run_dir=tmp_path / f"d{degree}")
        with open(run_dir / "metrics.csv", newline="") as handle:
            last = list(csv.DictReader(handle))[-1]
        rmse[degree] = (float(last["train/rmse"]), read_json(run_dir / "summary.json")["test/rmse"])
    assert rmse[3][1] < 0.3  # the true model: close to the 0.1 noise
    assert rmse[1][0] > 2.0 and rmse[1][1] > 2.0  # a line cannot follow the cubic, even on its training data
    assert rmse[20][1] > 2 * rmse[20][0]  # 21 features for 20 examples: fits its training data, not new data


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_arrays_infer_the_task_and_take_any_shape(tmp_path, suffix):
    path = write_arrays(tmp_path / f"cls{suffix}", n=60, shape=(4, 6), task="classification")  # sequences (N, T, D)
    source = DATASETS.build("arrays", path=str(path))
    assert source.task == "classification" and source.num_classes == 3
    assert source.train[0].shape == (48, 4, 6) and source.test[0].shape == (12, 4, 6)  # 20% held out as the test set
    path = write_arrays(tmp_path / f"reg{suffix}", n=30, shape=(2, 5, 5), task="regression", extra=("val", "test"))
    source = DATASETS.build("arrays", path=str(path))
    assert source.task == "regression" and source.train[1].shape == (30, 1) and source.val[0].shape == (30, 2, 5, 5)
    path = write_arrays(tmp_path / f"bin{suffix}", n=30, task="binary")
    source = DATASETS.build("arrays", path=str(path))
    assert source.task == "binary" and set(source.train[1].flatten().tolist()) == {0.0, 1.0}


def test_arrays_hold_out_a_stratified_test_split_in_place_unless_the_file_has_one(tmp_path):
    path = write_arrays(tmp_path / "a.npz", n=100, shape=(3,), task="classification")
    with np.load(path) as npz:
        x, y = torch.from_numpy(npz["x"]), torch.from_numpy(npz["y"])
    source = DATASETS.build("arrays", path=str(path))
    (pool_x, pool_y), (test_x, test_y) = source.train, source.test
    assert len(pool_y) == 80 and len(test_y) == 20
    pool_idx, test_idx = carve_test(y, "classification", 0.2, 0)
    assert torch.equal(pool_x, x[pool_idx]) and torch.equal(test_x, x[test_idx])  # the file's rows, in its order
    assert pool_x.untyped_storage().data_ptr() == test_x.untyped_storage().data_ptr()  # one copy: views of the file's x
    shares = [np.bincount(part.numpy(), minlength=3) / len(part) for part in (y, test_y)]
    assert np.abs(shares[0] - shares[1]).max() <= 1 / 20  # every class keeps its share, to within one example
    assert DATASETS.build("arrays", path=str(path), test_fraction=0.0).test is None
    given = DATASETS.build("arrays", path=str(write_arrays(tmp_path / "t.npz", n=100, extra=("test",))))
    assert len(given.train[1]) == 100 and len(given.test[1]) == 100  # the file's own test split, nothing carved
    mapped = DATASETS.build("arrays", path=str(_npy_dir(tmp_path, n=100, shape=(3,))), mmap=True)
    assert torch.equal(mapped.test[0][torch.arange(20)], x[test_idx])  # memory-mapped: row numbers only


def test_a_bad_value_in_arrays_is_named_by_its_row_in_the_file_not_in_a_split(tmp_path):
    path = write_arrays(tmp_path / "a.npz", n=100, shape=(3,))
    data = dict(np.load(path))
    data["x"][96, 1] = np.inf  # a row the test split takes
    np.savez(path, **data)
    assert 96 in carve_test(torch.from_numpy(data["y"]), "classification", 0.2, 0)[1]
    with pytest.raises(DataError, match=r"the train inputs of dataset 'arrays' hold 1 NaN or inf value\(s\) \(first in example 96\)"):
        DATASETS.build("arrays", path=str(path))


def test_arrays_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 2)))
    with pytest.raises(DataError, match="must hold arrays named x and y; it has x"):
        DATASETS.build("arrays", path=str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 2)), y=np.zeros(2, dtype=np.int64))
    with pytest.raises(DataError, match="x has 3 rows but y has 2"):
        DATASETS.build("arrays", path=str(tmp_path / "short.npz"))
    with pytest.raises(DataError, match="does not exist"):
        DATASETS.build("arrays", path=str(tmp_path / "nope.npz"))


# -- splits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [None, np.arange(103) % 4])
def test_kfold_val_parts_are_disjoint_and_cover_the_pool(labels):
    folds = kfold(103, labels, seed=7, k=5)
    vals = [set(v.tolist()) for _, v in folds]
    assert len(folds) == 5 and sorted(len(v) for v in vals) == [20, 20, 21, 21, 21]
    assert set().union(*vals) == set(range(103)) and sum(len(v) for v in vals) == 103
    for train, val in folds:
        assert set(train.tolist()).isdisjoint(val.tolist()) and len(train) + len(val) == 103
    if labels is not None:  # stratified: every class in every val part
        assert all(len(set(labels[v])) == 4 for _, v in folds)
    assert [v.tolist() for _, v in kfold(103, labels, seed=7, k=5)] == [v.tolist() for _, v in folds]  # seeded
    assert [v.tolist() for _, v in kfold(103, labels, seed=8, k=5)] != [v.tolist() for _, v in folds]


def test_split_errors():
    with pytest.raises(ConfigError, match="split.k must be >= 2"):
        validate(compose_cfg("split=kfold", "split.k=1"))
    with pytest.raises(ConfigError, match="more than the 3 examples"):
        kfold(3, None, 0, k=4)
    train, val = holdout(10, np.array([0] * 9 + [1]), 0, val_fraction=0.3)[0]  # a class of 1 cannot be stratified
    assert len(val) == 3


def test_normalization_statistics_come_from_the_training_part_only():
    folds = folds_for("split=kfold", "split.k=3")  # digits, normalize=channel
    pool_x = folds.source.train[0]
    means = []
    for (train_idx, _val_idx), bundle in zip(folds.indices, folds):
        train_mean, train_std = pool_x[train_idx].mean(), pool_x[train_idx].std()
        assert bundle.preprocess.mean.item() == pytest.approx(train_mean.item(), abs=1e-6)
        assert bundle.preprocess.std.item() == pytest.approx(train_std.item(), abs=1e-6)
        assert bundle.train.x.mean().item() == pytest.approx(0.0, abs=1e-5)
        assert bundle.val.x.mean().item() != pytest.approx(0.0, abs=1e-5)  # val is not fitted on
        means.append(bundle.preprocess.mean.item())
    assert len(set(means)) == 3 and pool_x.mean().item() not in means


# -- augmentation and shift ------------------------------------------------------------------------------


@pytest.mark.parametrize("augment", ["flip", "rotate", "scale", "crop", "noise", "standard"])
def test_augmentation_changes_training_batches_only(augment):
    plain = folds_for("trainer.batch_size=32")[0]
    bundle = folds_for(f"augment={augment}", "trainer.batch_size=32")[0]
    for part in ("val", "test"):
        assert getattr(bundle, part).augment is None
        assert torch.equal(everything(getattr(bundle, part))[0], everything(getattr(plain, part))[0])
    (xa, ya), (xp, yp) = everything(bundle.train), everything(plain.train)
    assert torch.equal(ya, yp)  # same shuffle order: the augmenter has its own generator
    assert xa.shape == xp.shape and not torch.equal(xa, xp)
    assert not torch.equal(everything(bundle.train)[0], xa)  # fresh random parameters every epoch


def test_flip_and_crop_are_exact_per_example():
    from dlexp.data.augment import Augmenter, Crop, Flip

    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5).repeat(50, 1, 1, 1)  # (100, 3, 5, 5)
    flipped = Augmenter([Flip(0.5, True, False)], device=CPU)(x, 0)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored) and 25 < int(mirrored.sum()) < 75
    cropped = Augmenter([Crop(2)], device=CPU)(x, 0)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(0, 100, 9):  # each output is one 5x5 window of the padded example
        windows = [padded[i, :, dy : dy + 5, dx : dx + 5] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(cropped[i], w) for w in windows)


def test_augmented_epoch_replays_exactly_from_a_mid_epoch_checkpoint():
    loader = folds_for("augment=standard", "trainer.batch_size=64")[0].train
    list(loader)  # epoch 1
    epoch = [batch.inputs for batch in loader]  # epoch 2, as trained
    state = loader.state_dict(mid_epoch=True)  # what a checkpoint taken during epoch 2 holds
    list(loader)  # the run goes on (or is killed); a resumed run restores the state
    loader.load_state_dict(state)
    resumed = [batch.inputs for batch in loader.batches(skip=3)]
    assert len(resumed) == len(epoch) - 3
    assert all(torch.equal(a, b) for a, b in zip(resumed, epoch[3:]))


def test_augment_that_needs_images_refuses_vectors():
    with pytest.raises(ConfigError, match="augment=flip needs image data"):
        folds_for("dataset=synthetic_linear", "augment=flip")[0]
    folds_for("dataset=synthetic_linear", "augment=noise")[0]  # noise works for any shape


def test_label_shift_resamples_class_priors():
    folds = folds_for("shift=label", "shift.imbalance=8")
    counts = np.bincount(folds.shifted_test[1].numpy(), minlength=10)
    clean = np.bincount(folds.source.test[1].numpy(), minlength=10)
    assert np.all(counts <= clean) and counts.min() >= 1
    assert counts.max() / counts.min() == pytest.approx(8, rel=0.35)
    assert len(np.unique(counts)) >= 8  # geometric priors, not a uniform subsample


def test_covariate_shift_on_images_and_tables(tmp_path):
    folds = folds_for("shift=covariate", "shift.brightness=0.1", "shift.contrast=0.5")
    raw = folds.source.test[0]
    mean = raw.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(folds.shifted_test[0], ((raw - mean) * 0.5 + mean + 0.1).clamp(0, 1), atol=1e-6)
    train_csv, test_csv = write_house_prices(tmp_path, n_train=60, n_test=10)
    folds = folds_for("dataset=house_prices", f"dataset.train_csv={train_csv}", "dataset.test_fraction=0.25", "shift=covariate")
    raw, shifted = folds.source.test[0], folds.shifted_test[0]
    assert torch.equal(shifted[:, 3:].nan_to_num(-1), raw[:, 3:].nan_to_num(-1))  # category codes untouched
    area = raw[:, 0]
    assert torch.allclose(shifted[:, 0] - area, 0.5 * area.std(unbiased=False).expand(len(area)), rtol=1e-4)


def test_shift_needs_a_test_set_and_classes():
    with pytest.raises(ConfigError, match="shift=label resamples class priors.*regression task; use shift=covariate"):
        folds_for("dataset=synthetic_linear", "model=linreg", "shift=label")
    with pytest.raises(DataError, match="shift=covariate is applied to the test set, but dataset 'poly' has none"):
        folds_for("dataset=poly", "dataset.n_test=0", "model=linreg", "shift=covariate")


def test_summary_reports_clean_and_shifted_test_metrics(run_train):
    result, run_dir = run_train("shift=covariate", "shift.contrast=0.2", "trainer.epochs=3")
    summary = read_json(run_dir / "summary.json")
    assert summary["test/acc"] > 0.8
    assert 0.0 <= summary["test_shifted/acc"] < summary["test/acc"]  # low contrast hurts
    assert summary["test_shifted/loss"] > summary["test/loss"]


def test_kfold_run_writes_every_fold_and_their_mean_and_std(run_train):
    result, run_dir = run_train("split=kfold", "split.k=3", "trainer=smoke", "trainer.epochs=2")
    summary = read_json(run_dir / "summary.json")
    folds = [read_json(run_dir / f"fold_{i}" / "summary.json") for i in (1, 2, 3)]
    assert not (run_dir / "fold_4").exists() and summary["folds"] == 3
    for key in ("best/val/acc", "test/acc", "test/loss"):
        values = [f[key] for f in folds]
        assert summary[key] == pytest.approx(np.mean(values)) and summary[f"std/{key}"] == pytest.approx(np.std(values, ddof=1))
    assert result.objective == summary["best/val/acc"]
    assert [r["best/val/acc"] for r in summary["fold_results"]] == [f["best/val/acc"] for f in folds]
    for i in (1, 2, 3):
        with open(run_dir / f"fold_{i}" / "metrics.csv", newline="") as handle:
            assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2]
        assert torch.load(run_dir / f"fold_{i}" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2


def test_a_fold_that_stops_gives_the_run_its_status():
    from dlexp.runs.kfold import combine_fold_summaries as summarize_folds

    done = {"status": "completed", "stop_reason": "max_epochs", "best/val/acc": 0.9, "test/acc": 0.8}
    diverged = {"status": "diverged", "stop_reason": "non_finite", "best/val/acc": 0.5, "hint": "lower optim.lr"}
    summary = summarize_folds([done, diverged])
    assert summary["status"] == "diverged" and summary["hint"] == "lower optim.lr"
    assert summary["stop_reason"] == "mixed" and summary["best/val/acc"] == pytest.approx(0.7)
    assert summary["test/acc"] == 0.8 and math.isnan(summary["std/test/acc"])  # only one fold was tested
    assert [r["status"] for r in summary["fold_results"]] == ["completed", "diverged"]


def test_kfold_refuses_a_fixed_val_set():
    with pytest.raises(ConfigError, match="split=kfold needs one training pool, but dataset 'poly' comes with its own val set"):
        folds_for("dataset=poly", "model=linreg", "split=kfold")
    assert len(folds_for("dataset=poly", "dataset.n_val=0", "model=linreg", "split=kfold", "split.k=4")) == 4


def test_archives_placed_by_hand_are_unpacked_without_a_download(tmp_path):
    import gzip
    import tarfile

    write_mnist(tmp_path / "plain", "MNIST", n_train=30, n_test=10)
    raw = tmp_path / "gz" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (tmp_path / "plain" / "MNIST" / "raw").iterdir():  # only the .gz files, as downloaded by hand
        (raw / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    source = DATASETS.build("mnist", root=str(tmp_path / "gz"), download=False, normalize="none")
    plain = DATASETS.build("mnist", root=str(tmp_path / "plain"), download=False, normalize="none")
    assert torch.equal(source.train[0], plain.train[0]) and torch.equal(source.test[1], plain.test[1])

    write_cifar(tmp_path / "files", per_file=4, n_test=4)
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "files" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (tmp_path / "tar").mkdir()
    (tmp_path / "cifar-10-python.tar.gz").rename(tmp_path / "tar" / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="fail the published md5"):  # unpacked, then checked like any download
        DATASETS.build("cifar10", root=str(tmp_path / "tar"), download=False)
    assert (tmp_path / "tar" / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_layer_summary_sees_inputs_resized_per_batch_and_streamed(tmp_path, monkeypatch):
    from dlexp.train import summarize_layers as summarize

    write_mnist(tmp_path, "MNIST", n_train=40, n_test=10)
    monkeypatch.setattr("dlexp.data.folds.RESIZE_ONCE_MAX_BYTES", 0)  # as for 60,000 images at 224x224
    facts, _, _ = summarize(compose_cfg("dataset=mnist", f"dataset.root={tmp_path}", "dataset.download=false",
                                        "dataset.resize=36", "trainer.batch_size=8"))
    assert facts["input"] == (1, 1, 36, 36)
    root = write_png_folder(tmp_path / "photos", per_class=6, size=10)
    facts, _, _ = summarize(compose_cfg("dataset=image_folder", f"dataset.root={root}", "dataset.in_memory=false",
                                        "dataset.num_workers=0", "trainer.batch_size=4"))
    assert facts["input"] == (1, 3, 10, 10)


def test_a_holdout_split_partitions_the_pool_in_place_without_a_second_copy():
    from dlexp.data.partition import take as _take
    from dlexp.data.splits import partition_in_place

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(10_000, 3, 4, generator=gen), torch.randint(5, (10_000,), generator=gen)
    train_idx, val_idx = holdout(len(x), y.numpy(), 0, val_fraction=0.2)[0]
    expected_train, expected_val = _take((x, y), train_idx), _take((x, y), val_idx)
    storage = x.untyped_storage().data_ptr()
    (x_train, y_train), (x_val, y_val) = partition_in_place((x, y), train_idx, val_idx)
    assert torch.equal(x_train, expected_train[0]) and torch.equal(y_train, expected_train[1])
    assert torch.equal(x_val, expected_val[0]) and torch.equal(y_val, expected_val[1])
    assert x_train.untyped_storage().data_ptr() == storage == x_val.untyped_storage().data_ptr()  # views, no copy


def test_a_holdout_split_needs_no_room_for_the_val_rows_either(tmp_path):
    """Peak RSS while 200 MB of rows are split 80/20: setting the 40 MB of val rows aside would show."""
    code = """
import resource, numpy as np, torch
from dlexp.data.splits import holdout, partition_in_place
x = torch.ones(50_000, 1000)  # 200 MB, every page touched
y = torch.zeros(50_000, dtype=torch.int64)
train_idx, val_idx = holdout(len(x), None, 0, val_fraction=0.2)[0]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
partition_in_place((x, y), train_idx, val_idx)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)  # KiB -> MiB
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) < 8  # MiB: the index arrays and one row, not 40 MB of val rows


# -- shift corrections ------------------------------------------------------------------------------


def test_loader_extras_travel_with_their_rows_when_shuffled():
    from dlexp.data.batching import TensorLoader

    y = torch.arange(23)
    loader = TensorLoader(y.float().unsqueeze(1), y, 5, shuffle=True, seed=3, extras={"weight": 10.0 * y})
    batches = list(loader)
    assert all(torch.equal(b.extras["weight"], 10.0 * b.targets) for b in batches)
    assert sorted(torch.cat([b.targets for b in batches]).tolist()) == list(range(23))
    assert batches[0].targets.tolist() != [0, 1, 2, 3, 4]  # shuffled
    with pytest.raises(ValueError, match="extras\\['weight'\\] and y differ in length: 3 vs 23"):
        TensorLoader(y.float(), y, 5, extras={"weight": torch.ones(3)})


def test_importance_weights_estimate_the_density_ratio_and_are_clipped():
    from dlexp.data.shift import importance_weights

    gen = torch.Generator().manual_seed(0)
    x_train = torch.randn(4000, 1, generator=gen)  # N(0, 1)
    x_test = torch.randn(2000, 1, generator=gen) + 1.0  # N(1, 1): p_test/p_train = exp(x - 1/2)
    w = importance_weights(x_train, x_test, max_weight=3.0)
    near = lambda v: w[(x_train[:, 0] - v).abs() < 0.1].mean().item()  # noqa: E731
    assert near(0.0) == pytest.approx(math.exp(-0.5), rel=0.2) and near(-1.0) == pytest.approx(math.exp(-1.5), rel=0.3)
    assert w.max().item() == pytest.approx(3.0) and w.min().item() > 0  # far right of the training inputs: clipped
    order = x_train[:, 0].argsort()
    assert torch.all(w[order].diff() >= 0)  # monotone in x, as the true ratio is


def test_bbse_recovers_the_prior_ratio_through_a_confusion_matrix():
    from dlexp.data.shift import bbse

    # val: 100 per class; class 0 is called 1 a fifth of the time, class 1 always right, class 2 called 0 a tenth
    val_y = np.repeat([0, 1, 2], 100)
    val_pred = np.r_[np.repeat([0, 1], [80, 20]), np.repeat(1, 100), np.repeat([2, 0], [90, 10])]
    w_true = np.array([1.8, 0.9, 0.3])  # test priors 0.6 / 0.3 / 0.1 over the balanced 1/3 each
    # predicted-class rates on the test set, C @ w_true = [0.49, 0.42, 0.09], realised exactly by 100 predictions
    test_pred = np.repeat([0, 1, 2], [49, 42, 9])
    assert bbse(val_pred, val_y, test_pred, 3) == pytest.approx(w_true, abs=1e-9)
    assert bbse(val_y, val_y, np.repeat([0, 1], [50, 50]), 3) == pytest.approx([1.5, 1.5, 0.0])


def test_label_shift_scores_reweight_predictions_toward_the_estimated_priors():
    from dlexp.data.shift import label_shift_scores

    val_y = torch.arange(4) % 2  # balanced val, predicted perfectly
    val_logits = torch.nn.functional.one_hot(val_y, 2).float() * 5
    test_y = torch.tensor([0, 0, 0, 1])
    # three confident class-0 predictions and one unsure example that leans to class 1 (55%) but is class 0
    test_logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [5.0, 0.0], [0.0, 0.2]])
    scores = label_shift_scores(val_logits, val_y, test_logits, torch.tensor([0, 0, 0, 0]), 2)
    assert scores["label_shift/estimated_priors"] == [0.75, 0.25]  # predicted rates, as C is the identity / 2
    assert scores["label_shift/true_priors"] == [1.0, 0.0] and scores["label_shift/prior_error"] == pytest.approx(0.5)
    assert scores["test_shifted_corrected/acc"] == 1.0  # 0.45 * 1.5 beats 0.55 * 0.5: the unsure one goes to class 0
    assert label_shift_scores(val_logits, val_y, test_logits, test_y, 2)["test_shifted_corrected/acc"] == 0.75


def test_importance_weighted_training_records_its_weights_in_the_summary(run_train):
    _, run_dir = run_train("dataset=wedge", "dataset.num_examples=300", "dataset.num_test=100", "model=softmax",
                           "shift=covariate", "shift.correct=importance", "shift.max_weight=4", "trainer.epochs=1")
    summary = read_json(run_dir / "summary.json")
    low, mid, high = (summary[f"importance_weight/{k}"] for k in ("min", "mean", "max"))
    assert 0 < low < mid < high <= 4.0 and high == pytest.approx(4.0)  # the far-out examples hit the clip
    assert "test_shifted/acc" in summary and "label_shift/prior_error" not in summary


def test_a_shift_correction_that_cannot_apply_is_a_config_error(tmp_path, in_process):
    proc = in_process("dataset=wedge", "shift=covariate", "shift.max_weight=5", "trainer.progress=false", cwd=tmp_path)
    assert_one_line_error(proc, "shift.max_weight clips importance weights, which shift.correct=none does not use; "
                                "set shift.correct=importance or drop shift.max_weight")
    with pytest.raises(ConfigError, match="shift.correct=bbse estimates class priors .* regression task"):
        folds_for("dataset=synthetic_linear", "model=linreg", "shift=label", "shift.correct=bbse")
    with pytest.raises(ConfigError, match="shift.correct must be one of none, importance, got 'bbse'"):
        validate(compose_cfg("shift=covariate", "shift.correct=bbse"))
