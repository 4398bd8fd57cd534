"""A sweep or a search as a parent MLflow run, each job (each trial) its child.

The parent is made before the first job, in the sweep's own process (by ``dlexp.cli.sweep.SweepSummary``
for a grid, by the search once its settings have passed their checks, so that a refused search writes
nothing), and its id kept in ``<sweep dir>/mlflow.json``. A job finds it there, beside its own dir, in whatever
process or machine the launcher runs it (slots, joblib, submitit, SLURM on a shared file system). A
job that finds no record makes the parent itself, under a lock on the sweep dir, so that jobs
starting together make one. Running the sweep's command again continues the same parent, and its
skipped jobs send nothing, so a rerun makes no second run of anything.

When the sweep ends, the parent gets the sweep's tables and plots as artifacts, the best config's
metrics (their mean over its seeds) and its settings as tags, the summary table as its description,
and a status: FINISHED, FAILED when a job did not complete, KILLED when the sweep was interrupted.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from omegaconf import OmegaConf

from dlexp.config.schema import flatten
from dlexp.results.report import SweepReport
from dlexp.runs import files
from dlexp.runs import hints
from dlexp.tracking.loggers import MlflowSettings
from dlexp.tracking.mlflow_run import MAX_TAG, ParentFinder, log_metrics, log_params, log_tags, reason
from dlexp.tracking.store import existing_run, experiment_id, locked, open_client, origin_tags, read_record, write_record

SWEEP_FILES = (files.SUMMARY_CSV, files.JOBS_CSV, files.SUMMARY_MD, files.COMPARISON_PLOT, files.CURVES_PLOT,
               files.HEATMAP_PLOT)


def start_sweep(settings: MlflowSettings, sweep_dir: Path, overrides: Sequence[str], search: Optional[dict[str, Any]],
                command: Optional[Sequence[str]]) -> str:
    """The sweep's parent run, made (or, for a rerun, RUNNING again) before any job starts; returns its id."""
    client = open_client(settings)
    return parent_run(client, settings, sweep_dir, describe=lambda: sweep_fields(overrides, search, command),
                      reopen=True)


def start_sweep_of(config: Any, settings: MlflowSettings, sweep_dir: Path, say: Callable[[str], None] = print) -> None:
    """``start_sweep`` for the sweep a Hydra config describes (its overrides, its search settings); a tracker
    that fails here costs one warning line: each job makes the parent itself if it can."""
    search = config.get("hparams_search")
    search = OmegaConf.to_container(search, resolve=True) if search is not None else None
    try:
        start_sweep(settings, sweep_dir, [str(o) for o in config.hydra.overrides.task], search, hints.command())
    except Exception as err:  # noqa: BLE001  (the tracker's failure: the sweep goes on)
        say(f"warning: the sweep's MLflow run could not be made ({reason(err)}); each job tries again")


def parent_finder(settings: MlflowSettings, sweep_dir: Path) -> ParentFinder:
    """For a job: the parent's id from the sweep dir, the parent made there if the sweep did not make it."""
    return lambda client: parent_run(client, settings, sweep_dir, describe=lambda: ({}, {}))


def parent_run(client: Any, settings: MlflowSettings, sweep_dir: Path, *,
               describe: Callable[[], tuple[dict[str, str], dict[str, str]]], reopen: bool = False) -> str:
    sweep_dir = Path(sweep_dir).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with locked(sweep_dir):  # parallel jobs that find no parent yet make one, not one each
        run = existing_run(client, read_record(sweep_dir), settings)
        if run is not None:
            if reopen and run.info.status != "RUNNING":
                client.update_run(run.info.run_id, status="RUNNING")
            return run.info.run_id
        tags, params = describe()
        experiment = experiment_id(client, settings)
        tags = {**origin_tags(), **settings.tags, **tags, "dlexp.sweep_dir": str(sweep_dir)}
        run = client.create_run(experiment, run_name=sweep_dir.name, tags=tags)
        write_record(sweep_dir, run.info.run_id, experiment, settings)
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def sweep_fields(overrides: Sequence[str], search: Optional[dict[str, Any]],
                 command: Optional[Sequence[str]]) -> tuple[dict[str, str], dict[str, str]]:
    """The parent's tags and params: what kind of sweep, its command; the swept values (``optim.lr``:
    ``0.1,0.01``) and, for a search, its settings and space (``hparams_search.params.optim.lr``)."""
    tags = {"dlexp.kind": "search" if search else "sweep"}
    if command is not None:
        tags["dlexp.command"] = " ".join(["python -m dlexp", *command])
    params = {}
    for override in overrides:
        key, eq, value = str(override).lstrip("+~").partition("=")
        if eq and not key.startswith("hydra"):
            params[key] = value
    params.update({f"hparams_search.{k}": str(v) for k, v in flatten(search or {}).items()})
    return tags, params


def end_sweep(settings: MlflowSettings, sweep_dir: Path, report: Optional[SweepReport], status: str,
              say: Callable[[str], None] = print) -> None:
    """The parent's results and status once the sweep ends; a tracker that fails here costs one warning line."""
    record = read_record(sweep_dir)
    if not record:
        return
    try:
        client = open_client(settings)
        run = existing_run(client, record, settings)
        if run is None:
            return
        if report is not None:
            record_results(client, run.info.run_id, report)
        for name in SWEEP_FILES:
            if (Path(sweep_dir) / name).is_file():
                client.log_artifact(run.info.run_id, str(Path(sweep_dir) / name))
        client.set_terminated(run.info.run_id, status)
    except Exception as err:  # noqa: BLE001  (the tracker's failure: the sweep's own tables are written)
        say(f"warning: the sweep's MLflow run was not brought up to date ({reason(err)}); its tables are in "
            f"{files.display_path(Path(sweep_dir))}")


def record_results(client: Any, run_id: str, report: SweepReport) -> None:
    """The best config's metrics (mean over its completed jobs) and settings; the summary table as the run's
    description (``mlflow.note.content``, shown on its page)."""
    tags = {"dlexp.jobs": str(len(report.jobs))}
    markdown = Path(report.sweep_dir) / files.SUMMARY_MD
    if markdown.is_file():
        text = markdown.read_text()
        tags["mlflow.note.content"] = text if len(text) <= MAX_TAG else text[:MAX_TAG - 40] + "\n\n(cut: summary.md has the rest)"
    best = report.best
    if best is not None:
        stamp = int(time.time() * 1000)
        log_metrics(client, run_id, [(k, best.stats(k)[0], stamp, 0) for k in report.metric_keys])
        tags["dlexp.best"] = report.label(best)
        tags["dlexp.best_overrides"] = " ".join(best.key)
        best_run = next((read_record(j.path).get("run_id") for j in best.completed() if read_record(j.path)), None)
        if best_run:
            tags["dlexp.best_run_id"] = best_run
    log_tags(client, run_id, tags)
