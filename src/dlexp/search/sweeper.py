"""The search loop: ask Optuna for a trial whenever a slot is free, tell it each trial's result.

    while the budget lasts or trials run:
        fill every free slot: an abandoned trial to resume first, else study.ask()
        wait for a trial to end; tell the study: complete (its best val value), pruned or failed

A trial is one sweep job (``trial_<number>``, Hydra's job number is the trial number), run in a
slot; it reports its monitored val metric every epoch through ``DLEXP_TRIAL``, and the pruner may
stop it (``status: pruned``). ``synchronous`` waits for a whole batch of trials before asking for
the next (what Hydra's Optuna sweeper does), for comparison.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from dlexp.errors import ConfigError
from dlexp.runs import sweep as sweep_jobs
from dlexp.runs.files import display_path
from dlexp.runs.hints import command, continue_sweep_command
from dlexp.runs.status import Status
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
    renewed: float = 0.0  # time.monotonic() of the last lease renewal

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

    def submit(self, trial: FrozenTrial) -> None:
        link = self.link(trial)
        overrides = self.space.overrides(trial.params)
        job = Job(trial.number, overrides, f"trial {trial.number}", env={studies.TRIAL_VARIABLE: link.to_env()},
                  shown=overrides[len(self.space.fixed):])
        self.pool.submit(job)

    def tell(self, end: JobEnd) -> None:
        """The study learns how a trial ended, from its summary.json; an interrupted one stays RUNNING."""
        number = end.job.num
        state = sweep_jobs.job_state(end.output_dir) if end.output_dir else None
        summary = state.summary if state else {}
        status = Status.of(summary["status"]) if summary.get("status") else Status.FAILED if end.error else Status.INCOMPLETE
        took = f"in {end.seconds:.1f} s"
        if status == Status.INTERRUPTED or end.exit_code in (130, 143):
            self.pool.say(f"trial {number} interrupted {took}; it resumes in its dir when the search continues")
            return
        monitor = summary.get("monitor", "")
        value = summary.get(f"best/{monitor}")
        if status == Status.COMPLETED and isinstance(value, (int, float)) and math.isfinite(value):
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
               make_pool: Callable[[], SlotPool]) -> int:
    """The search of one worker; returns the exit code (0, or 128 + the signal that stopped it)."""
    space = parse_space(settings.params or {}, arguments)
    grid = space.grid() if settings.sampler == "grid" else None
    n_trials = min(settings.n_trials, math.prod(len(v) for v in grid.values())) if grid else settings.n_trials
    storage = studies.open_storage(settings.storage, sweep_dir)
    study_name = settings.study_name or Path(sweep_dir).name
    leases = studies.Leases(studies.TrialStore(storage, study_name), settings.lease_seconds)
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction=direction, load_if_exists=True,
        sampler=studies.make_sampler(settings.sampler, seed if settings.seed is None else settings.seed, grid, leases),
        pruner=studies.make_pruner(settings.pruner, settings.min_epochs, max_epochs),
    )
    _check_direction(study, direction, study_name)

    def link(trial: FrozenTrial) -> studies.TrialLink:
        return studies.TrialLink(settings.storage, str(sweep_dir), study_name, trial.number,
                                 settings.pruner, settings.min_epochs, max_epochs)

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
    search = Search(study, space, settings, link, pool, n_trials, leases)
    started, forwarded = time.monotonic(), False
    try:
        while True:
            search.fill(queue)
            if not pool.running:
                break
            for end in pool.wait(timeout=min(5.0, settings.lease_seconds / 3)):
                search.tell(end)
            if STOP() and not forwarded:  # forwarded once: each trial stops at its next safe point
                pool.interrupt(STOP.signum)
                forwarded = True
            search.renew_leases()
        wall = time.monotonic() - started
    finally:
        pool.close()
    print(outcome_line(study, n_trials, pool.busy_seconds / max(wall * len(pool), 1e-9), wall), flush=True)
    if STOP():
        print(f"interrupted by {signal_name(STOP.signum)}: the study is saved in {_where(settings.storage, sweep_dir)}; "
              f"continue the search with: {continue_sweep_command(sweep_dir, command())}", file=sys.stderr, flush=True)
        return STOP.exit_code
    return 0


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
