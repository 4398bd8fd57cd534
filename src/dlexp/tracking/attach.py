"""A run's tracker on its ``RunLog``: made as the log opens, closed after the summary, abandoned when the run
ends by an exception or a signal. ``dlexp.train`` calls these for a run and for each fold of a k-fold run."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from dlexp.runs.runlog import RunLog
from dlexp.runs.status import Status
from dlexp.tracking.loggers import MlflowSettings
from dlexp.tracking.mlflow_run import MlflowTracker, SweepJob, artifacts_of
from dlexp.tracking.sweeps import parent_finder
from dlexp.training.interrupt import Interrupted


def open_tracker(log: RunLog, settings: MlflowSettings, run_dir: Path, *, config: dict[str, Any],
                 options: dict[str, str], sweep: Optional[SweepJob] = None,
                 parent: Optional[MlflowTracker] = None) -> None:
    """``log.tracker``: the run's MLflow run, a child of its sweep's (``sweep``) or of its k-fold run's
    (``parent``); its lines go through ``log.info``, shown as written."""
    finder = (lambda _: parent.wait_ready()) if parent is not None else \
        parent_finder(settings, sweep.sweep_dir) if sweep is not None else None
    tags = {**options, **(sweep.tags(run_dir) if sweep is not None else {})}
    log.tracker = MlflowTracker(settings, run_dir, config=config, tags=tags, parent=finder, say=log.info)
    if parent is None:
        log.info(f"MLflow: experiment {settings.experiment} at {settings.shown_uri()}")
    log.tracker.wait_ready()
    log.tracker.warn_if_down()


@contextmanager
def tracked(log: RunLog) -> Iterator[None]:
    """An exception or a signal that ends the run ends its tracker's run too: KILLED, or FAILED with the error."""
    try:
        yield
    except BaseException as err:
        if isinstance(log.tracker, MlflowTracker):
            stopped = isinstance(err, (Interrupted, KeyboardInterrupt))
            log.tracker.abandon(Status.INTERRUPTED if stopped else Status.FAILED, f"{type(err).__name__}: {err}")
        raise


def close_tracker(log: RunLog, summary: dict[str, Any], run_dir: Path) -> None:
    """The tracker's artifacts and status; ``summary["mlflow"]`` (and summary.json) says what did not reach it."""
    if not isinstance(log.tracker, MlflowTracker):
        return
    summary["mlflow"] = log.tracker.close(summary, artifacts_of(run_dir, log.tracker.settings.log_checkpoints))
    log.rewrite_summary(summary)
    if log.tracker.url():
        log.info(f"MLflow run {log.tracker.url()}")
    log.tracker = None  # closed: an exception after this point leaves its run as it ended
