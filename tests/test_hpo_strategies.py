"""The search strategies of the course's hyperparameter-optimization lesson: the search's record (search.json),
synchronous successive halving, a sweep of searches (hydra/sweeper=dlexp_searches) and the hpo_strategies
preset's finding, run small."""
from __future__ import annotations

import optuna
import pytest
from conftest import read_json, run_cli

from dlexp.errors import ConfigError


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
    args = ["-m", "hparams_search=optuna", "trainer.progress=false", "trainer.checkpoints=false",
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
    assert not list(sweep_dir.glob("trial_*/*.png"))  # a rung's runs are sweep jobs: their plots on demand (dlexp.report)
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


# -- a sweep of searches -----------------------------------------------------------------------------------------


def test_the_grid_of_a_sweep_of_searches_and_the_overrides_every_point_shares():
    from dlexp.search.grid import grid_points

    points, shared = grid_points({"seed": "0,1,2"}, ["experiment=hpo_strategies", "trainer.epochs=4"])
    assert points == [["seed=0"], ["seed=1"], ["seed=2"]] and shared == ["experiment=hpo_strategies", "trainer.epochs=4"]
    assert grid_points({"seed": "0,1,2"}, ["seed=7"]) == ([[]], ["seed=7"])  # a value on the command line fixes it
    assert grid_points({"seed": "0,1"}, ["model.hidden=[64],[128]"])[0] == [
        ["seed=0", "model.hidden=[64]"], ["seed=0", "model.hidden=[128]"], ["seed=1", "model.hidden=[64]"],
        ["seed=1", "model.hidden=[128]"]]
    searched = "hparams_search.params.optim.lr=interval(0.01, 0.1)"  # the searches' range, not an axis of the grid
    assert grid_points({"seed": "0,1"}, [searched]) == ([["seed=0"], ["seed=1"]], [searched])
    with pytest.raises(ConfigError, match="a range to search goes in hparams_search.params"):
        grid_points({"optim.lr": "interval(0.1, 1.0)"}, [])


def test_a_sweep_of_searches_whose_space_holds_a_value_no_trial_takes_is_refused_before_any_search(tmp_path):
    proc = run_cli("-m", "experiment=hpo_strategies", "hparams_search.params.optim.lr=interval(-1, 1)",
                   "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 2 and "a trial with optim.lr=-1.0 would be refused" in proc.stderr, proc.stderr
    assert not (tmp_path / "sweep" / "random").exists()


def _run(trial, epochs, value, ended, seconds=1.0, status="completed"):
    return {"trial": trial, "dir": f"trial_{trial}", "status": status, "epochs": epochs, "value": value,
            "started": ended - seconds, "ended": ended, "seconds": seconds, "run_seconds": seconds}


def _search(root, name, seed, runs, *, pruner="none", synchronous=False, busy=0.9, rungs=()):
    from dlexp.course.findings import SearchFiles

    settings = {"params": {"optim.lr": "tag(log, interval(1e-3, 1.0))"}, "pruner": pruner, "synchronous": synchronous,
                "reduction_factor": 2, "sampler": "random"}
    record = {"settings": settings, "direction": "maximize", "max_epochs": 10, "n_trials": 4, "slots": 2,
              "wall_seconds": 10.0, "busy_fraction": busy, "rungs": list(rungs), "interrupted": False, "runs": runs}
    return SearchFiles(name, root / name / f"seed={seed}", record)


def _searches(root, seeds=3, **change):
    """Four configurations with val acc 0.90, 0.97, 0.95, 0.80 at 10 epochs (and less before), searched three ways."""
    groups = {"random": [], "successive_halving": [], "asha": []}
    for seed in range(seeds):
        groups["random"].append(_search(root, "random", seed, [_run(t, 10, v, 2.0 * (t + 1), seconds=1 + t % 2)
                                                                for t, v in enumerate((0.90, 0.97, 0.95, 0.80))]))
        sync = [_run(t, 2, v, 1.0 + t, seconds=0.5 + t % 2) for t, v in enumerate((0.85, 0.93, 0.92, 0.70))]
        sync += [_run(1, 4, 0.95, 6.0), _run(2, 4, 0.94, 6.5), _run(1, 8, 0.96, 9.0), _run(1, 10, 0.97, 12.0)]
        groups["successive_halving"].append(_search(root, "successive_halving", seed, sync, pruner="successive_halving",
                                                    synchronous=True, busy=change.get("sync_busy", 0.8),
                                                    rungs=(2, 4, 8, 10)))
        asha = [_run(0, 2, 0.85, 1.0, status="pruned"), _run(1, 10, 0.97, 5.0, seconds=3.0), _run(2, 4, 0.94, 6.0, status="pruned"),
                _run(3, 2, 0.70, 6.5, seconds=0.4, status="pruned")]
        groups["asha"].append(_search(root, "asha", seed, asha, pruner="successive_halving", busy=0.95))
    return groups


def test_the_hpo_finding_compares_the_epochs_to_random_searchs_best_and_the_busy_slots(tmp_path):
    from dlexp.course import findings

    check = findings.FINDINGS.get("hpo_strategies")
    measured, holds, (line, premise) = check.measure(_searches(tmp_path))
    assert holds and premise is None, (line, premise)
    assert measured["epochs/random"] == 40 and measured["epochs/successive_halving"] == 8 + 8 + 8 + 10
    assert measured["best_error/random"] == pytest.approx(0.03) == measured["best_error/asha"]
    assert measured["median_share_to_random_best/asha"] == pytest.approx(12 / 40)  # 2 + 10 epochs of 40
    assert measured["median_share_to_random_best/successive_halving"] == pytest.approx(34 / 40)
    assert "slots busy 0.95 (ASHA) vs 0.8 (synchronous)" in line
    _, holds, _ = check.measure(_searches(tmp_path, sync_busy=0.97))
    assert not holds  # the synchronous slots were the busier ones: the claim fails, and says so


def test_the_hpo_finding_checks_that_each_search_spent_the_budget_it_claims(tmp_path):
    from dlexp.course import hpo

    groups = _searches(tmp_path)
    groups["random"][1].record["runs"][2]["epochs"] = 6
    assert "an unpruned trial stopped before its 10 epochs" in hpo._premise(groups)
    groups = _searches(tmp_path)
    groups["successive_halving"][0].record["runs"].pop()  # the last rung did not run
    assert "its rungs of [2, 4, 8, 10] epochs ran [4, 2, 1, 0] runs, not [4, 2, 1, 1]" in hpo._premise(groups)
    groups = _searches(tmp_path)
    groups["asha"][2].record["slots"] = 1
    assert "differ in their space, trial budget, slots or epochs" in hpo._premise(groups)
    assert "at least 3" in hpo._premise(_searches(tmp_path, seeds=2))


# the preset at a fraction of its cost: 4 configurations of at most 4 epochs (rungs 1, 2, 4), 3 seeds
SMALL = ["trainer.progress=false", "seed=0,1,2", "hparams_search.n_trials=4", "trainer.epochs=4",
         "hparams_search.min_epochs=1"]


@pytest.mark.slow
def test_the_hpo_strategies_preset_runs_small_and_its_finding_reads_every_search(tmp_path):
    proc = run_cli("-m", "experiment=hpo_strategies", *SMALL, "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "sweep"
    assert "4 searches x 3 points: random, successive_halving, asha, tpe_hyperband; 2 slots" in proc.stdout
    assert len(list(sweep.glob("*/seed=*/search.json"))) == 12
    saved = read_json(sweep / "finding.json")
    assert saved["premise"] is None and "not measured" not in saved["line"], saved["text"]
    m = saved["measured"]
    assert m["epochs/random"] == 16 and m["epochs/successive_halving"] == 4 * 1 + 2 * 2 + 1 * 4
    assert m["epochs/asha"] <= 16 and m["seeds"] == 3 and saved["text"] in proc.stdout
    assert saved["figures"] == ["strategies.md", "best_so_far.png", "rungs.png"]
    assert (sweep / "best_so_far.png").read_bytes()[:4] == b"\x89PNG" == (sweep / "rungs.png").read_bytes()[:4]
    table = (sweep / "strategies.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == ["| `random`", "| `successive_halving`", "| `asha`",
                                                          "| `tpe_hyperband`"]
    (sweep / "finding.json").unlink()
    again = run_cli("sweep", "--no-run-plots", cwd=tmp_path, module="dlexp.report")
    assert again.returncode == 0 and read_json(sweep / "finding.json")["measured"] == m
