"""The names of every file dlexp writes, in one place, and where a run dir keeps them.

A run dir::

    .hydra/config.yaml, hydra.yaml, overrides.yaml   the composed config and the command line (Hydra's record)
    metrics.csv          one row per epoch
    grad_norms.csv       per-layer gradient and weight norms after each epoch
    summary.json         status, best and test metrics, diagnosis, wall time
    run.log              the console lines of the run (and the traceback of a failure inside dlexp)
    events.out.tfevents.*  TensorBoard
    checkpoints/last.pt, best.pt
    curves.png, grad_norms.png
    fold_<i>/            k-fold: one run dir per fold

and what some runs add (``translations.tsv``, ``attention.json``, ``submission.csv``, ``finding.json``).
A sweep dir holds the job dirs and ``summary.csv``, ``jobs.csv``, ``summary.md`` and the sweep plots.

This module imports nothing heavy: the command line uses it before a run starts.
"""
from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Optional

from dlexp.errors import ConfigError

SWEEPS_DIR = "outputs/multirun"  # where named sweeps (sweep.name=...) live

# A run's record
HYDRA_DIR = ".hydra"  # Hydra's record of the run: the composed config and the command line
RESUME_HYDRA_DIR = ".hydra_resume"  # a resumed run's own record, beside the original one
CONFIG_RECORD = "config.yaml"
HYDRA_RECORD = "hydra.yaml"
OVERRIDES_RECORD = "overrides.yaml"
METRICS_FILE = "metrics.csv"
GRAD_NORMS_FILE = "grad_norms.csv"
SUMMARY_FILE = "summary.json"
RUN_LOG = "run.log"  # the run's console lines, and the traceback of a failure inside dlexp
TENSORBOARD_GLOB = "events.out.tfevents.*"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
FOLD_DIR = "fold_{}"  # k-fold: fold_1, fold_2, ...

# What some runs add
TRANSLATIONS_FILE = "translations.tsv"
ATTENTION_FILE = "attention.json"  # attention weights of a few test sentences, drawn as attention.png
SUBMISSION_FILE = "submission.csv"  # predictions for an unlabeled test file (house_prices)
FINDING_FILE = "finding.json"  # a course preset's claim and its measured verdict

# Plots
CURVES_PLOT = "curves.png"
GRAD_NORMS_PLOT = "grad_norms.png"
ATTENTION_PLOT = "attention.png"
COMPARISON_PLOT = "comparison.png"  # sweeps
HEATMAP_PLOT = "heatmap.png"  # sweeps over two keys

# A sweep's tables
SUMMARY_CSV = "summary.csv"
JOBS_CSV = "jobs.csv"
SUMMARY_MD = "summary.md"
JOBS_MANIFEST = "jobs.json"  # each job's status while the sweep runs (dlexp.runs.sweep)
STUDY_JOURNAL = "optuna.journal"  # a search's Optuna study, when it has no database (dlexp.search)
JOB_LOGS_DIR = "logs"  # parallel slots: each job's console output, <sweep dir>/logs/<job dir>.log

# Everything a run writes into its dir (with the TensorBoard files and fold dirs): what a refused new run removes
RUN_FILES = (HYDRA_DIR, RESUME_HYDRA_DIR, METRICS_FILE, GRAD_NORMS_FILE, SUMMARY_FILE, RUN_LOG, CHECKPOINT_DIR,
             TRANSLATIONS_FILE, ATTENTION_FILE, SUBMISSION_FILE, FINDING_FILE, CURVES_PLOT, GRAD_NORMS_PLOT,
             ATTENTION_PLOT)


_UMASK = os.umask(0o022)  # read once (setting it is the only way to read it), and put back at once
os.umask(_UMASK)


def atomic_write(path: Path, text: str, *, durable: bool = False) -> None:
    """Write ``text`` to a temp file of its own beside ``path``, then rename it over ``path``: a reader (or a
    kill at any instant) sees the old file or the new one, never half of one. ``durable``: fsync first."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would have made it: mkstemp's files are private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def csv_text(rows: list[list], *, header: Optional[list[str]] = None) -> str:
    """Rows (and a header) as CSV text, for ``atomic_write``."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def recorded_overrides_path(run_dir: Path) -> Path:
    """The command line a run was started with, as Hydra recorded it."""
    return Path(run_dir) / HYDRA_DIR / OVERRIDES_RECORD


def recorded_config_path(run_dir: Path) -> Path:
    return Path(run_dir) / HYDRA_DIR / CONFIG_RECORD


def recorded_hydra_path(run_dir: Path) -> Path:
    """Hydra's own settings for the run, the options each group was composed from among them."""
    return Path(run_dir) / HYDRA_DIR / HYDRA_RECORD


def checkpoint_file(run_dir: Path, best: bool = False) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / (BEST_CHECKPOINT if best else LAST_CHECKPOINT)


def run_dir_of_checkpoint(path: Path) -> Path:
    """outputs/.../checkpoints/last.pt -> outputs/...; a checkpoint elsewhere -> its folder."""
    path = Path(path)
    return path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent


def fold_dir(run_dir: Path, fold: int) -> Path:
    return Path(run_dir) / FOLD_DIR.format(fold)


def display_path(path: Path) -> str:
    """Relative to the working directory when inside it (shorter, copy-pasteable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def find_checkpoint(resume: str, *, run_dir: Optional[str] = None) -> Optional[Path]:
    """The checkpoint ``resume=`` names: a run dir's checkpoints/last.pt, or a checkpoint file.

    None: a run dir that has no checkpoint yet: one with a recorded command line (killed before its
    first checkpoint: the run starts again from its record), or one that holds nothing of a run (killed
    before its record: the run starts from the beginning). A dir that does not exist is such a dir when
    the same command names it as its run dir too (``run_dir``, from ``hydra.run.dir``). Any other path is a
    ConfigError."""
    path = Path(resume).expanduser()
    if path.is_dir():
        if checkpoint_file(path).is_file():
            return checkpoint_file(path)
        if recorded_overrides_path(path).is_file() or not any(p for p in path.iterdir() if p.name != HYDRA_DIR):
            return None
        raise ConfigError(f"resume={resume}: no {CHECKPOINT_DIR}/{LAST_CHECKPOINT} and no {HYDRA_DIR}/ record in that "
                          f"dir; is it a dlexp run dir?")
    if not path.exists():
        if run_dir is not None and Path(run_dir).expanduser().absolute() == path.absolute():
            return None  # the command's own run dir, not made yet: its run starts from the beginning
        raise ConfigError(f"resume={resume}: no such run dir or checkpoint; check the path")
    return path


def run_dir_of(resume: Optional[str], default: str) -> str:
    """The run dir a (possibly resumed) run writes to: the original one when resuming (a resolver in train.yaml)."""
    if not resume:
        return default
    path = Path(resume).expanduser()
    return str(run_dir_of_checkpoint(path) if path.is_file() else path)


def sweep_dir_of(name: Optional[str], default: str) -> str:
    """A named sweep's dir, the same for every run of the same command (a resolver in train.yaml)."""
    return f"{SWEEPS_DIR}/{name}" if name else default
