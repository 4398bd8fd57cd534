"""The one reader of a run dir: its summary, status, record (config, command line, options), metrics and
checkpoint, for every part of dlexp that looks at a run it did not just write (resume, a sweep's rerun,
the report, the course findings, the plots).

One error policy: a file that is asked for and missing, or present and unreadable, is a
``RunFileError``: one line naming the file and what to do. A caller that can do without a file
asks whether the run has it first (``has``), or reads it with ``missing_ok=True``.

Light (no torch): the command line and a sweep's launcher read runs with it.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from dlexp.errors import UserError
from dlexp.runs import files
from dlexp.runs.hints import resume_command
from dlexp.runs.status import Status


class RunFileError(UserError):
    """A file of a run dir that is missing or cannot be read."""


@dataclass(frozen=True)
class RunDir:
    """A run's dir on disk (a single run, a sweep job, a search trial, a k-fold fold)."""

    path: Path

    def __init__(self, path: "Path | str"):
        object.__setattr__(self, "path", Path(path).expanduser())

    # -- what is there ---------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether the run has ``name`` (a file name from ``dlexp.runs.files``, or a path below the dir)."""
        return (self.path / name).exists()

    @property
    def checkpoint(self) -> Optional[Path]:
        """checkpoints/last.pt, when the run has one to continue from."""
        path = files.checkpoint_file(self.path)
        return path if path.is_file() else None

    @property
    def recorded(self) -> bool:
        """Whether dlexp accepted a run here (its record, ``.hydra/``, is written)."""
        return files.recorded_overrides_path(self.path).is_file()

    # -- summary.json -----------------------------------------------------------
    def summary(self, *, missing_ok: bool = False) -> dict[str, Any]:
        """summary.json; ``{}`` when it is missing and ``missing_ok``."""
        path = self.path / files.SUMMARY_FILE
        if not path.is_file():
            if missing_ok:
                return {}
            raise RunFileError(f"{files.display_path(path)} is missing: the run has not finished, or was killed before "
                               f"it wrote one; continue it with: {resume_command(self.path)}")
        data = _load(path, json.loads, "not valid JSON")
        if not isinstance(data, dict):
            raise RunFileError(f"{files.display_path(path)} is damaged (not a JSON object); the run's other files are intact")
        return data

    def status(self) -> Status:
        """The run's status: its summary's, else ``incomplete`` (it left files) or ``new`` (nothing yet)."""
        summary = self.summary(missing_ok=True)
        if summary.get("status"):
            return Status.of(summary["status"])
        started = self.has(files.METRICS_FILE) or self.checkpoint is not None
        return Status.INCOMPLETE if started else Status.NEW

    # -- the record ---------------------------------------------------------------
    def overrides(self, *, missing_ok: bool = False) -> list[str]:
        """The command line the run was started with, as recorded (``.hydra/overrides.yaml``)."""
        return [str(o) for o in self._yaml(files.recorded_overrides_path(self.path), missing_ok) or []]

    def config(self, *, missing_ok: bool = False) -> dict[str, Any]:
        """The composed config the run was started with (``.hydra/config.yaml``)."""
        return self._yaml(files.recorded_config_path(self.path), missing_ok) or {}

    def choices(self) -> dict[str, str]:
        """The option each config group was composed from (``.hydra/hydra.yaml``); {} without that record."""
        record = self._yaml(files.recorded_hydra_path(self.path), missing_ok=True) or {}
        choices = ((record.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
        return {str(k): str(v) for k, v in choices.items() if v is not None and not str(k).startswith("hydra/")}

    def setting(self, key: str) -> Optional[str]:
        """The value the recorded command line gave ``key`` (``seed``, ``optim.lr``), or None."""
        return next((o.split("=", 1)[1] for o in self.overrides(missing_ok=True)
                     if o.lstrip("+~").split("=", 1)[0] == key), None)

    # -- metrics.csv and grad_norms.csv -------------------------------------------
    def metrics(self) -> list[dict[str, Any]]:
        """metrics.csv's rows, numbers as floats (an empty cell is NaN); [] when the run has no epoch yet."""
        return read_rows(self.path / files.METRICS_FILE)

    def grad_norms(self) -> list[dict[str, Any]]:
        return read_rows(self.path / files.GRAD_NORMS_FILE, text=("layer", "type"))

    def epochs_logged(self) -> int:
        """Rows in metrics.csv (epochs finished and logged), without parsing them."""
        path = self.path / files.METRICS_FILE
        if not path.is_file():
            return 0
        with open(path, newline="") as handle:
            return max(sum(1 for _ in handle) - 1, 0)

    def _yaml(self, path: Path, missing_ok: bool) -> Any:
        if not path.is_file():
            if missing_ok:
                return None
            raise RunFileError(f"{files.display_path(path)} is missing: {files.display_path(self.path)} has no record of "
                               "the run dlexp started there; is it a dlexp run dir?")
        return _load(path, yaml.safe_load, "not valid YAML")


def read_rows(path: Path, text: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rows of a CSV file, cells parsed as floats (an empty one as NaN) except the ``text`` columns; [] without it."""
    if not path.is_file():
        return []

    def parse(handle: Any) -> list[dict[str, Any]]:
        return [{k: v if k in text else _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]

    with open(path, newline="") as handle:
        try:
            return parse(handle)
        except csv.Error as err:
            raise RunFileError(f"{files.display_path(path)} is damaged (not valid CSV: {err}); the run's other files "
                               "are intact") from None


def _number(text: Optional[str]) -> Any:
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return text


def _load(path: Path, parse: Any, what: str) -> Any:
    try:
        return parse(path.read_text())
    except (ValueError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunFileError(f"{files.display_path(path)} is damaged ({what}: {first}); the run's other files are "
                           "intact") from None
    except OSError as err:
        raise RunFileError(f"cannot read {files.display_path(path)} ({err.strerror})") from None
