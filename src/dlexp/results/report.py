"""A sweep read back from the files its jobs wrote: its jobs, grouped over seeds, and their ranking.

``python -m dlexp.report SWEEP_DIR`` (and the end of every ``-m`` run) reads each
job directory under the sweep dir:

- ``.hydra/overrides.yaml``: the job's command-line overrides;
- ``summary.json``: status (``completed``, ``failed``), epochs, ``best/<monitor>``,
  ``test/*``, the generalization gap and the diagnosis. A job dir without it is
  ``incomplete`` (still running, or killed).

Jobs with the same overrides apart from ``seed`` form a group; each group gets the
mean and the sample standard deviation (n - 1) over its completed jobs; ``dlexp.results.tables``
writes them out. Nothing here imports torch, so the command starts fast.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


from dlexp.runs.files import HYDRA_DIR, METRICS_FILE, OVERRIDES_RECORD
from dlexp.runs.record import RunDir, RunFileError
from dlexp.runs.status import OUTCOMES, Status
from dlexp.runs.sweep import NOT_SEARCH_IDENTITY, read_manifest

SEED_KEY = "seed"
# summary.csv has a count of each; pending and running come from the jobs manifest of a sweep still going on
STATUSES = OUTCOMES


@dataclass
class Job:
    name: str  # path under the sweep dir, e.g. "3"
    path: Path
    overrides: list[str]
    status: Status
    summary: dict[str, Any]
    epochs: Optional[int]  # epochs run; for an incomplete job, the rows in its metrics.csv

    @property
    def seed(self) -> Optional[str]:
        return next((v for k, v in map(_split, self.overrides) if k == SEED_KEY), None)

    @property
    def reason(self) -> str:
        """Why a job has no complete result: its error, its divergence hint, or a missing summary."""
        if self.status in (Status.PENDING, Status.RUNNING):
            return f"{self.status} (jobs.json)"
        if not self.summary:
            return "no summary.json: still running, or killed"
        if self.status == Status.INTERRUPTED:
            by = f" by {self.summary['signal']}" if self.summary.get("signal") else ""
            return f"stopped{by}; it continues from its checkpoint when the sweep does"
        return str(self.summary.get("error") or self.summary.get("hint") or self.summary.get("stop_reason") or self.status)

    def value(self, key: str) -> float:
        value = self.summary.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


@dataclass
class Group:
    key: tuple[str, ...]  # the overrides minus the seed
    jobs: list[Job] = field(default_factory=list)
    rank: Optional[int] = None  # 1 = best mean of the monitored val metric

    def completed(self) -> list[Job]:
        return [j for j in self.jobs if j.status == Status.COMPLETED]

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)

    def stats(self, key: str) -> tuple[float, float, list[float]]:
        """(mean, sample std, values) of ``key`` over the completed jobs that report it.

        A NaN or infinite value (a diverged run) makes the mean NaN or infinite: it is
        not dropped. The std needs two finite values; it is NaN otherwise.
        """
        values = [j.value(key) for j in self.completed() if key in j.summary]
        if not values:
            return math.nan, math.nan, values
        mean = math.fsum(values) / len(values)
        finite = len(values) >= 2 and all(math.isfinite(v) for v in values)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if finite else math.nan
        return mean, std, values


@dataclass
class SweepReport:
    sweep_dir: Path
    jobs: list[Job]
    groups: list[Group]
    axes: list[str]  # override keys whose value differs between groups, in command-line order
    fixed: list[str]  # overrides shared by every job (seed excluded)
    monitor: Optional[str]  # e.g. "val/acc"
    mode: Optional[str]  # "max" or "min"
    metric_keys: list[str]  # columns: best/<monitor>, test*/* (shifted test sets too), gap/best/*
    rank_by: Optional[str] = None  # sweep.rank_by: the metric to rank on; None = val_key

    @property
    def val_key(self) -> Optional[str]:
        return f"best/{self.monitor}" if self.monitor else None

    @property
    def rank_key(self) -> Optional[str]:
        return self.rank_by or self.val_key

    @property
    def rank_mode(self) -> Optional[str]:
        """The monitor's mode, or for ``rank_by``: min for a loss or an error, max otherwise (acc, bleu)."""
        if not self.rank_by:
            return self.mode
        return "min" if self.rank_by.rpartition("/")[2] in ("loss", "rmse", "mse", "mae", "error") else "max"

    @property
    def best(self) -> Optional[Group]:
        return next((g for g in self.groups if g.rank == 1), None)

    def tied_with_best(self) -> list[Group]:
        """The other ranked configs whose ranking metric's mean equals the best one's (ranked after it only
        by their order in the sweep)."""
        best = self.best
        if best is None:
            return []
        mean = best.stats(self.rank_key)[0]
        return [g for g in self.groups if g is not best and g.rank and g.stats(self.rank_key)[0] == mean]

    def unfinished(self) -> list[Job]:
        """Jobs that ran without a complete result: failed, diverged, interrupted, incomplete, running."""
        return [j for j in self.jobs if j.status not in (Status.COMPLETED, Status.PENDING)]

    def pending(self) -> list[Job]:
        """Jobs of the grid that have not started (a sweep still running, or stopped before them)."""
        return [j for j in self.jobs if j.status == Status.PENDING]

    def problems(self) -> list[Job]:
        """Unfinished jobs that are not an experimental result (a diverged run is one, a pruned trial too)."""
        return [j for j in self.unfinished() if j.status not in (Status.DIVERGED, Status.PRUNED)] + self.pending()

    def axis_values(self, group: Group) -> dict[str, str]:
        values = dict(map(_split, group.key))
        return {axis: values.get(axis, "") for axis in self.axes}

    def label(self, group: Group) -> str:
        """Short text for a config: its swept values, e.g. ``weight_decay=0.001 dropout=0.5``."""
        keys = [a.rsplit(".", 1)[-1] for a in self.axes]
        names = [k if keys.count(k) == 1 else a for k, a in zip(keys, self.axes)]
        values = [short_value(v) for v in self.axis_values(group).values()]
        return " ".join(f"{k}={v}" for k, v in zip(names, values)) or "all jobs"


# --------------------------------------------------------------------------
# Reading a sweep


def how_it_runs(override: str) -> bool:
    """An override that changes how or how far a sweep runs, not what a job computes (threads, the progress
    bar, a search's trials and slots): never a column of the table, nor a setting of ``Best:``."""
    key = _split(override)[0]
    return key.startswith(NOT_SEARCH_IDENTITY) or key.split(".")[0] == "hparams_search"


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def short_value(text: str) -> str:
    """An override value for display: long floats (Optuna's samples) to 4 significant digits."""
    if len(text) <= 8:
        return text
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def _natural(name: str) -> list[Any]:
    """Sort key: job 10 after job 9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Directories under ``sweep_dir`` (or itself) that hold a job record: in the order the jobs manifest
    lists them (the order the sweep first launched them), the others after, in natural order."""
    dirs = {p.parent.parent for p in sweep_dir.rglob(f"{HYDRA_DIR}/{OVERRIDES_RECORD}") if ".submitit" not in p.parts}
    order = {name: i for i, name in enumerate(read_manifest(sweep_dir))}

    def key(d: Path) -> tuple[int, list[Any]]:
        name = d.relative_to(sweep_dir).as_posix()
        return order.get(name, len(order)), _natural(name)

    return sorted(dirs, key=key)


def load_job(sweep_dir: Path, job_dir: Path, manifest: Optional[dict[str, Any]] = None) -> Job:
    """A job from its dir; without a summary, its status in the manifest (running), else incomplete. A damaged
    summary makes the job failed, its error naming the file."""
    run = RunDir(job_dir)
    try:
        summary = run.summary(missing_ok=True)
    except RunFileError as err:
        summary = {"status": Status.FAILED, "error": str(err)}
    listed = (manifest or {}).get("status")
    if summary.get("status"):
        status = Status.of(summary["status"])
    elif listed == Status.FAILED and manifest and manifest.get("error"):  # its process died: the sweep said why
        status, summary = Status.FAILED, {"error": manifest["error"]}
    else:
        status = Status.of(listed) if listed in (Status.RUNNING, Status.INTERRUPTED) else Status.INCOMPLETE
    epochs = summary.get("epochs_run")
    if epochs is None and run.has(METRICS_FILE):
        epochs = run.epochs_logged()
    name = job_dir.relative_to(sweep_dir).as_posix() if job_dir != sweep_dir else job_dir.name
    return Job(name, job_dir, run.overrides(), status, summary, epochs)


def build_report(sweep_dir: Path) -> SweepReport:
    """Read every job under ``sweep_dir`` and group them; raises FileNotFoundError when there is none."""
    sweep_dir = Path(sweep_dir)
    manifest = read_manifest(sweep_dir)
    jobs = [load_job(sweep_dir, d, manifest.get(d.name)) for d in find_job_dirs(sweep_dir)]
    seen = {j.path.name for j in jobs}
    jobs += [Job(name, sweep_dir / name, [str(o) for o in entry.get("overrides", [])], Status.PENDING, {}, None)
             for name, entry in manifest.items() if name not in seen and entry.get("status") == Status.PENDING]
    if not jobs:
        raise FileNotFoundError(f"no runs found under {sweep_dir} (a job dir holds .hydra/overrides.yaml)")
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        key = tuple(o for o in job.overrides if _split(o)[0] != SEED_KEY and not how_it_runs(o))
        groups.setdefault(key, Group(key)).jobs.append(job)
    keys = list(dict.fromkeys(_split(o)[0] for g in groups for o in g))
    settings = [dict(map(_split, g)) for g in groups]
    axes = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    fixed = [o for o in next(iter(groups)) if _split(o)[0] not in axes]
    monitor, mode = _monitor(jobs)
    report = SweepReport(sweep_dir, jobs, list(groups.values()), axes, fixed, monitor, mode, [], _rank_by(jobs))
    report.metric_keys = _metric_keys(report)
    _rank(report)
    return report


def _monitor(jobs: list[Job]) -> tuple[Optional[str], Optional[str]]:
    """The (monitor, mode) most jobs used; groups are ranked on it."""
    seen = Counter((j.summary["monitor"], j.summary.get("mode", "max")) for j in jobs if "monitor" in j.summary)
    return seen.most_common(1)[0][0] if seen else (None, None)


def _rank_by(jobs: list[Job]) -> Optional[str]:
    """``sweep.rank_by`` as the jobs' recorded configs give it (the first that says)."""
    for job in jobs:
        value = (RunDir(job.path).config(missing_ok=True).get("sweep") or {}).get("rank_by")
        if value:
            return str(value)
    return None


def _metric_keys(report: SweepReport) -> list[str]:
    present = {k for j in report.jobs for k, v in j.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tests = sorted(k for k in present if k.split("/")[0].startswith("test") and "/" in k)  # test_shifted/acc too
    gaps = sorted(k for k in present if k.startswith("gap/best/"))
    return ([report.val_key] if report.val_key in present else []) + tests + gaps


def _rank(report: SweepReport) -> None:
    key = report.rank_key
    if key is None:
        return
    scored = []
    for i, group in enumerate(report.groups):
        same_monitor = report.rank_by or all(j.summary.get("monitor") == report.monitor for j in group.completed())
        mean = group.stats(key)[0]
        if same_monitor and math.isfinite(mean):
            scored.append((-mean if report.rank_mode == "max" else mean, i, group))
    for rank, (_, _, group) in enumerate(sorted(scored, key=lambda t: t[:2]), start=1):
        group.rank = rank
