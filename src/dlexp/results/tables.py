"""A sweep's summary written out: summary.csv (one row per config), jobs.csv (one per job), summary.md,
the sweep plots, and the console table.

Nothing here imports torch, so ``python -m dlexp.report`` starts fast.
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dlexp.results import plots
from dlexp.results.report import (
    SEED_KEY, STATUSES, Group, Job, SweepReport, build_report, short_value,
)
from dlexp.runs.hints import continue_sweep_command
from dlexp.runs.record import RunDir
from dlexp.runs.sweep import read_command
from dlexp.runs.status import Status
from dlexp.runs.files import (
    COMPARISON_PLOT, CURVES_PLOT, HEATMAP_PLOT, JOBS_CSV, SUMMARY_CSV, SUMMARY_MD, atomic_write, csv_text,
    display_path,
)


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
    others = dict.fromkeys(j.status for j in group.jobs if j.status != Status.COMPLETED)
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
    """The console's columns: rank, the swept axes, runs, the monitored val metric, the test scores of
    the same metric (a shifted test set's too, e.g. test_shifted/acc), the ranking metric, the diagnosis
    (and which of the full table's columns they are)."""
    full = _display_columns(report)
    metric = (report.monitor or "").split("/")[-1]
    tests = {k for k in report.metric_keys if k.split("/")[0].startswith("test") and k.endswith(f"/{metric}")}
    wanted = {"rank", *report.axes, "runs", f"best {report.monitor}", *tests, report.rank_key, "diagnosis"}
    keep = [c in wanted for c in full]
    return [c for c, k in zip(full, keep) if k], keep


def _title(report: SweepReport, key: str) -> str:
    return f"best {report.monitor}" if key == report.val_key else key


def display_rows(report: SweepReport) -> list[list[str]]:
    """The grouped table as text cells (Markdown and the console)."""
    shown = [k for k in report.metric_keys if not k.startswith("gap/")]
    ties = report.tied_with_best()
    rows = []
    for group in report.groups:
        rank = "1 (best)" if group.rank == 1 else str(group.rank or "-")
        rank += " (tie)" if group in ties else ""  # tied with rank 1 (the Best line names them); as narrow as "1 (best)"
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
    mean, std, values = best.stats(report.rank_key)
    better = "higher" if report.rank_mode == "max" else "lower"
    shown = report.monitor if report.rank_key == report.val_key else f"{report.rank_key} (sweep.rank_by)"
    ties = report.tied_with_best()
    named = ", ".join(report.label(g) for g in ties[:3]) + (f" and {len(ties) - 3} more" if len(ties) > 3 else "")
    tied = f"; tied with {named}: the sweep does not tell them apart" if ties else ""
    return (f"Best: {report.label(best)} with {shown} {_mean_std(mean, std, values)} "
            f"over {len(values)} run(s) ({better} is better{tied})")


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
    if report.pending():
        lines += ["", pending_line(report)]
    return "\n".join(lines) + "\n"


def pending_line(report: SweepReport) -> str:
    n = len(report.pending())
    command = continue_sweep_command(report.sweep_dir, read_command(report.sweep_dir))
    return f"{n} job{'s' * (n != 1)} not started yet: continue the sweep with {command}"


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    atomic_write(path, csv_text([[row.get(c, "") for c in columns] for row in rows], header=columns))


def write_tables(report: SweepReport) -> list[Path]:
    out = report.sweep_dir
    _write_csv(out / SUMMARY_CSV, group_rows(report))
    _write_csv(out / JOBS_CSV, job_rows(report))
    atomic_write(out / SUMMARY_MD, markdown(report))
    return [out / SUMMARY_CSV, out / JOBS_CSV, out / SUMMARY_MD]


# --------------------------------------------------------------------------
# Plots and the console


def write_sweep_plots(report: SweepReport) -> list[Path]:
    """comparison.png (val metric per config), curves.png (curves per config) and, with exactly two
    swept keys, heatmap.png."""
    if report.val_key is None or report.best is None:
        return []
    key = report.val_key
    stats = [g.stats(key) for g in report.groups]
    best = next(i for i, g in enumerate(report.groups) if g.rank == 1)
    written = [plots.plot_comparison(
        [report.label(g) for g in report.groups], [s[2] for s in stats], [s[0] for s in stats], [s[1] for s in stats],
        best=best, metric=f"best {report.monitor}", path=report.sweep_dir / COMPARISON_PLOT,
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
                                          mode=report.mode or "max", path=report.sweep_dir / HEATMAP_PLOT))
    return written


def _sweep_curves(report: SweepReport) -> Path:
    """curves.png: each config's train and val curves over the epochs, mean +/- std over its seeds."""
    configs = [(report.label(g), [RunDir(j.path).metrics() for j in g.completed()]) for g in report.groups]
    metric = (report.monitor or "val/loss").split("/", 1)[1]
    metrics = ["loss"] if metric == "loss" else ["loss", metric]
    return plots.plot_sweep_curves([c for c in configs if c[1]], metrics, report.sweep_dir / CURVES_PLOT,
                                   title=f"{len(report.groups)} configs, {len(report.jobs)} jobs")


def print_report(report: SweepReport, written: list[Path], console: Any = None) -> None:
    """The grouped table (best row highlighted), the failures, and where the files are."""
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=200)
    # The console shows the columns that rank the configs: with two axes and mean ± std cells, 80 columns fit
    # them whole (one space of padding between columns, not two); summary.md and summary.csv have every metric.
    columns, keep = _console_columns(report)
    table = Table(title=f"Sweep summary: {headline(report)}", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for i, column in enumerate(columns):
        title = column.rsplit(".", 1)[-1] if column in report.axes else column  # regularizer.dropout -> dropout
        table.add_column(title, justify="right" if i == 0 or " " in column or "/" in column else "left")
    for group, cells in zip(report.groups, display_rows(report)):
        shown = [Text(c.replace(" ± ", "±")) for c, k in zip(cells, keep) if k]  # as written, never rich markup
        table.add_row(*shown, style="bold green" if group.rank == 1 else None)
    console.print(table)
    say = functools.partial(console.print, markup=False, soft_wrap=True)  # a user's [list] stays; a command, one line
    if report.fixed:
        say(f"same in every job: {' '.join(report.fixed)}")
    say(best_line(report))
    for job in report.unfinished():
        if job.status != Status.PRUNED:  # a search's pruned trial is a result, and its row says so
            say(Text.assemble((f"job {job.name} {job.status}", "red"), f" ({' '.join(job.overrides)}): {job.reason}"))
    if report.pending():
        say(pending_line(report))
    if written:
        names = ", ".join(p.name for p in written)
        say(f"sweep summary in {display_path(report.sweep_dir)}: {names}")


def summarize_sweep(sweep_dir: Path, *, run_plots: bool = False, console: Any = None) -> SweepReport:
    """Build, write and print the summary of ``sweep_dir``; ``run_plots`` also redraws each job's plots."""
    report = build_report(sweep_dir)
    written = write_tables(report)
    written += write_sweep_plots(report)
    if run_plots:
        for job in report.jobs:
            plots.write_run_plots(job.path)
    print_report(report, written, console)
    return report
