"""The Hydra application behind ``python -m dlexp``: one composed config (a run, or one job of a sweep)
to its files and its exit code.

Hydra composes the config and picks the run dir; this module reads what it needs of Hydra's
state (the run dir, today's overrides, the options chosen, single run or sweep), resolves
``resume=``, hands the run to ``dlexp.train.train`` and turns the outcome into an exit code:

- 0: completed; 2: a user mistake (one ``error:`` line, ``summary.json`` says failed);
- 3: diverged; 130/143: interrupted by SIGINT/SIGTERM (``status: interrupted``, resumable).

In a sweep a failed or diverged job is a result: it hands its sweeper a failed objective and
the sweep goes on (``dlexp.cli.sweep``).
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dlexp import course
from dlexp.cli.preflight import check_run_config
from dlexp.cli.sweep import failed_objective, share_threads
from dlexp.config.files import CONFIG_DIR, PRIMARY_CONFIG
from dlexp.errors import RunDirInUse, UserError
from dlexp.runs.files import hydra_subdir, run_dir_of
from dlexp.runs.runlog import record_failure
from dlexp.training import distributed

if TYPE_CHECKING:  # annotations only: dlexp.train imports torch, which the command line defers
    from dlexp.train import RunResult

DIVERGED_EXIT_CODE = 3

# conf/train.yaml puts a resumed run back in its own dir, and keeps the run's own .hydra/ record
for _name, _resolver in (("dlexp_run_dir", run_dir_of), ("dlexp_hydra_subdir", hydra_subdir)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class HydraApp:
    """The task function Hydra calls once per run (or per sweep job); ``finished_single_run`` tells the
    entry point that a single run has written and closed all its files."""

    def __init__(self) -> None:
        self.finished_single_run = False

    def __call__(self, cfg: DictConfig) -> float:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        distributed.join_submitit_tasks(forced_cpu=cfg.trainer.get("device") == "cpu")  # SLURM, tasks_per_node > 1
        try:
            result = self.run(cfg, run_dir)
            self.finished_single_run = not is_multirun()  # its files are written and closed
        except UserError as err:
            return self.refused(err, run_dir)
        except Exception as err:  # a bug, not a user mistake: keep the trace, but let the sweep go on
            if not is_multirun():
                raise
            traceback.print_exc()
            record_failure(run_dir, f"{type(err).__name__}: {err}")
            return failed_objective(err)
        if result.exit_code:  # interrupted: stop here, a sweep included
            sys.exit(result.exit_code)
        if result.summary["status"] == "diverged":
            print(f"error: training diverged: {result.summary['hint']}", file=sys.stderr)
            if not is_multirun():  # in a sweep a diverged job is a result, not a crash
                sys.exit(DIVERGED_EXIT_CODE)
            return failed_objective(RuntimeError(f"training diverged: {result.summary['hint']}"))
        return result.objective

    def run(self, cfg: DictConfig, run_dir: Path) -> RunResult:
        """Resolve ``resume=``, train, then check a course preset's finding from the files written."""
        # torch and every layer of a run: imported here, after Hydra composed the config, so that
        # --help, --cfg and the checks before Hydra never pay for them
        from dlexp import train
        from dlexp.runs import resume  # loads checkpoints: torch too

        hydra_cfg = HydraConfig.get()
        today = [o for o in hydra_cfg.overrides.task if not o.startswith("resume=")]
        plan = resume.resolve(cfg, today=today, config_name=hydra_cfg.job.config_name)
        check_run_config(plan.cfg)  # the finding a course preset names, besides the schema
        share_threads(plan.cfg)  # parallel launchers: each job gets its share of the CPU cores
        if is_multirun():
            train.warm_imports(plan.cfg)
        result = train.train(plan.cfg, run_dir, overrides=plan.overrides, checkpoint=plan.checkpoint,
                             choices=dict(hydra_cfg.runtime.choices), in_sweep=is_multirun())
        if plan.cfg.get("finding") is not None and distributed.ranks_from_env()[0] == 0:
            course.findings.after_run(OmegaConf.to_container(plan.cfg), run_dir, in_sweep=is_multirun())
        return result

    @staticmethod
    def refused(err: UserError, run_dir: Path) -> float:
        """A user mistake: one line; in a sweep, a failed objective so the other jobs go on."""
        if os.environ.get("DLEXP_TRACEBACK"):
            raise err
        print(f"error: {err}", file=sys.stderr)
        if not isinstance(err, RunDirInUse):  # the report must not call it "still running"
            record_failure(run_dir, str(err))
        if is_multirun():  # one bad job must not stop the rest of the sweep
            return failed_objective(err)  # NaN, or the error again for sweepers that record failed trials
        sys.exit(err.exit_code)


def run_app() -> tuple[bool, object]:
    """Run the Hydra app on ``sys.argv``: (whether a single run finished and closed its files, the exit
    code). An exit before that (a refused run, a sweep) leaves through SystemExit as usual."""
    app = HydraApp()
    try:
        hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=PRIMARY_CONFIG)(app)()
    except SystemExit as stop:
        if not app.finished_single_run:
            raise
        return True, stop.code  # e.g. 3: diverged, with every file written
    return app.finished_single_run, 0
