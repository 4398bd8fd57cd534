"""Unit tests of the results code: diagnosis rules, gaps, layer norms, sweep tables, threads per job, Optuna's direction."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from dlexp.cli import report as report_command
from dlexp.results import report, tables
from dlexp.config.files import CONFIG_DIR
from dlexp.runs.diagnostics import generalization_gap, diagnose, layer_norms
from dlexp.cli.sweep import threads_per_job


# -- diagnosis rules, on hand-made curves ------------------------------------------------------

@pytest.mark.parametrize(
    "train, val, label",
    [
        ([2.0, 0.8, 0.4, 0.30, 0.28], [1.5, 0.7, 0.45, 0.40, 0.41], "fine"),
        ([2.0, 0.5, 0.2, 0.05, 0.01], [1.0, 0.4, 0.35, 0.45, 0.60], "overfitting"),  # val rose 71% above its min
        ([2.0, 0.5, 0.2, 0.05, 0.01], [1.0, 0.4, 0.35, 0.40, 0.40], "fine"),  # val 14% above its min: noise
        ([2.0, 1.6, 1.5, 1.45, 1.44], [1.9, 1.6, 1.5, 1.46, 1.45], "underfitting"),  # train fell only 28%
        ([2.0, 1.2, 0.8, 0.50, 0.40], [1.5, 1.0, 0.7, 0.50, 0.42], "underfitting"),  # both still falling > 5%
        ([1.0, 0.2, 0.05, 0.027, 0.023], [0.5, 0.2, 0.14, 0.137, 0.120], "fine"),  # still falling, but fitted
        ([0.8, 0.2, 0.19, 0.35, 0.14], [0.25, 0.13, 0.2, 0.2, 0.15], "fine"),  # a dip in noisy curves, no new best
        ([2.0, 0.9], [1.4, 0.7], "too_short"),  # 2 epochs: still learning or underfitting? cannot tell
        ([2.3], [2.2], "too_short"),
        ([], [], "too_short"),  # no epoch finished
        ([2.0, 5.0, 40.0], [2.0, 6.0, 50.0], "diverging"),  # train loss far above the first epoch's
        ([2.0, 2.1, 2.3], [2.0, 2.1, 2.4], "diverging"),  # 15% above the first epoch's
        ([2.303, 2.304, 2.306, 2.305], [2.302, 2.303, 2.304, 2.303], "underfitting"),  # stuck at chance, ln 10
        ([2.303, 2.2], [2.302, 2.1], "too_short"),
        ([2.0, 1.0, float("nan")], [1.8, 0.9, float("nan")], "diverging"),
        ([2.0, 1.0, 0.5], [1.8, float("inf"), 0.6], "diverging"),
        ([178.0, 1.0, 1e-5, 1e-9, 1e-11], [250.0, 230.0, 229.0, 228.6, 228.7], "overfitting"),  # memorized
        ([19.6, 1.0, 0.01, 0.006, 0.0058], [10.0, 0.5, 0.009, 0.012, 0.0144], "fine"),  # a rise at the noise floor
        ([20.0, 8.0, 4.0, 3.0, 2.5, 2.2, 2.12, 2.1, 2.1, 2.09, 2.1, 2.1],
         [30.0, 12.0, 8.0, 6.5, 6.0, 5.8, 5.7, 5.7, 5.66, 5.7, 5.68, 5.66], "underfitting"),  # levelled off at 10%
    ],
)
def test_diagnosis_rules(train, val, label):
    got, reason = diagnose(train, val)
    assert got == label, reason
    assert reason


def test_diagnosis_reasons_quote_the_numbers():
    assert diagnose([2.3, 2.2], [2.3, 2.1]) == ("too_short", "too short to diagnose: 2 epoch(s); run trainer.epochs>=3")
    label, reason = diagnose([2.303, 2.31, 2.306], [2.302, 2.3, 2.304])  # rose 0.1%: noise, not divergence
    assert label == "underfitting" and reason.startswith("not learning: train loss stayed at 2.303 -> 2.306")
    assert diagnose([2.0, 1.0, float("nan")], [1.0, 1.0, 1.0]) == ("diverging", "train loss is nan at epoch 3")
    label, reason = diagnose([2.0, 0.5, 0.2, 0.05], [1.0, 0.4, 0.5, 0.6])
    assert label == "overfitting" and reason.startswith("val loss rose 50% above its minimum 0.4 (epoch 2)")
    label, reason = diagnose([178.0, 1.0, 1e-5, 1e-9, 1e-11], [250.0, 230.0, 229.0, 228.6, 183.0])
    assert (label, reason) == ("overfitting", "val loss 183 is 1.83e+13x its train loss 1e-11: a gap of 103% of the "
                                              "first epoch's train loss")


def test_generalization_gap_at_best_and_final_epochs():
    rows = [
        {"epoch": 1, "train/loss": 1.0, "val/loss": 0.9, "train/acc": 0.6, "val/acc": 0.65},
        {"epoch": 2, "train/loss": 0.4, "val/loss": 0.5, "train/acc": 0.9, "val/acc": 0.85},
        {"epoch": 3, "train/loss": 0.1, "val/loss": 0.6, "train/acc": 0.99, "val/acc": 0.84},
    ]
    gap = generalization_gap(rows, "acc", best_epoch=2)
    assert gap == pytest.approx({"gap/best/loss": -0.1, "gap/best/acc": 0.05, "gap/final/loss": -0.5, "gap/final/acc": 0.15})


def test_layer_norms_per_parameter_owning_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.Linear(2, 2))
    model(torch.randn(5, 4))[:, 0].sum().backward()
    model[3].weight.grad = model[3].bias.grad = None  # a layer without gradients
    rows = layer_norms(model)
    assert [(r["depth"], r["layer"], r["type"]) for r in rows] == [(1, "0", "Linear"), (2, "2", "Linear"), (3, "3", "Linear")]
    first = model[0]
    grad = torch.cat([first.weight.grad.flatten(), first.bias.grad]).norm().item()
    weight = torch.cat([first.weight.detach().flatten(), first.bias.detach()]).norm().item()
    assert rows[0]["grad_norm"] == pytest.approx(grad, rel=1e-6)
    assert rows[0]["weight_norm"] == pytest.approx(weight, rel=1e-6)
    assert rows[0]["grad_to_weight"] == pytest.approx(grad / weight, rel=1e-6)
    assert math.isnan(rows[2]["grad_norm"]) and rows[2]["weight_norm"] > 0


# -- sweep tables from hand-made job dirs --------------------------------------------------------

def _job(sweep: Path, name: str, overrides: list[str], summary: dict | None, epochs_logged: int = 0) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    if epochs_logged:
        (job / "metrics.csv").write_text("epoch,val/loss\n" + "".join(f"{e},1.0\n" for e in range(1, epochs_logged + 1)))


def _done(rmse: float, test: float) -> dict:
    return {"status": "completed", "epochs_run": 5, "monitor": "val/rmse", "mode": "min", "best/val/rmse": rmse,
            "test/rmse": test, "diagnosis": "fine"}


@pytest.fixture
def regression_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0", ["optim.lr=0.1", "seed=0"], _done(0.30, 0.31))
    _job(sweep, "1", ["optim.lr=0.1", "seed=1"], _done(0.50, 0.52))
    _job(sweep, "2", ["optim.lr=0.01", "seed=0"], _done(0.20, 0.22))
    _job(sweep, "3", ["optim.lr=0.01", "seed=1"], {"status": "failed", "error": "ConfigError: boom"})
    _job(sweep, "10", ["optim.lr=1.0", "seed=0"], None, epochs_logged=3)  # still running, or killed
    return sweep


def test_report_groups_a_partial_sweep_with_failures(regression_sweep):
    rep = report.build_report(regression_sweep)
    assert [j.name for j in rep.jobs] == ["0", "1", "2", "3", "10"]
    assert [j.status for j in rep.jobs] == ["completed", "completed", "completed", "failed", "incomplete"]
    assert rep.jobs[-1].epochs == 3
    assert rep.axes == ["optim.lr"] and rep.fixed == []
    assert (rep.monitor, rep.mode) == ("val/rmse", "min")
    rows = {r["optim.lr"]: r for r in tables.group_rows(rep)}
    assert float(rows["0.1"]["best/val/rmse_mean"]) == pytest.approx(0.40)
    assert float(rows["0.1"]["best/val/rmse_std"]) == pytest.approx(math.sqrt(0.02))  # sample std of 0.3, 0.5
    assert rows["0.01"]["best/val/rmse_std"] == ""  # one completed run: no std
    assert (rows["0.01"]["completed"], rows["0.01"]["failed"]) == ("1", "1")
    assert (rows["1.0"]["incomplete"], rows["1.0"]["rank"]) == ("1", "")
    assert (rows["0.01"]["rank"], rows["0.01"]["best"]) == ("1", "true")  # lower rmse wins in mode min
    assert rows["0.1"]["rank"] == "2"
    md = tables.markdown(rep)
    assert "5 jobs in 3 configs: 3 completed, 1 failed, 1 incomplete." in md
    assert "- job 3 (failed, `optim.lr=0.01 seed=1`): ConfigError: boom" in md
    assert "- job 10 (incomplete, `optim.lr=1.0 seed=0`): no summary.json" in md
    assert "Best: lr=0.01 with val/rmse 0.2000 over 1 run(s) (lower is better)" in md


def test_report_command_writes_tables_and_plots(regression_sweep, capsys):
    assert report_command.main([str(regression_sweep)]) == 0
    out = capsys.readouterr().out
    assert "Sweep summary: 5 jobs in 3 configs" in out and "job 3 failed" in out
    with open(regression_sweep / "summary.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3
    assert (regression_sweep / "comparison.png").stat().st_size > 5000
    assert not (regression_sweep / "heatmap.png").exists()  # one swept key: no heatmap


def test_report_command_errors_are_one_line(tmp_path, capsys):
    assert report_command.main([str(tmp_path / "missing")]) == 2
    assert report_command.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "no runs found" in err[1]


# -- threads per job, Optuna's direction ---------------------------------------------------------

@pytest.mark.parametrize(
    "launcher, cores, threads",
    [
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -1}, 8, 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}, 8, 4),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": -3}, 8, 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 3}, 8, 2),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 16}, 8, 1),
        ({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher", "cpus_per_task": 6}, 8, 6),
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, None),
    ],
)
def test_threads_per_job(launcher, cores, threads):
    assert threads_per_job(OmegaConf.create(launcher), cores) == threads


@pytest.mark.parametrize(
    "overrides, direction",
    [
        ([], "maximize"),  # digits: val/acc
        (["dataset=synthetic_linear", "model=linreg"], "minimize"),  # regression: val/rmse
        (["trainer.early_stopping.monitor=val/loss"], "minimize"),
        (["trainer.early_stopping.mode=min"], "minimize"),
    ],
)
def test_optuna_direction_follows_the_monitored_metric(overrides, direction):
    from dlexp import train

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hparams_search=optuna", *overrides])
    assert set(cfg.hparams_search.params) == {"optim.lr", "regularizer.weight_decay", "regularizer.dropout"}
    run_cfg = train.validate(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hparams_search"]))
    assert {"max": "maximize", "min": "minimize"}[train.monitored_mode(run_cfg)] == direction  # what the search optimizes


def test_a_plotting_failure_does_not_fail_the_run(tmp_path, monkeypatch, capsys):
    from dlexp.results import plots

    (tmp_path / "metrics.csv").write_text("epoch,lr,train/loss,val/loss\n1,0.1,1.0,1.1\n")

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(plots, "plot_curves", broken)
    plots.plots_after_training(tmp_path)  # no exception
    err = capsys.readouterr().err
    assert err.startswith("warning: could not draw the plots of") and "RuntimeError: no fonts" in err


def test_a_diverged_run_makes_its_config_mean_nan_instead_of_being_dropped(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0", ["optim.lr=30", "seed=0"], {**_done(0.3, 0.3), "test/rmse": float("nan")})
    _job(sweep, "1", ["optim.lr=30", "seed=1"], _done(0.5, 0.5))
    rep = report.build_report(sweep)
    (row,) = tables.group_rows(rep)
    assert row["test/rmse_mean"] == "nan" and row["test/rmse_std"] == ""
    assert float(row["best/val/rmse_mean"]) == pytest.approx(0.4)
    assert "| nan |" in tables.markdown(rep)


def test_a_diverged_job_is_a_result_listed_with_its_hint_not_a_failure(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0", ["optim.lr=30", "seed=0"], {"status": "diverged", "stop_reason": "non_finite", "epochs_run": 1,
                                                 "hint": "the training loss became non-finite at epoch 2, step 12",
                                                 "diagnosis": "diverging"})
    _job(sweep, "1", ["optim.lr=0.1", "seed=0"], _done(0.3, 0.3))
    rep = report.build_report(sweep)
    assert [j.name for j in rep.unfinished()] == ["0"] and rep.problems() == []
    cells = dict(zip(tables._display_columns(rep), tables.display_rows(rep)[0]))
    assert (cells["runs"], cells["diagnosis"], cells["rank"]) == ("0 of 1 (1 diverged)", "diverging", "-")
    assert "- job 0 (diverged, `optim.lr=30 seed=0`): the training loss became non-finite at epoch 2" in tables.markdown(rep)
    row = tables.group_rows(rep)[0]
    assert (row["diverged"], row["completed"], row["failed"], row["best/val/rmse_mean"]) == ("1", "0", "0", "")


def test_resume_keeps_one_grad_norm_row_per_layer_and_epoch_and_diagnoses_every_epoch(run_train, tmp_path):
    from conftest import read_json

    run_dir = tmp_path / "run"
    run_train("trainer=smoke", "trainer.epochs=2", run_dir=run_dir)
    norms_path = run_dir / "grad_norms.csv"
    with open(norms_path, newline="") as handle:
        first = list(csv.DictReader(handle))
    with open(norms_path, "a", newline="") as handle:  # as if killed after epoch 3's rows, before its checkpoint
        csv.writer(handle).writerow([3, 1, "1", "Linear", 9.0, 9.0, 1.0])
    run_train("trainer=smoke", "trainer.epochs=4", f"resume={run_dir}", run_dir=run_dir)

    with open(norms_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[: len(first)] == first
    assert [(r["epoch"], r["depth"]) for r in rows] == [(str(e), str(d)) for e in range(1, 5) for d in (1, 2)]
    assert "9.0" not in {r["grad_norm"] for r in rows}
    with open(run_dir / "metrics.csv", newline="") as handle:
        metrics = list(csv.DictReader(handle))
    summary = read_json(run_dir / "summary.json")
    assert summary["epochs_run"] == 4
    label, reason = diagnose([float(r["train/loss"]) for r in metrics], [float(r["val/loss"]) for r in metrics])
    assert (summary["diagnosis"], summary["diagnosis_reason"]) == (label, reason)
    assert summary["gap/final/loss"] == pytest.approx(float(metrics[3]["train/loss"]) - float(metrics[3]["val/loss"]))


def test_a_diverged_run_is_diagnosed_as_diverging_with_its_hint(run_train):
    from conftest import read_json

    _, run_dir = run_train("optim=sgd", "optim.lr=1e4", "model.dropout=0", "scheduler=none", "trainer=smoke", "trainer.epochs=3")
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "diverged" and summary["diagnosis"] == "diverging"
    assert summary["diagnosis_reason"] == summary["hint"]


def test_a_sweep_ranks_on_its_named_metric_and_shows_shifted_test_columns(tmp_path):
    """covariate_shift ranks on test_shifted/acc (its lesson), not on the unshifted val accuracy, and the
    shifted test metrics are columns of summary.csv, jobs.csv, summary.md and the console table."""
    sweep = tmp_path / "sweep"
    for i, (correct, val, shifted) in enumerate([("none", 0.87, 0.50), ("importance", 0.74, 0.75)]):
        _job(sweep, str(i), [f"shift.correct={correct}"], {
            "status": "completed", "epochs_run": 20, "monitor": "val/acc", "mode": "max", "best/val/acc": val,
            "test/acc": val, "test_shifted/acc": shifted, "test_shifted/loss": 1 - shifted, "diagnosis": "fine"})
        (sweep / str(i) / ".hydra" / "config.yaml").write_text("sweep:\n  rank_by: test_shifted/acc\n")
    rep = report.build_report(sweep)
    assert (rep.rank_key, rep.rank_mode) == ("test_shifted/acc", "max")
    assert {g.key[0]: g.rank for g in rep.groups} == {"shift.correct=importance": 1, "shift.correct=none": 2}
    assert tables.best_line(rep).startswith("Best: correct=importance with test_shifted/acc (sweep.rank_by) 0.7500")
    assert "test_shifted/acc_mean" in tables.group_rows(rep)[0] and "test_shifted/acc" in tables.markdown(rep)
    columns, _ = tables._console_columns(rep)
    assert "test_shifted/acc" in columns
    assert "test_shifted/acc" in tables.job_rows(rep)[0]


def test_a_preset_that_names_its_ranking_metric_still_runs_alone():
    from conftest import compose_cfg
    from dlexp.cli.plan import _refuse_sweep_keys

    cfg = compose_cfg("experiment=covariate_shift")
    assert cfg.sweep.rank_by == "test_shifted/acc"
    _refuse_sweep_keys(cfg)  # sweep.rank_by is no error in a single run (sweep.name would be)


def test_sweep_curves_use_the_run_plots_styles_and_a_marker_per_config(tmp_path, monkeypatch):
    from dlexp.results import plots

    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.setdefault("fig", fig) and path)
    rows = [{"epoch": e, "train/loss": 1.0 / e, "val/loss": 1.5 / e} for e in range(1, 9)]
    plots.plot_sweep_curves([(f"lr={i}", [rows]) for i in range(4)], ["loss"], tmp_path / "c.png")  # 4 equal curves
    lines = drawn["fig"].axes[0].get_lines()
    assert [line.get_linestyle() for line in lines[:2]] == ["-", "--"]  # train solid, val dashed, as per run
    assert len({line.get_marker() for line in lines}) == 4  # overlapping curves still tell their config


def test_ties_for_best_are_named_in_the_best_line_and_the_table(tmp_path):
    """Five configs where four share the best val accuracy: the Best line says which it is tied with, and
    the table marks the tied rows; a config just below is not called a tie."""
    sweep = tmp_path / "sweep"
    for i, (wd, acc) in enumerate([(0.0, 0.9), (0.001, 1.0), (0.01, 1.0), (0.1, 1.0), (0.3, 1.0)]):
        _job(sweep, str(i), [f"regularizer.weight_decay={wd}"], {
            "status": "completed", "epochs_run": 5, "monitor": "val/acc", "mode": "max", "best/val/acc": acc,
            "test/acc": acc, "diagnosis": "fine"})
    rep = report.build_report(sweep)
    line = tables.best_line(rep)
    assert line.startswith("Best: weight_decay=0.001 with val/acc 1.0000")
    assert "tied with weight_decay=0.01, weight_decay=0.1, weight_decay=0.3: the sweep does not tell them apart" in line
    rows = {row[1]: row[0] for row in tables.display_rows(rep)}
    assert rows["0.001"] == "1 (best)" and rows["0.3"].endswith(" (tie)") and rows["0.0"] == "5"

    _job(tmp_path / "clear", "0", ["regularizer.weight_decay=0"], {
        "status": "completed", "epochs_run": 5, "monitor": "val/acc", "mode": "max", "best/val/acc": 0.8,
        "test/acc": 0.8, "diagnosis": "fine"})
    _job(tmp_path / "clear", "1", ["regularizer.weight_decay=0.1"], {
        "status": "completed", "epochs_run": 5, "monitor": "val/acc", "mode": "max", "best/val/acc": 0.9,
        "test/acc": 0.9, "diagnosis": "fine"})
    assert "tied" not in tables.best_line(report.build_report(tmp_path / "clear"))
