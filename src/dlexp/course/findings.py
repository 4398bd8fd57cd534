"""Findings: the claim each course experiment makes, measured from the files its run or sweep wrote.

A preset in conf/experiment/ names its finding with the top-level key ``finding:``.
A finding is a function registered in ``FINDINGS`` with its claim and its scope:

- ``run``: measured from one run dir (metrics.csv, grad_norms.csv, summary.json,
  checkpoints/last.pt), at the end of ``python -m dlexp experiment=NAME``;
- ``sweep``: measured from the job dirs of a ``-m`` sweep (each job's files and its
  ``.hydra/overrides.yaml``, grouped by the swept setting), at the end of the sweep
  and again by ``python -m dlexp.report SWEEP_DIR``;
- ``searches``: measured from a sweep of searches (``hydra/sweeper=dlexp_searches``): each search's
  ``search.json`` (its runs in order, wall time, busy slots), grouped by the search's name, one per point.

Either way dlexp prints ``finding: <claim>: <measured>: holds|does not hold`` and
writes ``finding.json`` (claim, measured values, holds) beside the summary, with the
names of the figures a finding draws of its own (``figures=``) from the same files. Only
files on disk are read, never the live training state, so the verdict can be
recomputed later from the same files.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


from dlexp.config.registry import Registry
from dlexp.errors import ConfigError
from dlexp.runs.files import (
    FINDING_FILE, GRAD_NORMS_FILE, HYDRA_DIR, METRICS_FILE, OVERRIDES_RECORD, SEARCH_RECORD, atomic_write,
)
from dlexp.runs.record import RunDir, RunFileError
from dlexp.runs.status import Status

FINDINGS = Registry("finding")


@dataclass
class Finding:
    claim: str
    measured: dict[str, Any]  # the numbers the verdict rests on, e.g. {"ratio/sigmoid": 3e-5}
    holds: bool
    line: str  # the measured values in words, e.g. "first/last layer grad norm 3e-05 (sigmoid) vs 0.41 (relu)"
    premise: Optional[str] = None  # what the claim presumes and the runs did not meet (then it does not hold)

    def text(self) -> str:
        verdict = "holds" if self.holds else "does not hold"
        if self.premise:
            verdict = f"does not hold (premise: {self.premise})"
        return f"finding: {self.claim}: {self.line}: {verdict}"


class NotMeasurable(Exception):
    """The files do not hold what the finding needs (a job failed, the setting was not swept, ...)."""


@dataclass
class RunFiles:
    """The files of one run (or one sweep job), read through ``RunDir``: what a finding needs and the run
    lacks (or cannot be read) is ``NotMeasurable``."""

    path: Path
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the composed config (.hydra/config.yaml)

    @classmethod
    def load(cls, path: Path, config: Optional[dict[str, Any]] = None) -> "RunFiles":
        run = RunDir(path)
        return cls(run.path, run.overrides(missing_ok=True), config if config is not None else run.config(missing_ok=True))

    def setting(self, key: str) -> Optional[str]:
        """The value the command line (or the preset's sweep) gave ``key`` in this job."""
        return next((o.split("=", 1)[1] for o in self.overrides if o.lstrip("+~").split("=", 1)[0] == key), None)

    def summary(self) -> dict[str, Any]:
        return self._read(lambda run: run.summary())

    def metrics(self) -> list[dict[str, Any]]:
        return self._rows(lambda run: run.metrics(), METRICS_FILE, "epochs")

    def grad_norms(self) -> list[dict[str, Any]]:
        return self._rows(lambda run: run.grad_norms(), GRAD_NORMS_FILE, "rows")

    def final(self, key: str) -> float:
        """``key`` (a metrics.csv column, e.g. ``train/loss``) at the last epoch run."""
        return float(self.metrics()[-1][key])

    def _read(self, read: Callable[[RunDir], Any]) -> Any:
        try:
            return read(RunDir(self.path))
        except RunFileError as err:
            raise NotMeasurable(str(err)) from None

    def _rows(self, read: Callable[[RunDir], list], name: str, what: str) -> list[dict[str, Any]]:
        rows = self._read(read)
        if not rows:
            raise NotMeasurable(f"{self.path / name} has no {what}")
        return rows


@dataclass
class SearchFiles:
    """One search of a sweep of searches: its dir and its ``search.json`` (settings, runs in the order they
    ended, wall time, the slots' busy share)."""

    name: str  # the search's name in hydra.sweeper.searches, e.g. "asha"
    path: Path
    record: dict[str, Any]

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list(self.record.get("runs", []))


def group_searches(sweep_dir: Path) -> dict[str, list[SearchFiles]]:
    """The searches of a sweep of searches by name (``<sweep dir>/<name>/<point>/search.json``), each name's
    points in natural order; at least two names."""
    groups: dict[str, list[SearchFiles]] = {}
    for path in sorted(Path(sweep_dir).glob(f"*/*/{SEARCH_RECORD}"), key=lambda p: (p.parent.parent.name,
                                                                                   _natural(p.parent.name))):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            raise NotMeasurable(f"{path} is damaged: not JSON") from None
        groups.setdefault(path.parent.parent.name, []).append(SearchFiles(path.parent.parent.name, path.parent, record))
    if len(groups) < 2:
        raise NotMeasurable(f"needs the search.json of at least two searches under {sweep_dir} (run the preset with -m)")
    return groups


@dataclass(frozen=True)
class Check:
    name: str
    claim: str
    scope: str  # "run", "sweep" or "searches"
    axis: Optional[str]  # sweep: the override key(s) whose values are compared, e.g. "model.activation"
    measure: Callable[..., tuple[dict[str, Any], bool, str]]  # files -> (measured, holds, line)
    figures: Optional[Callable[[Any, Path], list[str]]] = None  # (the same files, dir) -> names of the PNGs drawn


def finding(name: str, claim: str, *, scope: str = "sweep", axis: Optional[str] = None,
            figures: Optional[Callable[[Any, Path], list[str]]] = None) -> Callable:
    """Register ``fn`` as the finding of preset ``name``.

    A run finding gets a ``RunFiles``; a sweep finding gets ``{axis value: [RunFiles of its
    completed jobs]}`` (seeds of one setting together). Either returns (measured, holds, line).
    ``figures``, given the same argument and the run or sweep dir, draws the finding's own figures there.
    """
    def decorator(fn: Callable) -> Callable:
        FINDINGS.register(name)(Check(name, claim, scope, axis, fn, figures))
        return fn

    return decorator


def check_name(name: Optional[str]) -> None:
    """An unknown ``finding:`` fails when the config is validated, before any training."""
    if name is not None and name not in FINDINGS:
        raise ConfigError(f"finding: {FINDINGS.unknown_message(name)}")


# --------------------------------------------------------------------------
# Measuring and recording


def measure(name: str, path: Path, config: Optional[dict[str, Any]] = None) -> Finding:
    """The finding ``name`` measured from the run or sweep dir ``path``; never raises on missing data
    (the verdict is then 'does not hold', with the reason as its measured text)."""
    check: Check = FINDINGS.get(name)
    try:
        measured, holds, line = check.measure(_files(check, path, config))
    except NotMeasurable as why:
        return Finding(check.claim, {}, False, f"not measured ({why})")
    premise = None
    if isinstance(line, tuple):  # (line, the premise the runs did not meet, or None)
        line, premise = line
    return Finding(check.claim, _plain(measured), bool(holds) and premise is None, line, premise)


def _files(check: Check, path: Path, config: Optional[dict[str, Any]] = None) -> Any:
    """What ``check`` measures: the run's files, the sweep's completed jobs grouped by its axis, or its searches."""
    if check.scope == "searches":
        return group_searches(path)
    return RunFiles.load(path, config) if check.scope == "run" else group_jobs(path, check.axis)


def draw(name: str, path: Path, config: Optional[dict[str, Any]] = None) -> list[str]:
    """The finding's own figures, drawn into ``path`` (none when it has none, or its files lack what they need)."""
    check: Check = FINDINGS.get(name)
    if check.figures is None:
        return []
    try:
        return check.figures(_files(check, path, config), Path(path))
    except NotMeasurable:
        return []


def group_jobs(sweep_dir: Path, axis: Optional[str]) -> dict[str, list[RunFiles]]:
    """Completed jobs of a sweep, by their value of ``axis`` in command-line order; at least two values."""
    groups: dict[str, list[RunFiles]] = {}
    records = Path(sweep_dir).rglob(f"{HYDRA_DIR}/{OVERRIDES_RECORD}")
    for overrides in sorted(records, key=lambda p: _natural(p.parent.parent.name)):
        job = RunFiles.load(overrides.parent.parent)
        values = [job.setting(key) for key in (axis or "").split(",") if key]
        value = " ".join(values) if values and None not in values else None
        if value is not None and RunDir(job.path).status() == Status.COMPLETED:
            groups.setdefault(value, []).append(job)
    if len(groups) < 2:
        raise NotMeasurable(f"needs completed jobs for at least two values of {axis} (run the preset with -m)")
    return groups


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (sys.maxsize, name)


def _plain(value: Any) -> Any:
    """JSON-ready: floats rounded to 6 significant digits, NaN/inf as strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else str(value)
    return value


def record(name: str, path: Path, config: Optional[dict[str, Any]] = None) -> Finding:
    """Measure, write ``finding.json`` into ``path`` and print the finding line."""
    result = measure(name, path, config)
    data = {"finding": name, **asdict(result), "text": result.text(), "figures": draw(name, path, config)}
    atomic_write(Path(path) / FINDING_FILE, json.dumps(data, indent=2) + "\n")
    print(result.text(), flush=True)
    return result


def after_run(config: dict[str, Any], run_dir: Path, *, in_sweep: bool = False) -> Optional[Finding]:
    """End of a run: a run finding is recorded; outside a sweep, a sweep finding says how to run the comparison."""
    name = config.get("finding")
    if name is None:
        return None
    check: Check = FINDINGS.get(name)
    if check.scope == "run":
        return record(name, run_dir, config)
    if not in_sweep:  # one job cannot show a comparison; say so rather than stay silent
        print(f"finding: {check.claim}: compares the settings of {check.axis or 'several searches'}; run the whole comparison with "
              f"python -m dlexp -m experiment={name}", flush=True)
    return None


def after_sweep(sweep_dir: Path, job_dirs: list[Path]) -> Optional[Finding]:
    """End of a sweep (and ``python -m dlexp.report``): the sweep finding named by the jobs' config."""
    names = {RunDir(d).config(missing_ok=True).get("finding") for d in job_dirs}
    names.discard(None)
    if len(names) != 1:
        return None  # no preset with a finding, or a sweep over several presets
    name = names.pop()
    if name not in FINDINGS or FINDINGS.get(name).scope == "run":
        return None  # run findings were recorded in each job dir
    return record(name, sweep_dir)
