"""One dlexp run as one MLflow run, sent from a background thread (``dlexp.tracking.outbox``).

What the MLflow run holds:

- params: the composed config, flattened (``optim.lr``, ``model.hidden``);
- tags: the option of each config group (``model``, ``dataset``, ``optim``, ...), dlexp's version, the git
  commit, the machine and the run dir, ``dlexp.status`` and the diagnosis; in a sweep ``dlexp.sweep`` and
  ``dlexp.job``, in a search ``dlexp.trial``; ``mlflow.parentRunId`` for a sweep's job or a k-fold fold;
- metrics: every column of metrics.csv, the epoch as the step; at the end the summary's numbers
  (``best/*``, ``test/*``, ``gap/*``, epochs, time) at the run's last epoch;
- artifacts: the plots, the config files (``config/``), summary.json, metrics.csv and run.log; the
  checkpoints (``checkpoints/``) with ``logger.log_checkpoints=true``.

Its status follows dlexp's: completed and pruned are FINISHED (a pruned trial is a result, and its
``dlexp.status`` tag says pruned), diverged and failed are FAILED, interrupted is KILLED.

A run keeps its MLflow run's id in its dir (``mlflow.json``). When it resumes, or starts again in its
dir, it continues that MLflow run: the epochs the MLflow run has are not sent again, and those it
lacks (the tracker was down, or the process was killed before they went out) are sent from metrics.csv.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from dlexp.config.schema import flatten
from dlexp.runs import files
from dlexp.runs.record import RunDir
from dlexp.runs.status import Status
from dlexp.tracking.loggers import MlflowSettings
from dlexp.tracking.outbox import Outbox
from dlexp.tracking.store import existing_run, experiment_id, open_client, origin_tags, read_record, run_url, write_record

STATUSES = {Status.COMPLETED: "FINISHED", Status.PRUNED: "FINISHED", Status.DIVERGED: "FAILED", Status.FAILED: "FAILED",
            Status.INTERRUPTED: "KILLED"}
SUMMARY_TAGS = ("status", "stop_reason", "diagnosis", "diagnosis_reason", "monitor", "error", "hint")
SUMMARY_COUNTS = ("epochs_run", "best_epoch", "wall_seconds", "num_params")  # besides best/*, test/*, gap/*, */s
STEP_KEY = "epoch_seconds"  # a column of every metrics.csv row: its history says which epochs the MLflow run has
MAX_PARAMS, MAX_METRICS = 100, 1000  # per call (MLflow's limits)
MAX_KEY, MAX_PARAM, MAX_TAG = 250, 6000, 8000  # characters
ParentFinder = Callable[[Any], Optional[str]]  # (the client) -> the parent run's id, or None


@dataclass(frozen=True)
class SweepJob:
    """A run that is one job of a sweep: its dir is in the sweep dir, which holds the sweep's parent run."""

    sweep_dir: Path
    trial: Optional[int] = None  # a search's trial number

    def tags(self, run_dir: Path) -> dict[str, str]:
        tags = {"dlexp.sweep": self.sweep_dir.name, "dlexp.job": Path(run_dir).name}
        return {**tags, "dlexp.trial": str(self.trial)} if self.trial is not None else tags


class MlflowTracker:
    """A run's sink (``RunLog`` calls ``scalars`` each epoch and ``finish`` with the summary), then ``close``."""

    def __init__(self, settings: MlflowSettings, run_dir: Path, *, config: dict[str, Any], tags: dict[str, str],
                 parent: Optional[ParentFinder] = None, say: Callable[[str], None] = print):
        self.settings, self.run_dir, self.config, self.tags = settings, Path(run_dir), config, tags
        self.parent, self.say = parent, say
        self.client: Any = None
        self.run_id: Optional[str] = None
        self.experiment_id: Optional[str] = None
        self.logged: set[int] = set()  # the epochs the MLflow run has
        self.backfilled = False
        self.warned = False
        self.ready = threading.Event()  # the MLflow run exists (or could not be made)
        self.outbox = Outbox(self._send, name="dlexp-mlflow")
        self.outbox.put("start", None)

    # -- the run's side: never waits on the tracker -------------------------------------------
    def scalars(self, row: dict[str, Any]) -> None:
        self.outbox.put("epoch", dict(row))
        self.warn_if_down()

    def finish(self, hparams: dict[str, Any], summary: dict[str, Any]) -> None:
        self.outbox.put("summary", dict(summary))

    def close(self, summary: dict[str, Any], artifacts: list[tuple[Path, str]]) -> dict[str, Any]:
        """Send the artifacts and the final status, wait while the tracker keeps up; returns what summary.json
        records of the MLflow run (its id, and what did not reach it)."""
        status = Status.of(summary.get("status"))
        for artifact in artifacts:
            self.outbox.put("artifact", artifact)
        self.outbox.put("end", (STATUSES.get(status, "FAILED"), str(status), None))
        unsent = self.outbox.close(self.settings.timeout_s)
        self.warn_if_down()
        return self.report(unsent)

    def abandon(self, status: Status, error: str) -> None:
        """The run stopped on an exception or a signal: the MLflow run ends FAILED or KILLED, with the reason."""
        self.outbox.put("end", (STATUSES.get(status, "FAILED"), str(status), error))
        self.outbox.close(self.settings.timeout_s)

    def wait_ready(self) -> Optional[str]:
        """The MLflow run's id once it exists, or None if it could not be made (or is not made yet after a few
        timeouts). The run waits for it before its first epoch: MLflow's seconds of imports and the store's
        opening then take no share of the CPU from the training loop."""
        self.ready.wait(max(60.0, 6 * self.settings.timeout_s))
        return self.run_id

    def warn_if_down(self) -> None:
        """Once per run: the tracker failed, or was too slow; the training goes on."""
        if self.warned or (self.outbox.error is None and not self.outbox.gave_up):
            return
        self.warned = True
        why = reason(self.outbox.error) if self.outbox.error else f"no answer within {self.settings.timeout_s:g} s"
        self.say(f"warning: MLflow at {self.settings.shown_uri()} failed ({why}); the run goes on without it, and "
                 f"summary.json lists what did not reach it")

    def report(self, unsent: list[tuple[str, Any]]) -> dict[str, Any]:
        report: dict[str, Any] = {"run_id": self.run_id, "experiment": self.settings.experiment,
                                  "tracking_uri": self.settings.shown_uri()}
        if unsent:
            report["not_sent"] = describe_unsent(unsent)
            report["error"] = _first_line(self.outbox.error) if self.outbox.error else \
                f"no answer within {self.settings.timeout_s:g} s"
        return report

    def url(self) -> Optional[str]:
        return run_url(self.settings, self.experiment_id, self.run_id) if self.run_id else None

    # -- the background thread's side ---------------------------------------------------------
    def _send(self, kind: str, items: list[Any]) -> None:
        {"start": self._start, "epoch": self._epochs, "summary": self._summary, "artifact": self._artifacts,
         "end": self._end}[kind](items)

    def _start(self, _: list[Any]) -> None:
        try:
            self.client = open_client(self.settings)
            self.experiment_id = experiment_id(self.client, self.settings)
            run = existing_run(self.client, read_record(self.run_dir), self.settings)
            self._continue(run) if run is not None else self._create()
        finally:
            self.ready.set()

    def _create(self) -> None:
        tags = {**origin_tags(), **self.tags, **self.settings.tags, "dlexp.run_dir": str(self.run_dir.absolute()),
                "dlexp.status": str(Status.RUNNING)}
        parent = self.parent(self.client) if self.parent is not None else None
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=self.settings.run_name or self.run_dir.name,
                                     tags={k[:MAX_KEY]: str(v)[:MAX_TAG] for k, v in tags.items()})
        self.run_id = run.info.run_id
        write_record(self.run_dir, self.run_id, self.experiment_id, self.settings)
        log_params(self.client, self.run_id, params_of(self.config))

    def _continue(self, run: Any) -> None:
        """A resumed (or restarted) run: the same MLflow run, RUNNING again; only what it lacks is sent."""
        self.run_id = run.info.run_id
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, "dlexp.status", str(Status.RUNNING))
        self.logged = {m.step for m in self.client.get_metric_history(self.run_id, STEP_KEY)}
        have, now = run.data.params, params_of(self.config)
        log_params(self.client, self.run_id, {k: v for k, v in now.items() if k not in have})
        changed = [f"{k}={v} (was {have[k]})" for k, v in now.items() if k in have and have[k] != v]
        if changed:  # MLflow keeps a param's first value: the changes a resume made are a tag
            self.client.set_tag(self.run_id, "dlexp.changed_on_resume", "; ".join(changed)[:MAX_TAG])

    def _epochs(self, rows: list[dict[str, Any]]) -> None:
        if not self.backfilled:  # epochs an earlier attempt did not send (metrics.csv is the record)
            self.backfilled = True
            rows = [*RunDir(self.run_dir).metrics(), *rows]
        fresh = {int(row["epoch"]): row for row in rows if int(row["epoch"]) not in self.logged}
        stamp = _now_ms()
        metrics = [(k, v, stamp, epoch) for epoch, row in sorted(fresh.items()) for k, v in row.items()
                   if k != "epoch" and _is_number(v)]
        log_metrics(self.client, self.run_id, metrics)
        self.logged.update(fresh)

    def _summary(self, summaries: list[dict[str, Any]]) -> None:
        summary, stamp = summaries[-1], _now_ms()
        step = int(summary.get("epochs_run") or 0)
        log_metrics(self.client, self.run_id, [(k, v, stamp, step) for k, v in summary.items() if is_score(k, v)])
        tags = {f"dlexp.{k}": str(summary[k])[:MAX_TAG] for k in SUMMARY_TAGS if summary.get(k) not in (None, "")}
        log_tags(self.client, self.run_id, tags)

    def _artifacts(self, items: list[tuple[Path, str]]) -> None:
        for path, where in items:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path), where or None)

    def _end(self, items: list[tuple[str, str, Optional[str]]]) -> None:
        status, dlexp_status, error = items[-1]
        if self.run_id is None:
            return
        tags = {"dlexp.status": dlexp_status, **({"dlexp.error": error[:MAX_TAG]} if error else {})}
        log_tags(self.client, self.run_id, tags)
        self.client.set_terminated(self.run_id, status)


def params_of(config: dict[str, Any]) -> dict[str, str]:
    """The composed config as MLflow params: dotted keys, values as text (cut to MLflow's limit)."""
    return {k[:MAX_KEY]: str(v)[:MAX_PARAM] for k, v in flatten(config).items()}


def is_score(key: str, value: Any) -> bool:
    """A summary entry worth comparing across runs: best/*, test/*, gap/*, throughput, epochs, time, size."""
    return _is_number(value) and ("/" in key or key.endswith("_per_s") or key in SUMMARY_COUNTS)


def log_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS):
        client.log_batch(run_id, params=items[i:i + MAX_PARAMS])


def log_tags(client: Any, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v) for k, v in tags.items()]
    for i in range(0, len(items), MAX_PARAMS):
        client.log_batch(run_id, tags=items[i:i + MAX_PARAMS])


def log_metrics(client: Any, run_id: str, metrics: list[tuple[str, float, int, int]]) -> None:
    """(key, value, timestamp in ms, step) tuples, in as few calls as MLflow allows."""
    from mlflow.entities import Metric

    items = [Metric(k[:MAX_KEY], float(v), stamp, step) for k, v, stamp, step in metrics]
    for i in range(0, len(items), MAX_METRICS):
        client.log_batch(run_id, metrics=items[i:i + MAX_METRICS])


def artifacts_of(run_dir: Path, with_checkpoints: bool) -> list[tuple[Path, str]]:
    """(file, folder in the MLflow run) for what a run uploads: plots and records at the top, its config files
    in ``config/`` (a resume's own in ``config/resumed``), its checkpoints in ``checkpoints/`` when asked for."""
    run_dir = Path(run_dir)
    top = [files.SUMMARY_FILE, files.METRICS_FILE, files.GRAD_NORMS_FILE, files.RUN_LOG, files.TRANSLATIONS_FILE,
           files.ATTENTION_FILE, files.SUBMISSION_FILE, files.FINDING_FILE]
    found = [(run_dir / name, "") for name in top] + [(p, "") for p in sorted(run_dir.glob("*.png"))]
    found += [(p, "config") for p in sorted((run_dir / files.HYDRA_DIR).glob("*.yaml"))]
    found += [(p, "config/resumed") for p in sorted((run_dir / files.RESUME_HYDRA_DIR).glob("*.yaml"))]
    if with_checkpoints:
        found += [(p, files.CHECKPOINT_DIR) for p in sorted((run_dir / files.CHECKPOINT_DIR).glob("*.pt"))]
    return [(path, where) for path, where in found if path.is_file()]


def describe_unsent(unsent: list[tuple[str, Any]]) -> dict[str, Any]:
    """What did not reach the tracker, for summary.json: the epochs, the summary, the artifacts, the status."""
    out: dict[str, Any] = {}
    for kind, item in unsent:
        if kind == "start":
            out["run"] = "not created"
        elif kind == "epoch":
            out.setdefault("epochs", set()).add(int(item["epoch"]))
        elif kind == "summary":
            out["summary"] = "the scores, diagnosis and status tags"
        elif kind == "artifact":
            out.setdefault("artifacts", []).append(f"{item[1]}/{Path(item[0]).name}".lstrip("/"))
        elif kind == "end":
            out["status"] = item[0]
    if "epochs" in out:
        out["epochs"] = sorted(out["epochs"])
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # NaN included: MLflow keeps it


def _now_ms() -> int:
    return int(time.time() * 1000)


def reason(err: BaseException) -> str:
    """A short reason for a console line: the system's own words when there are some ('Connection refused')."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    text = found.group(1).strip() if found else _first_line(err)
    return text if len(text) <= 80 else text[:77] + "..."


def _first_line(err: Optional[BaseException]) -> str:
    text = str(err).strip().splitlines()[0] if err is not None and str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
