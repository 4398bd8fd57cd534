"""The search strategies of the course's hyperparameter-optimization lesson: runs without their own plots,
the search's record (search.json), synchronous successive halving, a sweep of searches (hydra/sweeper=
dlexp_searches) and the hpo_strategies preset's finding, run small."""
from __future__ import annotations


def test_a_run_with_trainer_plots_false_writes_its_files_but_no_pngs(run_train):
    result, run_dir = run_train("trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.plots=false")
    assert result.summary["status"] == "completed" and (run_dir / "metrics.csv").is_file()
    assert not list(run_dir.glob("*.png"))
