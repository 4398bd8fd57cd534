"""The ``logger`` group: where a run is recorded besides its run dir, and the checks made before it starts.

``logger=default`` is what every run writes (metrics.csv, summary.json, run.log, TensorBoard, the
plots). ``logger=mlflow`` adds an MLflow run; its keys are the keyword-only parameters of its builder
below, checked like any other group's. ``check`` refuses, in one line and before the run dir is
accepted, what cannot work: MLflow not installed, the deprecated file store, a server that does not
answer, a store file that is not a database, an experiment that was deleted. It never imports MLflow:
the server is asked over plain HTTP, a SQLite file read with the standard library.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Dict, Optional

from annotated_types import MaxLen, MinLen
from omegaconf import DictConfig, OmegaConf

from dlexp.config.constraints import PositiveFloat
from dlexp.config.registry import Registry, builder_kwargs
from dlexp.config.validate import check_option
from dlexp.errors import ConfigError

LOGGERS = Registry("logger", fallback="default")  # a run recorded before the group existed wrote the files only

DEFAULT_STORE = "outputs/mlflow.db"  # with no tracking URI: a SQLite store, its artifacts beside it
ARTIFACTS_DIR = "mlflow-artifacts"
URI_VARIABLE = "MLFLOW_TRACKING_URI"  # MLflow's own: used when logger.tracking_uri is null
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class MlflowSettings:
    """``logger=mlflow`` as a run uses it; ``tracking_uri`` resolved (a SQLite path made absolute)."""

    tracking_uri: str
    experiment: str
    run_name: Optional[str] = None
    log_checkpoints: bool = False
    tags: Dict[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0

    @property
    def scheme(self) -> str:
        return self.tracking_uri.partition("://")[0].split("+")[0]

    @property
    def sqlite_path(self) -> Optional[Path]:
        """The store's file, for a SQLite store."""
        return Path(self.tracking_uri.partition(":///")[2]) if self.scheme == "sqlite" else None

    @property
    def artifact_location(self) -> Optional[str]:
        """Where a new experiment keeps its artifacts: beside a SQLite store; elsewhere the store decides."""
        path = self.sqlite_path
        return str(path.parent / ARTIFACTS_DIR) if path is not None else None

    def shown_uri(self) -> str:
        """The URI without a password."""
        scheme, sep, rest = self.tracking_uri.partition("://")
        creds, at, host = rest.rpartition("@")
        return f"{scheme}{sep}{creds.split(':')[0]}:***{at}{host}" if at and ":" in creds else self.tracking_uri


@LOGGERS.register("default")
def files_only() -> None:
    """The run dir's own files, which every run writes whatever its logger: nothing more."""
    return None


@LOGGERS.register("mlflow")
def mlflow_logger(*, tracking_uri: Optional[str] = None, experiment: Annotated[str, MinLen(1), MaxLen(500)] = "dlexp",
                  run_name: Optional[str] = None, log_checkpoints: bool = False, tags: Optional[Dict[str, str]] = None,
                  timeout_s: PositiveFloat = 10.0) -> MlflowSettings:
    if not experiment.strip():
        raise ConfigError(f"logger.experiment={experiment!r} names no experiment; give it a name, e.g. "
                          "logger.experiment=digits")
    return MlflowSettings(resolve_uri(tracking_uri), experiment, run_name, log_checkpoints,
                          {str(k): str(v) for k, v in (tags or {}).items()}, float(timeout_s))


def settings_of(node: Any) -> Optional[MlflowSettings]:
    """The settings of a (composed, or validated) ``logger`` node; None for ``logger=default``."""
    if isinstance(node, DictConfig):  # a validated node is typed by its schema: checked again as plain values
        node = OmegaConf.to_container(node, resolve=True)
    checked = check_option("logger", LOGGERS, OmegaConf.create(node) if isinstance(node, dict) else node)
    return LOGGERS.build(checked.name, **builder_kwargs(checked))


def resolve_uri(given: Optional[str]) -> str:
    """``logger.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the SQLite store under outputs/; a relative
    SQLite path made absolute, so that every job of a sweep and every resume finds the same store."""
    uri = given or os.environ.get(URI_VARIABLE) or f"sqlite:///{DEFAULT_STORE}"
    where = "logger.tracking_uri" if given else URI_VARIABLE
    scheme = uri.partition("://")[0].split("+")[0] if "://" in uri else ""
    if uri.split(":")[0] == "databricks":  # MLflow's name for Databricks' hosted tracking, with no '://'
        scheme = "databricks"
    elif scheme in ("", "file"):
        raise ConfigError(f"{where}={uri} is MLflow's file store, which MLflow deprecated; use a SQLite store "
                          f"(logger.tracking_uri=sqlite:///{DEFAULT_STORE}) or a server (http://127.0.0.1:5000)")
    if scheme not in ("http", "https", "file", "", *DATABASES):
        raise ConfigError(f"{where}={uri}: dlexp logs to an MLflow server (http://host:port) or a database "
                          f"(sqlite:///path.db, postgresql://user@host/db), not '{scheme}://'")
    if scheme == "sqlite":
        path = uri.partition(":///")[2]
        if not path or path.startswith(":memory:"):
            raise ConfigError(f"{where}={uri}: give the store a file, e.g. sqlite:///{DEFAULT_STORE} (a store in memory "
                              "would vanish with each process)")
        uri = f"sqlite:///{Path(path).expanduser().absolute()}"
    return uri.rstrip("/") if scheme in ("http", "https") else uri


# --------------------------------------------------------------------------
# Checks before a run is accepted


def check(settings: Optional[MlflowSettings]) -> None:
    """Refuse, in one line, a tracker a run could not log to; reads only (a new SQLite store is not made here)."""
    if settings is None:
        return
    if not installed():
        raise ConfigError("logger=mlflow needs MLflow, which is not installed: pip install 'dlexp[mlflow]'")
    if settings.scheme == "sqlite":
        _check_sqlite(settings)
    elif settings.scheme in ("http", "https"):
        _check_server(settings)
    else:
        _check_database(settings)


def installed() -> bool:
    """Whether MLflow can be imported (the ``dlexp[mlflow]`` extra), without importing it."""
    return importlib.util.find_spec("mlflow") is not None


def _check_sqlite(settings: MlflowSettings) -> None:
    path = settings.sqlite_path
    shown = f"logger.tracking_uri={settings.tracking_uri}"
    if path.is_dir():
        raise ConfigError(f"{shown}: {path} is a directory; name the store's file, e.g. {path / 'mlflow.db'}")
    if not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if not os.access(parent, os.W_OK):
            raise ConfigError(f"{shown}: cannot create the store in {parent} (not writable); choose another path")
        return
    with open(path, "rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    if head and head != SQLITE_HEADER:
        raise ConfigError(f"{shown}: {path} is not a database (not an SQLite file); point logger.tracking_uri at an "
                          "MLflow store, or at a new file")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "experiments" not in tables:
                raise ConfigError(f"{shown}: {path} is an SQLite database but not an MLflow store (its tables: "
                                  f"{', '.join(sorted(tables)[:5])}); point logger.tracking_uri at another file")
            stage = db.execute("SELECT lifecycle_stage FROM experiments WHERE name = ?", (settings.experiment,)).fetchone() \
                if tables else None
    except sqlite3.DatabaseError as err:
        raise ConfigError(f"{shown}: {path} cannot be read as a database ({err})") from None
    _check_experiment(settings, stage[0] if stage else None)


def _check_experiment(settings: MlflowSettings, stage: Optional[str]) -> None:
    if stage == "deleted":
        raise ConfigError(f"logger.experiment={settings.experiment} was deleted in MLflow, so no run can join it; restore "
                          f"it (mlflow experiments restore) or choose another name")


def _check_server(settings: MlflowSettings) -> None:
    timeout = min(settings.timeout_s, 10.0)
    try:
        _get(f"{settings.tracking_uri}/health", timeout)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise ConfigError(f"cannot reach the MLflow server at logger.tracking_uri={settings.shown_uri()} ({reason}); "
                          f"start it (mlflow server --host 127.0.0.1 --port 5000) or fix the URI") from None
    query = urllib.parse.urlencode({"experiment_name": settings.experiment})
    try:
        found = json.loads(_get(f"{settings.tracking_uri}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout))
    except urllib.error.HTTPError as err:
        if err.code != 404:  # 404: no such experiment yet, the run creates it
            raise ConfigError(f"the MLflow server at {settings.shown_uri()} refused to look up logger.experiment="
                              f"{settings.experiment} (HTTP {err.code}: {err.reason})") from None
        return
    except (urllib.error.URLError, OSError, ValueError):
        return  # it answered /health: the run itself says what goes wrong next
    _check_experiment(settings, (found.get("experiment") or {}).get("lifecycle_stage"))


def _get(url: str, timeout: float) -> bytes:
    """GET ``url`` with MLflow's credentials from the environment, when they are set."""
    request = urllib.request.Request(url)
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        import base64

        pair = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        request.add_header("Authorization", f"Basic {base64.b64encode(pair.encode()).decode()}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _check_database(settings: MlflowSettings) -> None:
    """PostgreSQL, MySQL, SQL Server: a connection, and the experiment's state when the store has tables."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(settings.tracking_uri, connect_args=_connect_timeout(settings))
        with engine.connect() as connection:
            tables = set(sqlalchemy.inspect(connection).get_table_names())
            stage = connection.execute(sqlalchemy.text("SELECT lifecycle_stage FROM experiments WHERE name = :name"),
                                       {"name": settings.experiment}).scalar() if "experiments" in tables else None
    except ModuleNotFoundError as err:
        raise ConfigError(f"logger.tracking_uri={settings.shown_uri()} needs a database driver ({err}); for PostgreSQL: "
                          "pip install 'dlexp[postgres]'") from None
    except sqlalchemy.exc.SQLAlchemyError as err:
        first = str(err.orig if getattr(err, "orig", None) else err).strip().splitlines()[0]
        raise ConfigError(f"cannot open the MLflow store logger.tracking_uri={settings.shown_uri()}: {first}") from None
    _check_experiment(settings, stage)


def _connect_timeout(settings: MlflowSettings) -> dict[str, Any]:
    return {"connect_timeout": max(1, int(settings.timeout_s))} if settings.scheme in ("postgresql", "mysql") else {}
