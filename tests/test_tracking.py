"""The logger group without a tracking server: a default run never imports MLflow; logger=mlflow's keys and
URIs are checked like any group's; a tracker that cannot work is refused in one line before anything is
written."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import FAST, assert_one_line_error, cli_in_process, compose_cfg
from dlexp.errors import ConfigError
from dlexp.runs.resume import accepted_changes, check_compatible
from dlexp.runs.sweep import job_dir_name
from dlexp.tracking import loggers
from dlexp.tracking.loggers import mlflow_logger, resolve_uri, settings_of
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
