"""What every MLflow run of dlexp shares: the client on its store, its experiment, the record of a run's id in
its dir (``mlflow.json``), and the tags that say where a run came from.

A SQLite store is opened, the first time, under a lock on its folder: MLflow creates (migrates) a new
store's tables when it opens it, and two processes doing so at once (the jobs of a sweep) would race.
Requests to a server are bounded by ``logger.timeout_s`` and two retries (MLflow's own settings, through
its environment variables, unless they are set already), so that a server that is down costs seconds.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import dlexp
from dlexp.runs.files import TRACKER_RECORD, atomic_write
from dlexp.tracking.loggers import MlflowSettings

HTTP_RETRIES = "2"  # MLflow's default, 7 with doubling back-off, waits minutes on a server that is down


def open_client(settings: MlflowSettings) -> Any:
    """An ``MlflowClient`` on the settings' store, the store opened (and, when new, created) once."""
    from mlflow.tracking import MlflowClient  # the optional extra, and 3 s of imports: only once a run logs

    for name in ("mlflow", "alembic"):  # their INFO lines (creating tables, migrations) are not the run's
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(settings.timeout_s)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRIES)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # dlexp says where the run is itself
    path = settings.sqlite_path
    if path is None:
        return MlflowClient(settings.tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent):
        client = MlflowClient(settings.tracking_uri)
        client.search_experiments(max_results=1)  # opens the store: its tables made or upgraded here, one at a time
    return client


def warm_up() -> None:
    """Import MLflow on a thread of its own while the run loads its data, so that its seconds of imports do not
    share the CPU with the first epochs (the run's tracker imports it on its own thread anyway)."""
    threading.Thread(target=lambda: __import__("mlflow.tracking"), name="dlexp-mlflow-import", daemon=True).start()


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One process at a time, across processes, on ``folder`` (an flock on the folder itself: no lock file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def experiment_id(client: Any, settings: MlflowSettings) -> str:
    """The id of the settings' experiment, created when it does not exist (by another process meanwhile too)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(settings.experiment)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise RuntimeError(f"the experiment {settings.experiment} was deleted in MLflow")
        return found.experiment_id
    try:
        return client.create_experiment(settings.experiment, artifact_location=settings.artifact_location)
    except MlflowException:
        found = client.get_experiment_by_name(settings.experiment)  # another job created it at the same moment
        if found is None:
            raise
        return found.experiment_id


def read_record(folder: Path) -> dict[str, Any]:
    """``mlflow.json`` of a run dir (or a sweep dir); {} when it has none or it is damaged."""
    try:
        data = json.loads((Path(folder) / TRACKER_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(folder: Path, run_id: str, experiment: str, settings: MlflowSettings) -> None:
    """Keep the run's id in its dir: a resume, a restart and a sweep's jobs find the run by it."""
    record = {"run_id": run_id, "experiment_id": experiment, "experiment": settings.experiment,
              "tracking_uri": settings.tracking_uri}
    atomic_write(Path(folder) / TRACKER_RECORD, json.dumps(record, indent=1) + "\n", durable=True)


def existing_run(client: Any, record: dict[str, Any], settings: MlflowSettings) -> Optional[Any]:
    """The run a dir's record names, when it is in this store and not deleted; None otherwise."""
    from mlflow.exceptions import MlflowException

    if not record.get("run_id") or record.get("tracking_uri") != settings.tracking_uri:
        return None
    try:
        run = client.get_run(record["run_id"])
    except MlflowException:
        return None
    return run if run.info.lifecycle_stage == "active" else None


def origin_tags() -> dict[str, str]:
    """dlexp's version, the machine, and the git commit of the working directory and of dlexp, where there is one."""
    tags = {"dlexp.version": dlexp.__version__, "dlexp.host": socket.gethostname(),
            "mlflow.source.name": "dlexp", "mlflow.source.type": "LOCAL"}
    here, package = git_commit(Path.cwd()), git_commit(Path(dlexp.__file__).parent)
    if here:
        tags["mlflow.source.git.commit"] = here  # the UI shows it on the run's page
    if package:
        tags["dlexp.git_commit"] = package
    return tags


def git_commit(folder: Path) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def run_url(settings: MlflowSettings, experiment: str, run_id: str) -> str:
    """Where to see the run: its page on a server, or the store and the run's id."""
    if settings.scheme in ("http", "https"):
        return f"{settings.shown_uri()}/#/experiments/{experiment}/runs/{run_id}"
    return f"{run_id}; browse it with: mlflow ui --backend-store-uri {settings.shown_uri()}"
