"""What an invocation will do with its run dir, decided before anything is written: a new run, a resumed
one, a restart, or (in a sweep) a job to skip; then, once accepted, its record.

A single run: a new run needs a dir that holds no other run; ``resume=`` continues the run in its
dir with that run's own config (``dlexp.runs.resume``). A sweep job looks at what an earlier run
of the same command left in its dir: completed (or diverged) jobs are skipped, interrupted ones
continue from their checkpoint, failed ones run again unless ``sweep.retry_failed=false``, and
jobs killed before their first checkpoint start over.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from dlexp.cli.preflight import CHDIR_REFUSED, check_run_config
from dlexp.config.files import CONFIG_DIR, find_option_file
from dlexp.config.schema import SweepConfig
from dlexp.errors import ConfigError
from dlexp.runs import sweep
from dlexp.runs.files import display_path
from dlexp.runs.hints import multirun_command
from dlexp.runs.record import RunDir
from dlexp.runs.rundir import refuse_earlier_run, write_record
from dlexp.runs.status import Status


class Start(Enum):
    """How an invocation starts its run."""

    NEW = "new"  # a run in a dir that holds none
    RESUME = "resume"  # continues a checkpoint
    RESTART = "restart"  # a run killed before its first checkpoint, started again in its own dir
    SKIP = "skip"  # a sweep job that an earlier run of the command finished


@dataclass
class Plan:
    """The run an invocation starts, with everything ``prepare`` and ``train`` take."""

    start: Start
    cfg: DictConfig
    overrides: list[str]
    checkpoint: Optional[dict[str, Any]] = None
    choices: Optional[dict[str, str]] = None  # the options of the run's own record (a resume); None: today's
    job: Optional[sweep.JobState] = None  # what a sweep job's dir held
    note: Optional[str] = None  # a line the run says once it is accepted

    def objective(self) -> float:
        """A skipped job's result, for its sweeper: the best monitored value it recorded (NaN: diverged)."""
        summary = self.job.summary if self.job else {}
        value = summary.get(f"best/{summary.get('monitor')}")
        return float(value) if isinstance(value, (int, float)) and summary.get("status") == Status.COMPLETED else math.nan


def today_overrides() -> list[str]:
    return [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]


def refuse_chdir() -> None:
    """``hydra.job.chdir=true``, from the command line or a config file: one line, before anything is written."""
    if HydraConfig.get().job.chdir:
        raise ConfigError(CHDIR_REFUSED)


def plan_run(cfg: DictConfig, run_dir: Path) -> Plan:
    """A single run: new, or resumed (the run's record rules), or refused. Reads, never writes."""
    from dlexp.runs import resume  # loads checkpoints: torch, which the command line defers to here

    refuse_chdir()
    _refuse_sweep_keys(cfg)
    resumed = resume.resolve(cfg, today=today_overrides())
    check_run_config(resumed.cfg, resumed.choices or applied_choices(), config_dirs())
    if not resumed.cfg.get("resume") and not resumed.restart:  # a new run, or one that starts from the beginning
        if resume.kfold_to_start_again(run_dir, today_overrides()):
            return Plan(Start.RESTART, resumed.cfg, resumed.overrides,
                        note=f"the k-fold run interrupted in {display_path(run_dir)} starts again from its first fold")
        refuse_earlier_run(run_dir)
        return Plan(Start.NEW, resumed.cfg, resumed.overrides, note=resumed.note)
    changes = sweep.identity(resumed.changes)  # not how it runs (threads, the bar): what it computes or scores
    if resumed.checkpoint is not None and not changes and _finished(run_dir, resumed.cfg, resumed.checkpoint):
        return Plan(Start.SKIP, resumed.cfg, resumed.overrides, job=sweep.job_state(run_dir))
    start = Start.RESTART if resumed.restart else Start.RESUME
    return Plan(start, resumed.cfg, resumed.overrides, resumed.checkpoint, without_missing_recipe(resumed.choices))


def _finished(run_dir: Path, cfg: DictConfig, checkpoint: dict[str, Any]) -> bool:
    """Whether ``resume=`` names a run that has finished, and today's command changes nothing of it (more epochs
    extend it; another decode.* scores it again)."""
    status = RunDir(run_dir).status()
    before = (checkpoint.get("config") or {}).get("trainer", {}).get("epochs", cfg.trainer.epochs)
    return status in (Status.COMPLETED, Status.DIVERGED, Status.PRUNED) and cfg.trainer.epochs <= before


def plan_job(cfg: DictConfig, job_dir: Path) -> Plan:
    """A sweep job, from what its dir holds. Reads, never writes."""
    from dlexp.runs import resume  # loads checkpoints: torch, which the command line defers to here

    refuse_chdir()
    if cfg.get("resume"):
        raise ConfigError("resume= continues one run; to continue a sweep, run the same -m command again "
                          "(completed jobs are skipped, interrupted ones resumed)")
    today, state = today_overrides(), sweep.job_state(job_dir)
    if state.status.finished or (state.status == Status.FAILED and not cfg.sweep.retry_failed):
        return Plan(Start.SKIP, cfg, today, job=state)
    check_run_config(cfg, applied_choices(), config_dirs())
    if state.status.resumable and state.checkpoint is not None:  # dlexp.train.prepare checks that today's config
        checkpoint = resume.load_checkpoint(state.checkpoint)  # fits it, once validated (with the schema's defaults)
        return Plan(Start.RESUME, cfg, list(checkpoint.get("overrides", today)), checkpoint, job=state)
    return Plan(Start.NEW if state.status == Status.NEW else Start.RESTART, cfg, today, job=state)


def applied_choices() -> dict[str, str]:
    """The option each group was composed from, as Hydra records it, without an optional ``recipe`` that
    has no file (Hydra names ``<model>_<optim>`` whether or not conf/recipe/ has one)."""
    return without_missing_recipe({str(k): str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None})


def without_missing_recipe(choices: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
    """``choices`` without a ``recipe`` that conf/recipe/ has no file for (a run's record names one anyway)."""
    recipe = (choices or {}).get("recipe")
    if recipe and find_option_file(config_dirs(), "recipe", recipe) is None:
        choices = {k: v for k, v in choices.items() if k != "recipe"}
    return choices


def config_dirs() -> list[str]:
    """conf/, then the folders ``--config-dir`` (or hydra.searchpath) adds."""
    sources = HydraConfig.get().runtime.config_sources
    return [s.path for s in sources if s.provider in ("main", "command-line") and s.schema == "file"] or [CONFIG_DIR]


def accept(plan: Plan, run_dir: Path) -> None:
    """The run passed every check (``dlexp.train.prepare``): from here on the dir is the run's. A new run (or a
    sweep job started again) gets its record; what an attempt killed before its first checkpoint left is
    cleared; a resumed run gets its own record beside the original."""
    from dlexp.runs import resume  # (with plan_run, as above)

    if plan.note:
        print(plan.note, flush=True)
    if plan.start == Start.RESTART:
        resume.clear_attempt(run_dir)
        if plan.job is None and not plan.note:
            print(f"no checkpoint in {display_path(run_dir)} yet: starting that run again from its recorded config",
                  flush=True)
    if plan.start == Start.NEW or (plan.start == Start.RESTART and plan.job is not None):
        write_record(run_dir, plan.cfg, HydraConfig.instance().cfg, HydraConfig.get().overrides.task)
    elif plan.start == Start.RESUME and plan.job is None:
        write_record(run_dir, plan.cfg, HydraConfig.instance().cfg, HydraConfig.get().overrides.task, resumed=True)


def record_job(cfg: DictConfig, job_dir: Path) -> None:
    """A sweep job's record, where a job that failed before it was accepted has none: the report and a
    rerun find every job of the sweep by it."""
    if not RunDir(job_dir).recorded:
        write_record(job_dir, cfg, HydraConfig.instance().cfg, HydraConfig.get().overrides.task)


def _refuse_sweep_keys(cfg: DictConfig) -> None:
    """``sweep.*`` and ``hparams_search`` apply to -m sweeps: set in a single run they would be silently ignored."""
    if cfg.get("hparams_search") is not None:
        raise ConfigError(f"hparams_search is a search over many runs: add -m: {multirun_command(today_overrides())}")
    node = cfg.get("sweep") or {}
    changed = [f"sweep.{f.name}={node.get(f.name)}" for f in dataclasses.fields(SweepConfig)
               if f.name in node and node.get(f.name) != f.default and f.name != "rank_by"]
    if changed:
        raise ConfigError(f"{', '.join(changed)} applies to -m sweeps; add -m to sweep ({multirun_command(today_overrides())}), "
                          "or drop it for a single run")


def job_dir_name(overrides: Any) -> str:
    """``hydra.sweep.subdir``'s resolver: a job's dir, named by its overrides (``dlexp.runs.sweep``)."""
    return sweep.job_dir_name([str(o) for o in overrides])


def search_dir(name: Optional[str], overrides: Any) -> str:
    """A search's ``hydra.sweep.dir`` resolver (conf/hparams_search/optuna.yaml): named by its command."""
    return sweep.search_dir(name, [str(o) for o in overrides])


def pending_jobs(config: DictConfig) -> dict[str, dict[str, Any]]:
    """The jobs of a grid sweep, from its config before any has started: dir name -> entry."""
    loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
    jobs = grid_jobs(config.hydra.sweeper.get("params") or {}, list(config.hydra.overrides.task), loader)
    return {sweep.job_dir_name(job): {"overrides": job, "status": Status.PENDING} for job in jobs}


def grid_jobs(params: Any, arguments: list[str], loader: Any = None) -> list[list[str]]:
    """Each job's overrides, in the order of Hydra's basic sweeper: ``params`` (``hydra.sweeper.params``) and
    then the command line, one list of values per key (a key named twice keeps its first place and takes its
    last values), and their product with the last key changing fastest. ``loader`` lists a group's options
    for ``glob()``."""
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create(config_loader=loader).parse_overrides([*(f"{k}={v}" for k, v in params.items()),
                                                                                  *arguments]):
        key = override.get_key_element()
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise ConfigError(f"'{override.input_line}' is a range to search, not values to list: a grid sweep takes "
                              f"{key}=a,b,c or {key}=range(...); search it with hparams_search=optuna")
        values = override.sweep_string_iterator() if override.is_sweep_override() else [override.get_value_element_as_str()]
        choices[key] = [f"{key}={value}" for value in values]
    return [list(job) for job in itertools.product(*choices.values())]