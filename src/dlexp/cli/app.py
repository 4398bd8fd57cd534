"""The Hydra application behind ``python -m dlexp``: one composed config (a run, or one job of a sweep)
to its files and its exit code.

Hydra composes the config and makes the run dir, writing nothing into it. The app then takes a run
through its life, in order:

1. **plan** what the invocation does with its dir: a new run, a resumed one, a restart, or (in a sweep)
   a job to skip (``dlexp.cli.plan``); reads only;
2. **prepare** it: every check that can refuse it (config, device, data, model), before anything is
   written (``dlexp.train.prepare``);
3. **accept** it: its record (``.hydra/``) is written, and the dir is the run's from here on;
4. **train** it (``dlexp.train.train``), then check a course preset's finding;

and turns the outcome into an exit code:

- 0: completed (or, in a sweep, skipped because an earlier run of the command completed it);
- 2: a user mistake: one ``error:`` line; a refused run leaves its dir as it was (a new run's dir is removed);
- 3: diverged; 130/143: interrupted by SIGINT/SIGTERM, at any moment: one line, and
  ``status: interrupted`` wherever the run has a dir (the line says how to continue it);
- 70: a bug in dlexp (not a mistake in the config): one line saying so, the traceback in the run's ``run.log``.

In a sweep a failed or diverged job is a result: it hands its sweeper a failed objective and
the sweep goes on (``dlexp.cli.sweep``), unless ``sweep.fail_fast``.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dlexp import course
from dlexp.cli import plan as planning
from dlexp.cli.sweep import failed_objective, share_threads
from dlexp.config.files import CONFIG_DIR, PRIMARY_CONFIG
from dlexp.config.plugins import plugin_frame
from dlexp.errors import BUG_EXIT_CODE, RunDirInUse, UserError, bug_message, plugin_error_message
from dlexp.hooks import point
from dlexp.results.plots import plots_after_training
from dlexp.runs import hints, sweep
from dlexp.runs.files import CURVES_PLOT, checkpoint_file, display_path, run_dir_of, sweep_dir_of
from dlexp.runs.rundir import DirSnapshot
from dlexp.runs.runlog import record_bug, record_failure, record_interruption
from dlexp.runs.status import Status
from dlexp.search.slots import TRIAL_VARIABLE
from dlexp.training import distributed
from dlexp.training.interrupt import STOP, Interrupted, signal_name

if TYPE_CHECKING:  # annotations only: dlexp.train imports torch, which the command line defers
    from dlexp.train import RunResult

DIVERGED_EXIT_CODE = 3
FAIL_FAST_EXIT_CODE = 1

# conf/train.yaml: a resumed run's dir, a named sweep's dir, and each sweep job's dir named by its overrides
for _name, _resolver in (("dlexp_run_dir", run_dir_of), ("dlexp_sweep_dir", sweep_dir_of),
                         ("dlexp_job_dir", planning.job_dir_name), ("dlexp_search_dir", planning.search_dir)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def is_main_process() -> bool:
    return distributed.ranks_from_env()[0] == 0


class HydraApp:
    """The task function Hydra calls once per run (or per sweep job). ``before`` says which folders existed
    before Hydra made the run dir (a refused run removes the rest); ``finished_single_run`` tells the
    entry point that a single run has written and closed all its files."""

    def __init__(self, before: Optional[DirSnapshot] = None, *, quiet_errors: bool = False) -> None:
        self.before = before or DirSnapshot()
        self.finished_single_run = False
        # the Python API (dlexp.run): an error is kept (``error``) for the caller to raise, not printed
        self.quiet_errors = quiet_errors
        self.error: Optional[BaseException] = None
        self.result: Optional[RunResult] = None  # the last run's (a single run's) result
        self.run_dir: Optional[Path] = None

    def ended(self, stop: SystemExit) -> tuple[bool, object]:
        """Hydra's main left through ``stop``: (True, its exit code) when a single run finished and closed its
        files (e.g. 3: diverged, every file written); any other exit (a refused run, a sweep) goes on up."""
        if not self.finished_single_run:
            raise stop
        return True, stop.code

    def __call__(self, cfg: DictConfig) -> float:
        """plan, prepare, accept, train: the life of one run (the module's docstring), each step a call."""
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        with STOP.installed():  # also in the worker processes of parallel launchers, which start no entry point
            distributed.join_submitit_tasks(forced_cpu=cfg.trainer.get("device") == "cpu")  # SLURM, tasks_per_node > 1
            accepted = None
            try:
                STOP.check()  # a signal while Hydra composed the config
                plan = planning.plan_job(cfg, run_dir) if is_multirun() else planning.plan_run(cfg, run_dir)
                if plan.start == planning.Start.SKIP:
                    return self.skipped(plan, run_dir)
                from dlexp import train  # torch and every layer of a run: only once the run is planned

                point("imports")
                share_threads(plan.cfg)  # parallel launchers: each job gets its share of the CPU cores
                if is_multirun():
                    train.warm_imports(plan.cfg)
                prepared = train.prepare(plan.cfg, overrides=plan.overrides, checkpoint=plan.checkpoint,
                                         choices=plan.choices or planning.applied_choices(),
                                         config_dirs=planning.config_dirs())
                if is_main_process():
                    planning.accept(plan, run_dir)
                accepted = plan
                point("accepted")
                self.mark(run_dir, Status.RUNNING, plan.overrides)
                result = train.train(prepared, run_dir, in_sweep=is_multirun(), on_epoch=trial_reporter(),
                                     plots=not is_multirun())  # a sweep job's: on demand (dlexp.report)
                self.result, self.run_dir = result, run_dir
                if plan.cfg.get("finding") is not None and is_main_process():
                    course.findings.after_run(OmegaConf.to_container(plan.cfg), run_dir, in_sweep=is_multirun())
            except Interrupted as stop:
                self.interrupted(stop, run_dir, accepted)
            except UserError as err:
                return self.refused(err, cfg, run_dir, accepted)
            except Exception as err:  # a bug in dlexp (or in a user's plugin), not a mistake in the config
                return self.bug(err, cfg, run_dir, accepted)
            self.finished_single_run = not is_multirun()  # its files are written and closed
            return self.outcome(result, run_dir)

    def outcome(self, result: RunResult, run_dir: Path) -> float:
        """The exit code of a finished run (a sweep job: its objective for the sweeper)."""
        status = Status.of(result.summary["status"])
        self.mark(run_dir, status)
        if result.exit_code:  # interrupted in the training loop: stop here, a sweep included
            self.say_interrupted(result.exit_code - 128, run_dir, result.summary.get("resume_with"))
            sys.exit(result.exit_code)
        point("job_end")
        if status == Status.DIVERGED:
            print(f"error: training diverged: {result.summary['hint']}{tested_note(result.summary)}", file=sys.stderr)
            if not is_multirun():  # in a sweep a diverged job is a result, not a crash
                sys.exit(DIVERGED_EXIT_CODE)
            self.stop_between_jobs(run_dir)
            return failed_objective(RuntimeError(f"training diverged: {result.summary['hint']}"))
        self.stop_between_jobs(run_dir)
        return result.objective

    def skipped(self, plan: planning.Plan, run_dir: Path) -> float:
        """A sweep job that an earlier run of the command completed: one quiet line, its recorded result."""
        summary = plan.job.summary if plan.job else {}
        monitor = summary.get("monitor", "")
        value = summary.get(f"best/{monitor}")
        result = f", best {monitor} {value:.4f}" if isinstance(value, float) else ""
        if not is_multirun():  # resume= of a finished run, today's command not extending it
            print(f"the run in {display_path(run_dir)} has finished ({plan.job.status} after {summary.get('epochs_run')} "
                  f"epochs{result}): nothing to resume; raise trainer.epochs to train it further", flush=True)
            if is_main_process() and not (run_dir / CURVES_PLOT).is_file():
                plots_after_training(run_dir)  # killed after its summary, before its plots: they are all it lacks
            return plan.objective()
        print(f"{display_path(run_dir)}: {plan.job.status} earlier, skipped{result}", flush=True)
        self.mark(run_dir, plan.job.status, plan.overrides)
        point("job_end")
        self.stop_between_jobs(run_dir)
        return plan.objective()

    @staticmethod
    def stop_between_jobs(run_dir: Path) -> None:
        """A signal as a job ended (a single run has nothing left to stop): the sweep stops before the next."""
        if is_multirun() and STOP():
            print(f"interrupted by {signal_name(STOP.signum)} between sweep jobs; continue the sweep with: "
                  f"{continue_sweep(run_dir)}", file=sys.stderr, flush=True)
            sys.exit(STOP.exit_code)

    def refused(self, err: UserError, cfg: DictConfig, run_dir: Path, accepted: Optional[planning.Plan]) -> float:
        """A user mistake: one line. A refused run leaves nothing; a new run that failed once accepted
        removes its dir; in a sweep, a failed objective so the other jobs go on."""
        if is_multirun():  # one bad job must not stop the rest of the sweep
            print(f"error: {err}", file=sys.stderr, flush=True)
            if os.environ.get("DLEXP_TRACEBACK"):  # Hydra gets the error (and its trace); on_job_end records it
                planning.record_job(cfg, run_dir)
                raise err
            self.failed(cfg, run_dir, str(err))
            return failed_objective(err)  # NaN, or the error again for sweepers that record failed trials
        if os.environ.get("DLEXP_TRACEBACK"):
            raise err
        self.say_error(err, str(err))
        if not is_main_process() or isinstance(err, RunDirInUse):
            pass  # another rank's, or an earlier run's dir: not this command's to change
        elif accepted is None:
            self.before.remove_made(run_dir)  # made for this command: nothing of it stays
        elif accepted.start == planning.Start.NEW:
            self.before.remove_run(run_dir)  # found only once it trained (a corrupt file deep in the data)
        else:
            record_failure(run_dir, str(err))  # an earlier run's dir: it says why this attempt stopped
        sys.exit(err.exit_code)

    def bug(self, err: Exception, cfg: DictConfig, run_dir: Path, accepted: Optional[planning.Plan]) -> float:
        """A failure inside dlexp: one line that says so, the traceback in the run's run.log, exit 70; a failure
        inside a user's plugin says so instead, exit 2. In a sweep the job is failed and the sweep goes on. The
        traceback goes into a dir this command made or accepted, never into an earlier run's dir."""
        if os.environ.get("DLEXP_TRACEBACK"):
            raise err
        ours = accepted is not None or self.before.made_now(run_dir) or is_multirun()
        log = record_bug(run_dir, traceback.format_exc(), f"{type(err).__name__}: {err}") if is_main_process() and ours else None
        in_plugin = plugin_frame(err)
        shown = display_path(log) if log else None
        self.say_error(err, plugin_error_message(err, in_plugin, shown) if in_plugin else bug_message(err, shown))
        if not is_multirun():
            sys.exit(UserError.exit_code if in_plugin else BUG_EXIT_CODE)
        self.failed(cfg, run_dir, f"internal error: {type(err).__name__}: {err}")
        return failed_objective(err)

    def say_error(self, err: BaseException, line: str) -> None:
        """One ``error:`` line; or, for the Python API, the error kept for the caller to raise."""
        if self.quiet_errors:
            self.error = err
            return
        print(f"error: {line}", file=sys.stderr, flush=True)

    def failed(self, cfg: DictConfig, run_dir: Path, error: str) -> None:
        """A sweep job that failed: recorded in its dir and the manifest; the sweep stops if sweep.fail_fast."""
        if is_main_process():
            planning.record_job(cfg, run_dir)
        record_failure(run_dir, error)
        self.mark(run_dir, Status.FAILED)
        if OmegaConf.select(cfg, "sweep.fail_fast"):
            print(f"the sweep stops at its first failed job (sweep.fail_fast=true): {display_path(run_dir)}",
                  file=sys.stderr, flush=True)
            sys.exit(FAIL_FAST_EXIT_CODE)

    def interrupted(self, stop: Interrupted, run_dir: Path, accepted: Optional[planning.Plan]) -> None:
        """A signal outside the training loop: ``status: interrupted`` where the run has a dir, one line, exit."""
        resume_with = None
        if accepted is None:
            if is_main_process() and is_multirun():  # the job's dir, made by Hydra a moment ago: no trace of it
                _remove_if_empty(run_dir)
            elif is_main_process():
                self.before.remove_made(run_dir)
        else:
            resumable = accepted.cfg.split.name != "kfold"
            hint = hints.resume_command(run_dir) if resumable else hints.rerun_command(hints.command())
            resume_with = record_interruption(run_dir, signal_name(stop.signum), hint)
            self.mark(run_dir, Status.INTERRUPTED)
        self.say_interrupted(stop.signum, run_dir if accepted else None, resume_with)
        sys.exit(stop.exit_code)

    @staticmethod
    def say_interrupted(signum: int, run_dir: Optional[Path], resume_with: Optional[str]) -> None:
        name = signal_name(signum)
        if run_dir is None and is_multirun():
            line = f"interrupted by {name} before the next sweep job started; continue the sweep with: {continue_sweep(None)}"
        elif run_dir is None:
            line = f"interrupted by {name} before the run started; nothing was written"
        elif is_multirun():
            line = f"interrupted by {name}: {display_path(run_dir)} is saved; continue the sweep with: {continue_sweep(run_dir)}"
        elif resume_with and "resume=" in resume_with:
            saved = "checkpoint saved" if checkpoint_file(run_dir).is_file() else "no checkpoint yet"
            line = f"interrupted by {name}: {saved}; continue with: {resume_with}"
        else:
            line = f"interrupted by {name}; k-fold runs cannot be resumed: start it again with: {resume_with}"
        print(line, file=sys.stderr, flush=True)

    @staticmethod
    def mark(run_dir: Path, status: Status, overrides: Optional[list[str]] = None) -> None:
        """A sweep job's status in the sweep's jobs manifest, as it changes."""
        if is_multirun() and is_main_process():
            sweep.mark(run_dir.parent, run_dir, status, overrides)


def continue_sweep(job_dir: Optional[Path]) -> str:
    """The command that continues this sweep (its dir named when the command alone would not find it)."""
    sweep_dir = Path(str(HydraConfig.get().sweep.dir)) if job_dir is None else job_dir.parent
    return hints.continue_sweep_command(sweep_dir, sweep.read_command(sweep_dir))


def trial_reporter() -> Optional[Callable[[int, float], bool]]:
    """A search's trial reports each epoch to its study (``DLEXP_TRIAL``, set by the search's slot)."""
    if not os.environ.get(TRIAL_VARIABLE):
        return None
    from dlexp.search.study import reporter_from_env  # optuna: only in a search's trials

    return reporter_from_env()


def tested_note(summary: dict) -> str:
    """``; its best checkpoint (epoch 7) scored test/acc 0.9611`` for a run that ended before its last epoch."""
    metric = summary.get("monitor", "").removeprefix("val/")
    value = summary.get(f"test/{metric}")
    if "tested" not in summary or not isinstance(value, float):
        return ""
    return f"; its best checkpoint (epoch {summary['best_epoch']}) scored test/{metric} {value:.4f}"


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def hydra_main(app: HydraApp) -> Callable[[], None]:
    """Hydra's main function for ``app`` on ``sys.argv``: it composes the config, makes the run dir (or, with -m,
    runs the sweep) and calls ``app`` once per run."""
    return hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=PRIMARY_CONFIG)(app)
