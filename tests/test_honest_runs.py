"""A run that ends early still reports what it learnt: a diverged or interrupted run scores its best epoch
on the test set, and says that it did."""
from __future__ import annotations

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


def test_an_interrupted_run_scores_its_best_checkpoint(tmp_path):
    proc = run_cli(*FAST, "trainer.epochs=4", "hydra.run.dir=run", cwd=tmp_path,
                   env={"DLEXP_SIGNAL_AT": "end_epoch@2:SIGINT"})
    assert proc.returncode == 130, proc.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 2
    assert summary["tested"].endswith("of a run that was interrupted") and "test/acc" in summary
