"""The search strategies of the course's hyperparameter-optimization lesson: runs without their own plots,
the search's record (search.json), synchronous successive halving, a sweep of searches (hydra/sweeper=
dlexp_searches) and the hpo_strategies preset's finding, run small."""
from __future__ import annotations

import optuna
import pytest
from conftest import read_json, run_cli

from dlexp.errors import ConfigError


def test_a_run_with_trainer_plots_false_writes_its_files_but_no_pngs(run_train):
    result, run_dir = run_train("trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.plots=false")
    assert result.summary["status"] == "completed" and (run_dir / "metrics.csv").is_file()
    assert not list(run_dir.glob("*.png"))


# -- successive halving --------------------------------------------------------------------------------------------


def _settings(**kw):
    from omegaconf import OmegaConf

    from dlexp.config.validate import search_settings

    return search_settings(OmegaConf.create(kw))


def test_the_rungs_of_synchronous_successive_halving_and_the_runs_each_one_has():
    from dlexp.search import halving

    sync = _settings(pruner="successive_halving", synchronous=True, min_epochs=2, reduction_factor=2)
    assert halving.rung_epochs(sync, 10) == [2, 4, 8, 10]  # the textbook's r_min 2, eta 2, r_max 10
    assert halving.rung_epochs(_settings(pruner="successive_halving", synchronous=True, min_epochs=1), 20) == [1, 4, 16, 20]
    assert halving.rung_epochs(_settings(pruner="successive_halving", min_epochs=2), 10) == []  # ASHA: Optuna's pruner
    assert halving.rung_runs(8, [2, 4, 8, 10], 2) == [8, 4, 2, 1]  # one bracket of eta^3
    assert halving.rung_runs(12, [2, 4, 8, 10], 2) == [12, 6, 3, 2]  # a second, smaller bracket of 4
    with pytest.raises(ConfigError, match="needs hparams_search.min_epochs=10 below trainer.epochs=10"):
        halving.rung_epochs(_settings(pruner="successive_halving", synchronous=True, min_epochs=10), 10)


def test_the_reduction_factor_reaches_optunas_pruners_and_is_checked():
    from dlexp.search import study

    halving_pruner = study.make_pruner("successive_halving", 2, 10, 2)
    assert halving_pruner._reduction_factor == 2 and halving_pruner._min_resource == 2
    assert study.make_pruner("hyperband", 2, 10, 2)._reduction_factor == 2
    assert study.TrialLink.from_env(study.TrialLink(None, "d", "s", 0, "none", 1, 10, 2).to_env()).reduction_factor == 2
    with pytest.raises(ConfigError, match="hparams_search.reduction_factor"):
        _settings(reduction_factor=1)


@pytest.mark.slow
def test_a_synchronous_halving_search_runs_its_rungs_and_records_every_run(tmp_path):
    """4 configurations, rungs of 1, 2 and 4 epochs: 4 + 2 + 1 runs, each rung's best half again from scratch."""
    args = ["-m", "hparams_search=optuna", "trainer.progress=false", "trainer.plots=false", "trainer.checkpoints=false",
            "trainer.epochs=4", "trainer.limit_train_batches=3", "hparams_search.n_trials=4", "hparams_search.slots=2",
            "hparams_search.sampler=random", "hparams_search.pruner=successive_halving", "hparams_search.synchronous=true",
            "hparams_search.reduction_factor=2", "hparams_search.min_epochs=1", "sweep.name=sync"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep_dir = tmp_path / "outputs" / "multirun" / "sync"
    record = read_json(sweep_dir / "search.json")
    assert record["rungs"] == [1, 2, 4] and record["max_epochs"] == 4 and record["slots"] == 2
    runs = record["runs"]
    assert sorted(r["epochs"] for r in runs) == [1, 1, 1, 1, 2, 2, 4] and {r["status"] for r in runs} == {"completed"}
    assert all(r["dir"] == f"trial_{r['trial']}_epochs_{r['epochs']}" and (sweep_dir / r["dir"] / "summary.json").is_file()
               for r in runs)
    assert [r["ended"] for r in runs] == sorted(r["ended"] for r in runs) and 0 < record["busy_fraction"] <= 1
    first = {r["trial"]: r["value"] for r in runs if r["epochs"] == 1}
    second = sorted((r["trial"] for r in runs if r["epochs"] == 2))
    assert second == sorted(sorted(first, key=lambda t: (-first[t], t))[:2])  # the best half went on
    states = {t.number: t.state.name for t in optuna.load_study(study_name="sync", storage=_journal(sweep_dir)).trials}
    assert sorted(states.values()) == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
    assert "rung of 1 epochs: 2 of 4 trials go on to 2 epochs" in proc.stdout


def _journal(sweep_dir):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
