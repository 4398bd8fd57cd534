"""``python -m dlexp.report SWEEP_DIR``: rebuild a sweep's tables, plots and course finding from its files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from dlexp.cli.sweep import report_sweep


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
        report_sweep(args.sweep_dir, run_plots=not args.no_run_plots)
    except FileNotFoundError as err:
        print(f"error: {err}; pass the directory that holds the job dirs 0/, 1/, ...", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
