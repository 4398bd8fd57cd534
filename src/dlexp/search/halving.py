"""Synchronous successive halving (``hparams_search.pruner=successive_halving``, ``synchronous=true``).

    while the budget lasts, a bracket of eta^(R-1) new trials (eta: reduction_factor, R: the rungs):
        for each rung r_0 < r_1 < ... < r_max (epochs: min_epochs, times eta, ..., up to trainer.epochs):
            run each trial still in the bracket for r_i epochs, from scratch, in trial_<n>_epochs_<r_i>/,
            and wait for all of them (the synchronous part: a free slot waits for the rung's slowest run)
            keep the best 1/eta by their run's objective; the others end pruned at this rung
        the trials that reach the last rung end complete, with their objective at r_max

Each rung's run starts again from scratch, as in the textbook's scheduler, so a trial's epochs add up
over its rungs. Optuna's own ``SuccessiveHalvingPruner`` (``synchronous=false``) is the asynchronous form:
each trial runs once and is stopped at a rung when it is behind the trials that reached that rung before it.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from dlexp.errors import ConfigError
from dlexp.runs.status import Status
from dlexp.search.slots import JobEnd, SlotPool
from dlexp.training.interrupt import STOP

OPTUNA_REDUCTION_FACTOR = 4  # SuccessiveHalvingPruner's default eta, when hparams_search.reduction_factor is null


class Trials(Protocol):
    """What the rungs need of a search (``dlexp.search.sweeper.Search``)."""

    study: optuna.Study
    pool: SlotPool

    def ask(self) -> Optional[FrozenTrial]: ...

    def submit(self, trial: FrozenTrial, epochs: Optional[int] = None) -> None: ...

    def ended(self, end: JobEnd) -> tuple[Status, dict[str, Any], Optional[float]]: ...

    def renew_leases(self) -> None: ...


def reduction_factor(settings: Any) -> int:
    """eta: successive halving keeps 1 in eta trials at each rung."""
    return settings.get("reduction_factor") or OPTUNA_REDUCTION_FACTOR  # a checked node, or search.json's settings


def rung_epochs(settings: Any, max_epochs: int) -> list[int]:
    """The rungs' epochs of a synchronous successive-halving search (``[]`` for any other search):
    min_epochs, times eta while below ``max_epochs``, then ``max_epochs`` (e.g. 2, 4, 8, 10 for eta 2)."""
    if settings.pruner != "successive_halving" or not settings.synchronous:
        return []
    eta = reduction_factor(settings)
    if settings.min_epochs >= max_epochs:
        raise ConfigError(f"synchronous successive halving needs hparams_search.min_epochs={settings.min_epochs} below "
                          f"trainer.epochs={max_epochs}: its first rung is min_epochs, its last trainer.epochs")
    rungs, epochs = [], settings.min_epochs
    while epochs < max_epochs:
        rungs.append(epochs)
        epochs *= eta
    return rungs + [max_epochs]


def rung_runs(n_trials: int, rungs: list[int], eta: int) -> list[int]:
    """How many runs each rung has over a search of ``n_trials`` trials: brackets of eta^(R-1) trials (the last
    one what the budget leaves), each rung keeping the best 1/eta of its bracket's trials (at least one)."""
    bracket, left, counts = eta ** (len(rungs) - 1), n_trials, [0] * len(rungs)
    while left > 0:
        size = min(bracket, left)
        left -= size
        for i in range(len(rungs)):
            counts[i] += size
            size = max(1, size // eta)
    return counts


def run_brackets(search: Trials, rungs: list[int], eta: int, queue: list[FrozenTrial], *, maximize: bool) -> None:
    """Brackets of new trials, rung by rung, until the budget is spent (or a signal stops the search)."""
    for trial in queue:  # a bracket cut short by an earlier stop cannot be taken up half-way: its trials end
        search.study.tell(trial.number, state=TrialState.FAIL)
        search.pool.say(f"trial {trial.number} was in a bracket an earlier run of the search left unfinished; "
                        "it ends failed (a synchronous bracket starts whole)")
    bracket = eta ** (len(rungs) - 1)
    while not STOP():
        trials: list[FrozenTrial] = []
        while len(trials) < bracket and (trial := search.ask()) is not None:
            trials.append(trial)
        if not trials:
            return
        for i, epochs in enumerate(rungs):
            values = run_rung(search, trials, epochs)
            if STOP():
                return
            ranked = sorted((t for t in trials if values[t.number] is not None), key=lambda t: values[t.number],
                            reverse=maximize)  # stable: a tie goes to the earlier trial
            for t in trials:
                if values[t.number] is None:
                    search.study.tell(t.number, state=TrialState.FAIL)
            if i == len(rungs) - 1:
                for t in ranked:
                    search.study.tell(t.number, values[t.number])
                break
            keep = ranked[: max(1, len(trials) // eta)]
            for t in ranked[len(keep):]:
                search.study.tell(t.number, state=TrialState.PRUNED)
            search.pool.say(f"rung of {epochs} epochs: {len(keep)} of {len(trials)} trials go on to {rungs[i + 1]} "
                            f"epochs ({', '.join(str(t.number) for t in keep)})")
            trials = keep


def run_rung(search: Trials, trials: list[FrozenTrial], epochs: int) -> dict[int, Optional[float]]:
    """Each trial run for ``epochs`` from scratch, as slots free up; returns once all have ended: trial number ->
    its run's objective (None: the run failed or was interrupted)."""
    pending, values, forwarded = list(trials), {}, False
    while pending or search.pool.running:
        while pending and search.pool.free() and not STOP():
            search.submit(pending.pop(0), epochs)
        for end in search.pool.wait(timeout=5.0):
            status, _, value = search.ended(end)
            values[end.job.num] = value if status == Status.COMPLETED else None
            search.pool.say(f"trial {end.job.num} ran {epochs} epochs in {end.seconds:.1f} s: {status}"
                            + (f", objective {value:.4f}" if value is not None else ""))
        if STOP():
            pending = []  # nothing more starts; the running runs stop at their next safe point
            if not forwarded:
                search.pool.interrupt(STOP.signum)
                forwarded = True
        search.renew_leases()
    return {t.number: values.get(t.number) for t in trials}
