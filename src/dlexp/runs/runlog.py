"""Everything a run reports: console lines, the progress bar, metrics.csv, summary.json and TensorBoard.

The training loop hands over plain dicts of floats; this module decides how they
are shown and stored. Only the main process (rank 0) writes files. metrics.csv is
the record; the TensorBoard event files carry the same numbers for browsing.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from dlexp.config.schema import flatten
from dlexp.runs.files import METRICS_FILE, RUN_LOG, SUMMARY_FILE, atomic_write, csv_text, display_path
from dlexp.runs.record import RunDir, RunFileError
from dlexp.runs.status import Status

LONG_KEYS = {"hint", "resume_with", "error"}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON whole (``atomic_write``, fsynced), so readers never see half a file."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n", durable=True)


def record_failure(run_dir: Path, error: str) -> None:
    """Write ``summary.json`` with status failed, unless the run already wrote its own (failed, diverged, ...)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        if "status" in RunDir(run_dir).summary(missing_ok=True):
            return
    except RunFileError:
        pass  # an unreadable summary: replaced
    try:
        write_json_atomic(path, {"status": Status.FAILED, "error": error})
    except OSError:
        pass  # the run dir itself is unusable; the error was already printed


def record_interruption(run_dir: Path, signal: str, resume_with: str) -> str:
    """``status: interrupted`` in ``summary.json`` (its other entries kept), for a run a signal stopped
    outside the training loop; returns ``resume_with``, the command that continues it."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        summary = RunDir(run_dir).summary(missing_ok=True)
    except RunFileError:
        summary = {}  # a damaged summary is replaced: the run's state is its checkpoint's
    summary.update({"status": Status.INTERRUPTED, "signal": signal, "resume_with": resume_with})
    try:
        write_json_atomic(path, summary)
    except OSError:
        pass  # the run dir itself is unusable; the interruption is still said on the console
    return resume_with


def record_bug(run_dir: Path, trace: str, error: str) -> Optional[Path]:
    """A failure inside dlexp: its traceback appended to the run's ``run.log``, and ``status: failed`` in
    ``summary.json`` unless the dir holds a summary already (an earlier run's). Returns the log's path,
    or None when the run dir cannot be written."""
    log = Path(run_dir) / RUN_LOG
    try:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"internal error in dlexp ({error})\n{trace}")
    except OSError:
        return None
    record_failure(run_dir, f"internal error: {error} (traceback in {RUN_LOG})")
    return log


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3e}" if (value != 0 and abs(value) < 1e-3) else f"{value:.4f}"
    return str(value)


def format_epoch(row: dict[str, Any]) -> str:
    """``epoch   3 | lr 1.000e-03 | train loss 0.2100 acc 0.9400 | val loss 0.2500 acc 0.9300 | train 52,310 ex/s
    val 181,420 ex/s | 0.41 s``"""
    parts = [f"epoch {row['epoch']:>3}", f"lr {row['lr']:.3e}"]
    for split in ("train", "val"):
        stats = " ".join(f"{k.split('/', 1)[1]} {_fmt(v)}" for k, v in row.items() if k.startswith(split + "/"))
        parts.append(f"{split} {stats}")
    speeds = [_speed(row, split) for split in ("train", "val") if f"{split}_examples_per_s" in row]
    if speeds:
        parts.append(" ".join(speeds))
    parts.append(f"{row['epoch_seconds']:.2f} s")
    return " | ".join(parts)


def _speed(row: dict[str, Any], split: str) -> str:
    """``train 52,310 ex/s`` (and ``41,200 tok/s`` for tasks that count tokens)."""
    text = f"{split} {row[f'{split}_examples_per_s']:,.0f} ex/s"
    tokens = row.get(f"{split}_tokens_per_s")
    return text if tokens is None else f"{text} {tokens:,.0f} tok/s"


class RunLog:
    def __init__(self, run_dir: Path, *, is_main: bool = True, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.is_main = is_main
        console = Console(highlight=False)
        # Not a terminal (CI, a pipe, a log file): a wide fixed width keeps one line per epoch.
        self.console = console if console.is_terminal else Console(highlight=False, width=200)
        self.show_progress = progress and is_main and (self.console.is_terminal or in_notebook())
        self._csv_columns: Optional[list[str]] = None
        self.tensorboard = TensorBoardSink(self.run_dir) if is_main else None
        self.hparams: dict[str, Any] = {}

    # -- console ---------------------------------------------------------
    def info(self, message: Any, *, markup: bool = False) -> None:
        """A line (or a rich table) on the console, and in the run's run.log. A line is shown as it is written,
        never read as rich markup (a user's ``plugins=[my_models.py]`` must not vanish), unless ``markup``
        (then its dynamic parts are escaped by the caller); a long line is not wrapped (a command in it
        stays one line to copy)."""
        if not self.is_main:
            return
        self.console.print(message, markup=markup, soft_wrap=True)
        try:
            with open(self.run_dir / RUN_LOG, "a", encoding="utf-8") as handle:
                Console(file=handle, width=200, no_color=True, highlight=False).print(message, markup=markup, soft_wrap=True)
        except OSError:
            pass  # the console has the line; a run dir that cannot take it fails at its next real write

    def progress_bar(self) -> "Bars":
        """The live bar of the passes: batches done, running loss and throughput (examples/s). On a terminal
        rich draws it; in a Jupyter notebook tqdm's widget does (``tqdm.auto``); elsewhere nothing is drawn.

        Redrawn by the loop when it updates the bar (every ``log_every_n_steps`` batches), not by a refresh
        thread: a second Python thread drawing 10 times a second takes the GIL from the training step,
        which on a busy CPU costs far more than the drawing itself.
        """
        if self.show_progress and self.console.is_terminal:
            return RichBars(self.console)
        if self.show_progress:
            return NotebookBars()
        return Bars()

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
        self.tensorboard.scalars(row)
        self.info(format_epoch(row))

    def log_hparams(self, config: dict[str, Any]) -> None:
        """The run's resolved config (nested dict); TensorBoard shows it next to the final metrics."""
        self.hparams = flatten(config)

    def keep_epochs_up_to(self, last_epoch: int) -> None:
        """Drop metrics.csv rows after ``last_epoch`` (written, but not checkpointed, before a kill)."""
        path = self.run_dir / METRICS_FILE
        if not self.is_main or not path.exists():
            return
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        kept = [r for r in rows[1:] if r and int(r[0]) <= last_epoch]
        atomic_write(path, csv_text(kept, header=rows[0]), durable=True)
        self._csv_columns = rows[0]

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.is_main:
            write_json_atomic(self.run_dir / SUMMARY_FILE, summary)
            self.tensorboard.finish(self.hparams, summary)

    def summary_line(self, summary: dict[str, Any]) -> None:
        """One line for a sweep job: its status, monitored best, test metrics, epochs and time."""
        if not self.is_main:
            return
        monitor = summary.get("monitor", "")
        parts = [summary.get("status", "?"), f"best {monitor} {_fmt(summary.get(f'best/{monitor}'))}"]
        parts += [f"{k} {_fmt(v)}" for k, v in summary.items() if k.startswith("test/") and k.endswith(monitor.split("/")[-1])]
        parts += [f"{summary.get('epochs_run', 0)} epochs", f"{summary.get('wall_seconds', 0):.1f} s"]
        self.info(f"{display_path(self.run_dir)}: " + ", ".join(parts))

    def summary_table(self, summary: dict[str, Any]) -> None:
        if not self.is_main:
            return
        table = Table(title="Run summary", show_header=True, header_style="bold")
        table.add_column("key")
        table.add_column("value", justify="right")
        for key, value in summary.items():
            if isinstance(value, (dict, list)) or key in LONG_KEYS:
                continue  # printed as their own lines
            table.add_row(Text(key), Text(_fmt(value)))  # as written: a value is never rich markup
        self.info(table)
        self.info(f"results in {display_path(self.run_dir)} ({summary.get('wall_seconds', 0):.1f} s)")


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where a terminal's live bar cannot draw, and tqdm's widget can)."""
    shell = sys.modules.get("IPython")
    ipython = getattr(shell, "get_ipython", lambda: None)() if shell is not None else None
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


class Bars:
    """The bars of one run's passes (one row a pass, drawn while it runs); this one draws nothing.

    ``add`` starts a pass's row, ``update`` moves it, ``remove`` ends it; ``epoch`` names the epoch the rows
    belong to; ``clock`` is the time their speeds and elapsed times count in."""

    def __enter__(self) -> "Bars":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def clock(self) -> float:
        return time.monotonic()

    def epoch(self, text: str) -> None:
        """The label before each pass's own, e.g. ``epoch 3/40``."""

    def add(self, label: str, total: int, completed: int, loss: str, speed: str, started: float) -> Any:
        return None

    def update(self, row: Any, completed: int, loss: str, speed: str) -> None:
        return None

    def remove(self, row: Any) -> None:
        return None


class RichBars(Bars):
    """A terminal's bar, drawn by rich, redrawn only when the loop updates it (no refresh thread)."""

    def __init__(self, console: Console):
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} ex/s"),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console,
                                 transient=True, auto_refresh=False)

    def __enter__(self) -> "RichBars":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def clock(self) -> float:
        return self.progress.get_time()  # the clock rich's columns use

    def epoch(self, text: str) -> None:
        self.progress.columns[0].text_format = f"[bold]{text}" + " {task.description}"

    def add(self, label: str, total: int, completed: int, loss: str, speed: str, started: float) -> Any:
        row = self.progress.add_task(label, total=total, completed=completed, loss=loss, speed=speed)  # draws it
        next(t for t in self.progress.tasks if t.id == row).start_time = started  # elapsed from the pass's start
        return row

    def update(self, row: Any, completed: int, loss: str, speed: str) -> None:
        self.progress.update(row, completed=completed, loss=loss, speed=speed)
        self.progress.refresh()

    def remove(self, row: Any) -> None:
        self.progress.remove_task(row)


class NotebookBars(Bars):
    """A notebook's bar: tqdm's widget (``tqdm.auto``), one per pass, closed (and cleared) when the pass ends."""

    def __init__(self) -> None:
        self.label = ""

    def epoch(self, text: str) -> None:
        self.label = text

    def add(self, label: str, total: int, completed: int, loss: str, speed: str, started: float) -> Any:
        import importlib.util

        if importlib.util.find_spec("ipywidgets") is not None:  # the widget needs ipywidgets (dlexp[notebook])
            from tqdm.auto import tqdm
        else:  # else tqdm's text bar, which a notebook shows as its cell's output
            from tqdm.std import tqdm

        row = tqdm(total=total, initial=completed, desc=f"{self.label} {label}".strip(), leave=False)
        row.set_postfix_str(f"loss {loss}, {speed} ex/s", refresh=True)
        return row

    def update(self, row: Any, completed: int, loss: str, speed: str) -> None:
        row.n = completed
        row.set_postfix_str(f"loss {loss}, {speed} ex/s", refresh=True)

    def remove(self, row: Any) -> None:
        row.close()


def _result_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's numbers worth comparing across runs (best/*, test/*, gap/*, epochs_run)."""
    return {
        k: float(v) for k, v in summary.items()
        if (k.startswith(("best/", "test/", "gap/")) or k == "epochs_run")
        and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


class TensorBoardSink:
    """TensorBoard event files in the run dir: each epoch's scalars, then the hparams with the final metrics.

    The writer is created on first use, so a run that never finishes an epoch
    leaves no empty event file; its module is imported up front, so that the
    first epoch's row is not followed by an import before its checkpoint.
    ``tensorboard --logdir outputs/`` shows every run.
    """

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        self.log_dir = log_dir
        self._writer: Any = None

    def _get(self) -> Any:
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir))
        return self._writer

    def scalars(self, row: dict[str, Any]) -> None:
        writer = self._get()
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, global_step=row["epoch"])
        writer.flush()  # an epoch is visible in TensorBoard as soon as it is in metrics.csv

    def finish(self, hparams: dict[str, Any], summary: dict[str, Any]) -> None:
        """Hparams (TensorBoard's HParams tab) and the final metrics, written into this run's own event file."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        writer = self._get()
        values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        metrics = _result_metrics(summary)
        for proto in hparams_summary(values, metrics):  # experiment, session start, session end
            writer.file_writer.add_summary(proto)
        step = summary.get("epochs_run", 0)
        for key, value in metrics.items():
            writer.add_scalar(key, value, global_step=step)
        if summary.get("diagnosis"):
            writer.add_text("diagnosis", f"{summary['diagnosis']}: {summary.get('diagnosis_reason', '')}", global_step=step)
        writer.close()
        self._writer = None
