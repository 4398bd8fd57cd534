"""Optuna searches (``-m hparams_search=optuna``) and parallel slots: the search space, the budget shared by
workers, leases, pruning, storages (journal, SQLite, a real PostgreSQL), reruns, the slots launcher, and the
study in optuna-dashboard. End-to-end runs are smoke-sized (1 to 3 epochs of a few batches); a search runs its
trials in slot processes, so each is a slow test, and the three workers on one study (PostgreSQL or a journal
file) start several search processes (``services``). Commands refused before any trial run in this process."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import assert_one_line_error, read_json, run_cli
from dlexp.errors import ConfigError
from dlexp.search import study as studies
from dlexp.search.slots import THREADS_VARIABLE, slot_envs
from dlexp.search.space import parse_space

SMOKE = ["trainer=smoke", "trainer.progress=false"]
SEARCH = ["-m", "hparams_search=optuna", *SMOKE]


def _study(sweep_dir: Path, name: str | None = None, storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name or sweep_dir.name, storage=studies.open_storage(storage, sweep_dir))


def _in_memory_study() -> tuple[optuna.Study, studies.TrialStore]:
    """A study and its trials by number, in a storage the test keeps (as the search keeps the one it opens)."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    return study, studies.TrialStore(storage, study.study_name)


def _states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in studies.counted(study.get_trials())]


# -- the search space ----------------------------------------------------------------------------------------


def test_sweep_syntax_becomes_optuna_distributions():
    space = parse_space(
        {"optim.lr": "tag(log, interval(1e-4, 1e-1))", "regularizer.dropout": "interval(0.0, 0.6)", "model.depth": "tag(int, interval(1, 4))"},
        ["model=mlp", "trainer.batch_size=range(32,257,32)", "optim.momentum=0.8,0.9", "model.hidden=choice([128],[256])",
         "regularizer.dropout=0.1"],
    )
    assert space.distributions == {
        "optim.lr": FloatDistribution(1e-4, 1e-1, log=True),
        "model.depth": IntDistribution(1, 4),
        "trainer.batch_size": IntDistribution(32, 256, step=32),
        "optim.momentum": CategoricalDistribution((0.8, 0.9)),
        "model.hidden": CategoricalDistribution(("[128]", "[256]")),
    }  # dropout: a plain value on the command line fixes the key
    assert space.fixed == ["model=mlp", "regularizer.dropout=0.1"]
    params = {"optim.lr": 0.00123, "model.depth": 2, "trainer.batch_size": 64, "optim.momentum": 0.9, "model.hidden": "[128]"}
    assert space.overrides(params) == ["model=mlp", "regularizer.dropout=0.1", "optim.lr=0.00123", "model.depth=2",
                                       "trainer.batch_size=64", "optim.momentum=0.9", "model.hidden=[128]"]


def test_search_ranges_on_the_command_line_join_the_space_and_search_settings_stay_fixed():
    space = parse_space({"optim.lr": "interval(0.1, 1)"},
                        ["hparams_search.params.optim.lr=tag(log, interval(0.01, 0.1))", "hparams_search.n_trials=5",
                         "~hparams_search.storage"])
    assert space.distributions == {"optim.lr": FloatDistribution(0.01, 0.1, log=True)}
    assert space.fixed == ["hparams_search.n_trials=5", "~hparams_search.storage"]


def test_space_mistakes_are_one_line_errors():
    with pytest.raises(ConfigError, match="is one value, not a range"):
        parse_space({"optim.lr": "0.1"}, [])
    with pytest.raises(ConfigError, match="the search has no parameters"):
        parse_space({}, ["model=mlp"])
    with pytest.raises(ConfigError, match="sampler=grid needs a list of values for optim.lr"):
        parse_space({"optim.lr": "interval(0.1, 1)"}, []).grid()


# -- the budget, the leases, the seeds ---------------------------------------------------------------------------


def test_a_trial_asked_beyond_the_budget_is_given_back_and_not_counted():
    study, store = _in_memory_study()
    space = {"x": FloatDistribution(0, 1)}
    trials = [study.ask(space) for _ in range(4)]  # as if two workers asked at once for the last trial
    assert [studies.is_surplus(study, t.number, 3) for t in trials] == [False, False, False, True]
    studies.give_back(study, store, trials[3].number)
    assert store.get(3).system_attrs[studies.SURPLUS] is True and store.get(3).state == TrialState.FAIL
    assert studies.left_in_budget(study, 3) == 0 and len(studies.counted(study.get_trials())) == 3
    study.tell(trials[0], 0.5)
    assert studies.left_in_budget(study, 5) == 2


def test_a_running_trial_is_abandoned_when_its_worker_is_gone():
    study, store = _in_memory_study()
    trial = study.ask({"x": FloatDistribution(0, 1)})
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    cases = {
        f"{host}:{os.getppid()}": (1e12, False),  # a live process on this host
        f"{host}:{int(dead.stdout)}": (1e12, True),  # its process ended
        "elsewhere:1": (1e12, False),  # another host, lease not run out
        "elsewhere:2": (1.0, True),  # another host, lease ran out
    }
    for owner, (lease, abandoned) in cases.items():
        store.set_system_attr(trial.number, studies.OWNER, owner)
        store.set_system_attr(trial.number, studies.LEASE, lease)
        assert studies.is_abandoned(store.get(trial.number)) is abandoned, owner
    young = study.ask({"x": FloatDistribution(0, 1)})  # no owner yet: another worker's, being created
    assert not studies.is_abandoned(store.get(young.number), lease_seconds=300)
    assert studies.is_abandoned(store.get(young.number), now=1e12, lease_seconds=300)
    studies.Leases(store, 300).take(young.number)  # now this process's own (which a rerun takes over)
    assert store.get(young.number).system_attrs[studies.OWNER] == studies.owner_id()
    study.tell(trial, 1.0)
    study.tell(young, 1.0)
    assert studies.abandoned_trials(study) == []  # finished trials never are


def test_each_trial_draws_from_its_own_seed_whichever_worker_asks():
    """Two workers with the same seed must not propose the same values; trial N's values depend on (seed, N)."""
    space = {"x": FloatDistribution(0, 1)}

    def draws(seed: int, order: list[int]) -> dict[int, float]:
        study = optuna.create_study(sampler=studies.make_sampler("random", seed))
        return {t.number: t.params["x"] for t in (study.ask(space) for _ in order)}

    first, again, other = draws(0, [0, 1, 2]), draws(0, [0, 1, 2]), draws(1, [0, 1, 2])
    assert first == again and first != other and len(set(first.values())) == 3



def test_tpe_proposes_the_same_trials_for_a_seed_on_optuna_4_and_5():
    """The values recorded on Optuna 4.9.0 and 5.1.0 alike: after 5 random draws, TPE (independent, constant
    liar) follows the results so far. Optuna 5's default multivariate TPE would change the last two."""
    space = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.6)}
    study = optuna.create_study(sampler=studies.make_sampler("tpe", 0))
    for i in range(9):
        trial = study.ask(space)
        if i % 3 != 2:  # every third left running: the constant liar counts it as bad
            study.tell(trial, abs(trial.params["lr"] - 0.01) + trial.params["dropout"] / 10)
    proposed = [(float(f"{t.params['lr']:.6g}"), float(f"{t.params['dropout']:.6g}")) for t in study.get_trials()]
    assert proposed == [(0.0993573, 0.0727783), (0.00102025, 0.52911), (0.0813077, 0.482725), (0.0381267, 0.159112),
                        (0.00180235, 0.337119), (0.00026353, 0.135703), (0.000376843, 0.440351), (0.00431254, 0.280473),
                        (0.00904364, 0.274317)]

def test_pruners_and_samplers_by_name():
    assert isinstance(studies.make_pruner("median", 2, 10), optuna.pruners.MedianPruner)
    assert isinstance(studies.make_pruner("hyperband", 1, 10), optuna.pruners.HyperbandPruner)
    assert isinstance(studies.make_pruner("successive_halving", 1, 10), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(studies.make_pruner("none", 1, 10), optuna.pruners.NopPruner)
    assert isinstance(studies.make_sampler("gp", 0).inner, optuna.samplers.GPSampler)
    assert isinstance(studies.make_sampler("cmaes", 0).inner, optuna.samplers.CmaEsSampler)
    with pytest.raises(ConfigError, match="unknown hparams_search.sampler=nope"):
        studies.make_sampler("nope", 0)


# -- slots -------------------------------------------------------------------------------------------------------


def test_slots_split_the_cpu_threads_and_give_each_job_its_own_gpu():
    cpu = slot_envs(None, device="cpu", cores=8)
    assert len(cpu) == 8 and {e[THREADS_VARIABLE] for e in cpu} == {"1"} and "CUDA_VISIBLE_DEVICES" not in cpu[0]
    assert [e["OMP_NUM_THREADS"] for e in slot_envs(3, device="cpu", cores=8)] == ["2", "2", "2"]
    gpus = slot_envs(None, device="auto", cores=16, gpus=["2", "5"])
    assert [e["CUDA_VISIBLE_DEVICES"] for e in gpus] == ["2", "5"] and gpus[0][THREADS_VARIABLE] == "8"
    shared = slot_envs(4, device="cuda", cores=16, gpus=["0", "1"], jobs_per_gpu=2)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in shared] == ["0", "0", "1", "1"]
    with pytest.raises(ConfigError, match="two jobs would share a GPU; use slots=2, or jobs_per_gpu=2"):
        slot_envs(4, device="auto", cores=16, gpus=["0", "1"])
    with pytest.raises(ConfigError, match="no GPU is visible"):
        slot_envs(None, device="cuda", cores=2, gpus=[])



def test_a_failed_jobs_error_is_read_through_hydras_public_getter_without_its_stderr_line(capsys):
    from hydra.core.utils import JobReturn, JobStatus

    from dlexp.search.slots import job_error

    failed, done = JobReturn(overrides=["a=1"], status=JobStatus.FAILED), JobReturn(overrides=["a=2"], status=JobStatus.COMPLETED)
    failed.return_value, done.return_value = ValueError("optim.lr must be > 0"), 0.5
    error = job_error(failed)
    assert isinstance(error, ValueError) and str(error) == "optim.lr must be > 0"
    assert job_error(done) is None and done.return_value == 0.5
    assert capsys.readouterr().err == ""

@pytest.mark.slow
def test_slots_launcher_runs_a_grid_side_by_side_with_a_log_per_job(tmp_path):
    sweep_dir = tmp_path / "grid"
    proc = run_cli("-m", "hydra/launcher=slots", "hydra.launcher.slots=2", *SMOKE, "trainer.num_threads=null",
                   "trainer.epochs=1", "regularizer.dropout=0,0.5", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "2 jobs on 2 slots on the CPU" in proc.stdout
    assert sum(line.startswith(("job 0 started", "job 1 started")) for line in lines) == 2
    assert sum(" completed in " in line and line.startswith("job ") for line in lines) == 2
    assert "dlexp model=" not in proc.stdout  # each run's own console output is in its log, not interleaved here
    threads = str(max(1, (os.cpu_count() or 1) // 2)) if hasattr(os, "sched_getaffinity") else None
    for job in (p for p in sweep_dir.iterdir() if (p / "summary.json").is_file()):
        assert read_json(job / "summary.json")["status"] == "completed"
        log = (sweep_dir / "logs" / f"{job.name}.log").read_text()
        assert "dlexp model=mlp" in log and "test/acc" in log
        if threads is not None:
            threads = str(max(1, len(os.sched_getaffinity(0)) // 2))
            assert f"{THREADS_VARIABLE}" not in log  # (the variable is read, not printed)
    assert len(list((sweep_dir / "logs").glob("*.log"))) == 2


# -- searches end to end -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_pruned_search_records_each_trial_and_a_rerun_continues_to_n_trials(tmp_path):
    """A grid in a known order: 4 good learning rates x 2 seeds, then a hopeless one (lr 1e-5). Once 4
    trials have completed, the median pruner stops each hopeless trial after its first epoch; one
    slot, so that which trials had completed at that moment does not depend on timing."""
    # the first 5 points train the same run (the progress refresh changes nothing), the rest are hopeless
    args = [*SEARCH, "trainer.epochs=3", "hparams_search.slots=1", "hparams_search.sampler=grid", "~hparams_search.params",
            "optim.lr=0.01,0.00001", "trainer.log_every_n_steps=10,11,12,13,14", "sweep.name=pruned"]
    proc = run_cli(*args, "hparams_search.n_trials=6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep_dir = tmp_path / "outputs" / "multirun" / "pruned"
    assert _states(_study(sweep_dir)) == ["COMPLETE"] * 5 + ["PRUNED"]
    assert "6 of 6 trials finished (5 complete, 1 pruned)" in proc.stdout and proc.stdout.count(" started [slot 0]") == 6

    again = run_cli(*args, "hparams_search.n_trials=6", cwd=tmp_path)
    assert again.returncode == 0 and "6 trials finished earlier, hparams_search.n_trials=6: nothing to run" in again.stdout
    assert " started " not in again.stdout  # nothing ran twice

    more = run_cli(*args, "hparams_search.n_trials=8", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "8 trials, 6 finished earlier" in more.stdout and more.stdout.count(" started [slot 0]") == 2
    study = _study(sweep_dir)
    assert _states(study) == ["COMPLETE"] * 5 + ["PRUNED"] * 3 and len(list(sweep_dir.glob("trial_*"))) == 8
    for trial in study.get_trials():
        run_dir = sweep_dir / f"trial_{trial.number}"
        summary = read_json(run_dir / "summary.json")
        assert f"optim.lr={trial.params['optim.lr']!r}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
        assert sorted(trial.intermediate_values) == list(range(1, summary["epochs_run"] + 1))  # reported every epoch
        if trial.state == TrialState.PRUNED:
            assert trial.params["optim.lr"] == 1e-5
            assert summary["status"] == "pruned" and summary["stop_reason"] == "pruned" and summary["epochs_run"] == 1
            assert "test/acc" not in summary  # a pruned trial is not scored on the test set
            assert f"trial {trial.number} pruned at epoch 1" in (proc.stdout + more.stdout)
        else:
            assert summary["status"] == "completed" and summary["best/val/acc"] == trial.value
            assert summary["epochs_run"] == 3
    assert read_json(sweep_dir / "jobs.json")["jobs"]["trial_7"]["status"] == "pruned"
    assert "error" not in more.stderr.lower()  # a pruned trial is a result, not a failure


@pytest.mark.slow
def test_a_killed_search_resumes_its_abandoned_trial_in_the_same_dir(tmp_path):
    """kill -9 of the sweep's process while a trial trains: its slot dies with it; the same command
    again resumes that trial from its checkpoint, under the same number, and ends at n_trials."""
    args = [*SEARCH, "trainer.epochs=3", "hparams_search.slots=1", "hparams_search.pruner=none", "hparams_search.n_trials=2",
            "sweep.name=killed"]
    killed = run_cli(*args, cwd=tmp_path, env={"DLEXP_KILL_PARENT_AT": "checkpoint_written@2"})  # epoch 2's is on disk
    assert killed.returncode != 0
    sweep_dir = tmp_path / "outputs" / "multirun" / "killed"
    assert _states(_study(sweep_dir)) == ["RUNNING"]
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "2 trials, 0 finished earlier, 1 to resume" in again.stdout
    assert _states(_study(sweep_dir)) == ["COMPLETE", "COMPLETE"]
    log = (sweep_dir / "logs" / "trial_0.log").read_text()
    assert "resuming from epoch 3 (checkpoint of 2 finished epochs)" in log, log
    metrics = (sweep_dir / "trial_0" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in metrics[1:]] == ["1", "2", "3"]  # no epoch run twice


def test_a_failed_trial_is_told_as_failed_and_the_search_goes_on(tmp_path):
    """The fast tier's whole search: two trials of one epoch on a slot, one of which fails."""
    args = [*SEARCH, "trainer.epochs=1", "hparams_search.slots=1", "hparams_search.sampler=grid", "~hparams_search.params",
            "optim.lr=0.001,-1", "hparams_search.n_trials=5", "sweep.name=failing"]
    proc = run_cli(*args, cwd=tmp_path)  # the range's first value runs: its key is one a trial takes
    assert proc.returncode == 1, proc.stderr
    study = _study(tmp_path / "outputs" / "multirun" / "failing")
    assert _states(study) == ["COMPLETE", "FAIL"]  # a grid of 2: n_trials is capped at its size
    assert "failed in" in proc.stdout and "optim.lr must be > 0, got -1.0" in proc.stdout
    assert "error: 1 of 2 jobs did not complete" in proc.stderr


@pytest.mark.slow
def test_a_trial_whose_worker_dies_is_told_as_failed_and_the_search_goes_on(tmp_path):
    """The first trial's worker process is killed (as the kernel's out-of-memory killer would): the trial is
    failed in the study, in jobs.json and in the summary, with why; the search goes on to its second trial."""
    args = [*SEARCH, "trainer.epochs=2", "hparams_search.slots=1", "hparams_search.sampler=grid", "~hparams_search.params",
            "optim.lr=0.01,0.001", "hparams_search.n_trials=5", "sweep.name=failing"]
    proc = run_cli(*args, cwd=tmp_path, env={"DLEXP_KILL_AT": "end_epoch@1", "DLEXP_ONCE_FILE": str(tmp_path / "killed")})
    assert proc.returncode == 1, proc.stderr
    sweep_dir = tmp_path / "outputs" / "multirun" / "failing"
    assert _states(_study(sweep_dir)) == ["FAIL", "COMPLETE"]  # a grid of 2: n_trials is capped at its size
    assert "trial 0 failed in" in proc.stdout and "its worker process died (exit code -9)" in proc.stdout
    assert "error: 1 of 2 jobs did not complete (jobs trial_0)" in proc.stderr
    assert read_json(sweep_dir / "jobs.json")["jobs"]["trial_0"]["status"] == "failed"  # not left "running"
    assert "0 of 1 (1 failed)" in (sweep_dir / "summary.md").read_text()


def test_the_old_sweeper_keys_and_mistyped_search_keys_get_a_one_line_hint(tmp_path):
    from dlexp.cli.preflight import preflight

    with pytest.raises(ConfigError, match=r"'hydra.sweeper.n_trials' is the old Optuna sweeper's key; dlexp's search takes "
                                          r"hparams_search.n_trials \(e.g. hparams_search.n_trials=50\)"):
        preflight(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=50"])
    with pytest.raises(ConfigError, match="hparams_search.slots"):
        preflight(["-m", "hparams_search=optuna", "hydra.sweeper.n_jobs=2"])
    with pytest.raises(ConfigError, match="unknown key 'hparams_search.n_trial'. Did you mean 'hparams_search.n_trials'"):
        preflight(["-m", "hparams_search=optuna", "hparams_search.n_trial=5"])


def test_a_search_setting_in_a_single_run_or_a_bad_one_is_a_one_line_error(tmp_path, in_process):
    assert_one_line_error(in_process("hparams_search=optuna", *SMOKE, cwd=tmp_path), "hparams_search is a search over many runs: add -m")
    proc = in_process(*SEARCH, "hparams_search.pruner=medain", "sweep.name=bad", cwd=tmp_path)
    assert_one_line_error(proc, "hparams_search.pruner must be one of none, median")
    assert not (tmp_path / "outputs" / "multirun" / "bad" / "trial_0").exists()


# -- storages and workers ------------------------------------------------------------------------------------------


def _workers(tmp_path: Path, storage: str | None, n: int = 3, trials: int = 6) -> list[subprocess.CompletedProcess]:
    """``n`` copies of the same command at once, one slot each, on one study."""
    args = [*SEARCH, "trainer.epochs=1", "hparams_search.slots=1", "hparams_search.pruner=none",
            f"hparams_search.n_trials={trials}", "sweep.name=shared", "hparams_search.study_name=shared"]
    if storage:
        args.append(f"hparams_search.storage={storage}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "dlexp", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=600), *p.communicate()) for p in procs]


def _assert_each_trial_ran_once(tmp_path: Path, study: optuna.Study, trials: int) -> None:
    counted = studies.counted(study.get_trials())
    assert [t.state.name for t in counted] == ["COMPLETE"] * trials
    sweep_dir = tmp_path / "outputs" / "multirun" / "shared"
    assert sorted(p.name for p in sweep_dir.glob("trial_*")) == sorted(f"trial_{t.number}" for t in counted)
    for trial in counted:
        metrics = (sweep_dir / f"trial_{trial.number}" / "metrics.csv").read_text().splitlines()
        assert len(metrics) == 2  # one epoch, run once
    owners = {t.system_attrs[studies.OWNER] for t in counted}
    assert len(owners) >= 2  # the workers shared the work


@pytest.mark.services
def test_three_workers_share_one_journal_study(tmp_path):
    procs = _workers(tmp_path, None)
    assert [p.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    study = _study(tmp_path / "outputs" / "multirun" / "shared", name="shared")
    _assert_each_trial_ran_once(tmp_path, study, 6)


@pytest.mark.services
def test_three_workers_share_one_postgresql_study(tmp_path, postgres_url):
    procs = _workers(tmp_path, postgres_url)
    assert [p.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    assert all("postgresql://" in p.stdout for p in procs)
    _assert_each_trial_ran_once(tmp_path, optuna.load_study(study_name="shared", storage=postgres_url), 6)


@pytest.mark.slow
def test_sqlite_storage_and_the_study_in_optuna_dashboard(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    proc = run_cli(*SEARCH, "trainer.epochs=1", "hparams_search.slots=1", "hparams_search.n_trials=2",
                   f"hparams_search.storage={url}", "hparams_search.study_name=digits", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="digits", storage=url)
    assert _states(study) == ["COMPLETE", "COMPLETE"]

    from optuna_dashboard import wsgi  # what `optuna-dashboard sqlite:///study.db` serves
    from werkzeug.test import Client

    client = Client(wsgi(url))
    studies_json = json.loads(client.get("/api/studies").get_data())
    (entry,) = [s for s in studies_json["study_summaries"] if s["study_name"] == "digits"]
    detail = json.loads(client.get(f"/api/studies/{entry['study_id']}").get_data())
    assert len(detail["trials"]) == 2 and {t["state"] for t in detail["trials"]} == {"Complete"}

    journal = tmp_path / "search" / "optuna.journal"  # `optuna-dashboard <sweep dir>/optuna.journal`, as the README says
    study = optuna.create_study(study_name="search", storage=studies.open_storage(None, journal.parent))
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 0.5)
    listed = json.loads(Client(wsgi(str(journal))).get("/api/studies").get_data())["study_summaries"]
    assert [s["study_name"] for s in listed] == ["search"]


def test_a_storage_that_cannot_be_opened_is_a_one_line_error(tmp_path, in_process):
    proc = in_process(*SEARCH, "hparams_search.storage=postgresql://nobody@127.0.0.1:1/none", "sweep.name=nostore", cwd=tmp_path)
    assert_one_line_error(proc, "cannot open hparams_search.storage=postgresql://nobody@127.0.0.1:1/none")
    proc = in_process(*SEARCH, "hparams_search.storage=study.db", "sweep.name=nostore", cwd=tmp_path)
    assert_one_line_error(proc, "is neither a database URL")
