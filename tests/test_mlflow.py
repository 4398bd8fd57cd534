"""logger=mlflow against a real ``mlflow server`` (SQLite store, a free 127.0.0.1 port, started by the tests:
``tests/services.py``), everything read back through MLflow's own client: a run's params, tags, epochs,
scores, files and status; a sweep on the slots launcher (and serial, basic, joblib, submitit) as a parent
with its jobs as children, and its rerun making nothing twice; a search whose pruned trial says so; a killed run
resumed into its own MLflow run; a server stopped in the middle of a run; a diverged, an interrupted and a
failed run's status; dlexp.run and dlexp.sweep (the notebook API) recorded as the command line's. Every test here starts
processes and waits on a server: all are ``slow``."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

import dlexp
from conftest import assert_one_line_error, read_json, run_cli
from dlexp.runs.record import RunDir
from dlexp.tracking.store import git_commit
from services import MlflowServer, wait_for

pytestmark = pytest.mark.services  # a real mlflow server (one per session), outside the fast tier

RUN = ["trainer.progress=false", "trainer.num_threads=1"]


def logger(server: MlflowServer, experiment: str) -> list[str]:
    return ["logger=mlflow", f"logger.tracking_uri={server.url}", f"logger.experiment={experiment}"]


def client_of(server: MlflowServer):
    from mlflow.tracking import MlflowClient

    return MlflowClient(server.url)


def runs_in(server: MlflowServer, experiment: str) -> list:
    client = client_of(server)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment} on the server"
    return client.search_runs([found.experiment_id])


def history(server: MlflowServer, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client_of(server).get_metric_history(run_id, key))


def artifacts(server: MlflowServer, run_id: str, folder: str = "") -> list[str]:
    return sorted(a.path for a in client_of(server).list_artifacts(run_id, folder or None))


def test_a_run_holds_its_config_options_epochs_scores_files_and_status(mlflow_server, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*RUN, *logger(mlflow_server, "single"), "trainer.epochs=3", "logger.log_checkpoints=true",
                   "+logger.tags.owner=alice", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    [run] = runs_in(mlflow_server, "single")
    summary = read_json(run_dir / "summary.json")
    assert summary["mlflow"] == {"run_id": run.info.run_id, "experiment": "single", "tracking_uri": mlflow_server.url}
    assert read_json(run_dir / "mlflow.json")["run_id"] == run.info.run_id
    assert f"MLflow: experiment single at {mlflow_server.url}" in proc.stdout
    assert f"MLflow run {mlflow_server.url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in proc.stdout
    assert "View run" not in proc.stdout  # MLflow's own line: dlexp says where the run is
    assert run.info.status == "FINISHED" and run.info.run_name == "run"

    params, tags = run.data.params, run.data.tags
    assert {params[k] for k in ("model.name", "optim.lr", "trainer.epochs", "model.hidden")} == {"mlp", "0.003", "3", "[256]"}
    assert len(params) > 50  # the whole composed config
    options = {"model": "mlp", "dataset": "digits", "optim": "adam", "scheduler": "cosine", "logger": "mlflow"}
    assert {k: tags.get(k) for k in options} == options
    assert tags["dlexp.version"] == dlexp.__version__ and tags["owner"] == "alice"
    assert tags["dlexp.git_commit"] == git_commit(Path(dlexp.__file__).parent)  # dlexp runs from a git checkout here
    assert "mlflow.source.git.commit" not in tags  # the working dir is no repository
    assert tags["dlexp.status"] == "completed" and tags["dlexp.diagnosis"] == summary["diagnosis"]
    assert tags["dlexp.run_dir"] == str(run_dir)

    rows = RunDir(run_dir).metrics()
    for key in ("train/loss", "val/acc", "lr", "epoch_seconds"):
        assert history(mlflow_server, run.info.run_id, key) == [(int(r["epoch"]), r[key]) for r in rows], key
    for key in ("best/val/acc", "test/acc", "epochs_run", "gap/best/loss"):
        assert run.data.metrics[key] == pytest.approx(summary[key]), key

    top = artifacts(mlflow_server, run.info.run_id)
    assert {"curves.png", "grad_norms.png", "summary.json", "metrics.csv", "run.log", "config", "checkpoints"} <= set(top)
    assert artifacts(mlflow_server, run.info.run_id, "config") == ["config/config.yaml", "config/hydra.yaml",
                                                                  "config/overrides.yaml"]
    assert artifacts(mlflow_server, run.info.run_id, "checkpoints") == ["checkpoints/best.pt", "checkpoints/last.pt"]
    copy = Path(client_of(mlflow_server).download_artifacts(run.info.run_id, "config/overrides.yaml", str(tmp_path)))
    assert copy.read_text() == (run_dir / ".hydra" / "overrides.yaml").read_text()


def _sweep(server: MlflowServer, experiment: str, among: Optional[list] = None) -> tuple[object, list]:
    """The sweep's parent run and its children (of the experiment's runs, or of ``among``)."""
    runs = runs_in(server, experiment) if among is None else among
    parents = [r for r in runs if r.data.tags.get("dlexp.kind")]
    assert len(parents) == 1, [r.data.tags for r in runs]
    children = [r for r in runs if r is not parents[0]]
    assert all(r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id for r in children)
    return parents[0], children


def test_a_sweep_on_slots_is_a_parent_run_of_its_jobs_and_its_rerun_makes_nothing_twice(mlflow_server, tmp_path):
    args = ["-m", "hydra/launcher=slots", "hydra.launcher.slots=2", "trainer=smoke", "trainer.progress=false",
            *logger(mlflow_server, "grid"), "optim.lr=0.01,0.003", "sweep.name=grid"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep_dir = tmp_path / "outputs" / "multirun" / "grid"
    parent, children = _sweep(mlflow_server, "grid")
    assert read_json(sweep_dir / "mlflow.json")["run_id"] == parent.info.run_id
    assert parent.info.status == "FINISHED" and parent.info.run_name == "grid"
    assert parent.data.tags["dlexp.kind"] == "sweep" and parent.data.params["optim.lr"] == "0.01,0.003"
    jobs = {p.name for p in sweep_dir.iterdir() if (p / "summary.json").is_file()}
    assert {c.data.tags["dlexp.job"] for c in children} == jobs and len(jobs) == 2
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["dlexp.sweep"] == "grid"
        assert read_json(sweep_dir / child.data.tags["dlexp.job"] / "mlflow.json")["run_id"] == child.info.run_id
    best = max(children, key=lambda c: c.data.metrics["best/val/acc"])
    assert parent.data.metrics["best/val/acc"] == best.data.metrics["best/val/acc"]
    assert parent.data.tags["dlexp.best_run_id"] == best.info.run_id
    assert parent.data.tags["mlflow.note.content"] == (sweep_dir / "summary.md").read_text()
    assert {"summary.csv", "jobs.csv", "summary.md", "comparison.png"} <= set(artifacts(mlflow_server, parent.info.run_id))

    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    logs = "".join(p.read_text() for p in (sweep_dir / "logs").glob("*.log"))  # each job's console, in its slot
    assert logs.count("earlier, skipped") == 2
    parent_again, children_again = _sweep(mlflow_server, "grid")
    assert parent_again.info.run_id == parent.info.run_id and len(children_again) == 2
    assert parent_again.info.status == "FINISHED"


@pytest.mark.parametrize("launcher", [["hydra/launcher=serial"], ["hydra/launcher=basic"],
                                      ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["serial", "basic", "joblib", "submitit"])
def test_jobs_in_other_processes_find_their_parent(mlflow_server, tmp_path, launcher):
    experiment = launcher[0].split("=")[1]
    proc = run_cli("-m", *launcher, "trainer=smoke", "trainer.progress=false", *logger(mlflow_server, experiment),
                   "optim.lr=0.01,0.003", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    parent, children = _sweep(mlflow_server, experiment)
    assert len(children) == 2 and parent.info.status == "FINISHED"
    assert {c.data.params["optim.lr"] for c in children} == {"0.01", "0.003"}


def test_a_search_makes_each_trial_a_child_and_a_pruned_trial_says_so(mlflow_server, tmp_path):
    """A grid in a known order on one slot: lr 0.01, then a hopeless 1e-5, which successive halving prunes
    after its first epoch (only the better of two trials goes on at that rung)."""
    proc = run_cli("-m", "hparams_search=optuna", "trainer=smoke", "trainer.progress=false", "hparams_search.slots=1",
                   "hparams_search.sampler=grid", "~hparams_search.params", "optim.lr=0.01,0.00001",
                   "hparams_search.pruner=successive_halving", "hparams_search.n_trials=2", "sweep.name=search",
                   *logger(mlflow_server, "search"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 of 2 trials finished (1 complete, 1 pruned)" in proc.stdout
    parent, children = _sweep(mlflow_server, "search")
    assert parent.data.tags["dlexp.kind"] == "search" and parent.info.status == "FINISHED"
    assert parent.data.params["hparams_search.pruner"] == "successive_halving"
    trials = {int(c.data.tags["dlexp.trial"]): c for c in children}
    assert sorted(trials) == [0, 1] and {t.data.tags["dlexp.job"] for t in trials.values()} == {"trial_0", "trial_1"}
    assert trials[0].data.tags["dlexp.status"] == "completed" and trials[0].info.status == "FINISHED"
    assert trials[1].data.tags["dlexp.status"] == "pruned" and trials[1].info.status == "FINISHED"
    assert trials[1].data.params["optim.lr"] == "1e-05"
    assert [step for step, _ in history(mlflow_server, trials[1].info.run_id, "val/acc")] == [1]
    assert "test/acc" not in trials[1].data.metrics  # a pruned trial is not scored on its test set


def _pid_when_paused(marker: Path, proc: subprocess.Popen) -> int:
    wait_for(lambda: marker.is_file() or proc.poll() is not None, 300, f"the run to pause ({marker})")
    assert proc.poll() is None, proc.communicate()
    return int(marker.read_text())


def _start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "dlexp", *args], cwd=cwd, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _epochs_sent(server: MlflowServer, experiment: str, epochs: int) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        runs = runs_in(server, experiment) if client_of(server).get_experiment_by_name(experiment) else []
    except MlflowException:
        return False
    return bool(runs) and len(history(server, runs[0].info.run_id, "train/loss")) >= epochs


def test_a_killed_run_resumed_continues_its_own_mlflow_run_without_a_step_twice(mlflow_server, tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    proc = _start([*RUN, *logger(mlflow_server, "killed"), "trainer.epochs=4", f"hydra.run.dir={run_dir}"], tmp_path,
                  {"DLEXP_PAUSE_AT": "end_epoch@2", "DLEXP_PAUSE_FILE": str(marker)})
    pid = _pid_when_paused(marker, proc)
    wait_for(lambda: _epochs_sent(mlflow_server, "killed", 2), 120, "epochs 1 and 2 in MLflow")
    os.kill(pid, signal.SIGKILL)  # a crash: the MLflow run stays RUNNING
    proc.communicate()
    [run] = runs_in(mlflow_server, "killed")
    assert run.info.status == "RUNNING"

    resumed = run_cli(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    [again] = runs_in(mlflow_server, "killed")
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    rows = RunDir(run_dir).metrics()
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    for key in ("train/loss", "val/acc"):
        assert history(mlflow_server, run.info.run_id, key) == [(int(r["epoch"]), r[key]) for r in rows], key
    assert read_json(run_dir / "summary.json")["mlflow"]["run_id"] == run.info.run_id


def test_a_server_stopped_mid_run_costs_the_run_nothing_and_the_summary_lists_what_was_lost(tmp_path):
    server = MlflowServer(tmp_path / "server").start()
    try:
        run_dir, marker = tmp_path / "run", tmp_path / "paused"
        proc = _start([*RUN, *logger(server, "stopped"), "trainer.epochs=4", f"hydra.run.dir={run_dir}"], tmp_path,
                      {"DLEXP_PAUSE_AT": "end_epoch@2", "DLEXP_PAUSE_FILE": str(marker)})
        _pid_when_paused(marker, proc)
        wait_for(lambda: _epochs_sent(server, "stopped", 2), 120, "epochs 1 and 2 in MLflow")
    finally:
        server.stop()
    marker.unlink()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["epochs_run"] == 4
    lines = [line for line in (out + err).splitlines() if "warning: MLflow" in line]
    assert len(lines) == 1 and "the run goes on without it" in lines[0], out + err
    lost = summary["mlflow"]["not_sent"]
    assert lost["epochs"] == [3, 4] and lost["status"] == "FINISHED" and "summary" in lost
    assert {"curves.png", "summary.json", "config/config.yaml"} <= set(lost["artifacts"])
    assert summary["mlflow"]["error"]
    shutil.rmtree(server.home, ignore_errors=True)


def test_a_deleted_experiment_or_an_unreachable_server_is_refused_before_anything_is_written(mlflow_server, tmp_path):
    client = client_of(mlflow_server)
    client.delete_experiment(client.create_experiment("gone"))
    proc = run_cli(*RUN, *logger(mlflow_server, "gone"), "hydra.run.dir=runs/a", cwd=tmp_path)
    assert_one_line_error(proc, "logger.experiment=gone was deleted in MLflow")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "outputs").exists()


def test_parallel_processes_create_one_sqlite_store_together(tmp_path):
    """Three processes opening a new SQLite store at the same moment: its tables are made once, under the lock."""
    code = ("from dlexp.tracking.loggers import mlflow_logger; from dlexp.tracking.store import open_client, "
            "experiment_id; s = mlflow_logger(tracking_uri='sqlite:///store/m.db', experiment='e'); "
            "c = open_client(s); print(experiment_id(c, s))")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1  # one experiment, the same id for all three
    from mlflow.tracking import MlflowClient

    found = MlflowClient(f"sqlite:///{tmp_path / 'store' / 'm.db'}").get_experiment_by_name("e")
    assert found.artifact_location == str(tmp_path / "store" / "mlflow-artifacts")  # beside the store


FLAKY = '''
from torch import nn
from dlexp import register_model


class Flaky(nn.Module):
    """An MLP whose third training step raises: an error in the user's code, in the run's second epoch."""

    def __init__(self, size, num_classes):
        super().__init__()
        self.net, self.steps = nn.Sequential(nn.Flatten(), nn.Linear(size, num_classes)), 0

    def forward(self, x):
        if self.training:
            self.steps += 1
            if self.steps == 3:
                raise RuntimeError("flaky layer broke")
        return self.net(x)


@register_model("flaky")
def flaky(input_shape, num_classes, *, dropout: float = 0.0):
    size = 1
    for n in input_shape:
        size *= n
    return Flaky(size, num_classes)
'''


def test_each_way_a_run_ends_is_its_mlflow_runs_status(mlflow_server, tmp_path):
    """diverged and failed are FAILED, interrupted is KILLED, each with dlexp's own status as a tag."""
    tracked = [*RUN, *logger(mlflow_server, "ends"), "trainer.limit_train_batches=2"]
    # the lr grows 100x an epoch: epoch 1 learns, a later one overflows
    diverged = run_cli(*tracked, "model.dropout=0", "optim=sgd", "optim.lr=0.01", "scheduler=exponential",
                       "scheduler.gamma=100", "trainer.epochs=8", "hydra.run.dir=diverged", cwd=tmp_path)
    assert diverged.returncode == 3, diverged.stderr
    stopped = run_cli(*tracked, "trainer.epochs=4", "hydra.run.dir=stopped", cwd=tmp_path,
                      env={"DLEXP_SIGNAL_AT": "end_epoch@2:SIGINT"})
    assert stopped.returncode == 130, stopped.stderr
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "flaky.yaml").write_text("name: flaky\ndropout: 0.0\n")
    (tmp_path / "flaky.py").write_text(FLAKY)
    failed = run_cli("--config-dir", str(tmp_path / "conf"), "plugins=[flaky.py]", "model=flaky", *tracked,
                     "trainer.epochs=3", "hydra.run.dir=failed", cwd=tmp_path)
    assert failed.returncode == 2 and "flaky layer broke" in failed.stderr, failed.stderr

    runs = {r.info.run_name: r for r in runs_in(mlflow_server, "ends")}
    assert {name: (r.info.status, r.data.tags["dlexp.status"]) for name, r in runs.items()} == {
        "diverged": ("FAILED", "diverged"), "stopped": ("KILLED", "interrupted"), "failed": ("FAILED", "failed")}
    assert "flaky layer broke" in runs["failed"].data.tags["dlexp.error"]
    assert [step for step, _ in history(mlflow_server, runs["failed"].info.run_id, "train/loss")] == [1]
    assert [step for step, _ in history(mlflow_server, runs["stopped"].info.run_id, "train/loss")] == [1, 2]
    for name in ("diverged", "stopped"):
        assert read_json(tmp_path / name / "summary.json")["mlflow"]["run_id"] == runs[name].info.run_id


NOTEBOOK = """
import json, sys
import dlexp
tracked = ["trainer=smoke", "trainer.progress=false", "logger=mlflow", f"logger.tracking_uri={sys.argv[1]}",
           "logger.experiment=notebook"]
run = dlexp.run(*tracked, "hydra.run.dir=one")
sweep = dlexp.sweep(*tracked, "optim.lr=0.003,0.01", sweep_name="nb")
print(json.dumps({"run": run.summary["mlflow"]["run_id"], "sweep": str(sweep.sweep_dir)}))
"""


def test_the_python_api_records_a_run_and_a_sweep_as_the_command_line_does(mlflow_server, tmp_path):
    """dlexp.run and dlexp.sweep (what a notebook calls) in one process: the run, and the sweep's parent with its jobs."""
    proc = subprocess.run([sys.executable, "-c", NOTEBOOK, mlflow_server.url], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    made = read_json_line(proc.stdout)
    runs = runs_in(mlflow_server, "notebook")
    [single] = [r for r in runs if r.info.run_id == made["run"]]
    assert single.info.status == "FINISHED" and "mlflow.parentRunId" not in single.data.tags
    parent, children = _sweep(mlflow_server, "notebook", among=[r for r in runs if r is not single])
    assert parent.info.status == "FINISHED" and read_json(Path(made["sweep"]) / "mlflow.json")["run_id"] == parent.info.run_id
    assert sorted(c.data.params["optim.lr"] for c in children) == ["0.003", "0.01"]
    assert all(c.info.status == "FINISHED" for c in children)


def read_json_line(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])
