"""``python -m dlexp.report DIR``: rebuild a sweep's tables, plots and course finding from its files; for a
single run's dir, print its report (summary and finding) and write nothing."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from dlexp.cli.sweep import report_sweep
from dlexp.results.plots import write_run_plots
from dlexp.runs.files import FINDING_FILE, METRICS_FILE, SUMMARY_FILE
from dlexp.runs.record import RunDir, RunFileError


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dlexp.report",
        description="Rebuild the summary tables (summary.csv, jobs.csv, summary.md) and plots of a finished or partial sweep.",
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir, e.g. outputs/multirun/2026-11-24/10-00-00-123456, "
                        "or one run's dir (its report is printed; nothing is written)")
    parser.add_argument("--no-run-plots", action="store_true", help="do not redraw each job's curves.png and grad_norms.png")
    parser.add_argument("--plots", action="store_true", help="for one run's dir: draw its curves.png and grad_norms.png "
                        "(a sweep's jobs leave them to this command)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a directory; pass a sweep dir such as outputs/multirun/<date>/<time>",
              file=sys.stderr)
        return 2
    if (args.sweep_dir / SUMMARY_FILE).is_file() or (args.sweep_dir / METRICS_FILE).is_file():
        if args.plots:
            for path in write_run_plots(args.sweep_dir):
                print(f"wrote {path}")
        return report_run(args.sweep_dir)  # one run, not a sweep: its report (and, with --plots, its plots)
    try:
        report_sweep(args.sweep_dir, run_plots=not args.no_run_plots)
    except FileNotFoundError as err:
        print(f"error: {err}; pass the directory that holds the job dirs 0/, 1/, ...", file=sys.stderr)
        return 2
    return 0


def report_run(run_dir: Path) -> int:
    """A single run's summary.json, one ``key: value`` a line, and its course finding; reads only."""
    run = RunDir(run_dir)
    try:
        summary = run.summary()
    except RunFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"Run report: {run_dir}")
    width = max(map(len, summary), default=0)
    for key, value in summary.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"  {key:<{width}}  {shown}")
    finding = run_dir / FINDING_FILE
    if finding.is_file():
        print(json.loads(finding.read_text()).get("text", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
