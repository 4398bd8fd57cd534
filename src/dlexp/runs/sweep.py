"""A sweep's jobs on disk: each job's dir, named by its overrides; what state a rerun finds it in; and
the jobs manifest (``jobs.json``) that says, while the sweep runs, which jobs are pending, running or done.

A job dir is named by what defines the job, not by its place in the grid, so that rerunning the
same command (a grid with a point added, reordered, interrupted half-way) finds each job's own dir:
``dropout=0.5,weight_decay=0.001-3fa2c1d0`` is the overrides' last key segments and values, cut to
stay readable, and a hash of the full, sorted overrides, so no two jobs share a dir.

Light: no torch, so the sweep's launcher process can use it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from dlexp.runs import files
from dlexp.runs.record import RunDir, RunFileError
from dlexp.runs.status import Status

# Overrides that change how a job runs or shows, not what it computes: left out of its identity, so a
# rerun on another machine (threads, device) or with the progress bar off still finds its jobs.
NOT_IDENTITY = ("sweep.", "trainer.progress", "trainer.log_every_n_steps", "trainer.num_threads", "trainer.device",
                "trainer.checkpoint_every_n_steps", "trainer.checkpoint_every_minutes")
# ...and, for a search's dir, what only changes how far or how wide the search runs: a rerun with more
# trials or slots continues the same study
NOT_SEARCH_IDENTITY = NOT_IDENTITY + ("hparams_search.n_trials", "hparams_search.slots", "hparams_search.jobs_per_gpu",
                                      "hparams_search.lease_seconds", "hydra/launcher", "hydra.launcher")
COMMAND_VARIABLE = "DLEXP_SWEEP_COMMAND"  # the sweep's command line (JSON), for its jobs' processes to record
SEARCHES_DIR = "outputs/search"  # a search's dir, named by its command, unless sweep.name names it
READABLE_CHARS = 64  # of a job dir's name, before its hash
LONG_PART = 20  # a setting longer than this goes after the short ones in the name


def identity(overrides: Sequence[str], ignored: tuple[str, ...] = NOT_IDENTITY) -> list[str]:
    """The overrides that define a job, sorted by key."""
    kept = [str(o) for o in overrides if not str(o).lstrip("+~").startswith(ignored)]
    return sorted(kept, key=lambda o: (o.lstrip("+~").split("=", 1)[0], o))


def search_dir(name: Optional[str], overrides: Sequence[str]) -> str:
    """A search's dir: the named sweep's, or ``outputs/search/<its command>``, the same for the same command."""
    if name:
        return files.sweep_dir_of(name, "")
    return f"{SEARCHES_DIR}/{job_dir_name(overrides, NOT_SEARCH_IDENTITY)}"


def job_dir_name(overrides: Sequence[str], ignored: tuple[str, ...] = NOT_IDENTITY) -> str:
    """``dropout=0.5,weight_decay=0.001-3fa2c1d0`` for a job's overrides; ``defaults-<hash>`` for none.

    Short settings come first (paths last, by their file name), so the swept values stay in sight."""
    defining = identity(overrides, ignored)
    digest = hashlib.sha1("\n".join(defining).encode()).hexdigest()[:8]
    parts = []
    for override in defining:
        key, _, value = override.lstrip("+~").partition("=")
        parts.append(f"{key.rsplit('.', 1)[-1]}={value.rstrip('/').rsplit('/', 1)[-1]}")
    parts.sort(key=lambda part: len(part) > LONG_PART)  # stable: key order within each kind
    readable = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", ",".join(parts))[:READABLE_CHARS].rstrip(",_") or "defaults"
    return f"{readable}-{digest}"


@dataclass
class JobState:
    """What a sweep's rerun finds in a job dir."""

    status: Status  # the summary's; else incomplete (files, but no summary) or new
    checkpoint: Optional[Path]  # checkpoints/last.pt, when there is one to continue from
    summary: dict[str, Any]


def job_state(job_dir: Path) -> JobState:
    """What ``job_dir`` holds; a damaged summary reads as a failed job (its error names the file), so that
    the sweep runs it again rather than stopping."""
    run = RunDir(job_dir)
    try:
        return JobState(run.status(), run.checkpoint, run.summary(missing_ok=True))
    except RunFileError as err:
        return JobState(Status.FAILED, run.checkpoint, {"status": Status.FAILED, "error": str(err)})


# --------------------------------------------------------------------------
# The jobs manifest


def manifest_path(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / files.JOBS_MANIFEST


@contextlib.contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    """One writer at a time: jobs of a parallel launcher (joblib, SLURM) end at the same moment."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(sweep_dir) / f".{files.JOBS_MANIFEST}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_manifest(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Job dir name -> its entry (overrides, status, times), in the order the jobs first appeared."""
    return _read(sweep_dir).get("jobs", {})


def read_command(sweep_dir: Path) -> Optional[list[str]]:
    """The command line that started the sweep (``dlexp.runs.hints`` builds the command that continues it)."""
    command = _read(sweep_dir).get("command")
    return [str(a) for a in command] if isinstance(command, list) else None


def _read(sweep_dir: Path) -> dict[str, Any]:
    path = manifest_path(sweep_dir)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise RunFileError(f"{files.display_path(path)} is damaged (not valid JSON: {err}); delete it and run the "
                           "sweep's command again: each job's dir still says how it ended") from None
    return data if isinstance(data, dict) else {}


def update_manifest(sweep_dir: Path, entries: dict[str, dict[str, Any]], *, only_new: bool = False) -> None:
    """Merge ``entries`` (job dir name -> fields) into the manifest; ``only_new``: add jobs it lacks, change none."""
    with _locked(sweep_dir):
        manifest = _read(sweep_dir)
        if os.environ.get(COMMAND_VARIABLE):  # the sweep's command line, from its main process
            manifest.setdefault("command", json.loads(os.environ[COMMAND_VARIABLE]))
        jobs = manifest.setdefault("jobs", {})
        for name, fields in entries.items():
            if only_new and name in jobs:
                continue
            jobs[name] = {**jobs.get(name, {}), **fields}
        files.atomic_write(manifest_path(sweep_dir), json.dumps(manifest, indent=1) + "\n")


def mark(sweep_dir: Path, job_dir: Path, status: Status, overrides: Optional[Sequence[str]] = None,
         error: Optional[str] = None) -> None:
    """Record a job's new status (and when), e.g. ``running`` as it starts, ``completed`` as it ends; ``error``
    says why a job failed that could not write its own summary (its process died)."""
    fields: dict[str, Any] = {"status": status, "started" if status == Status.RUNNING else "ended": _now()}
    if overrides is not None:
        fields["overrides"] = list(overrides)
    if error is not None:
        fields["error"] = error
    update_manifest(sweep_dir, {Path(job_dir).name: fields})


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
