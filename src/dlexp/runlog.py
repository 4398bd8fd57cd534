"""Everything a run reports: console lines, the progress bar, metrics.csv and summary.json.

The training loop hands over plain dicts of floats; this module decides how they
are shown and stored. Only the main process (rank 0) writes files.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
LONG_KEYS = {"hint", "resume_with", "error"}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON via a temp file + rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=_jsonable)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _display_path(path: Path) -> str:
    """Relative to the working directory when inside it (shorter, copy-pasteable)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3e}" if (value != 0 and abs(value) < 1e-3) else f"{value:.4f}"
    return str(value)


def format_epoch(row: dict[str, Any]) -> str:
    """``epoch   3  lr 1.000e-03 | train loss 0.2100 acc 0.9400 | val loss 0.2500 acc 0.9300 | 0.41 s``"""
    parts = [f"epoch {row['epoch']:>3}", f"lr {row['lr']:.3e}"]
    for split in ("train", "val"):
        stats = " ".join(f"{k.split('/', 1)[1]} {_fmt(v)}" for k, v in row.items() if k.startswith(split + "/"))
        parts.append(f"{split} {stats}")
    parts.append(f"{row['epoch_seconds']:.2f} s")
    return " | ".join(parts)


class RunLog:
    def __init__(self, run_dir: Path, *, is_main: bool = True, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        console = Console(highlight=False)
        # Not a terminal (CI, a pipe, a log file): a wide fixed width keeps one line per epoch.
        self.console = console if console.is_terminal else Console(highlight=False, width=200)
        self.show_progress = progress and is_main and self.console.is_terminal
        self._csv_columns: Optional[list[str]] = None

    # -- console ---------------------------------------------------------
    def info(self, message: str) -> None:
        if self.is_main:
            self.console.print(message)

    def progress_bar(self) -> Progress:
        """A live bar: batches done, running loss and throughput (examples/s)."""
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]} ex/s"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            disable=not self.show_progress,
        )

    # -- files -----------------------------------------------------------
    def log_epoch(self, row: dict[str, Any]) -> None:
        """Append one epoch to metrics.csv (flushed: a kill never loses a finished epoch) and print it."""
        if not self.is_main:
            return
        path = self.run_dir / METRICS_FILE
        if self._csv_columns is None:
            self._csv_columns = list(row)
            if path.exists() and path.stat().st_size > 0:
                with open(path, newline="") as handle:
                    self._csv_columns = next(csv.reader(handle))
            else:
                with open(path, "w", newline="") as handle:
                    csv.writer(handle).writerow(self._csv_columns)
        with open(path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self._csv_columns, extrasaction="ignore").writerow(row)
            handle.flush()
            os.fsync(handle.fileno())
        self.console.print(format_epoch(row))

    def keep_epochs_up_to(self, last_epoch: int) -> None:
        """Drop metrics.csv rows after ``last_epoch`` (written, but not checkpointed, before a kill)."""
        path = self.run_dir / METRICS_FILE
        if not self.is_main or not path.exists():
            return
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_epoch]
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        self._csv_columns = rows[0]

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.is_main:
            write_json_atomic(self.run_dir / SUMMARY_FILE, summary)

    def summary_table(self, summary: dict[str, Any]) -> None:
        if not self.is_main:
            return
        table = Table(title="Run summary", show_header=True, header_style="bold")
        table.add_column("key")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            if isinstance(value, (dict, list)) or key in LONG_KEYS:
                continue  # printed as their own lines
            table.add_row(key, _fmt(value))
        self.console.print(table)
        self.console.print(f"results in {_display_path(self.run_dir)} ({summary.get('wall_seconds', 0):.1f} s)")
