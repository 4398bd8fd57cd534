"""The logger group without a tracking server: a default run never imports MLflow and writes what it always
wrote; logger=mlflow's keys and URIs are checked like any group's; a tracker that cannot work is refused
in one line before anything is written; the background sender batches, stops at the first failure and
says what it did not send. The tests against a real MLflow server are in test_mlflow.py."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import FAST, assert_one_line_error, cli_in_process, compose_cfg
from dlexp.errors import ConfigError
from dlexp.runs import files
from dlexp.runs.resume import accepted_changes, check_compatible
from dlexp.runs.sweep import job_dir_name
from dlexp.tracking import loggers
from dlexp.tracking.loggers import mlflow_logger, resolve_uri, settings_of
from dlexp.tracking.mlflow_run import artifacts_of, describe_unsent
from dlexp.tracking.outbox import Outbox
from dlexp.tracking.sweeps import sweep_fields
from dlexp.train import validate
from services import free_port

TINY = [*FAST, "trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.limit_eval_batches=2",
        "trainer.limit_test_batches=2"]

NO_MLFLOW = """
import sys
sys.argv = ["dlexp", *sys.argv[1:]]
import dlexp, dlexp.train, dlexp.cli.app, dlexp.cli.sweep
from dlexp.cli.entry import cli
code = cli()[1]
print("mlflow modules:", sorted(m for m in sys.modules if m.split(".")[0] == "mlflow"), "exit", code)
"""


def test_import_dlexp_and_a_default_run_never_import_mlflow(tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_MLFLOW, *TINY, "hydra.run.dir=run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert "mlflow modules: [] exit 0" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_a_default_run_writes_what_it_wrote_before(run_train, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result, run_dir = run_train("trainer.epochs=1", "trainer.limit_train_batches=2")
    assert "mlflow" not in result.summary and not (run_dir / files.TRACKER_RECORD).exists()
    assert not (tmp_path / "outputs").exists()  # no store either
    assert validate(compose_cfg()).logger.name == "default"


def test_a_run_recorded_before_the_logger_group_existed_still_validates():
    recorded = OmegaConf.to_container(compose_cfg())
    del recorded["logger"]
    assert validate(OmegaConf.create(recorded)).logger.name == "default"


def test_logger_mlflow_composes_with_every_key_and_checks_them():
    cfg = validate(compose_cfg("logger=mlflow", "logger.experiment=digits", "+logger.tags.owner=alice"))
    assert (cfg.logger.experiment, cfg.logger.tracking_uri, cfg.logger.log_checkpoints) == ("digits", None, False)
    settings = settings_of(cfg.logger)
    assert settings.tags == {"owner": "alice"} and settings.timeout_s == 10.0
    for override, message in [("+logger.colour=red", "unknown config key 'logger.colour'"),
                              ("logger.timeout_s=0", "logger.timeout_s must be > 0"),
                              ("logger.experiment=''", "logger.experiment must have at least 1 value"),
                              ("logger.log_checkpoints=maybe", "bad value for 'logger.log_checkpoints'")]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            validate(compose_cfg("logger=mlflow", override))


def test_the_tracking_uri_is_resolved_once_and_the_file_store_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(loggers.URI_VARIABLE, raising=False)
    assert resolve_uri(None) == f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    assert resolve_uri("sqlite:///db/m.db") == f"sqlite:///{tmp_path / 'db' / 'm.db'}"
    assert resolve_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert resolve_uri("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert resolve_uri("postgresql://u@h/db") == "postgresql://u@h/db"
    monkeypatch.setenv(loggers.URI_VARIABLE, "http://tracker:5000")
    assert resolve_uri(None) == "http://tracker:5000" and resolve_uri("sqlite:////a.db") == "sqlite:////a.db"
    for uri, message in [("file:///tmp/mlruns", "file store, which MLflow deprecated"), ("mlruns", "file store"),
                         ("ftp://host/x", "not 'ftp://'"), ("databricks", "not 'databricks://'"),
                         ("sqlite:///:memory:", "give the store a file")]:
        with pytest.raises(ConfigError, match=message):
            resolve_uri(uri)
    assert mlflow_logger(tracking_uri="http://u:secret@h:5000").shown_uri() == "http://u:***@h:5000"


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


def _not_mlflow(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE studies (id INTEGER)")


BAD = {  # what the command adds, a file it finds (or None), and words of its one line
    "server down": (lambda: [f"logger.tracking_uri=http://127.0.0.1:{free_port()}"], None,
                    "cannot reach the MLflow server at logger.tracking_uri=http://127.0.0.1:"),
    "file store": (lambda: ["logger.tracking_uri=file:///tmp/mlruns"], None, "MLflow's file store, which MLflow deprecated"),
    "not a database": (lambda: ["logger.tracking_uri=sqlite:///notes.db"], lambda p: p.write_text("my notes\n"),
                       "notes.db is not a database"),
    "not an MLflow store": (lambda: ["logger.tracking_uri=sqlite:///notes.db"], _not_mlflow,
                            "is an SQLite database but not an MLflow store (its tables: studies)"),
    "blank experiment": (lambda: ["logger.experiment=' '"], None, "logger.experiment=' ' names no experiment"),
    "unknown key": (lambda: ["logger.colour=red"], None, "logger.colour"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_tracker_that_cannot_work_is_refused_in_one_line_and_nothing_is_written(tmp_path, monkeypatch, capfd, kind):
    args, setup, message = BAD[kind]
    if setup is not None:
        setup(tmp_path / "notes.db")
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    proc = cli_in_process("dlexp", [*TINY, "logger=mlflow", *args()], capfd)
    assert_one_line_error(proc, message)
    assert proc.returncode == 2 and tree(tmp_path) == before


def test_mlflow_not_installed_is_one_line(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loggers, "installed", lambda: False)
    proc = cli_in_process("dlexp", [*TINY, "logger=mlflow"], capfd)
    assert_one_line_error(proc, "logger=mlflow needs MLflow, which is not installed: pip install 'dlexp[mlflow]'")
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_whose_tracker_is_down_is_refused_before_it_writes(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    proc = cli_in_process("dlexp", ["-m", *TINY, "optim.lr=0.1,0.01", "logger=mlflow",
                                    f"logger.tracking_uri=http://127.0.0.1:{free_port()}"], capfd)
    assert_one_line_error(proc, "cannot reach the MLflow server")
    assert list(tmp_path.iterdir()) == []


def test_how_a_run_is_recorded_is_not_what_it_computes():
    """A sweep job's dir ignores the logger; a resume may change logger.* (not the option), and a checkpoint
    trained without the logger group continues under any."""
    assert job_dir_name(["optim.lr=0.1", "logger=mlflow", "logger.experiment=x"]) == job_dir_name(["optim.lr=0.1"])
    recorded = validate(compose_cfg("logger=mlflow"))
    assert accepted_changes(["logger.log_checkpoints=true"], recorded, {"logger": "mlflow"}, "it") == [
        "logger.log_checkpoints=true"]
    with pytest.raises(ConfigError, match="cannot resume with logger=default"):
        accepted_changes(["logger=default"], recorded, {"logger": "mlflow"}, "it")
    old = {k: v for k, v in OmegaConf.to_container(validate(compose_cfg())).items() if k != "logger"}
    check_compatible(recorded, old)


# -- the background sender --------------------------------------------------------------------------------------


def test_the_outbox_sends_what_queued_meanwhile_in_one_call_and_in_order():
    release, calls = threading.Event(), []

    def send(kind, items):
        calls.append((kind, list(items)))
        if kind == "start":
            release.wait(10)  # the tracker is slow to start: epochs queue up meanwhile

    outbox = Outbox(send)
    outbox.put("start", None)
    for epoch in (1, 2, 3):
        outbox.put("epoch", epoch)
    outbox.put("end", "FINISHED")
    release.set()
    assert outbox.close(5) == []
    assert calls == [("start", [None]), ("epoch", [1, 2, 3]), ("end", ["FINISHED"])]


def test_the_first_failure_stops_the_sending_and_everything_after_it_is_listed():
    def send(kind, items):
        if kind == "epoch" and 2 in items:
            raise ConnectionError("Connection refused")

    outbox = Outbox(send)
    outbox.put("epoch", 1)  # goes out alone, or with the second in the call that fails
    for item in [("epoch", 2), ("summary", {"status": "completed"}), ("end", "FINISHED")]:
        outbox.put(*item)
    unsent = outbox.close(5)
    assert isinstance(outbox.error, ConnectionError)
    assert [kind for kind, _ in unsent][-2:] == ["summary", "end"] and ("epoch", 2) in unsent


def test_close_gives_up_on_a_tracker_that_stops_answering():
    stuck = threading.Event()
    outbox = Outbox(lambda kind, items: stuck.wait(30))
    outbox.put("epoch", {"epoch": 1})
    assert outbox.close(0.3) == [("epoch", {"epoch": 1})] and outbox.gave_up
    outbox.put("end", ("FINISHED", "completed", None))  # after giving up: not sent, listed
    assert outbox.unsent[-1][0] == "end"
    stuck.set()


def test_what_did_not_reach_the_tracker_is_said_in_the_summarys_words(tmp_path):
    unsent = [("epoch", {"epoch": 4}), ("epoch", {"epoch": 3}), ("summary", {}),
              ("artifact", (tmp_path / "curves.png", "")), ("artifact", (tmp_path / "config.yaml", "config")),
              ("end", ("FINISHED", "completed", None))]
    assert describe_unsent(unsent) == {"epochs": [3, 4], "summary": "the scores, diagnosis and status tags",
                                       "artifacts": ["curves.png", "config/config.yaml"], "status": "FINISHED"}
    assert describe_unsent([("start", None)]) == {"run": "not created"}


def test_a_run_uploads_its_plots_records_and_config_and_its_checkpoints_only_when_asked(tmp_path):
    for name in ("summary.json", "metrics.csv", "run.log", "curves.png", ".hydra/config.yaml", "checkpoints/best.pt",
                 "events.out.tfevents.1"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    shown = {(p.relative_to(tmp_path).as_posix(), where) for p, where in artifacts_of(tmp_path, with_checkpoints=False)}
    assert shown == {("summary.json", ""), ("metrics.csv", ""), ("run.log", ""), ("curves.png", ""),
                     (".hydra/config.yaml", "config")}
    assert ("checkpoints/best.pt", "checkpoints") in {(p.relative_to(tmp_path).as_posix(), w)
                                                      for p, w in artifacts_of(tmp_path, with_checkpoints=True)}


def test_a_sweeps_parent_holds_its_swept_values_and_search_settings():
    tags, params = sweep_fields(["optim.lr=0.1,0.01", "hydra/launcher=slots", "+seed=1"],
                                {"sampler": "tpe", "params": {"optim.lr": "interval(0.001, 0.1)"}}, ["-m", "x=1"])
    assert tags == {"dlexp.kind": "search", "dlexp.command": "python -m dlexp -m x=1"}
    assert params == {"optim.lr": "0.1,0.01", "seed": "1", "hparams_search.sampler": "tpe",
                      "hparams_search.params.optim.lr": "interval(0.001, 0.1)"}
