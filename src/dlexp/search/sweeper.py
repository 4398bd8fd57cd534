"""The search loop: ask Optuna for a trial whenever a slot is free, tell it each trial's result.

    while the budget lasts or trials run:
        fill every free slot: an abandoned trial to resume first, else study.ask()
        wait for a trial to end; tell the study: complete (its best val value), pruned or failed

A trial is one sweep job (``trial_<number>``, Hydra's job number is the trial number), run in a
slot; it reports its monitored val metric every epoch through ``DLEXP_TRIAL``, and the pruner may
stop it (``status: pruned``). ``synchronous`` waits for a whole batch of trials before asking for
the next (what Hydra's Optuna sweeper does), for comparison; with ``pruner=successive_halving`` it
runs synchronous successive halving instead, rung by rung (``dlexp.search.halving``).

Every run a search ran is recorded, in the order they ended, in ``search.json`` in its dir, with the
search's settings, wall time and the share of it its slots were busy.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import optuna
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from dlexp.errors import ConfigError
from dlexp.runs import sweep as sweep_jobs
from dlexp.runs.files import SEARCH_RECORD, atomic_write, display_path
from dlexp.runs.hints import command, continue_sweep_command
from dlexp.runs.status import Status
from dlexp.search import halving
from dlexp.search import study as studies
from dlexp.search.slots import Job, JobEnd, SlotPool, log_hint
from dlexp.search.space import SearchSpace, parse_space
from dlexp.training.interrupt import STOP, signal_name

TRIAL_DIR = "trial_{}"


@dataclass
class Search:
    """One worker's view of the study and the trials it runs."""

    study: optuna.Study
    space: SearchSpace
    settings: Any  # the checked hparams_search node
    link: Callable[[FrozenTrial], studies.TrialLink]
    pool: SlotPool
    n_trials: int
    leases: studies.Leases
    sweep_dir: Optional[Path] = None  # where its trials' dirs go (None: the pool's)
    renewed: float = 0.0  # time.monotonic() of the last lease renewal
    started: float = field(default_factory=time.monotonic)
    runs: list[dict[str, Any]] = field(default_factory=list)  # every run that ended, in order (search.json)

    def fill(self, queue: list[FrozenTrial]) -> None:
        """Give every free slot a trial: the abandoned ones first, then new ones while the budget lasts."""
        if self.settings.synchronous and self.pool.running:
            return  # a batch at a time: the next starts when the slowest of this one ends
        while self.pool.free() and not STOP():
            trial = queue.pop(0) if queue else self.ask()
            if trial is None:
                return
            self.leases.take(trial.number)
            if set(trial.params) != set(self.space.distributions):  # abandoned before its values were drawn
                studies.give_back(self.study, self.leases.store, trial.number)
                continue
            self.submit(trial)

    def ask(self) -> Optional[FrozenTrial]:
        if studies.left_in_budget(self.study, self.n_trials) <= 0:
            return None
        trial = self.study.ask(self.space.distributions)
        if studies.is_surplus(self.study, trial.number, self.n_trials):  # another worker took the last one
            studies.give_back(self.study, self.leases.store, trial.number)
            return None
        return self.leases.store.get(trial.number)

    def submit(self, trial: FrozenTrial, epochs: Optional[int] = None) -> None:
        """Run ``trial`` in a free slot; ``epochs``: for that many epochs, in a dir of its own (a rung)."""
        link = self.link(trial)
        overrides = self.space.overrides(trial.params) + ([f"trainer.epochs={epochs}"] if epochs else [])
        job = Job(trial.number, overrides, f"trial {trial.number}", env={studies.TRIAL_VARIABLE: link.to_env()},
                  shown=overrides[len(self.space.fixed):], sweep_dir=self.sweep_dir,
                  subdir=f"{TRIAL_DIR.format(trial.number)}_epochs_{epochs}" if epochs else None)
        self.pool.submit(job)

    def ended(self, end: JobEnd) -> tuple[Status, dict[str, Any], Optional[float]]:
        """A run that ended: its status, summary and objective (its best monitored value; None unless it
        completed with a finite one), recorded in ``runs``."""
        state = sweep_jobs.job_state(end.output_dir) if end.output_dir else None
        summary = state.summary if state else {}
        status = Status.of(summary["status"]) if summary.get("status") else Status.FAILED if end.error else Status.INCOMPLETE
        value = summary.get(f"best/{summary.get('monitor', '')}")
        value = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        now = time.monotonic() - self.started
        self.runs.append({"trial": end.job.num, "dir": end.output_dir.name if end.output_dir else None,
                          "status": str(status), "epochs": summary.get("epochs_run", 0), "value": value,
                          "run_seconds": summary.get("wall_seconds"),  # the run's own, without the slot's imports
                          "started": round(now - end.seconds, 3), "ended": round(now, 3), "seconds": round(end.seconds, 3)})
        return status, summary, value if status in (Status.COMPLETED, Status.PRUNED) else None

    def tell(self, end: JobEnd) -> None:
        """The study learns how a trial ended, from its summary.json; an interrupted one stays RUNNING."""
        number = end.job.num
        status, summary, value = self.ended(end)
        took = f"in {end.seconds:.1f} s"
        if status == Status.INTERRUPTED or end.exit_code in (130, 143):
            self.pool.say(f"trial {number} interrupted {took}; it resumes in its dir when the search continues")
            return
        monitor = summary.get("monitor", "")
        if status == Status.COMPLETED and value is not None:
            self.study.tell(number, float(value))
            self.pool.say(f"trial {number} completed {took}: best {monitor} {value:.4f} (epoch {summary.get('best_epoch')})")
        elif status == Status.PRUNED:
            self.study.tell(number, state=TrialState.PRUNED)
            self.pool.say(f"trial {number} pruned at epoch {summary.get('epochs_run')} {took}: best {monitor} "
                          f"{_num(value)}")
        else:
            self.study.tell(number, state=TrialState.FAIL)
            why = end.error or summary.get("error") or summary.get("hint") or status
            self.pool.say(f"trial {number} {'diverged' if status == Status.DIVERGED else 'failed'} {took}: {why}{log_hint(end)}")

    def renew_leases(self) -> None:
        """Every third of a lease: the trials this worker runs are still its own."""
        if time.monotonic() - self.renewed < self.settings.lease_seconds / 3:
            return
        self.renewed = time.monotonic()
        for job, _ in self.pool.running.values():  # a job's number is its trial's
            self.leases.take(job.num)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def run_search(settings: Any, arguments: Sequence[str], sweep_dir: Path, *, direction: str, seed: int, max_epochs: int,
               make_pool: Callable[[], SlotPool], own_pool: bool = True) -> int:
    """The search of one worker; returns the exit code (0, or 128 + the signal that stopped it). ``own_pool``:
    the pool ``make_pool`` gives is this search's, closed at its end (else the caller's, shared by searches)."""
    space = parse_space(settings.params or {}, arguments)
    grid = space.grid() if settings.sampler == "grid" else None
    n_trials = min(settings.n_trials, math.prod(len(v) for v in grid.values())) if grid else settings.n_trials
    storage = studies.open_storage(settings.storage, sweep_dir)
    study_name = settings.study_name or Path(sweep_dir).name
    leases = studies.Leases(studies.TrialStore(storage, study_name), settings.lease_seconds)
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction=direction, load_if_exists=True,
        sampler=studies.make_sampler(settings.sampler, seed if settings.seed is None else settings.seed, grid, leases),
        pruner=studies.make_pruner(settings.pruner, settings.min_epochs, max_epochs, settings.reduction_factor),
    )
    _check_direction(study, direction, study_name)
    rungs = halving.rung_epochs(settings, max_epochs)  # synchronous successive halving: the loop prunes, not Optuna

    def link(trial: FrozenTrial) -> studies.TrialLink:
        return studies.TrialLink(settings.storage, str(sweep_dir), study_name, trial.number,
                                 "none" if rungs else settings.pruner, settings.min_epochs, max_epochs,
                                 settings.reduction_factor)

    queue = studies.abandoned_trials(study, settings.lease_seconds)
    done = len(studies.finished(study.get_trials(deepcopy=False)))
    if done >= n_trials and not queue:  # nothing left: say so, run nothing, and leave the study as it is
        print(f"search {study_name}: {done} trials finished earlier, hparams_search.n_trials={n_trials}: nothing to run "
              f"(raise hparams_search.n_trials to continue the search); study in {_where(settings.storage, sweep_dir)}",
              flush=True)
        return 0
    print(f"search {study_name}: {n_trials} trials, {done} finished earlier, {len(queue)} to resume; "
          f"sampler={settings.sampler} pruner={settings.pruner}; study in {_where(settings.storage, sweep_dir)}", flush=True)
    pool = make_pool()
    search = Search(study, space, settings, link, pool, n_trials, leases, Path(sweep_dir))
    busy_before = pool.busy_seconds
    try:
        if rungs:
            halving.run_brackets(search, rungs, halving.reduction_factor(settings), queue, maximize=direction == "maximize")
        else:
            _run_trials(search, queue)
        wall = time.monotonic() - search.started
    finally:
        if own_pool:
            pool.close()
    busy = (pool.busy_seconds - busy_before) / max(wall * len(pool), 1e-9)
    write_record(search, sweep_dir, direction=direction, busy=busy, wall=wall, rungs=rungs, max_epochs=max_epochs)
    print(outcome_line(study, n_trials, busy, wall), flush=True)
    if STOP():
        print(f"interrupted by {signal_name(STOP.signum)}: the study is saved in {_where(settings.storage, sweep_dir)}; "
              f"continue the search with: {continue_sweep_command(sweep_dir, command())}", file=sys.stderr, flush=True)
        return STOP.exit_code
    return 0


def _run_trials(search: Search, queue: list[FrozenTrial]) -> None:
    """Every free slot runs a trial while the budget lasts; the study learns each as it ends."""
    forwarded = False
    while True:
        search.fill(queue)
        if not search.pool.running:
            return
        for end in search.pool.wait(timeout=min(5.0, search.settings.lease_seconds / 3)):
            search.tell(end)
        if STOP() and not forwarded:  # forwarded once: each trial stops at its next safe point
            search.pool.interrupt(STOP.signum)
            forwarded = True
        search.renew_leases()


def write_record(search: Search, sweep_dir: Path, *, direction: str, busy: float, wall: float, rungs: list[int],
                 max_epochs: int) -> None:
    """``search.json``: the settings, the slots' busy share of the wall time, and every run in the order they
    ended (each with its trial, dir, status, epochs, objective, and start and end in seconds since the start)."""
    settings = OmegaConf.to_container(search.settings, resolve=True) if OmegaConf.is_config(search.settings) \
        else dict(search.settings)
    record = {"settings": settings, "direction": direction, "max_epochs": max_epochs, "n_trials": search.n_trials,
              "slots": len(search.pool), "wall_seconds": round(wall, 3),
              "busy_fraction": round(busy, 4), "rungs": rungs, "interrupted": bool(STOP()), "runs": search.runs}
    atomic_write(Path(sweep_dir) / SEARCH_RECORD, json.dumps(record, indent=1) + "\n")


def _check_direction(study: optuna.Study, direction: str, name: str) -> None:
    stored = study.direction.name.lower()
    if stored != direction:
        raise ConfigError(f"the study '{name}' in this storage {stored}s its objective, this search would {direction}; "
                          "use another hparams_search.study_name or storage")


def _where(storage: Optional[str], sweep_dir: Path) -> str:
    if not storage:
        return display_path(Path(sweep_dir) / studies.STUDY_JOURNAL)
    return studies.hide_password(storage)


def outcome_line(study: optuna.Study, n_trials: int, busy: float, wall: float) -> str:
    """``20 of 20 trials: 12 complete, 7 pruned, 1 failed; best trial 7: 0.9722 (tied with trial 9)``."""
    trials = studies.counted(study.get_trials(deepcopy=False))
    counts = {state: sum(t.state == state for t in trials) for state in
              (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    parts = [f"{n} {state.name.lower()}" for state, n in counts.items() if n]
    finished = counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]
    line = f"{finished} of {n_trials} trials finished ({', '.join(parts) or 'none run'})"
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        ties = [t.number for t in complete if t.value == best.value and t.number != best.number]
        tie = f" (tied with trial{'s' * (len(ties) > 1)} {', '.join(map(str, ties))})" if ties else ""
        line += f"; best trial {best.number}: {best.value:.4f}{tie}: {_params(best)}"
    return line + f"; slots busy {100 * busy:.1f}% of {wall:.1f} s"


def _params(trial: FrozenTrial) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
