"""A run that ends early still reports what it learnt: a diverged or interrupted run scores its best epoch
on the test set, and says that it did."""
from __future__ import annotations

import pytest

from conftest import cli_in_process, read_json, run_cli

FAST = ["model.dropout=0", "trainer.progress=false", "trainer.limit_train_batches=5"]


def test_a_diverged_run_scores_its_best_checkpoint(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    # the lr grows 100x an epoch: epoch 1 learns, a later one overflows
    shown = cli_in_process("dlexp", [*FAST, "optim=sgd", "optim.lr=0.01", "scheduler=exponential",
                                     "scheduler.gamma=100", "trainer.epochs=8", "hydra.run.dir=run"], capfd)
    assert shown.returncode == 3, shown.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "diverged" and summary["diverged_at"]["epoch"] > summary["best_epoch"] >= 1
    assert summary["tested"] == f"the best checkpoint (epoch {summary['best_epoch']}) of a run that diverged"
    assert 0.0 <= summary["test/acc"] <= 1.0 and "test/loss" in summary
    assert f"its best checkpoint (epoch {summary['best_epoch']}) scored test/acc {summary['test/acc']:.4f}" in shown.stderr


@pytest.mark.slow  # a signal to a real process; in the fast tier a diverged run scores its best checkpoint (above)
def test_an_interrupted_run_scores_its_best_checkpoint(tmp_path):
    proc = run_cli(*FAST, "trainer.epochs=4", "hydra.run.dir=run", cwd=tmp_path,
                   env={"DLEXP_SIGNAL_AT": "end_epoch@2:SIGINT"})
    assert proc.returncode == 130, proc.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 2
    assert summary["tested"].endswith("of a run that was interrupted") and "test/acc" in summary


def test_the_run_says_its_estimated_time_once_and_only_when_it_is_worth_a_line(tmp_path, monkeypatch, capfd):
    from types import SimpleNamespace

    import torch
    from omegaconf import OmegaConf

    from dlexp.training.trainer import Trainer

    monkeypatch.chdir(tmp_path)
    shown = cli_in_process("dlexp", [*FAST, "trainer.epochs=3", "hydra.run.dir=run"], capfd)
    assert shown.returncode == 0, shown.stderr
    assert not [line for line in shown.stdout.splitlines() if line.startswith("estimated time:")]  # a second or so
    lines: list[str] = []
    fake = SimpleNamespace(cfg=OmegaConf.create({"trainer": {"epochs": 3}, "model": {}}),
                           runtime=SimpleNamespace(device=torch.device("cpu")), log=SimpleNamespace(info=lines.append))
    Trainer.say_time(fake, 2, 0.1)  # 0.1 s left: nothing said
    Trainer.say_time(fake, 2, 12.0)  # 12 s left
    assert lines == ["estimated time: about 12 s for the 1 epoch(s) left (12.0 s per epoch, measured on epoch 2; "
                     "early stopping may end it sooner)"]


def test_a_long_cpu_run_suggests_a_shorter_budget():
    from types import SimpleNamespace

    import torch
    from omegaconf import OmegaConf

    from dlexp.training.trainer import Trainer

    lines: list[str] = []
    fake = SimpleNamespace(cfg=OmegaConf.create({"trainer": {"epochs": 40}, "model": {"width_div": 1}}),
                           runtime=SimpleNamespace(device=torch.device("cpu")), log=SimpleNamespace(info=lines.append))
    Trainer.say_time(fake, 1, 30.0)  # 39 epochs left at 30 s each: about 20 min
    assert lines == ["estimated time: about 20 min for the 39 epoch(s) left (30.0 s per epoch, measured on epoch 1; "
                     "early stopping may end it sooner); over 10 minutes on the CPU: for a first look, try "
                     "trainer.epochs=20 or model.width_div=4"]


# -- a model's own recipe -----------------------------------------------------------------------

def _shown(argv: list[str], capfd):
    from omegaconf import OmegaConf

    shown = cli_in_process("dlexp", ["--cfg", "job", *argv], capfd)
    assert shown.returncode == 0, shown.stderr
    return OmegaConf.create(shown.stdout)


def test_a_models_recipe_sets_its_lr_visibly_and_stays_overridable(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    alexnet = _shown(["model=alexnet", "optim=sgd_momentum"], capfd)  # conf/recipe/alexnet_sgd_momentum.yaml
    assert (alexnet.optim.lr, alexnet.model.init) == (0.01, "xavier_uniform")
    assert _shown(["model=vgg11", "optim=sgd_momentum"], capfd).model.init == "kaiming_normal"
    lenet = _shown(["model=lenet", "optim=sgd_momentum"], capfd)
    assert (lenet.optim.lr, lenet.trainer.batch_size) == (0.05, 16)
    assert _shown(["model=alexnet", "optim=sgd_momentum", "optim.lr=0.03"], capfd).optim.lr == 0.03  # the command line wins
    plain = _shown(["model=mlp", "optim=sgd_momentum"], capfd)  # no recipe: the optimizer's own
    assert (plain.optim.lr, plain.model.init) == (0.05, "default")
    assert _shown(["model=alexnet", "optim=adam"], capfd).model.init == "default"  # a recipe is per optimizer
    assert _shown(["experiment=d2l_vgg"], capfd).optim.lr == 0.05  # a preset's own setting wins over the recipe
    batchnorm = _shown(["experiment=batchnorm"], capfd)  # its lesson compares LeNet and LeNet-BN on equal terms
    assert (batchnorm.optim.lr, batchnorm.model.init, batchnorm.trainer.batch_size) == (0.05, "default", 64)


def test_the_banner_and_summary_name_the_recipe(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    shown = cli_in_process("dlexp", ["model=alexnet", "optim=sgd_momentum", "model.width_div=16", "model.fc_width=16",
                                     "trainer=smoke", "trainer.epochs=1", "trainer.progress=false", "hydra.run.dir=a"], capfd)
    assert shown.returncode == 0, shown.stderr
    assert "optim=sgd_momentum recipe=alexnet_sgd_momentum (optim.lr=0.01 model.init=xavier_uniform) params=" in shown.stdout
    overridden = cli_in_process("dlexp", ["model=alexnet", "optim=sgd_momentum", "model.width_div=16", "model.fc_width=16",
                                          "model.init=normal", "trainer=smoke", "trainer.epochs=1", "trainer.progress=false",
                                          "hydra.run.dir=c"], capfd)
    assert "recipe=alexnet_sgd_momentum (optim.lr=0.01 model.init=normal) params=" in overridden.stdout  # as it took effect
    assert read_json(tmp_path / "a" / "summary.json")["recipe"] == "alexnet_sgd_momentum"
    plain = cli_in_process("dlexp", ["trainer=smoke", "trainer.epochs=1", "trainer.progress=false", "hydra.run.dir=b"], capfd)
    assert "recipe" not in plain.stdout and "recipe" not in read_json(tmp_path / "b" / "summary.json")


# -- dlexp.report on one run's dir ----------------------------------------------------------------

def test_report_on_a_run_dir_prints_its_report_and_writes_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert cli_in_process("dlexp", [*FAST, "trainer.epochs=1", "hydra.run.dir=run"], capfd).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    shown = cli_in_process("dlexp.report", ["run"], capfd)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Run report: run\n") and "test/acc" in shown.stdout and "Best:" not in shown.stdout
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before
    (tmp_path / "run" / "summary.json").unlink()
    shown = cli_in_process("dlexp.report", ["run"], capfd)
    assert shown.returncode == 2 and shown.stderr.count("\n") == 1 and "run/summary.json is missing" in shown.stderr and shown.stderr.rstrip().endswith("continue it with: python -m dlexp resume=run")
