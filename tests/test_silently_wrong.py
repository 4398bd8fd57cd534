"""Nothing silently wrong, nothing left behind: diagnoses that see a blow-up, extended runs explicit about their
schedule, resume= on the command that started a run, hints that do what they say, refused commands that
write nothing."""
from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
import torch

from conftest import cli_in_process, copied, read_json, run_cli, run_in, tiered, untimed_rows
from datafiles import write_arrays, write_png_folder
from dlexp.runs.diagnostics import diagnose

# A 10-class problem whose train targets are balanced: predicting the prior scores ln(10) and accuracy 0.1.
DIGITS_PRIOR = {"loss": math.log(10), "metric": 0.1, "starts_near": True}


# (name, train losses, val losses, val accuracies, the label, what its reason says)
CURVES = [
    ("exploding from the start", [5.5e20, 3.9e17, 5.4e16], [3.9e17, 1.9e17, 1.9e17], [0.18, 0.14, 0.16],
     "unstable", "the learning rate is likely too high: try optim.lr=0.001 (now 1e+09)"),
    ("rising by orders of magnitude", [2.1, 40.0, 900.0, 260.0], [2.0, 35.0, 700.0, 210.0], [0.3, 0.2, 0.1, 0.1],
     "unstable", "train loss rose to 900 at epoch 3, 429x its first epoch's 2.1"),
    ("one blown-up epoch, then back at the prior", [376.0, 2.37, 2.31, 2.28], [2.75, 2.44, 2.25, 2.24],
     [0.21, 0.1, 0.14, 0.13], "unstable", "163x the 2.3 of predicting the train targets' prior"),
    ("oscillating far above the prior", [30.0, 45.0, 28.0, 50.0, 33.0], [31.0, 40.0, 29.0, 55.0, 30.0],
     [0.12, 0.1, 0.13, 0.11, 0.12], "unstable", "14.3x the 2.3 of predicting"),
    ("flat at the prior", [2.303, 2.301, 2.302, 2.300], [2.302, 2.303, 2.301, 2.302], [0.1, 0.1, 0.11, 0.1],
     "underfitting", "not learning"),
    ("falling to the prior, val at chance", [12.0, 3.0, 2.4, 2.3], [2.5, 2.4, 2.35, 2.31], [0.11, 0.12, 0.1, 0.13],
     "underfitting", "stayed near chance: best 0.13 against 0.1"),
    ("falling to the prior", [12.0, 3.0, 2.4, 2.3], [2.5, 2.4, 2.35, 2.31], [0.11, 0.32, 0.3, 0.33],
     "underfitting", "the train loss ended at 2.3, no lower than the 2.303 of predicting"),
    ("healthy", [1.3, 0.34, 0.2, 0.12, 0.08], [0.47, 0.24, 0.18, 0.15, 0.14], [0.93, 0.94, 0.95, 0.96, 0.96],
     "fine", "train loss fell"),
]


@pytest.mark.parametrize("name, train, val, acc, label, says", CURVES, ids=[c[0] for c in CURVES])
def test_the_diagnosis_names_a_blow_up_and_a_run_that_learned_nothing(name, train, val, acc, label, says):
    got, reason = diagnose(train, val, prior=DIGITS_PRIOR, val_metric=acc, mode="max", lr=1e9 if "start" in name else 0.5)
    assert (got, says in reason) == (label, True), reason


def test_without_a_prior_the_curves_alone_still_see_a_rise_by_orders_of_magnitude():
    assert diagnose([2.1, 40.0, 900.0], [2.0, 35.0, 700.0])[0] == "unstable"
    assert diagnose([1.3, 0.34, 0.2, 0.12], [0.47, 0.24, 0.18, 0.15])[0] == "fine"


def test_a_regression_that_starts_far_above_its_prior_and_falls_is_not_a_blow_up():
    """The weight_decay preset: 200 inputs, 20 examples, targets of variance 0.02; the first epoch averages 178."""
    prior = {"loss": 0.0191, "metric": 0.138, "starts_near": False}
    label, _ = diagnose([178.0, 1.0, 1e-5, 1e-9, 1e-11], [250.0, 230.0, 229.0, 228.6, 228.7], prior=prior,
                        val_metric=[15.8, 15.2, 15.1, 15.1, 15.1], mode="min")
    assert label == "overfitting"


def test_near_chance_for_an_error_metric_is_near_the_priors_error():
    prior = {"loss": 4.0, "metric": 2.0}  # rmse of predicting the mean
    train, val = [3.0, 1.3, 1.22, 1.2], [3.1, 1.35, 1.31, 1.3]
    label, reason = diagnose(train, val, prior=prior, val_metric=[1.95, 1.9, 1.85, 1.84], mode="min")
    assert label == "underfitting" and "best 1.84 against 2" in reason
    assert diagnose(train, val, prior=prior, val_metric=[1.5, 1.2, 0.9, 0.8], mode="min")[0] == "fine"


@pytest.mark.parametrize("task, targets, loss, metric", [
    ("classification", torch.tensor([0, 0, 0, 1]), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), 0.75),
    ("binary", torch.tensor([[1.0], [0.0], [1.0], [1.0]]), -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), 0.75),
    ("regression", torch.tensor([[1.0], [3.0]]), 1.0, 1.0),
])
def test_the_prior_is_what_predicting_the_train_targets_frequencies_or_mean_scores(task, targets, loss, metric):
    from dlexp.tasks import build_task

    prior = build_task(task).prior(targets)
    assert prior["loss"] == pytest.approx(loss, rel=1e-5) and prior["metric"] == pytest.approx(metric, rel=1e-5)
    assert prior["starts_near"] == (task != "regression")  # a regression's first loss lands wherever its outputs do


@pytest.mark.parametrize("overrides, says", [
    (["optim.lr=1e9", "trainer.epochs=3"], "try optim.lr=0.001 (now 1e+09)"),
    (["optim=sgd", "optim.lr=5", "trainer.epochs=4"], "try optim.lr=0.001 (now 5)"),
])
def test_a_run_that_blew_up_is_called_unstable_and_says_so(run_train, capsys, overrides, says):
    result, _ = run_train(*overrides)
    summary = result.summary
    assert summary["status"] == "completed" and summary["diagnosis"] == "unstable", summary["diagnosis_reason"]
    assert says in summary["diagnosis_reason"]
    assert "unstable: train loss" in capsys.readouterr().out  # said on the console, not only filed


# ------------------------------------------------------------------------------------------------
# Extending a finished run: explicit about its schedule, never a silent warm-up


def _extend(run_train, capsys, first: int, then: int, *overrides: str) -> tuple[list[float], str, dict]:
    """A run of ``first`` epochs, then ``resume=`` with ``trainer.epochs=then``: (lr of every epoch, what the
    resume printed, its summary)."""
    _, run_dir = run_train(*overrides, f"trainer.epochs={first}")
    capsys.readouterr()
    run_train(*overrides, f"trainer.epochs={then}", f"resume={run_dir}", run_dir=run_dir)
    said = capsys.readouterr().out
    return [float(r["lr"]) for r in untimed_rows(run_dir)], said, read_json(run_dir / "summary.json")


def test_extending_a_cosine_run_rebuilds_its_schedule_over_the_new_length(run_train, capsys):
    lrs, said, summary = _extend(run_train, capsys, 4, 6, "scheduler=cosine", "trainer.early_stopping.patience=null")
    base = lrs[0]
    assert lrs[4:] == pytest.approx([base * (1 + math.cos(math.pi * t / 6)) / 2 for t in (4, 5)], rel=1e-6)
    assert lrs[4] > lrs[3] and lrs[5] < lrs[4]  # one step up to the longer schedule, then down: no climb back
    assert "trainer.epochs 4 -> 6: the cosine schedule depends on the run's length: it is rebuilt over 6 epochs" in said
    assert summary["schedule"] == {"scheduler": "cosine", "interval": "epoch", "horizon": 6, "extended_from": 4}


SCHEDULES = [["scheduler=step", "scheduler.step_size=2"], ["scheduler=exponential"],
             ["scheduler=multistep", "scheduler.milestones=[3,5]"]]


# the fast tier extends a step schedule; the other schedules that continue are marked slow
@pytest.mark.parametrize("schedule", tiered(SCHEDULES, fast={"step"}, ids=["step", "exponential", "multistep"]))
def test_extending_a_schedule_that_does_not_depend_on_the_length_continues_it_and_says_so(run_train, capsys, tmp_path,
                                                                                          schedule):
    lrs, said, summary = _extend(run_train, capsys, 4, 6, *schedule, "trainer.early_stopping.patience=null")
    name = schedule[0].split("=")[1]
    assert f"the {name} schedule does not depend on the run's length and continues: epoch 5 at lr" in said
    _, whole = run_train(*schedule, "trainer.early_stopping.patience=null", "trainer.epochs=6", run_dir=tmp_path / "whole")
    assert lrs == [float(r["lr"]) for r in untimed_rows(whole)]  # as a run planned for 6 epochs from the start
    assert summary["schedule"]["extended_from"] == 4


def test_extending_a_step_interval_cosine_with_warmup_never_warms_up_again(run_train, capsys):
    lrs, said, _ = _extend(run_train, capsys, 2, 4, "scheduler=cosine", "scheduler.interval=step",
                           "scheduler.warmup_steps=5", "trainer.limit_train_batches=4", "trainer.early_stopping.patience=null")
    assert "rebuilt over 16 steps (it was over 8)" in said  # 4 steps an epoch
    assert all(later <= earlier * (1 + 1e-9) for earlier, later in zip(lrs[2:], lrs[3:]))  # no climb after the resume


def test_extending_a_run_that_stopped_early_says_it_counts_its_patience_again(run_train, capsys):
    _, run_dir = run_train("trainer.epochs=40", "trainer.early_stopping.patience=1", "optim.lr=0.5", "optim=sgd")
    stopped = read_json(run_dir / "summary.json")
    assert stopped["stop_reason"] == "early_stopping" and stopped["epochs_run"] < 40
    capsys.readouterr()
    result, _ = run_train("trainer.epochs=60", "trainer.early_stopping.patience=1", "optim.lr=0.5", "optim=sgd",
                          f"resume={run_dir}", run_dir=run_dir)
    said = capsys.readouterr().out
    assert f"the run had stopped early after epoch {stopped['epochs_run']}" in said
    assert f"counts its patience of 1 again from epoch {stopped['epochs_run'] + 1}" in said
    assert result.summary["epochs_run"] > stopped["epochs_run"]  # the extension trained


# ------------------------------------------------------------------------------------------------
# resume= accepts the command that started the run, wherever the run was killed

KILL_RUN = ["model=lenet", "dataset.resize=16", "trainer.epochs=2", "trainer.limit_train_batches=6",
            "trainer.early_stopping.patience=null", "trainer.num_threads=1", "trainer.progress=false", "hydra.run.dir=run"]
# every named moment of a run's life, first to last (dlexp.hooks.point)
MOMENTS = ["startup", "compose", "imports", "data", "model", "accepted", "train_step@3", "train_step@8", "val",
           "end_epoch", "val@2", "end_epoch@2", "test", "plots"]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("whole")
    proc = run_cli(*KILL_RUN, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


def _outcome(run_dir: Path) -> tuple[list, dict]:
    summary = read_json(run_dir / "summary.json")
    keep = {k: v for k, v in summary.items() if k.startswith(("test/", "best/", "gap/")) or k in
            ("status", "epochs_run", "best_epoch", "diagnosis")}
    return untimed_rows(run_dir), keep


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_run_killed_at_any_moment_finishes_as_if_never_stopped_with_its_own_command_and_resume(tmp_path, whole_run,
                                                                                                   moment):
    killed = run_cli(*KILL_RUN, cwd=tmp_path, env={"DLEXP_KILL_AT": moment})
    assert killed.returncode == -9, killed.stderr
    again = run_cli(*KILL_RUN, "resume=run", cwd=tmp_path)  # the same command, with resume=
    assert again.returncode == 0, again.stderr
    if not (tmp_path / "run").exists() or moment in ("startup", "compose", "imports", "data", "model"):
        assert "starting it from the beginning" in again.stdout
    assert _outcome(tmp_path / "run") == _outcome(whole_run)


def test_resume_compares_a_value_as_the_config_types_it():
    from dlexp.runs.resume import same_value

    assert same_value(16, "16") and same_value("0.5", 0.5) and same_value([1, "2"], ["1", 2]) and same_value(1, 1.0)
    assert not same_value(16, "auto") and not same_value("16", 17) and not same_value([1, 2], [1])


def test_rerunning_the_command_that_set_a_typed_key_with_resume_continues_the_run(tmp_path, capfd):
    first = cli_in_process("dlexp", [*KILL_RUN[:-1], "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"], capfd)
    assert first.returncode == 0, first.stderr
    again = cli_in_process("dlexp", [*KILL_RUN[:-1], f"hydra.run.dir={tmp_path / 'run'}", f"resume={tmp_path / 'run'}"], capfd)
    assert again.returncode == 0, again.stderr  # dataset.resize=16 against the recorded 16: one value
    assert "resuming from epoch 2" in again.stdout


# ------------------------------------------------------------------------------------------------
# Every hint that names a command does what it says, followed literally

SMOKE = ["trainer=smoke", "trainer.progress=false"]


def _hinted(text: str, after: str) -> list[str]:
    """The arguments of the command a line of ``text`` gives after ``after`` (``python -m dlexp`` dropped)."""
    line = next(line for line in text.splitlines() if after in line)
    command = line.split(after, 1)[1].split("; ")[0].strip()
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "dlexp"], line
    return words[3:]


def test_an_interrupted_sweep_without_a_name_hints_the_command_that_continues_it_in_its_own_dir(tmp_path, in_process):
    args = ["-m", *SMOKE, "optim.lr=0.003,0.01"]
    stopped = run_cli(*args, cwd=tmp_path, env={"DLEXP_SIGNAL_AT": "job_end@1:SIGTERM"})
    assert stopped.returncode == 143, stopped.stderr
    hint = _hinted(stopped.stderr, "continue the sweep with: ")
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    assert hint == [*args, f"hydra.sweep.dir={sweep_dir.relative_to(tmp_path)}"]
    again = in_process(*hint, cwd=tmp_path)  # the signal needs a real process; the hint, followed, runs in this one
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("completed earlier, skipped") == 1 and list((tmp_path / "outputs" / "multirun").glob("*/*")) == [sweep_dir]


def test_a_sweep_given_without_m_hints_the_same_command_with_m(tmp_path, capfd):
    refused = cli_in_process("dlexp", [*SMOKE, "optim.lr=0.003,0.01", f"hydra.sweep.dir={tmp_path / 's'}"], capfd)
    assert refused.returncode == 2 and not (tmp_path / "s").exists()
    hint = _hinted(refused.stderr, "add -m to run it: ")
    assert hint == ["-m", *SMOKE, "optim.lr=0.003,0.01", f"hydra.sweep.dir={tmp_path / 's'}"]
    swept = cli_in_process("dlexp", hint, capfd)
    assert swept.returncode == 0, swept.stderr
    assert len(list((tmp_path / "s").glob("*/summary.json"))) == 2


def test_a_new_run_in_a_used_dir_hints_the_resume_that_continues_it(tmp_path, capfd):
    run = [*SMOKE, f"hydra.run.dir={tmp_path / 'run'}"]
    assert cli_in_process("dlexp", run, capfd).returncode == 0
    refused = cli_in_process("dlexp", [*run, "trainer.epochs=3"], capfd)
    assert refused.returncode == 2
    resumed = cli_in_process("dlexp", [*_hinted(refused.stderr, "continue it with: "), "trainer.epochs=3"], capfd)
    assert resumed.returncode == 0 and "resuming from epoch 3" in resumed.stdout, resumed.stderr


@pytest.mark.slow
def test_an_interrupted_k_fold_run_hints_the_command_that_starts_it_again(tmp_path):
    args = ["trainer.epochs=2", "trainer.progress=false", "split=kfold", "split.k=3", "hydra.run.dir=run"]
    stopped = run_cli(*args, cwd=tmp_path, env={"DLEXP_SIGNAL_AT": "end_epoch@3"})  # in the second fold
    assert stopped.returncode == 130, stopped.stderr
    hint = _hinted(stopped.stderr, "start it again with: ")
    assert hint == args
    again = run_cli(*hint, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "starts again from its first fold" in again.stdout
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "completed" and summary["folds"] == 3
    assert sorted(p.name for p in (tmp_path / "run").glob("fold_*")) == ["fold_1", "fold_2", "fold_3"]


def test_a_different_command_is_still_refused_in_an_interrupted_k_fold_runs_dir(tmp_path):
    from dlexp.errors import RunDirInUse
    from dlexp.runs.resume import kfold_to_start_again

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- split=kfold\n")
    (run_dir / "fold_1").mkdir()
    (run_dir / "summary.json").write_text('{"status": "interrupted"}')
    assert kfold_to_start_again(run_dir, ["split=kfold"]) and not kfold_to_start_again(run_dir, ["split=kfold", "seed=1"])
    from dlexp.runs.rundir import refuse_earlier_run

    with pytest.raises(RunDirInUse):
        refuse_earlier_run(run_dir)


# ------------------------------------------------------------------------------------------------
# A refused command writes nothing: the outputs tree is byte-identical before and after


def _tree(root: Path) -> dict[str, object]:
    """Every file and folder under ``root``, hidden ones included, with the files' bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def _bad_inputs(root: Path) -> dict[str, tuple[list[str], str]]:
    """Refused commands: (overrides, what the one error line says). Files they name are written into ``root``."""
    import numpy as np

    write_arrays(root / "good.npz")
    (root / "truncated.npz").write_bytes((root / "good.npz").read_bytes()[:200])
    np.savez(root / "no_y.npz", x=np.zeros((30, 4), np.float32))
    np.savez(root / "words.npz", x=np.zeros((30, 4), np.float32), y=np.array(["cat", "dog"] * 15))
    write_png_folder(root / "png", per_class=4)
    (root / "png" / "dog" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # a corrupt image among good ones
    return {
        "cifar10 files missing": (["dataset=cifar10", "dataset.download=false"], "cifar10 files missing"),
        "mnist files missing": (["dataset=mnist", "dataset.download=false"], "files missing"),
        "no CUDA": (["trainer.device=cuda"], "CUDA"),
        "k larger than the data": (["split=kfold", "split.k=5000"], "split"),
        "resize too small for LeNet": (["model=lenet", "dataset.resize=4"], "resize"),
        "truncated npz": (["dataset=arrays", f"dataset.path={root / 'truncated.npz'}"], "truncated.npz"),
        "npz without y": (["dataset=arrays", f"dataset.path={root / 'no_y.npz'}"], "no_y.npz"),
        "string labels": (["dataset=arrays", f"dataset.path={root / 'words.npz'}"], "words.npz"),
        "corrupt png": (["dataset=image_folder", f"dataset.root={root / 'png'}", "dataset.num_workers=0",
                         "dataset.in_memory=false", "trainer.batch_size=4"], "2.png"),
        "negative lr": (["optim.lr=-1"], "optim.lr"),
        "unknown key": (["model.hiden=3"], "model.hiden"),
        "a file that is not data": (["dataset=arrays", f"dataset.path={root / 'png'}"], "png"),
    }


@pytest.fixture(scope="module")
def earlier_outputs(tmp_path_factory) -> Path:
    """An outputs/ folder holding one finished run (outputs/earlier), trained once; tests copy it."""
    root = tmp_path_factory.mktemp("earlier")
    proc = run_in(root, *SMOKE, "hydra.run.dir=outputs/earlier")
    assert proc.returncode == 0, proc.stderr
    return root / "outputs"


@pytest.mark.parametrize("case", ["cifar10 files missing", "mnist files missing", "no CUDA", "k larger than the data",
                                  "resize too small for LeNet", "truncated npz", "npz without y", "string labels",
                                  "corrupt png", "negative lr", "unknown key", "a file that is not data"])
def test_a_refused_command_leaves_the_outputs_tree_as_it_was(tmp_path, monkeypatch, capfd, earlier_outputs, case):
    if case == "no CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = tmp_path / "data"
    data.mkdir()
    args, says = _bad_inputs(data)[case]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DLEXP_DATA_DIR", str(tmp_path / "no_data_here"))
    copied(earlier_outputs, tmp_path / "outputs")  # a run the refusal must not touch
    before = _tree(tmp_path / "outputs")
    for run_dir in ([], ["hydra.run.dir=outputs/new/run"]):  # a dated dir under outputs/, and a named one
        refused = cli_in_process("dlexp", [*SMOKE, *args, *run_dir], capfd)
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], refused.stderr
        assert _tree(tmp_path / "outputs") == before, case


# ------------------------------------------------------------------------------------------------
# Search settings are not hyperparameters


@pytest.mark.slow
def test_a_searchs_own_settings_are_never_columns_and_a_rerun_with_fewer_trials_runs_nothing(tmp_path):
    search = ["-m", "hparams_search=optuna", *SMOKE, "sweep.name=s"]
    first = run_cli(*search, "hparams_search.n_trials=2", "hparams_search.slots=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    more = run_cli(*search, "hparams_search.n_trials=3", "hparams_search.slots=1", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    sweep_dir = tmp_path / "outputs" / "multirun" / "s"
    header = (sweep_dir / "summary.csv").read_text().splitlines()[0].split(",")
    assert not [c for c in header if "n_trials" in c or "slots" in c or "hparams_search" in c], header
    best = next(line for line in more.stdout.splitlines() if line.startswith("Best:"))
    assert "n_trials" not in best and "slots" not in best and "lr=" in best
    fewer = run_cli(*search, "hparams_search.n_trials=2", cwd=tmp_path)
    assert fewer.returncode == 0, fewer.stderr
    said = [line for line in fewer.stdout.splitlines() if "trials finished earlier" in line]
    assert said == [line for line in said if "3 trials finished earlier, hparams_search.n_trials=2: nothing to run" in line]
    assert len(said) == 1 and "slots busy" not in fewer.stdout
    assert len(list(sweep_dir.glob("trial_*"))) == 3


# ------------------------------------------------------------------------------------------------
# hydra.job.chdir=true is refused in one line, from the command line or a config file


def test_hydra_job_chdir_is_refused_in_one_line_from_the_command_line_or_a_config_file(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "conf" / "experiment" / "moves.yaml"
    preset.parent.mkdir(parents=True)
    preset.write_text("# @package _global_\nhydra:\n  job:\n    chdir: true\n")
    for args in ([*SMOKE, "hydra.job.chdir=true"], ["--config-dir", str(tmp_path / "conf"), *SMOKE, "experiment=moves"]):
        refused = cli_in_process("dlexp", args, capfd)
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1 and "hydra.job.chdir=true is not supported" in lines[0], refused.stderr
        assert not (tmp_path / "outputs").exists() and Path.cwd() == tmp_path  # nothing written, and still here


def test_no_line_about_a_job_ends_in_an_empty_reason(tmp_path):
    from dlexp.results.report import build_report

    for name, summary in (("a", {"status": "interrupted", "signal": "SIGINT"}), ("b", {"status": "failed"})):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "overrides.yaml").write_text(f"- seed={ord(name)}\n")
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    reasons = {job.name: job.reason for job in build_report(tmp_path).jobs}
    assert reasons == {"a": "stopped by SIGINT; it continues from its checkpoint when the sweep does", "b": "failed"}


@pytest.mark.slow
def test_an_interrupted_search_hints_the_command_that_continues_it(tmp_path):
    search = ["-m", "hparams_search=optuna", "hparams_search.n_trials=2", "hparams_search.slots=1", *SMOKE]
    stopped = run_cli(*search, cwd=tmp_path, env={"DLEXP_SIGNAL_AT": "compose:SIGINT"})  # the search's own process
    assert stopped.returncode == 130, stopped.stderr
    hint = _hinted(stopped.stderr, "continue the search with: ")
    again = run_cli(*hint, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    (search_dir,) = (tmp_path / "outputs" / "search").iterdir()
    assert sorted(p.name for p in search_dir.glob("trial_*")) == ["trial_0", "trial_1"]


@pytest.mark.slow
def test_a_search_given_without_m_hints_the_same_command_with_m(tmp_path):
    refused = run_cli("hparams_search=optuna", "hparams_search.n_trials=2", *SMOKE, cwd=tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "outputs").exists()
    hint = _hinted(refused.stderr, "add -m: ")
    assert hint == ["-m", "hparams_search=optuna", "hparams_search.n_trials=2", *SMOKE]
    assert run_cli(*hint, cwd=tmp_path).returncode == 0


@pytest.mark.slow  # a signal to a sweep of 3 jobs; the fast tier follows an interrupted sweep's hint (above)
def test_the_report_of_a_sweep_stopped_before_some_jobs_hints_the_command_that_runs_them(tmp_path, monkeypatch, capfd):
    args = ["-m", *SMOKE, "optim.lr=0.003,0.01,0.03"]
    stopped = run_cli(*args, cwd=tmp_path, env={"DLEXP_SIGNAL_AT": "job_end@1:SIGTERM"})
    assert stopped.returncode == 143
    (sweep_dir,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    monkeypatch.chdir(tmp_path)
    report = cli_in_process("dlexp.report", [str(sweep_dir), "--no-run-plots"], capfd)
    pending = next(line for line in (sweep_dir / "summary.md").read_text().splitlines() if "not started yet" in line)
    words = shlex.split(pending.split("continue the sweep with ", 1)[1])
    assert report.returncode == 0 and words[:3] == ["python", "-m", "dlexp"]
    assert words[3:] == [*args, f"hydra.sweep.dir={sweep_dir.relative_to(tmp_path)}"]
    again = cli_in_process("dlexp", words[3:], capfd)  # the hint, followed, in this process
    assert again.returncode == 0 and again.stdout.count("completed earlier, skipped") == 1


def test_a_resume_hint_for_a_sweep_jobs_dir_is_one_value_hydra_reads():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dlexp.runs.hints import resume_command

    job = "/tmp/outputs/multirun/s/lr=0.1,seed=0-3fa2c1d0"
    (override,) = OverridesParser.create().parse_overrides(shlex.split(resume_command(Path(job)))[3:])
    assert override.key_or_group == "resume" and override.value() == job and not override.is_sweep_override()


# ------------------------------------------------------------------------------------------------
# What a user wrote is shown as written; resume= of what is not a checkpoint, or of a finished run


def test_a_sweeps_console_shows_list_values_as_written(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nothing.py").write_text('"""A plugin that registers nothing."""\n')
    proc = cli_in_process("dlexp", ["-m", *SMOKE, "model.hidden=[32],[16]", "plugins=[nothing.py]"], capfd)
    assert proc.returncode == 0, proc.stderr
    best = next(line for line in proc.stdout.splitlines() if line.startswith("Best:"))
    same = next(line for line in proc.stdout.splitlines() if line.startswith("same in every job:"))
    assert "hidden=[" in best and "plugins=[nothing.py]" in same  # not eaten as rich markup
    assert "[32]" in proc.stdout and "[16]" in proc.stdout  # the table's cells


@pytest.mark.parametrize("name, content", [("metrics.csv", None), ("fake.pt", b"not a checkpoint\n"),
                                           ("summary.json", None)])
def test_resume_of_a_file_that_is_not_a_checkpoint_is_one_line_and_touches_nothing(tmp_path, monkeypatch, capfd, name,
                                                                                    content):
    monkeypatch.chdir(tmp_path)
    assert cli_in_process("dlexp", [*SMOKE, "hydra.run.dir=run"], capfd).returncode == 0
    if content is not None:
        (tmp_path / "run" / name).write_bytes(content)
    before = _tree(tmp_path)
    proc = cli_in_process("dlexp", [f"resume=run/{name}"], capfd)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and f"run/{name} is not a checkpoint" in lines[0], proc.stderr
    assert "weights_only" not in lines[0] and _tree(tmp_path) == before


def test_resume_of_a_finished_run_with_its_own_command_changes_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    command = [*SMOKE, "hydra.run.dir=run"]
    assert cli_in_process("dlexp", command, capfd).returncode == 0
    before = _tree(tmp_path / "run")
    again = cli_in_process("dlexp", [*command, "resume=run"], capfd)
    assert again.returncode == 0 and "has finished (completed after 2 epochs" in again.stdout, again.stderr
    assert "nothing to resume; raise trainer.epochs to train it further" in again.stdout
    assert _tree(tmp_path / "run") == before  # no new event file, no summary rewritten
    longer = cli_in_process("dlexp", ["resume=run", "trainer.epochs=3"], capfd)
    assert longer.returncode == 0 and "resuming from epoch 3" in longer.stdout
