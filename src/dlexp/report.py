"""Sweep summaries: one table per sweep, grouped over seeds, rebuilt from the files the jobs wrote.

``python -m dlexp.report SWEEP_DIR`` (and the end of every ``-m`` run) reads each
job directory under the sweep dir:

- ``.hydra/overrides.yaml``: the job's command-line overrides;
- ``summary.json``: status (``completed``, ``failed``), epochs, ``best/<monitor>``,
  ``test/*``, the generalization gap and the diagnosis. A job dir without it is
  ``incomplete`` (still running, or killed).

Jobs with the same overrides apart from ``seed`` form a group; each group gets the
mean and the sample standard deviation (n - 1) over its completed jobs. The tables
go to ``summary.csv`` (groups), ``jobs.csv`` (one row per job) and ``summary.md``,
and to the console. Nothing here imports torch, so the command starts fast.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from dlexp.util import display_path

SUMMARY_CSV = "summary.csv"
JOBS_CSV = "jobs.csv"
SUMMARY_MD = "summary.md"
SEED_KEY = "seed"
STATUSES = ("completed", "failed", "diverged", "interrupted", "incomplete")  # summary.csv has a count of each


@dataclass
class Job:
    name: str  # path under the sweep dir, e.g. "3"
    path: Path
    overrides: list[str]
    status: str  # completed | failed | incomplete
    summary: dict[str, Any]
    epochs: Optional[int]  # epochs run; for an incomplete job, the rows in its metrics.csv

    @property
    def seed(self) -> Optional[str]:
        return next((v for k, v in map(_split, self.overrides) if k == SEED_KEY), None)

    @property
    def reason(self) -> str:
        """Why a job has no complete result: its error, its divergence hint, or a missing summary."""
        if not self.summary:
            return "no summary.json: still running, or killed"
        return str(self.summary.get("error") or self.summary.get("hint") or self.summary.get("stop_reason", ""))

    def value(self, key: str) -> float:
        value = self.summary.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


@dataclass
class Group:
    key: tuple[str, ...]  # the overrides minus the seed
    jobs: list[Job] = field(default_factory=list)
    rank: Optional[int] = None  # 1 = best mean of the monitored val metric

    def completed(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "completed"]

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
    metric_keys: list[str]  # columns: best/<monitor>, test/*, gap/best/*

    @property
    def val_key(self) -> Optional[str]:
        return f"best/{self.monitor}" if self.monitor else None

    @property
    def best(self) -> Optional[Group]:
        return next((g for g in self.groups if g.rank == 1), None)

    def unfinished(self) -> list[Job]:
        """Jobs without a complete result: failed, diverged, interrupted, incomplete."""
        return [j for j in self.jobs if j.status != "completed"]

    def problems(self) -> list[Job]:
        """Unfinished jobs that are not an experimental result (a diverged run is one)."""
        return [j for j in self.unfinished() if j.status != "diverged"]

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
    """Directories under ``sweep_dir`` (or itself) that hold a Hydra job record."""
    dirs = {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml") if ".submitit" not in p.parts}
    return sorted(dirs, key=lambda d: _natural(d.relative_to(sweep_dir).as_posix()))


def load_job(sweep_dir: Path, job_dir: Path) -> Job:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    summary_path = job_dir / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError:
            summary = {"status": "failed", "error": "summary.json is not valid JSON"}
    status = str(summary.get("status", "incomplete"))
    epochs = summary.get("epochs_run")
    if epochs is None and (job_dir / "metrics.csv").is_file():
        with open(job_dir / "metrics.csv", newline="") as handle:
            epochs = max(sum(1 for _ in handle) - 1, 0)  # data rows, header excluded
    name = job_dir.relative_to(sweep_dir).as_posix() if job_dir != sweep_dir else job_dir.name
    return Job(name, job_dir, [str(o) for o in overrides], status, summary, epochs)


def build_report(sweep_dir: Path) -> SweepReport:
    """Read every job under ``sweep_dir`` and group them; raises FileNotFoundError when there is none."""
    sweep_dir = Path(sweep_dir)
    jobs = [load_job(sweep_dir, d) for d in find_job_dirs(sweep_dir)]
    if not jobs:
        raise FileNotFoundError(f"no runs found under {sweep_dir} (a job dir holds .hydra/overrides.yaml)")
    groups: dict[tuple[str, ...], Group] = {}
    for job in jobs:
        key = tuple(o for o in job.overrides if _split(o)[0] != SEED_KEY)
        groups.setdefault(key, Group(key)).jobs.append(job)
    keys = list(dict.fromkeys(_split(o)[0] for g in groups for o in g))
    settings = [dict(map(_split, g)) for g in groups]
    axes = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    fixed = [o for o in next(iter(groups)) if _split(o)[0] not in axes]
    monitor, mode = _monitor(jobs)
    report = SweepReport(sweep_dir, jobs, list(groups.values()), axes, fixed, monitor, mode, [])
    report.metric_keys = _metric_keys(report)
    _rank(report)
    return report


def _monitor(jobs: list[Job]) -> tuple[Optional[str], Optional[str]]:
    """The (monitor, mode) most jobs used; groups are ranked on it."""
    seen = Counter((j.summary["monitor"], j.summary.get("mode", "max")) for j in jobs if "monitor" in j.summary)
    return seen.most_common(1)[0][0] if seen else (None, None)


def _metric_keys(report: SweepReport) -> list[str]:
    present = {k for j in report.jobs for k, v in j.summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tests = sorted(k for k in present if k.startswith("test/"))
    gaps = sorted(k for k in present if k.startswith("gap/best/"))
    return ([report.val_key] if report.val_key in present else []) + tests + gaps


def _rank(report: SweepReport) -> None:
    if report.val_key is None:
        return
    scored = []
    for i, group in enumerate(report.groups):
        same_monitor = all(j.summary.get("monitor") == report.monitor for j in group.completed())
        mean = group.stats(report.val_key)[0]
        if same_monitor and math.isfinite(mean):
            scored.append((-mean if report.mode == "max" else mean, i, group))
    for rank, (_, _, group) in enumerate(sorted(scored, key=lambda t: t[:2]), start=1):
        group.rank = rank


# --------------------------------------------------------------------------
# Tables


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3e}" if value != 0 and not 1e-3 <= abs(value) < 1e5 else f"{value:.4f}"


def _mean_std(mean: float, std: float, values: list[float]) -> str:
    """``0.9722 ± 0.0046``; ``-`` when no completed job reports the value, ``nan`` when one diverged."""
    if not values:
        return "-"
    if not math.isfinite(mean):
        return str(mean)
    return _fmt(mean) + (f" ± {_fmt(std)}" if math.isfinite(std) else "")


def _num(value: float) -> str:
    """Full precision for the CSV files (repr round-trips; nan and inf as such)."""
    return repr(value)


def _diagnoses(jobs: list[Job]) -> str:
    counts = Counter(str(j.summary["diagnosis"]) for j in jobs if j.summary.get("diagnosis"))
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def _runs(group: Group) -> str:
    done, total = len(group.completed()), len(group.jobs)
    text = f"{done}" if done == total else f"{done} of {total}"
    others = dict.fromkeys(j.status for j in group.jobs if j.status != "completed")
    extra = [f"{group.count(s)} {s}" for s in others]
    return text + (f" ({', '.join(extra)})" if extra else "")


def group_rows(report: SweepReport) -> list[dict[str, str]]:
    """summary.csv: one row per group, full-precision numbers."""
    rows = []
    for group in report.groups:
        row = {"rank": str(group.rank or ""), "best": str(group.rank == 1).lower()}
        row.update(report.axis_values(group))
        row["overrides"] = " ".join(group.key)
        row["jobs"] = str(len(group.jobs))
        for status in STATUSES:
            row[status] = str(group.count(status))
        row["seeds"] = " ".join(j.seed or "" for j in group.jobs)
        epochs = group.stats("epochs_run")
        row["epochs_mean"] = _num(epochs[0]) if epochs[2] else ""
        for key in report.metric_keys:
            mean, std, values = group.stats(key)
            row[f"{key}_mean"] = _num(mean) if values else ""
            row[f"{key}_std"] = _num(std) if math.isfinite(std) else ""
        row["diagnosis"] = _diagnoses(group.jobs)
        rows.append(row)
    return rows


def job_rows(report: SweepReport) -> list[dict[str, str]]:
    """jobs.csv: one row per job."""
    rows = []
    for job in report.jobs:
        row = {"job": job.name, "overrides": " ".join(job.overrides), "seed": job.seed or "", "status": job.status,
               "epochs": "" if job.epochs is None else str(job.epochs),
               "best_epoch": str(job.summary.get("best_epoch", ""))}
        row.update({key: _num(job.value(key)) if key in job.summary else "" for key in report.metric_keys})
        row["diagnosis"] = str(job.summary.get("diagnosis", ""))
        row["wall_seconds"] = _num(job.value("wall_seconds")) if "wall_seconds" in job.summary else ""
        row["error"] = str(job.summary.get("error", ""))
        rows.append(row)
    return rows


def _display_columns(report: SweepReport) -> list[str]:
    shown = [k for k in report.metric_keys if not k.startswith("gap/")]
    return ["rank", *report.axes, "runs", "epochs", *[_title(report, k) for k in shown], "diagnosis"]


def _console_columns(report: SweepReport) -> tuple[list[str], list[bool]]:
    """The console's columns: rank, the swept axes, runs, the monitored val metric, the test
    score of the same metric, the diagnosis (and which of the full table's columns they are)."""
    full = _display_columns(report)
    metric = (report.monitor or "").split("/")[-1]
    wanted = {"rank", *report.axes, "runs", f"best {report.monitor}", f"test/{metric}", "diagnosis"}
    keep = [c in wanted for c in full]
    return [c for c, k in zip(full, keep) if k], keep


def _title(report: SweepReport, key: str) -> str:
    return f"best {report.monitor}" if key == report.val_key else key


def display_rows(report: SweepReport) -> list[list[str]]:
    """The grouped table as text cells (Markdown and the console)."""
    shown = [k for k in report.metric_keys if not k.startswith("gap/")]
    rows = []
    for group in report.groups:
        rank = "1 (best)" if group.rank == 1 else str(group.rank or "-")
        cells = [rank, *map(short_value, report.axis_values(group).values()), _runs(group)]
        epochs = group.stats("epochs_run")[0]
        cells.append(f"{epochs:.1f}".removesuffix(".0") if math.isfinite(epochs) else "-")
        cells += [_mean_std(*group.stats(k)) for k in shown]
        cells.append(_diagnoses(group.jobs) or "-")
        rows.append(cells)
    return rows


def headline(report: SweepReport) -> str:
    counts = Counter(j.status for j in report.jobs)
    parts = [f"{counts[s]} {s}" for s in STATUSES if counts[s]]
    parts += [f"{n} {s}" for s, n in counts.items() if s not in STATUSES]
    jobs, configs = len(report.jobs), len(report.groups)
    return f"{jobs} job{'s' * (jobs != 1)} in {configs} config{'s' * (configs != 1)}: {', '.join(parts)}"


def best_line(report: SweepReport) -> str:
    best = report.best
    if best is None:
        return "Best: none (no completed job)"
    mean, std, values = best.stats(report.val_key)
    better = "higher" if report.mode == "max" else "lower"
    return (f"Best: {report.label(best)} with {report.monitor} {_mean_std(mean, std, values)} "
            f"over {len(values)} run(s) ({better} is better)")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(report: SweepReport) -> str:
    """summary.md: the grouped table (best row in bold), every job, and the failures with their errors."""
    columns = _display_columns(report)
    lines = ["# Sweep summary", "", headline(report) + ".", ""]
    if report.fixed:
        lines += [f"Same in every job: `{' '.join(report.fixed)}`", ""]
    if report.monitor:
        lines += [f"Jobs that differ only in `{SEED_KEY}` form one config; values are mean ± sample std "
                  f"over its completed jobs. Ranked by best `{report.monitor}` "
                  f"({'higher' if report.mode == 'max' else 'lower'} is better).", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for group, cells in zip(report.groups, display_rows(report)):
        cells = [_md_cell(c) for c in cells]
        if group.rank == 1:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", best_line(report), "", "## Jobs", ""]
    job_columns = ["job", "overrides", "status", "epochs", *[_title(report, k) for k in report.metric_keys if not k.startswith("gap/")], "diagnosis"]
    lines += ["| " + " | ".join(job_columns) + " |", "|" + "|".join("---" for _ in job_columns) + "|"]
    for job in report.jobs:
        cells = [job.name, f"`{' '.join(job.overrides)}`", job.status, "-" if job.epochs is None else str(job.epochs)]
        cells += [_fmt(job.value(k)) if k in job.summary else "-" for k in report.metric_keys if not k.startswith("gap/")]
        cells.append(str(job.summary.get("diagnosis", "-")))
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    unfinished = report.unfinished()
    if unfinished:
        lines += ["", "## Jobs that did not complete", ""]
        for job in unfinished:
            lines.append(f"- job {job.name} ({job.status}, `{' '.join(job.overrides)}`): {job.reason}")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def write_tables(report: SweepReport) -> list[Path]:
    out = report.sweep_dir
    _write_csv(out / SUMMARY_CSV, group_rows(report))
    _write_csv(out / JOBS_CSV, job_rows(report))
    tmp = out / f".{SUMMARY_MD}.tmp"
    tmp.write_text(markdown(report))
    tmp.replace(out / SUMMARY_MD)
    return [out / SUMMARY_CSV, out / JOBS_CSV, out / SUMMARY_MD]


# --------------------------------------------------------------------------
# Plots and the console


def write_sweep_plots(report: SweepReport) -> list[Path]:
    """comparison.png (val metric per config), curves.png (curves per config) and, with exactly two
    swept keys, heatmap.png."""
    from dlexp import plots

    if report.val_key is None or report.best is None:
        return []
    key = report.val_key
    stats = [g.stats(key) for g in report.groups]
    best = next(i for i, g in enumerate(report.groups) if g.rank == 1)
    written = [plots.plot_comparison(
        [report.label(g) for g in report.groups], [s[2] for s in stats], [s[0] for s in stats], [s[1] for s in stats],
        best=best, metric=f"best {report.monitor}", path=report.sweep_dir / plots.COMPARISON_FILE,
    )]
    written.append(_sweep_curves(report))
    if len(report.axes) == 2:
        row_key, col_key = report.axes
        cells = {tuple(report.axis_values(g).values()): g.stats(key)[:2] for g in report.groups}
        rows = list(dict.fromkeys(report.axis_values(g)[row_key] for g in report.groups))
        cols = list(dict.fromkeys(report.axis_values(g)[col_key] for g in report.groups))
        grid = [[cells.get((r, c), (math.nan, math.nan)) for c in cols] for r in rows]
        rows, cols = [short_value(r) for r in rows], [short_value(c) for c in cols]
        written.append(plots.plot_heatmap(row_key, col_key, rows, cols, grid, metric=f"best {report.monitor}",
                                          mode=report.mode or "max", path=report.sweep_dir / plots.HEATMAP_FILE))
    return written


def _sweep_curves(report: SweepReport) -> Path:
    """curves.png: each config's train and val curves over the epochs, mean +/- std over its seeds."""
    from dlexp import plots

    configs = [(report.label(g), [plots.read_csv(j.path / "metrics.csv") for j in g.completed()]) for g in report.groups]
    metric = (report.monitor or "val/loss").split("/", 1)[1]
    metrics = ["loss"] if metric == "loss" else ["loss", metric]
    return plots.plot_sweep_curves([c for c in configs if c[1]], metrics, report.sweep_dir / plots.CURVES_FILE,
                                   title=f"{len(report.groups)} configs, {len(report.jobs)} jobs")


def print_report(report: SweepReport, written: list[Path], console: Any = None) -> None:
    """The grouped table (best row highlighted), the failures, and where the files are."""
    from rich.console import Console
    from rich.table import Table

    from rich import box

    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=200)
    # The console shows the columns that rank the configs (80 columns fit them); summary.md and
    # summary.csv have every metric.
    columns, keep = _console_columns(report)
    table = Table(title=f"Sweep summary: {headline(report)}", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, column in enumerate(columns):
        title = column.rsplit(".", 1)[-1] if column in report.axes else column  # regularizer.dropout -> dropout
        table.add_column(title, justify="right" if i == 0 or " " in column or "/" in column else "left")
    for group, cells in zip(report.groups, display_rows(report)):
        shown = [c.replace(" ± ", "±") for c, k in zip(cells, keep) if k]
        table.add_row(*shown, style="bold green" if group.rank == 1 else None)
    console.print(table)
    if report.fixed:
        console.print(f"same in every job: {' '.join(report.fixed)}")
    console.print(best_line(report))
    for job in report.unfinished():
        console.print(f"[red]job {job.name} {job.status}[/red] ({' '.join(job.overrides)}): {job.reason}")
    if written:
        names = ", ".join(p.name for p in written)
        console.print(f"sweep summary in {display_path(report.sweep_dir)}: {names}")


def summarize_sweep(sweep_dir: Path, *, run_plots: bool = False, console: Any = None) -> SweepReport:
    """Build, write and print the summary of ``sweep_dir``; ``run_plots`` also redraws each job's plots."""
    from dlexp import findings, plots

    report = build_report(sweep_dir)
    written = write_tables(report)
    written += write_sweep_plots(report)
    if run_plots:
        for job in report.jobs:
            plots.write_run_plots(job.path)
    print_report(report, written, console)
    findings.after_sweep(report.sweep_dir, [job.path for job in report.jobs])  # finding.json, for course presets
    return report


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dlexp.report",
        description="Rebuild the summary tables (summary.csv, jobs.csv, summary.md) and plots of a finished or partial sweep.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir, e.g. outputs/multirun/2026-11-24/10-00-00-123456")
    parser.add_argument("--no-run-plots", action="store_true", help="do not redraw each job's curves.png and grad_norms.png")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a directory; pass a sweep dir such as outputs/multirun/<date>/<time>",
              file=sys.stderr)
        return 2
    try:
        summarize_sweep(args.sweep_dir, run_plots=not args.no_run_plots)
    except FileNotFoundError as err:
        print(f"error: {err}; pass the directory that holds the job dirs 0/, 1/, ...", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
