"""Slots: long-lived worker processes that run Hydra jobs side by side, each with its share of the machine.

A slot is one process, started once (``spawn``) and given its environment before it imports torch:

- on the CPU, ``cores // slots`` threads (``OMP_NUM_THREADS`` and ``DLEXP_THREADS_PER_JOB``, which
  ``trainer.num_threads: null`` follows);
- on CUDA, one GPU of its own (``CUDA_VISIBLE_DEVICES``): never two jobs on one GPU unless
  ``jobs_per_gpu`` asks for it.

A slot runs one job at a time (Hydra's ``run_job``, as every launcher does) and keeps its imports
between jobs. The job's console output goes to ``<sweep dir>/logs/<job dir>.log``; the sweep's own
console gets one line as each job starts and one as it ends. Slots die with the process that started
them (``kill -9`` included), and are in their own process group, so that a Ctrl-C reaches them once,
forwarded, and each job stops at its next safe point.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from dlexp.errors import ConfigError
from dlexp.runs.files import JOB_LOGS_DIR, display_path
from dlexp.search.compose import SweepComposer
from dlexp.training.interrupt import STOP  # (no torch: a slot sets its threads and GPU before torch loads)

THREADS_VARIABLE = "DLEXP_THREADS_PER_JOB"  # trainer.num_threads for a job of a parallel launcher
TRIAL_VARIABLE = "DLEXP_TRIAL"  # a search trial's link to its study (JSON, ``dlexp.search.study.TrialLink``)


@dataclass
class Job:
    num: int  # Hydra's job number (a search: the trial number)
    overrides: list[str]
    label: str  # how the console names it, e.g. "trial 3"
    env: dict[str, str] = field(default_factory=dict)  # set for this job only (a trial's link to its study)
    shown: Optional[list[str]] = None  # what its start line shows (a trial: its sampled values); None: its overrides


@dataclass
class JobEnd:
    job: Job
    slot: int
    output_dir: Optional[Path]
    error: Optional[str]  # None: the job's task function returned
    exit_code: int  # a job that left through sys.exit (130: interrupted)
    seconds: float
    log: Optional[Path]


# --------------------------------------------------------------------------
# How many slots, and what each gets


def visible_gpus() -> list[str]:
    """The GPUs this process may use, by the ids CUDA_VISIBLE_DEVICES gives them (none on a CPU machine)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch  # (only to count the GPUs; the slots import it themselves)

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no CUDA build, no driver
        return []


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may use (cgroups, taskset)
    except AttributeError:
        return os.cpu_count() or 1


def slot_envs(slots: Optional[int], *, device: str, jobs_per_gpu: int = 1, cores: Optional[int] = None,
              gpus: Optional[Sequence[str]] = None) -> list[dict[str, str]]:
    """Each slot's environment. ``slots`` None: one per GPU (times ``jobs_per_gpu``), or one per core."""
    cores = cores or available_cores()
    gpus = list(visible_gpus() if gpus is None else gpus) if device != "cpu" else []
    if device == "cuda" and not gpus:
        raise ConfigError("trainer.device=cuda but no GPU is visible; use trainer.device=auto or cpu")
    if slots is None:
        slots = len(gpus) * jobs_per_gpu if gpus else cores
    if slots < 1:
        raise ConfigError(f"slots={slots}: a sweep needs at least 1 slot")
    if gpus and slots > len(gpus) * jobs_per_gpu:
        raise ConfigError(f"{slots} slots but {len(gpus)} GPU(s) at {jobs_per_gpu} job(s) each: two jobs would share a "
                          f"GPU; use slots={len(gpus) * jobs_per_gpu}, or jobs_per_gpu={-(-slots // len(gpus))} to share them")
    threads = str(max(1, cores // slots))
    envs = []
    for i in range(slots):
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, THREADS_VARIABLE: threads}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i // jobs_per_gpu]
        envs.append(env)
    return envs


# --------------------------------------------------------------------------
# The pool


class SlotPool:
    """``slots`` workers that run Hydra jobs; ``submit`` a job to a free one, ``wait`` for those that end."""

    def __init__(self, envs: Sequence[dict[str, str]], *, hydra_context: Any, task_function: Any, config: Any,
                 sweep_dir: Path, quiet: bool = False):
        import cloudpickle  # Hydra's context and the task function (what joblib's launcher ships too)
        from hydra.core.singleton import Singleton

        self.sweep_dir, self.quiet = Path(sweep_dir), quiet
        self.payload = cloudpickle.dumps((hydra_context, task_function, config, Singleton.get_state(), str(sweep_dir)))
        self.envs = list(envs)
        self.workers: list[Optional[tuple[multiprocessing.process.BaseProcess, Connection]]] = [None] * len(envs)
        self.running: dict[int, tuple[Job, float]] = {}  # slot -> (job, start time)
        self.busy_seconds = 0.0
        self.started = time.monotonic()
        for slot in range(len(envs)):
            self._start(slot)

    def __len__(self) -> int:
        return len(self.envs)

    def _start(self, slot: int) -> None:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_worker, args=(slot, self.envs[slot], child_end, self.payload, os.getpid()),
                                  name=f"dlexp-slot-{slot}", daemon=True)
        process.start()
        child_end.close()
        self.workers[slot] = (process, parent_end)

    def free(self) -> list[int]:
        return [slot for slot in range(len(self.envs)) if slot not in self.running]

    def submit(self, job: Job) -> int:
        slot = self.free()[0]
        _, conn = self.workers[slot]
        conn.send(job)
        self.running[slot] = (job, time.monotonic())
        self.say(f"{job.label} started [slot {slot}]: {' '.join(job.overrides if job.shown is None else job.shown)}")
        return slot

    def wait(self, timeout: Optional[float] = None) -> list[JobEnd]:
        """The jobs that ended within ``timeout`` seconds (none, if none did)."""
        if not self.running:
            return []
        watched = {}
        for slot in self.running:
            process, conn = self.workers[slot]
            watched[conn] = slot
            watched[process.sentinel] = slot
        ends = []
        for ready in wait(list(watched), timeout):
            slot = watched[ready]
            if slot not in self.running:
                continue
            ends.append(self._collect(slot))
        return ends

    def _collect(self, slot: int) -> JobEnd:
        process, conn = self.workers[slot]
        job, started = self.running.pop(slot)
        seconds = time.monotonic() - started
        self.busy_seconds += seconds
        try:
            output_dir, error, exit_code, log = conn.recv()
        except (EOFError, OSError):  # the worker died (killed, out of memory): start another for the next job
            process.join(5)
            error = f"its worker process died (exit code {process.exitcode})"
            output_dir, exit_code, log = self._mark_dead(job, error), 1, None
            self._start(slot)
        end = JobEnd(job, slot, Path(output_dir) if output_dir else None, error, exit_code, seconds,
                     Path(log) if log else None)
        if not process.is_alive() and self.workers[slot][0] is process:  # it stopped after the job (a signal)
            self.workers[slot] = None
        return end

    def _mark_dead(self, job: Job, error: str) -> Optional[str]:
        """The dir of a job whose worker died (killed, out of memory) without a word: the one jobs.json lists as
        running with its overrides, now marked failed with why, so that no report shows it running still."""
        from dlexp.runs import sweep as sweep_jobs
        from dlexp.runs.status import Status

        for name, entry in sweep_jobs.read_manifest(self.sweep_dir).items():
            if entry.get("status") == Status.RUNNING and entry.get("overrides") == list(job.overrides):
                sweep_jobs.mark(self.sweep_dir, self.sweep_dir / name, Status.FAILED, error=error)
                return str(self.sweep_dir / name)
        return None  # it died before it started

    def interrupt(self, signum: int) -> None:
        """Forward a signal to the slots running a job (they are in their own process group)."""
        for slot in self.running:
            process = self.workers[slot][0]
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)

    def busy_fraction(self) -> float:
        """The share of the slots' time spent running jobs, so far."""
        wall = (time.monotonic() - self.started) * len(self.envs)
        busy = self.busy_seconds + sum(time.monotonic() - t for _, t in self.running.values())
        return busy / wall if wall > 0 else 0.0

    def close(self) -> None:
        for worker in self.workers:
            if worker is None:
                continue
            process, conn = worker
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(None)
            process.join(10)
            if process.is_alive():
                process.kill()

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)


# --------------------------------------------------------------------------
# The worker (in each slot's process)


def _worker(slot: int, env: dict[str, str], conn: Connection, payload: bytes, parent: int) -> None:
    """Run jobs until told to stop, the parent dies, or a signal stops a job."""
    _die_with_parent(parent)
    os.setpgrp()  # a Ctrl-C reaches the sweep's process, which forwards it once
    os.environ.update(env)  # before torch is imported: threads, the GPU
    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals

    hydra_context, task_function, config, singleton_state, sweep_dir = cloudpickle.loads(payload)
    setup_globals()
    Singleton.set_state(singleton_state)
    composer = SweepComposer(hydra_context.config_loader, config)  # each job's config from a cached base
    with STOP.installed():  # for the worker's life: a signal between jobs stops it too
        while not STOP():
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            conn.send(_run_one(job, hydra_context, task_function, composer, Path(sweep_dir)))


def _run_one(job: Job, hydra_context: Any, task_function: Any, compose: Any,
             sweep_dir: Path) -> tuple[Optional[str], Optional[str], int, Optional[str]]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import run_job
    from omegaconf import open_dict

    try:
        sweep_config = compose(list(job.overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job.num}"
            sweep_config.hydra.job.num = job.num
            sweep_config.hydra.sweep.dir = str(sweep_dir)  # the sweep's, resolved once (a job's overrides would move it)
        HydraConfig.instance().set_config(sweep_config)
        subdir = str(sweep_config.hydra.sweep.subdir)
    except Exception as err:  # noqa: BLE001  (overrides that do not compose: this job fails, the slot goes on)
        return None, f"{type(err).__name__}: {str(err).strip().splitlines()[0]}", 0, None
    log = sweep_dir / JOB_LOGS_DIR / f"{subdir.replace('/', '_')}.log"
    os.environ.update(job.env)
    error, code = None, 0
    try:
        with _console_to(log):
            try:
                ret = run_job(hydra_context=hydra_context, config=sweep_config, task_function=task_function,
                              job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
                err = job_error(ret)
                if err is not None:
                    error = f"{type(err).__name__}: {err}"
            except SystemExit as stop:  # the app's own exit: interrupted (130, 143), fail-fast (1)
                code = stop.code if isinstance(stop.code, int) else 1
            except Exception as err:  # noqa: BLE001  (Hydra's own errors: the job failed, the sweep goes on)
                error = f"{type(err).__name__}: {err}"
    finally:
        for key in job.env:
            os.environ.pop(key, None)
    return str(sweep_dir / subdir), error, code, str(log)


def job_error(ret: Any) -> Optional[Exception]:
    """What a failed Hydra job (a ``JobReturn``) raised; None for a job that did not fail. Its public getter
    ``return_value`` raises that exception, after a line to stderr that the caller reports its own way."""
    from hydra.core.utils import JobStatus

    if ret.status != JobStatus.FAILED:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            _ = ret.return_value  # raises it
    except Exception as err:  # noqa: BLE001  (whatever the job raised)
        return err
    return None


@contextlib.contextmanager
def _console_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (the file descriptors: C code and subprocesses too) to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when its parent dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def describe(envs: Sequence[dict[str, str]]) -> str:
    """``2 slots, 1 thread each`` / ``4 slots, one GPU each (0,1,2,3)``."""
    gpus = [env["CUDA_VISIBLE_DEVICES"] for env in envs if "CUDA_VISIBLE_DEVICES" in env]
    threads = envs[0][THREADS_VARIABLE] if envs else "?"
    where = f"GPU {','.join(gpus)}" if gpus else "the CPU"
    return f"{len(envs)} slot{'s' * (len(envs) != 1)} on {where}, {threads} thread{'s' * (threads != '1')} each"


def log_hint(end: JobEnd) -> str:
    return f" (log: {display_path(end.log)})" if end.log else ""
