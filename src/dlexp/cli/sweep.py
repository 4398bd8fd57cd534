"""Glue between dlexp and Hydra's multirun machinery: the end-of-sweep summary and threads per job.

- ``SweepSummary`` is a Hydra callback (``hydra.callbacks`` in conf/train.yaml).
  With ``logger=mlflow`` it makes the sweep's parent run as the sweep starts (``dlexp.tracking.sweeps``).
  When a multirun ends it writes and prints the sweep summary (``dlexp.results``), hands it to the
  parent run, and checks a course preset's finding (``dlexp.course``),
  and exits with status 1 if any job failed (a diverged job is a result, not a failure). Hydra 1.3 re-raises only the first
  job failure and then skips ``on_multirun_end``; so every failed job also gets
  a ``summary.json`` with its error (``on_job_end``), and a sweep that stops
  early is still summarized at exit.
- ``failed_objective`` is what a failed job returns, so that no sweeper stops at it.
- ``share_threads`` gives each job of a parallel launcher its share of the CPU.

Importing this module must stay light (no torch): Hydra imports it in every run.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from dlexp import course
from dlexp.cli.plan import pending_jobs
from dlexp.results.report import SweepReport, find_job_dirs
from dlexp.results.tables import summarize_sweep
from dlexp.runs import hints, sweep
from dlexp.runs.files import display_path
from dlexp.runs.runlog import record_failure
from dlexp.errors import UserError
from dlexp.hooks import point
from dlexp.search.slots import THREADS_VARIABLE, available_cores, job_error
from dlexp.tracking.loggers import MlflowSettings, check, settings_of
from dlexp.tracking.sweeps import end_sweep, start_sweep_of
from dlexp.training.interrupt import STOP

GRID_SWEEPERS = ("GridSweeper", "BasicSweeper")  # dlexp's (the default) and Hydra's: the jobs known at the start


class SweepSummary(Callback):
    """Hydra's callback for every run: the sweep's jobs manifest and, at its end, its summary; and the
    moment Hydra has composed a run's config (a point signal tests can stop a run at)."""

    last_sweep_dir: Optional[Path] = None  # the latest sweep this process started (dlexp.sweep reads it back)

    def __init__(self) -> None:
        self.sweep_dir: Optional[Path] = None
        self.ended = False
        self.tracker: Optional[MlflowSettings] = None  # logger=mlflow: the sweep is a parent run

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        point("compose")  # Hydra has composed the config and is about to make the run dir

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        point("compose")
        check_launcher(config.hydra.launcher)
        check_plugins(config)
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun every rank sweeps; rank 0 alone reports
            self.ended = True
            return
        self.sweep_dir = SweepSummary.last_sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        os.environ.pop(sweep.COMMAND_VARIABLE, None)  # an earlier sweep's, in this process
        if hints.command() is not None:  # kept in jobs.json as it is first written (by this process, or a job's)
            os.environ[sweep.COMMAND_VARIABLE] = json.dumps(hints.command())
        self.tracker = start_tracking(config, self.sweep_dir)  # refused in one line before anything is written
        if str(config.hydra.sweeper.get("_target_", "")).endswith(GRID_SWEEPERS):  # a grid: its jobs are known now
            with contextlib.suppress(UserError):  # values a grid cannot list: the sweeper says so, in one line
                sweep.update_manifest(self.sweep_dir, pending_jobs(config), only_new=True)
        atexit.register(self._summarize_stopped_sweep)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A job whose error escaped the task function still gets a failed summary.json."""
        error = job_error(job_return)
        if error is not None:
            record_failure(Path(str(config.hydra.runtime.output_dir)), f"{type(error).__name__}: {error}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.ended:  # another rank's copy of the sweep
            return
        self.ended = True
        report = report_sweep(self.sweep_dir or Path(str(config.hydra.sweep.dir)))
        problems = report.problems()  # failed or unfinished; a diverged job is a result
        if self.tracker is not None:
            end_sweep(self.tracker, report.sweep_dir, report, "FAILED" if problems else "FINISHED")
        if problems:
            names = ", ".join(j.name for j in problems)
            print(f"error: {len(problems)} of {len(report.jobs)} jobs did not complete (jobs {names}); "
                  f"see {display_path(report.sweep_dir / 'summary.md')}", file=sys.stderr)
            sys.exit(1)

    def _summarize_stopped_sweep(self) -> None:
        """At exit, when the sweep stopped before on_multirun_end (a re-raised job failure, Ctrl-C)."""
        if self.ended or self.sweep_dir is None or not self.sweep_dir.is_dir():
            return
        report = None
        if find_job_dirs(self.sweep_dir):  # else no job started: nothing to summarize
            print("the sweep stopped early; summary of the jobs that ran:", file=sys.stderr)
            report = report_sweep(self.sweep_dir)
        if self.tracker is not None:
            end_sweep(self.tracker, self.sweep_dir, report, "KILLED" if STOP() else "FAILED")


def report_sweep(sweep_dir: Path, *, run_plots: bool = False) -> SweepReport:
    """The sweep summary (tables, plots, the console table), then a course preset's finding, if the jobs
    name one (``finding.json`` in the sweep dir)."""
    report = summarize_sweep(sweep_dir, run_plots=run_plots)
    course.findings.after_sweep(report.sweep_dir, [job.path for job in report.jobs])
    return report


def start_tracking(config: DictConfig, sweep_dir: Path) -> Optional[MlflowSettings]:
    """With ``logger=mlflow``: a tracker the jobs could not log to is refused in one line (exit 2) before the sweep
    writes anything; a grid's parent run is made before its first job (a rerun continues it). A search makes its
    own once its settings have passed their checks (``hydra_plugins.dlexp_search``)."""
    try:
        settings = settings_of(config.get("logger"))
        check(settings)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    if settings is not None and not str(config.hydra.sweeper.get("_target_", "")).endswith("DlexpSearchSweeper"):
        start_sweep_of(config, settings, sweep_dir)
    return settings


def check_launcher(launcher: DictConfig) -> None:
    """The SLURM launcher needs SLURM's commands; without them, say so in one line (exit 2) instead of a trace."""
    if str(launcher.get("_target_", "")).endswith("SlurmLauncher") and shutil.which("srun") is None:
        print("error: hydra/launcher=slurm needs a SLURM cluster (srun and sbatch not found on PATH); run it on "
              "the cluster's login node, or use hydra/launcher=joblib for parallel jobs on this machine", file=sys.stderr)
        sys.exit(2)


def check_plugins(config: DictConfig) -> None:
    """A sweep's plugins are imported once before its first job: a missing or broken one is one line (exit 2),
    not a failure of every job."""
    names = list(config.get("plugins") or [])
    if not names:
        return
    from dlexp import train  # the plugins register into the registries (torch): only for a sweep that names some
    from dlexp.errors import UserError  # (with train, as above)

    dirs = [s.path for s in config.hydra.runtime.config_sources if s.schema == "file" and s.provider in ("main", "command-line")]
    try:
        train.load_plugins(names, dirs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def failed_objective(error: BaseException) -> float:
    """What a failed sweep job hands its sweeper, after it wrote its failed summary.json.

    Hydra's basic sweeper stops the whole sweep at the end of a batch if a job
    raised, so there a failed (or diverged) job returns NaN and the sweep goes
    on; dlexp's search reads the job's summary.json. Other sweepers record a
    raising job as a failed trial and go on; there the error is raised again.
    """
    target = str(HydraConfig.get().sweeper.get("_target_", "")) if HydraConfig.initialized() else ""
    if not target or target.endswith((*GRID_SWEEPERS, "DlexpSearchSweeper")):
        return math.nan
    raise error


# --------------------------------------------------------------------------
# Threads per job


def threads_per_job(launcher: Any, cores: int) -> Optional[int]:
    """CPU threads for one job of ``launcher`` (Hydra's launcher config), or None to keep PyTorch's default.

    dlexp's slots say it in ``DLEXP_THREADS_PER_JOB`` (cores // slots).
    joblib runs ``n_jobs`` jobs at once on this machine: each gets cores // n_jobs.
    submitit (SLURM or local) gives each job ``cpus_per_task`` CPUs.
    """
    if os.environ.get(THREADS_VARIABLE):
        return int(os.environ[THREADS_VARIABLE])
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    if target.endswith("JoblibLauncher"):
        n_jobs = int(launcher.get("n_jobs", -1))
        if n_jobs < 0:  # joblib's convention: -1 = all cores, -2 = all but one, ...
            n_jobs = cores + 1 + n_jobs
        return max(1, cores // max(1, n_jobs))
    cpus = launcher.get("cpus_per_task") if launcher is not None else None
    if "submitit" in target and cpus:
        return int(cpus)
    return None


def share_threads(cfg: DictConfig) -> None:
    """In a parallel sweep, set ``trainer.num_threads`` when it is null, so jobs do not oversubscribe the CPU."""
    trainer = cfg.get("trainer")
    if trainer is None or trainer.get("num_threads") is not None or not HydraConfig.initialized():
        return
    threads = threads_per_job(HydraConfig.get().launcher, available_cores())
    if threads is not None:
        trainer.num_threads = threads
