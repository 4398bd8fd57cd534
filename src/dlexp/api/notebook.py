"""The command line as Python calls, for notebooks and scripts.

    import dlexp

    run = dlexp.run("model=lenet", "dataset.resize=28", "trainer.epochs=5")
    run.summary["test/acc"], run.run_dir, run.metrics          # the summary, where it is, a DataFrame per epoch

    sweep = dlexp.sweep("optim.lr=0.01,0.1", "seed=0,1", sweep_name="lr")
    sweep.table                                                  # the sweep's table as a DataFrame

    dlexp.load("outputs/multirun/lr").jobs                       # any finished run or sweep, read back

Each call takes the overrides of the command line (and its ``--config-dir`` and ``plugins``), runs exactly
what ``python -m dlexp`` runs, through the same checks, and leaves no Hydra state behind. A mistake raises
the exception the command line would have turned into its one ``error:`` line, with the same message
(``dlexp.errors.UserError``); a bug raises as it is, its traceback also in the run's ``run.log``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from dlexp.cli.app import HydraApp, hydra_main
from dlexp.cli.help import with_project_config_dir
from dlexp.cli.preflight import preflight, run_dir_target
from dlexp.cli.sweep import SweepSummary
from dlexp.errors import UserError
from dlexp.results.report import build_report
from dlexp.results.tables import group_rows, job_rows
from dlexp.runs import hints
from dlexp.runs.files import JOBS_CSV, JOBS_MANIFEST, METRICS_FILE, SUMMARY_CSV, SUMMARY_FILE
from dlexp.runs.record import RunDir
from dlexp.runs.rundir import DirSnapshot
from dlexp.training.interrupt import STOP


@dataclass
class RunOutcome:
    """A run's results: its summary (summary.json), its dir, and its metrics and config read on demand."""

    run_dir: Path
    summary: dict[str, Any]

    @property
    def status(self) -> str:
        return str(self.summary.get("status", ""))

    @property
    def metrics(self) -> Any:
        """metrics.csv as a pandas DataFrame: one row per epoch."""
        import pandas as pd

        frame = pd.DataFrame(RunDir(self.run_dir).metrics())
        return frame.astype({"epoch": int}) if "epoch" in frame else frame

    @property
    def config(self) -> dict[str, Any]:
        """The composed config the run was started with (.hydra/config.yaml)."""
        return RunDir(self.run_dir).config()

    @classmethod
    def read(cls, run_dir: Path) -> "RunOutcome":
        return cls(Path(run_dir), RunDir(run_dir).summary())


@dataclass
class SweepOutcome:
    """A sweep's results: its table (one row per config, mean and std over seeds), its jobs, its dir."""

    sweep_dir: Path
    table: Any  # pandas DataFrame of summary.csv
    jobs: Any  # pandas DataFrame of jobs.csv
    problems: list[str] = field(default_factory=list)  # jobs that failed or did not finish

    def runs(self) -> dict[str, RunOutcome]:
        """Each job that finished, by its dir's name."""
        return {Path(str(d)).name: RunOutcome.read(self.sweep_dir / str(d)) for d in self.jobs["job"]
                if RunDir(self.sweep_dir / str(d)).has(SUMMARY_FILE)}

    @classmethod
    def read(cls, sweep_dir: Path) -> "SweepOutcome":
        """A sweep's tables, as its summary wrote them; a sweep still running, or stopped before its summary,
        is read from its jobs (nothing is written)."""
        import pandas as pd

        sweep_dir = Path(sweep_dir)
        report = build_report(sweep_dir)
        problems = [f"{j.name} ({j.status}): {j.reason}" for j in report.problems()]
        if (sweep_dir / SUMMARY_CSV).is_file() and (sweep_dir / JOBS_CSV).is_file():
            return cls(sweep_dir, pd.read_csv(sweep_dir / SUMMARY_CSV), pd.read_csv(sweep_dir / JOBS_CSV), problems)
        return cls(sweep_dir, pd.DataFrame(group_rows(report)), pd.DataFrame(job_rows(report)), problems)


def run(*overrides: str, config_dir: Optional[str] = None, plugins: Union[str, Sequence[str]] = ()) -> RunOutcome:
    """One run, as ``python -m dlexp OVERRIDES`` runs it; returns its outcome (completed, diverged, ...)."""
    argv = _argv(overrides, config_dir, plugins)
    if "-m" in argv or "--multirun" in argv:
        raise UserError("dlexp.run runs one training; for a sweep (-m) call dlexp.sweep with the same overrides")
    app = _launch(argv)
    if app.result is None or app.run_dir is None:
        raise UserError("the run did not start")  # a refusal raised above; kept for a path that returned none
    return RunOutcome(app.run_dir, app.result.summary)


def sweep(*overrides: str, sweep_name: Optional[str] = None, config_dir: Optional[str] = None,
          plugins: Union[str, Sequence[str]] = ()) -> SweepOutcome:
    """A sweep (``python -m dlexp -m OVERRIDES``); returns its table. ``sweep_name``: its dir,
    outputs/multirun/<name>, so that the same call again continues it."""
    argv = ["-m", *_argv(overrides, config_dir, plugins)]
    if sweep_name:
        argv.append(f"sweep.name={sweep_name}")
    SweepSummary.last_sweep_dir = None
    _launch(argv)
    if SweepSummary.last_sweep_dir is None:
        raise UserError("the sweep did not start")
    return SweepOutcome.read(SweepSummary.last_sweep_dir)


def load(path: Union[str, Path]) -> Union[RunOutcome, SweepOutcome]:
    """Read any finished (or unfinished) run or sweep back from its dir: nothing is written."""
    folder = Path(path).expanduser().absolute()
    if (folder / SUMMARY_FILE).is_file() or (folder / METRICS_FILE).is_file():
        return RunOutcome.read(folder)
    if (folder / SUMMARY_CSV).is_file() or (folder / JOBS_MANIFEST).is_file() or folder.is_dir():
        try:
            return SweepOutcome.read(folder)
        except FileNotFoundError:
            pass
    raise UserError(f"{folder} is neither a run dir (summary.json, metrics.csv) nor a sweep dir (job dirs, summary.csv); "
                    "give the dir a run or sweep printed at its end")


def _argv(overrides: Sequence[Any], config_dir: Optional[str], plugins: Union[str, Sequence[str]]) -> list[str]:
    """The command line of a call: each override its own string (a list of them is taken as given)."""
    argv = [str(o) for item in overrides for o in (item if isinstance(item, (list, tuple)) else [item])]
    joined = next((a for a in argv if " " in a and a.count("=") > 1 and not a.startswith(("'", '"'))), None)
    if joined is not None:
        raise UserError(f"'{joined}' holds several overrides in one string; pass each as its own string, e.g. "
                        f"dlexp.run({', '.join(repr(w) for w in joined.split())})")
    plugins = [plugins] if isinstance(plugins, str) else list(plugins)
    if plugins:
        argv.append(f"plugins=[{','.join(str(p) for p in plugins)}]")
    return with_project_config_dir((["--config-dir", str(config_dir)] if config_dir else []) + argv)


def _launch(argv: list[str]) -> HydraApp:
    """The command line's own path, in this process: the checks before Hydra, then Hydra and the app; the
    error the command line would print is raised, and Hydra's global state is cleared whatever happens."""
    hints.set_command(argv)
    GlobalHydra.instance().clear()  # whatever an earlier call (or a notebook cell of Hydra's own) left
    with STOP.installed():  # Ctrl-C (a notebook's interrupt) stops the run at a safe point, as on a terminal
        preflight(argv)
        app = HydraApp(DirSnapshot.take(run_dir_target(argv)), quiet_errors=True)
        saved, sys.argv = sys.argv, ["dlexp", *argv]
        code: Any = 0
        try:
            hydra_main(app)()
        except SystemExit as stop:
            code = stop.code
        finally:
            sys.argv = saved
            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = None  # the next call (or a plain train()) starts from nothing
    if app.error is not None:
        raise app.error
    if code in (130, 143):
        raise KeyboardInterrupt(f"interrupted; continue with: {hints.resume_command(app.run_dir)}" if app.run_dir else
                                "interrupted before the run started; nothing was written")
    return app
