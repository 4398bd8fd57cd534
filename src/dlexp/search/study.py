"""The Optuna study behind a search: where it is stored, how it samples and prunes, how many trials it
may start, which running trials belong to a live worker, and how a trial's run reports to it.

Every worker of a search (the same command started several times, on one machine or several, with
a shared ``storage``) opens the same study and follows the same rules, so that together they run
exactly ``n_trials`` trials, each once, each in its own dir (``trial_<number>``):

- **Budget.** A trial counts once it is asked for, whatever becomes of it, except one given back:
  a worker that finds its new trial beyond the budget (another worker asked at the same moment)
  gives it back at once (``dlexp:surplus``). Trial numbers are handed out by the storage, so the
  lower numbers win and the count never overshoots.
- **Leases.** A worker writes who runs each trial (``dlexp:owner``: host and process) and until when
  (``dlexp:lease_until``, renewed while it runs). A trial left RUNNING by a worker that is gone (its
  process ended on this host, or its lease ran out) is taken over by the next worker that starts:
  it resumes in the same dir, from its checkpoint, under the same trial number.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from dlexp.errors import ConfigError
from dlexp.runs.files import STUDY_JOURNAL
from dlexp.search.slots import TRIAL_VARIABLE

SAMPLERS = ("tpe", "random", "grid", "gp", "cmaes")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
OWNER, LEASE, SURPLUS = "dlexp:owner", "dlexp:lease_until", "dlexp:surplus"
MEDIAN_STARTUP_TRIALS = 4  # the median pruner compares a trial with at least this many earlier ones

optuna.logging.set_verbosity(optuna.logging.WARNING)  # dlexp prints one line per trial itself
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # TPE's constant_liar: chosen knowingly


# --------------------------------------------------------------------------
# Storage, sampler, pruner


def open_storage(spec: Optional[str], sweep_dir: Path) -> BaseStorage:
    """``None``: a journal file in the sweep dir (no server; a rerun continues it); ``sqlite:///...``,
    ``postgresql://...`` or ``mysql://...``: a database; a path ending in ``.journal``: that journal file."""
    if not spec:
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(Path(sweep_dir) / STUDY_JOURNAL)))
    if spec.endswith(".journal"):
        Path(spec).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(spec))
    if "://" not in spec:
        raise ConfigError(f"hparams_search.storage={spec} is neither a database URL (sqlite:///study.db, "
                          "postgresql://user@host/db) nor a journal file (study.journal); leave it null for a journal "
                          "file in the sweep dir")
    try:
        return _open_database(spec)
    except (ImportError, ModuleNotFoundError) as err:
        raise ConfigError(f"hparams_search.storage={hide_password(spec)} needs a database driver ({err}); for "
                          "PostgreSQL: pip install 'dlexp[postgres]'") from None
    except Exception as err:  # sqlalchemy's OperationalError: the server is not reachable, or refuses us
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot open hparams_search.storage={hide_password(spec)}: {first}") from None


def _open_database(url: str, attempts: int = 5) -> RDBStorage:
    """Workers started at once on a new database race to create its tables; the losers try again."""
    import sqlalchemy.exc

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(attempts):
        try:
            return RDBStorage(url, engine_kwargs=kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def hide_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{creds.split(':')[0]}:***{at}{host}" if at and ":" in creds else url


class PerTrialSeed(optuna.samplers.BaseSampler):
    """A sampler seeded afresh for each trial from (seed, trial number): trial N proposes the same values
    for the same history whichever worker asks for it, and two workers never draw the same random stream."""

    def __init__(self, name: str, seed: Optional[int], grid: Optional[dict[str, list[Any]]] = None,
                 leases: Optional[Leases] = None):
        self.name, self.seed, self.grid, self.leases = name, seed, grid, leases
        self.inner = self._make(seed)

    def _make(self, seed: Optional[int]) -> optuna.samplers.BaseSampler:
        if self.name == "tpe":  # constant liar: running trials count as bad, so parallel trials spread out
            # multivariate explicit: Optuna 5 turns it on by default, and a seed proposes the same trials on
            # Optuna 4.9 and 5 only with the same setting (tests/test_search.py pins them)
            return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=False, n_startup_trials=5)
        if self.name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if self.name == "grid":
            return GridOrder(self.grid or {})
        if self.name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.leases is not None:  # the new trial is this worker's before anything else happens to it
            self.leases.take(trial.number)
        seed = None if self.seed is None else _mix(self.seed, trial.number)
        self.inner = self._make(seed)
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
        self.inner.after_trial(study, trial, state, values)


class GridOrder(optuna.samplers.BaseSampler):
    """A grid, point by point in the order of a Hydra grid sweep: the k-th trial of the study (counting
    the trials before it, whichever worker asked for them) takes the k-th point. Optuna's GridSampler
    would run a failed point again and stop the study from inside a trial, which ask-and-tell cannot take."""

    def __init__(self, grid: dict[str, list[Any]]):
        self.keys = list(grid)
        self.points = list(itertools.product(*grid.values()))
        self.current: dict[str, Any] = {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        rank = len([t for t in counted(study.get_trials(deepcopy=False)) if t.number < trial.number])
        self.current = dict(zip(self.keys, self.points[rank % len(self.points)]))

    def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
        return {}

    def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        return self.current[param_name]


def _mix(seed: int, number: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{number}".encode()).digest()[:4], "little")


def make_sampler(name: str, seed: Optional[int], grid: Optional[dict[str, list[Any]]] = None,
                 leases: Optional[Leases] = None) -> PerTrialSeed:
    if name not in SAMPLERS:
        raise ConfigError(f"unknown hparams_search.sampler={name}; choose one of {', '.join(SAMPLERS)}")
    return PerTrialSeed(name, seed, grid, leases)


def make_pruner(name: str, min_epochs: int, max_epochs: int,
                reduction_factor: Optional[int] = None) -> optuna.pruners.BasePruner:
    """A pruner that judges a trial by the val metric it reports each epoch, never before ``min_epochs``;
    successive halving (ASHA: asynchronous) and hyperband keep 1 in ``reduction_factor`` trials per rung."""
    if name not in PRUNERS:
        raise ConfigError(f"unknown hparams_search.pruner={name}; choose one of {', '.join(PRUNERS)}")
    eta = {} if reduction_factor is None else {"reduction_factor": reduction_factor}
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=min_epochs)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, min_epochs), **eta)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, min_epochs), max_resource=max(max_epochs, 1), **eta)
    return optuna.pruners.NopPruner()


# --------------------------------------------------------------------------
# The budget and the leases


class TrialStore:
    """A study's trials by number, in the storage dlexp opened itself (``open_storage``), through
    BaseStorage's public methods: Optuna keeps a Study's storage and a trial's storage id private, and
    Optuna 5 has no ``Trial.set_system_attr``."""

    def __init__(self, storage: BaseStorage, study_name: str):
        self.storage, self.study_name = storage, study_name
        self.study_id: Optional[int] = None  # looked up once the study exists

    def trial_id(self, number: int) -> int:
        if self.study_id is None:
            self.study_id = self.storage.get_study_id_from_name(self.study_name)
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def get(self, number: int) -> FrozenTrial:
        return self.storage.get_trial(self.trial_id(number))

    def set_system_attr(self, number: int, key: str, value: Any) -> None:
        self.storage.set_trial_system_attr(self.trial_id(number), key, value)


@dataclass
class Leases:
    """This worker's hold on the trials it runs: who runs each (``dlexp:owner``) and until when."""

    store: TrialStore
    seconds: float

    def take(self, number: int) -> None:
        self.store.set_system_attr(number, OWNER, owner_id())
        self.store.set_system_attr(number, LEASE, time.time() + self.seconds)


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that use the budget: all but those given back."""
    return [t for t in trials if not t.system_attrs.get(SURPLUS)]


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in counted(trials) if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]


def left_in_budget(study: optuna.Study, n_trials: int) -> int:
    return max(0, n_trials - len(counted(study.get_trials(deepcopy=False))))


def is_surplus(study: optuna.Study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` came after the budget was used up (by this worker or another)."""
    before = [t for t in counted(study.get_trials(deepcopy=False)) if t.number < number]
    return len(before) >= n_trials


def give_back(study: optuna.Study, store: TrialStore, number: int) -> None:
    """A trial that will not run (beyond the budget, or abandoned before its values were drawn): not counted."""
    store.set_system_attr(number, SURPLUS, True)
    study.tell(number, state=TrialState.FAIL)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_abandoned(trial: FrozenTrial, now: Optional[float] = None, lease_seconds: float = 300.0) -> bool:
    """A RUNNING trial whose worker is gone: its process ended (on this host) or its lease ran out. A trial
    takes its worker's lease as it is created (``PerTrialSeed.before_trial``); one without (a worker
    killed in that instant) is abandoned once it is older than a lease."""
    if trial.state != TrialState.RUNNING or trial.system_attrs.get(SURPLUS):
        return False
    now = now or time.time()
    if OWNER not in trial.system_attrs:
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return now - started > lease_seconds
    host, _, pid = str(trial.system_attrs.get(OWNER, "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return not _alive(int(pid)) or int(pid) == os.getpid()
    return float(trial.system_attrs.get(LEASE, 0)) < now


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned_trials(study: optuna.Study, lease_seconds: float = 300.0) -> list[FrozenTrial]:
    now = time.time()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return [t for t in running if is_abandoned(t, now, lease_seconds)]


# --------------------------------------------------------------------------
# A trial's run and its study


@dataclass
class TrialLink:
    """What a trial's run needs to report to its study: passed in ``DLEXP_TRIAL`` (JSON)."""

    storage: Optional[str]
    sweep_dir: str
    study_name: str
    number: int
    pruner: str
    min_epochs: int
    max_epochs: int
    reduction_factor: Optional[int] = None

    def to_env(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_env(cls, text: str) -> "TrialLink":
        return cls(**json.loads(text))


class TrialReporter:
    """Reports a trial's monitored val metric each epoch; says whether the pruner stops it there."""

    def __init__(self, link: TrialLink):
        self.link = link
        storage = open_storage(link.storage, Path(link.sweep_dir))
        pruner = make_pruner(link.pruner, link.min_epochs, link.max_epochs, link.reduction_factor)
        study = optuna.load_study(study_name=link.study_name, storage=storage, pruner=pruner)
        self.trial = optuna.trial.Trial(study, TrialStore(storage, link.study_name).trial_id(link.number))
        self.pruning = link.pruner != "none"

    def __call__(self, epoch: int, value: float) -> bool:
        """True: the trial should stop after ``epoch`` (pruned)."""
        if value != value:  # NaN: nothing to compare; divergence is the trainer's to handle
            return False
        try:
            self.trial.report(float(value), epoch)
        except (RuntimeError, ValueError):  # a resumed trial reports an epoch it reported before
            pass
        return self.pruning and self.trial.should_prune()


def reporter_from_env() -> Optional[TrialReporter]:
    text = os.environ.get(TRIAL_VARIABLE)
    return TrialReporter(TrialLink.from_env(text)) if text else None
