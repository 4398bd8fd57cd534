"""dataset=csv: a table file (CSV or Parquet) and the name of its target column; the task, the kinds of the
feature columns and the id columns inferred, each overridable; bad files refused in one line, writing nothing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import cli_in_process, compose_cfg, read_json
from datafiles import write_png_bytes, write_table, write_table_with_a_typo
from dlexp.data import DATASETS, load_folds
from dlexp.errors import DataError
from dlexp.train import train, validate

CPU = torch.device("cpu")
SMOKE = ["trainer=smoke", "trainer.progress=false"]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("csv") / "trees.csv")


def _source(path: Path, target: str, **kw):
    return DATASETS.build("csv", path=str(path), target=target, test_fraction=0.0, **kw)


# -- what is inferred, and its overrides ---------------------------------------------------------------


def test_text_labels_are_classes_in_sorted_order_and_id_columns_are_left_out(table, capfd):
    source = _source(table, "species")
    frame = pd.read_csv(table)
    assert source.task == "classification" and source.num_classes == 3
    assert source.train[1].tolist() == frame["species"].map({"ash": 0, "oak": 1, "yew": 2}).tolist()
    x = source.train[0]  # raw: size, rooms, built (days), price; then the codes of colour and garden
    assert x.shape == (120, 6)
    assert torch.allclose(x[:, 0], torch.tensor(frame["size"].to_numpy(), dtype=torch.float32), equal_nan=True)
    days = (pd.to_datetime(frame["built"]) - pd.Timestamp("1970-01-01")).dt.days.to_numpy()
    assert torch.equal(x[:, 2], torch.tensor(days, dtype=torch.float32))
    assert torch.equal(x[:, 4].isnan(), torch.tensor(frame["colour"].isna().to_numpy()))  # NA stays missing
    assert source.covariate_mask.tolist() == [True] * 4 + [False] * 2
    said = capfd.readouterr().out
    assert ("dataset=csv: target 'species' is classification, 3 classes: ash=0, oak=1, yew=2; features: 3 numeric, "
            "2 categorical, 1 date (built); left out: id (ids: every value different; dataset.drop=[] keeps them)") in said


@pytest.mark.parametrize(("target", "overrides", "task", "outputs"), [
    ("price", {}, "regression", 1),  # floats
    ("rooms", {}, "classification", 5),  # integers with few values: the labels 1..5 are classes 0..4
    ("garden", {}, "classification", 2),  # booleans: two classes, softmax
    ("garden", {"task": "binary"}, "binary", 1),  # or one logit
    ("rooms", {"task": "regression"}, "regression", 1),
    ("price", {"task": "classification"}, "classification", 120),  # every price its own class, as asked
])
def test_the_task_is_inferred_from_the_target_and_can_be_overridden(table, target, overrides, task, outputs):
    source = _source(table, target, **overrides)
    assert (source.task, source.num_classes) == (task, outputs)
    y = source.train[1]
    assert y.shape == ((120,) if task == "classification" else (120, 1))
    assert source.task_args == ({"standardize": True} if task == "regression" else {})
    if target == "rooms" and task == "classification":
        assert torch.equal(y, torch.tensor(pd.read_csv(table)["rooms"].to_numpy() - 1))


def test_categorical_and_drop_override_the_columns_kinds(table):
    inferred = _source(table, "species").train[0]
    source = _source(table, "species", categorical=["rooms"], drop=["id", "built", "price"])
    x = source.train[0]  # size; then rooms, colour, garden as codes
    assert x.shape == (120, 4) and source.covariate_mask.tolist() == [True, False, False, False]
    assert sorted(x[:, 1].unique().tolist()) == [0, 1, 2, 3, 4]  # rooms as five category codes
    kept = _source(table, "species", drop=[]).train[0]
    assert kept.shape[1] == inferred.shape[1] + 1 and torch.equal(kept[:, 0], torch.arange(1.0, 121))  # id kept


def test_a_parquet_file_gives_the_same_data_as_the_csv(table, tmp_path):
    parquet = write_table(tmp_path / "trees.parquet")
    for target in ("species", "price"):
        a, b = _source(table, target), _source(parquet, target)
        assert torch.allclose(a.train[0], b.train[0], equal_nan=True) and torch.equal(a.train[1], b.train[1])


def test_booleans_with_empty_cells_stay_categorical(tmp_path):
    path = tmp_path / "members.csv"  # pandas reads TRUE/FALSE with gaps as Python objects, not as booleans
    path.write_text("member,spend\n" + "".join(f"{['TRUE', 'FALSE', ''][i % 3]},{i}.5\n" for i in range(12)))
    source = _source(path, "spend")
    assert source.covariate_mask.tolist() == [False]  # one categorical column: True, False and NA
    assert source.train[0][:3, 0].nan_to_num(-1).tolist() == [0.0, 1.0, -1.0]


def test_a_semicolon_separated_csv_with_decimal_commas_reads_as_numbers(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("width;kind\n" + "".join(f"{i},5;{'ab'[i % 2]}\n" for i in range(10)))
    source = _source(path, "kind")
    assert torch.equal(source.train[0][:, 0], torch.arange(10) + 0.5)


# -- trained end to end ------------------------------------------------------------------------------


def test_classification_with_categories_and_missing_values_trains_end_to_end(table, run_train):
    result, run_dir = run_train("dataset=csv", f"dataset.path={table}", "dataset.target=species", "model=mlp",
                                "trainer.epochs=60", "trainer.batch_size=16", "trainer.checkpoints=false")
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["monitor"] == "val/acc"
    assert summary["test/acc"] >= 0.8  # 24 held-out rows; the labels follow colour and size
    assert summary["num_params"] == (4 + 4 + 3) * 256 + 256 + 256 * 3 + 3  # 4 numeric, colour 3 + NA, garden 2 + NA


def test_folds_fit_the_encoding_and_center_the_target_on_their_train_part(table):
    cfg = validate(compose_cfg("dataset=csv", f"dataset.path={table}", "dataset.target=price", "split=kfold", "split.k=3"))
    folds = load_folds(cfg, seed=0, device=CPU)
    pool_x, pool_y = folds.source.train
    assert len(pool_y) == 96 and len(folds.source.test[1]) == 24  # dataset.test_fraction: 0.2 by default
    for (train_idx, val_idx), bundle in zip(folds.indices, folds):
        size = pool_x[train_idx, 0]
        present = ~size.isnan()
        expected = (size[present] - size[present].mean()) / size[present].std(unbiased=False)
        assert torch.allclose(bundle.train.x[present, 0], expected, atol=1e-5)
        assert torch.all(bundle.train.x[~present, 0] == 0)  # missing -> the train part's mean
        assert bundle.train.y.mean().item() == pytest.approx(0.0, abs=1.0)  # centered on the train part (prices ~40,000)
        assert torch.allclose(bundle.val.y + pool_y[train_idx].mean(), pool_y[val_idx], atol=0.05)


def test_regression_reports_metrics_in_the_targets_units_over_k_folds(table, run_train):
    result, run_dir = run_train("dataset=csv", f"dataset.path={table}", "dataset.target=price", "split=kfold", "split.k=3",
                                "trainer.epochs=40", "trainer.batch_size=16", "trainer.checkpoints=false")
    summary = read_json(run_dir / "summary.json")
    prices = pd.read_csv(table)["price"]
    assert summary["folds"] == 3 and summary["monitor"] == "val/rmse"
    assert [read_json(run_dir / f"fold_{i}" / "summary.json")["status"] for i in (1, 2, 3)] == ["completed"] * 3
    assert 500 < summary["test/rmse"] < 0.5 * prices.std()  # in the prices' units, and well under their spread
    assert summary["test/loss"] < 0.5  # the loss is that of the standardized prices: a fraction of their variance


# -- bad inputs: one line, nothing written ------------------------------------------------------------


def _bad_tables(root: Path, table: Path) -> dict[str, tuple[list[str], str]]:
    """Refused commands: (overrides, what the one error line says), with the files they name written in ``root``."""
    frame = pd.read_csv(table)
    frame.assign(species="yes").to_csv(root / "one_class.csv", index=False)
    frame.assign(species=frame["species"].where(frame.index != 4, None)).to_csv(root / "no_label.csv", index=False)
    (root / "empty.csv").write_text("")
    (root / "header.csv").write_text("size,species\n")
    write_table_with_a_typo(root / "typo.csv")
    write_png_bytes(root / "image.csv")
    (root / "blob.csv").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "text.parquet").write_text(table.read_text())
    good = f"dataset.path={table}"
    return {
        "unknown target": ([good, "dataset.target=specie"],
                           "dataset.target names 'specie', which is not a column of"),
        "did you mean": ([good, "dataset.target=specie"], "Did you mean 'species'? Columns: id, size, rooms, colour,"),
        "one class": ([f"dataset.path={root / 'one_class.csv'}", "dataset.target=species"],
                      "has one class ('yes') in every row: a classifier needs at least 2"),
        "text among numbers": ([f"dataset.path={root / 'typo.csv'}", "dataset.target=species"],
                               "column 'size' of " + str(root / "typo.csv") + " holds numbers, but row 7 (line 8) has 'unknown'"),
        "empty target cell": ([f"dataset.path={root / 'no_label.csv'}", "dataset.target=species"],
                              "is empty in 1 row(s), first in row 5 (line 6)"),
        "empty file": ([f"dataset.path={root / 'empty.csv'}", "dataset.target=species"], "empty.csv is empty"),
        "header only": ([f"dataset.path={root / 'header.csv'}", "dataset.target=species"], "has a header line but no rows"),
        "an image": ([f"dataset.path={root / 'image.csv'}", "dataset.target=species"], "is a PNG image, not a table"),
        "a binary file": ([f"dataset.path={root / 'blob.csv'}", "dataset.target=species"], "is a binary file, not a table"),
        "not parquet": ([f"dataset.path={root / 'text.parquet'}", "dataset.target=species"], "is not a Parquet file"),
        "missing file": ([f"dataset.path={root / 'nowhere.csv'}", "dataset.target=species"], "nowhere.csv does not exist"),
        "unknown categorical": ([good, "dataset.target=species", "dataset.categorical=[color]"],
                                "dataset.categorical names 'color', which is not a column of"),
        "binary of three": ([good, "dataset.target=species", "dataset.task=binary"],
                            "dataset.task=binary needs two classes, but the target column 'species'"),
    }


def _tree(root: Path) -> dict[str, object]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory, table):
    """A folder whose outputs tree holds one finished run (which a refusal must not touch), and the bad files."""
    root = tmp_path_factory.mktemp("refused")
    (root / "data").mkdir()
    cases = _bad_tables(root / "data", table)
    train(compose_cfg(*SMOKE), root / "outputs" / "earlier")
    return root, cases


@pytest.mark.parametrize("case", [
    "unknown target", "did you mean", "one class", "text among numbers", "empty target cell", "empty file", "header only",
    "an image", "a binary file", "not parquet", "missing file", "unknown categorical", "binary of three",
])
def test_a_bad_table_is_one_line_and_writes_nothing(earlier_run, monkeypatch, capfd, case):
    root, cases = earlier_run
    args, says = cases[case]
    monkeypatch.chdir(root)
    before = _tree(root / "outputs")
    for run_dir in ([], ["hydra.run.dir=outputs/new/run"]):  # a dated dir under outputs/, and a named one
        refused = cli_in_process("dlexp", [*SMOKE, "dataset=csv", *args, *run_dir], capfd)
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], refused.stderr
        assert _tree(root / "outputs") == before


def test_an_infinite_number_is_named_by_its_row_in_the_file(tmp_path):
    path = tmp_path / "inf.csv"
    path.write_text("width,height,kind\n" + "".join(f"{i},{'inf' if i == 8 else i},{'ab'[i % 2]}\n" for i in range(20)))
    with pytest.raises(DataError, match=r"column 'height' of .*inf.csv holds an infinite number in row 9 \(line 10\)"):
        DATASETS.build("csv", path=str(path), target="kind")
    with pytest.raises(DataError, match=r"column 'height' of .*inf.csv holds an infinite number in row 9 \(line 10\)"):
        DATASETS.build("csv", path=str(path), target="height")


def test_the_config_names_the_columns_the_table_has(table):
    with pytest.raises(DataError, match="dataset.drop names 'species', the target column"):
        _source(table, "species", drop=["species"])
    with pytest.raises(DataError, match="column 'rooms' is in both dataset.categorical and dataset.drop"):
        _source(table, "species", categorical=["rooms"], drop=["rooms"])
    with pytest.raises(DataError, match="dataset.task=regression needs a number in every row of the target column 'species'"):
        _source(table, "species", task="regression")
