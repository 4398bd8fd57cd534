"""Nothing silently wrong: runs that blew up are named so, never ``fine``."""
from __future__ import annotations

import math

import pytest
import torch

from dlexp.runs.diagnostics import diagnose

# A 10-class problem whose train targets are balanced: predicting the prior scores ln(10) and accuracy 0.1.
DIGITS_PRIOR = {"loss": math.log(10), "metric": 0.1}


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
    from conftest import read_json, untimed_rows

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


@pytest.mark.parametrize("schedule", [["scheduler=step", "scheduler.step_size=2"], ["scheduler=exponential"],
                                      ["scheduler=multistep", "scheduler.milestones=[3,5]"]])
def test_extending_a_schedule_that_does_not_depend_on_the_length_continues_it_and_says_so(run_train, capsys, tmp_path,
                                                                                          schedule):
    from conftest import untimed_rows

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
    from conftest import read_json

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
    from conftest import run_cli

    root = tmp_path_factory.mktemp("whole")
    proc = run_cli(*KILL_RUN, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


def _outcome(run_dir: Path) -> tuple[list, dict]:
    from conftest import read_json, untimed_rows

    summary = read_json(run_dir / "summary.json")
    keep = {k: v for k, v in summary.items() if k.startswith(("test/", "best/", "gap/")) or k in
            ("status", "epochs_run", "best_epoch", "diagnosis")}
    return untimed_rows(run_dir), keep


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_run_killed_at_any_moment_finishes_as_if_never_stopped_with_its_own_command_and_resume(tmp_path, whole_run,
                                                                                                   moment):
    from conftest import run_cli

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
    from conftest import cli_in_process

    first = cli_in_process("dlexp", [*KILL_RUN[:-1], "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}"], capfd)
    assert first.returncode == 0, first.stderr
    again = cli_in_process("dlexp", [*KILL_RUN[:-1], f"hydra.run.dir={tmp_path / 'run'}", f"resume={tmp_path / 'run'}"], capfd)
    assert again.returncode == 0, again.stderr  # dataset.resize=16 against the recorded 16: one value
    assert "resuming from epoch 2" in again.stdout
