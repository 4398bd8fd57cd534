"""Sweeps end to end through the real CLI: the summary table, the report command, plots, TensorBoard, failures
(Optuna searches: tests/test_search.py). A sweep with the default launcher (serial) runs in this process; the joblib
launcher's worker processes, a traceback printed at exit and the report command's imports need real ones."""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import read_json, run_cli
from dlexp.results.report import how_it_runs
from dlexp.runs.diagnostics import diagnose
from dlexp.cli.sweep import available_cores

SMOKE = ["trainer=smoke", "trainer.progress=false"]
GRID = ["regularizer.weight_decay=0,1e-3", "regularizer.dropout=0,0.5", "seed=0,1"]
METRICS = ["best/val/acc", "test/acc", "test/loss"]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs in the order the sweep launched them (its jobs manifest)."""
    from dlexp.results.report import find_job_dirs

    return find_job_dirs(sweep_dir)


def _overrides(job_dir: Path) -> list[str]:
    return yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())


def _assert_plotted(path: Path, min_size=(400, 200)) -> None:
    """A real PNG with drawn content: not blank, more than a couple of colours."""
    image = Image.open(path)
    image.verify()  # a valid PNG stream
    pixels = np.asarray(Image.open(path).convert("RGB"))  # (H, W, 3)
    assert pixels.shape[1] >= min_size[0] and pixels.shape[0] >= min_size[1], (path, pixels.shape)
    not_white = (pixels < 250).any(axis=2).mean()
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert not_white > 0.02 and colours > 20, (path, not_white, colours)


def test_grid_sweep_summary_run_files_plots_tensorboard_and_report(tmp_path, in_process):
    """A real 2 x 2 configs x 2 seeds multirun on digits, smoke-sized, run once (one test, so that
    parallel test workers do not repeat it); then every check on the files it wrote."""
    sweep_dir = tmp_path / "sweep"
    proc = in_process("-m", *SMOKE, *GRID, f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    grid_sweep = (sweep_dir, proc)
    _check_summary_groups_seeds_with_mean_and_std(grid_sweep)
    _check_run_files_hold_grad_norms_gap_and_diagnosis(grid_sweep)
    _check_plots_are_images_with_plotted_content(grid_sweep)
    _check_tensorboard_events_hold_the_logged_scalars(grid_sweep)
    _check_report_command_rebuilds_identical_tables_without_torch(grid_sweep)  # last: it deletes and rebuilds


def _check_summary_groups_seeds_with_mean_and_std(grid_sweep):
    sweep_dir, proc = grid_sweep
    jobs = _job_dirs(sweep_dir)
    assert len(jobs) == 8
    # the expected table, computed here from the per-run files
    groups = defaultdict(list)
    for job in jobs:
        key = tuple(o for o in _overrides(job) if not o.startswith("seed=") and not how_it_runs(o))
        groups[key].append(read_json(job / "summary.json"))
    rows = _csv(sweep_dir / "summary.csv")
    assert len(rows) == 4 == len(groups)
    for row in rows:
        runs = groups[tuple(row["overrides"].split())]
        assert [r["seed"] for r in runs] == [0, 1] and row["seeds"] == "0 1"
        assert (row["jobs"], row["completed"], row["failed"]) == ("2", "2", "0")
        assert row["regularizer.weight_decay"] in ("0", "0.001") and row["regularizer.dropout"] in ("0", "0.5")
        for key in METRICS:
            values = np.array([r[key] for r in runs])
            assert float(row[f"{key}_mean"]) == pytest.approx(values.mean(), rel=1e-12)
            assert float(row[f"{key}_std"]) == pytest.approx(values.std(ddof=1), rel=1e-9, abs=1e-15)
        assert float(row["epochs_mean"]) == 2.0
    means = [float(r["best/val/acc_mean"]) for r in rows]
    best = [r for r in rows if r["best"] == "true"]
    assert len(best) == 1 and best[0]["rank"] == "1" and float(best[0]["best/val/acc_mean"]) == max(means)
    assert sorted(int(r["rank"]) for r in rows) == [1, 2, 3, 4]

    jobs_csv = _csv(sweep_dir / "jobs.csv")
    assert [r["job"] for r in jobs_csv] == [job.name for job in jobs]  # in the order the sweep launched them
    for row, job in zip(jobs_csv, jobs):
        summary = read_json(job / "summary.json")
        assert row["status"] == "completed" and float(row["test/acc"]) == summary["test/acc"]
        assert row["diagnosis"] == summary["diagnosis"]

    md = (sweep_dir / "summary.md").read_text()
    assert "8 jobs in 4 configs: 8 completed." in md
    assert md.count("| **1 (best)** |") == 1
    bold = next(line for line in md.splitlines() if line.startswith("| **1 (best)**"))
    assert f"**{float(best[0]['best/val/acc_mean']):.4f} ± " in bold
    # the console shows the ranking columns of the same table at the end of the sweep
    assert "Sweep summary: 8 jobs in 4 configs: 8 completed" in proc.stdout
    assert "1 (best)" in proc.stdout and "heatmap.png" in proc.stdout
    _check_console_table_fits_80_columns(sweep_dir)


def _check_console_table_fits_80_columns(sweep_dir: Path) -> None:
    """Two swept axes and mean ± std cells: every line within 80 columns, one line per config (no wrapping)."""
    from rich.console import Console

    console = Console(width=80, record=True, highlight=False)
    from dlexp.results import report, tables

    rep = report.build_report(sweep_dir)
    tables.print_report(rep, [], console=console)
    lines = console.export_text().splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("same in every job"))]
    assert max(len(line) for line in table) <= 80
    assert not any("…" in line for line in table)  # rich fits any table by cutting cells short: none is cut
    assert sum("±" in line for line in table) == len(rep.groups)  # each config on one line


def _check_run_files_hold_grad_norms_gap_and_diagnosis(grid_sweep):
    sweep_dir, _ = grid_sweep
    job = _job_dirs(sweep_dir)[2]  # dropout 0.5: layers 1 (Linear), 2 (ReLU), 3 (Dropout), 4 (Linear)
    summary = read_json(job / "summary.json")
    metrics = _csv(job / "metrics.csv")
    norms = _csv(job / "grad_norms.csv")
    assert [(r["epoch"], r["depth"], r["layer"], r["type"]) for r in norms] == [
        ("1", "1", "1", "Linear"), ("1", "2", "4", "Linear"), ("2", "1", "1", "Linear"), ("2", "2", "4", "Linear")]
    assert all(float(r["grad_norm"]) > 0 and math.isfinite(float(r["grad_norm"])) for r in norms)
    # weight norms of the last epoch are those of the weights in checkpoints/last.pt
    state = torch.load(job / "checkpoints" / "last.pt", weights_only=True)["model"]
    for row in norms[2:]:
        expected = torch.cat([state[f"{row['layer']}.weight"].flatten(), state[f"{row['layer']}.bias"]]).norm().item()
        assert float(row["weight_norm"]) == pytest.approx(expected, rel=1e-5)
        assert float(row["grad_to_weight"]) == pytest.approx(float(row["grad_norm"]) / expected, rel=1e-5)

    best = metrics[summary["best_epoch"] - 1]
    assert summary["gap/best/loss"] == pytest.approx(float(best["train/loss"]) - float(best["val/loss"]))
    assert summary["gap/best/acc"] == pytest.approx(float(best["train/acc"]) - float(best["val/acc"]))
    assert summary["gap/final/loss"] == pytest.approx(float(metrics[-1]["train/loss"]) - float(metrics[-1]["val/loss"]))
    label, reason = diagnose([float(r["train/loss"]) for r in metrics], [float(r["val/loss"]) for r in metrics])
    assert (summary["diagnosis"], summary["diagnosis_reason"]) == (label, reason)


def _check_plots_are_images_with_plotted_content(grid_sweep):
    sweep_dir, _ = grid_sweep
    job = _job_dirs(sweep_dir)[0]
    assert not (job / "curves.png").exists() and not (job / "grad_norms.png").exists()  # the report draws them
    for path in (sweep_dir / "comparison.png", sweep_dir / "heatmap.png"):
        _assert_plotted(path, min_size=(300, 200))


def _check_tensorboard_events_hold_the_logged_scalars(grid_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    sweep_dir, _ = grid_sweep
    job = _job_dirs(sweep_dir)[3]  # weight_decay 0, dropout 0.5, seed 1
    events = EventAccumulator(str(job), size_guidance={"scalars": 0})
    events.Reload()
    metrics = _csv(job / "metrics.csv")
    summary = read_json(job / "summary.json")
    for tag in ("lr", "train/loss", "train/acc", "val/loss", "val/acc"):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx([float(r[tag]) for r in metrics], rel=1e-6)
    for tag in ("best/val/acc", "test/acc", "gap/best/loss"):
        (final,) = events.Scalars(tag)
        assert final.value == pytest.approx(summary[tag], rel=1e-6) and final.step == summary["epochs_run"]
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["regularizer.dropout"].number_value == 0.5
    assert start.hparams["seed"].number_value == 1 and start.hparams["model.name"].string_value == "mlp"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {"best/val/acc", "test/acc", "test/loss"} <= {m.name.tag for m in experiment.metric_infos}


def _check_report_command_rebuilds_identical_tables_without_torch(grid_sweep):
    sweep_dir, _ = grid_sweep
    tables = {name: (sweep_dir / name).read_bytes() for name in ("summary.csv", "jobs.csv", "summary.md")}
    for path in [*(sweep_dir / n for n in tables), sweep_dir / "heatmap.png", sweep_dir / "comparison.png"]:
        path.unlink()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dlexp.report", str(sweep_dir)],
        cwd=sweep_dir.parent, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name, content in tables.items():
        assert (sweep_dir / name).read_bytes() == content, name
    _assert_plotted(sweep_dir / "heatmap.png", min_size=(300, 200))
    for job in _job_dirs(sweep_dir):  # each job's own plots, drawn on demand
        _assert_plotted(job / "curves.png", min_size=(300, 200))
        _assert_plotted(job / "grad_norms.png", min_size=(300, 200))
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "matplotlib" in imported and "torch" not in imported  # the report command stays light
    assert "Sweep summary: 8 jobs in 4 configs: 8 completed" in proc.stdout


@pytest.mark.slow  # the joblib launcher's worker processes; the fast tier's sweeps run in this process
def test_failed_job_is_reported_while_the_others_complete_with_joblib(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(
        "-m", *SMOKE, "trainer.num_threads=null", "trainer.epochs=1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "optim.lr=-1,0.001,0.01", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr  # a sweep with a failed job exits non-zero, after all jobs ran
    failed_job = _job_dirs(sweep_dir)[0].name  # optim.lr=-1, the first of the grid
    assert failed_job.startswith("lr=-1,") and f"error: 1 of 3 jobs did not complete (jobs {failed_job})" in proc.stderr
    rows = {r["optim.lr"]: r for r in _csv(sweep_dir / "summary.csv")}
    assert (rows["-1"]["failed"], rows["-1"]["completed"], rows["-1"]["best/val/acc_mean"], rows["-1"]["rank"]) == ("1", "0", "", "")
    for lr in ("0.001", "0.01"):
        assert rows[lr]["completed"] == "1" and 0 < float(rows[lr]["best/val/acc_mean"]) <= 1
    md = (sweep_dir / "summary.md").read_text()
    assert "3 jobs in 3 configs: 2 completed, 1 failed." in md
    assert f"- job {failed_job} (failed, `" in md and "optim.lr must be > 0, got -1.0" in md
    # each of the 2 parallel jobs got its share of the cores
    config = torch.load(_job_dirs(sweep_dir)[1] / "checkpoints" / "last.pt", weights_only=True)["config"]
    assert config["trainer"]["num_threads"] == max(1, available_cores() // 2)


@pytest.mark.slow  # the traceback printed at exit: a real process
def test_failures_that_reach_hydra_are_all_recorded_and_summarized(tmp_path):
    """With DLEXP_TRACEBACK=1 a job's error reaches Hydra, which re-raises only the first failure at the end."""
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "dlexp", "-m", *SMOKE, "trainer.epochs=1", "optim.lr=-1,0.001,-2", f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env={**os.environ, "DLEXP_TRACEBACK": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "the sweep stopped early" in proc.stderr
    statuses = [read_json(d / "summary.json") for d in _job_dirs(sweep_dir)]
    assert [s["status"] for s in statuses] == ["failed", "completed", "failed"]
    assert statuses[2]["error"] == "ConfigError: optim.lr must be > 0, got -2.0"
    rows = _csv(sweep_dir / "jobs.csv")
    assert [r["status"] for r in rows] == ["failed", "completed", "failed"]
    assert "optim.lr must be > 0, got -2.0" in rows[2]["error"]


def test_slurm_launcher_config_and_a_clear_error_off_cluster(tmp_path):
    from hydra import compose, initialize_config_dir

    from dlexp.config.files import CONFIG_DIR
    from dlexp.cli.sweep import threads_per_job

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.cpus_per_task, launcher.gpus_per_node) == ("gpu", 4, 1)
    assert threads_per_job(launcher, cores=64) == 4
    if os.environ.get("SLURM_JOB_ID") or any((Path(p) / "srun").exists() for p in os.environ["PATH"].split(os.pathsep)):
        pytest.skip("SLURM is installed here")
    proc = run_cli("-m", "hydra/launcher=slurm", *SMOKE, "optim.lr=0.001,0.01", f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: hydra/launcher=slurm needs a SLURM cluster")


# -- a grid's jobs, known before the first starts (the manifest's pending entries) -------------------------------

GRIDS = [
    ({}, ["model=mlp,softmax", "optim.lr=0.1,0.01", "seed=range(0,3)"]),
    ({"c": "5,6", "h": "7,8"}, ["a=choice(1,2)", "+b=x,y", "c=3", "~d", "a@pkg=4", "e=[1,2]", "f=range(0,1,0.5)",
                                "g=sort(3,1,2)"]),
    ({}, ["j=choice([1],[2])", "k=tag(t,choice(1,2))", "++l=1,2", "m='x,y'", "n={p:1}", "o=null"]),
    ({"x": "1,2"}, []),
    ({}, []),
]


@pytest.mark.parametrize("params, arguments", GRIDS)
def test_a_grids_pending_jobs_are_the_basic_sweepers_jobs_in_its_order(params, arguments):
    """Hydra's basic sweeper (private, used here only as the reference) against dlexp's public-API expansion."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from dlexp.cli.plan import pending_jobs

    config = OmegaConf.create({"hydra": {"sweeper": {"params": params}, "overrides": {"task": arguments}}})
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()] + arguments)
    (expected,) = BasicSweeper.split_arguments(overrides, None)
    assert [entry["overrides"] for entry in pending_jobs(config).values()] == expected


@pytest.mark.slow  # 32 jobs of a bare Hydra app in a process of its own; the fast tier compares with Hydra's sweeper (above)
def test_a_grids_pending_jobs_are_the_jobs_a_real_multirun_launches(tmp_path):
    """A real ``-m`` run of a bare Hydra app (no training): a group sweep, a glob over a group, choice(),
    range() and the sweeper's own params; each job's overrides as Hydra recorded them, by job number."""
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from dlexp.cli.plan import pending_jobs

    conf = tmp_path / "conf"
    for group, names in {"model": ["mlp", "softmax", "lenet"], "optim": ["sgd", "adam"]}.items():
        (conf / group).mkdir(parents=True)
        for name in names:
            (conf / group / f"{name}.yaml").write_text(f"name: {name}\n")
    (conf / "app.yaml").write_text("defaults:\n  - model: mlp\n  - optim: sgd\n  - _self_\nlr: 0.1\nseed: 0\nwidth: 1\n"
                                   "hydra:\n  sweeper:\n    params:\n      width: 1,2\n")
    (tmp_path / "app.py").write_text("import hydra\n\n\n@hydra.main(config_path='conf', config_name='app', version_base='1.3')\n"
                                     "def main(cfg):\n    pass\n\n\nmain()\n")
    sweep_dir = tmp_path / "multirun"
    arguments = ["model=mlp,softmax", "optim=glob(*)", "lr=choice(0.1,0.01)", "seed=range(0,2)"]
    proc = subprocess.run([sys.executable, "app.py", "-m", *arguments, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    launched = [yaml.safe_load((sweep_dir / str(n) / ".hydra" / "overrides.yaml").read_text()) for n in range(32)]
    assert not (sweep_dir / "32").exists() and launched[1] == ["width=1", "model=mlp", "optim=adam", "lr=0.1", "seed=1"]
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):  # glob() lists the group's options
        pending = pending_jobs(OmegaConf.load(sweep_dir / "multirun.yaml"))
    assert [entry["overrides"] for entry in pending.values()] == launched


def test_a_range_to_search_in_a_grid_sweep_is_one_line_naming_the_search():
    from dlexp.cli.preflight import preflight
    from dlexp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'optim.lr=interval\(0.001,0.1\)' is a range to search, not values to list: "
                                          r"a grid sweep takes optim.lr=a,b,c .* 'hparams_search.params.optim.lr=interval"):
        preflight(["-m", "optim.lr=interval(0.001,0.1)"])
    preflight(["-m", "hparams_search=optuna", "hparams_search.params.optim.lr=interval(0.001,0.1)"])  # the search's own


def test_the_grid_sweepers_jobs_and_batches_are_the_commands_product(tmp_path, monkeypatch):
    """dlexp's grid sweeper hands the launcher the product of the values, in max_batch_size batches, each
    job's config checked (and composed once) before the first batch."""
    from hydra import compose, initialize_config_dir
    from hydra.types import HydraContext

    from dlexp.config.files import CONFIG_DIR
    from hydra_plugins.dlexp_search.grid import GridSweeper

    launched = []

    class Recorder:
        def launch(self, batch, initial_job_idx):
            launched.append((initial_job_idx, [list(job) for job in batch]))
            return []

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        from hydra.core.global_hydra import GlobalHydra

        config = compose("train", overrides=[f"hydra.sweep.dir={tmp_path / 's'}"], return_hydra_config=True)
        sweeper = GridSweeper(max_batch_size=3, params={"seed": "0,1"})
        sweeper.hydra_context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=None)
        sweeper.config, sweeper.launcher = config, Recorder()
        sweeper.sweep(["optim.lr=0.1,0.01"])
    assert launched == [(0, [["seed=0", "optim.lr=0.1"], ["seed=0", "optim.lr=0.01"], ["seed=1", "optim.lr=0.1"]]),
                        (3, [["seed=1", "optim.lr=0.01"]])]
    assert (tmp_path / "s" / "multirun.yaml").is_file()
    from dlexp.errors import ConfigError

    with pytest.raises(ConfigError, match="hydra.sweeper.max_batch_size must be >= 1"):
        GridSweeper(max_batch_size=0)
