"""dlexp's launchers: ``serial`` (the default: a sweep's jobs one after another in this process, their configs
composed fast) and ``slots`` (a grid sweep's jobs side by side on this machine, one slot per core share or GPU)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class _DlexpLauncher(Launcher):
    """What dlexp's launchers share: their keys checked (one line for an unknown one), and Hydra's context."""

    option, keys = "", ()  # hydra/launcher=<option>, the keys it takes

    def __init__(self, **unknown: Any) -> None:
        from dlexp.errors import ConfigError

        if unknown:
            takes = " and ".join(self.keys) or "none"
            raise ConfigError(f"unknown hydra.launcher key(s) for hydra/launcher={self.option}: "
                              f"{', '.join(sorted(unknown))}; it takes {takes}")
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config


class SerialLauncher(_DlexpLauncher):
    """dlexp's default launcher: a sweep's jobs one after another in this process, as Hydra's basic launcher
    runs them, each job's config composed from a cached base (``dlexp.search.compose``) rather than from the
    YAML files anew: most of a small job's time was that composition."""

    option = "serial"

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import run_job, setup_globals
        from omegaconf import open_dict

        from dlexp.search.compose import SweepComposer

        setup_globals()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        composer = SweepComposer.of(self.hydra_context.config_loader, self.config)  # the configs the sweeper checked
        runs = []
        for num, overrides in enumerate(job_overrides, initial_job_idx):
            sweep_config = composer(list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = num
                sweep_config.hydra.job.num = num
            HydraConfig.instance().set_config(sweep_config)
            runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=sweep_config,
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
        return runs


class SlotsLauncher(_DlexpLauncher):
    """Runs each batch of jobs on ``dlexp.search.slots.SlotPool``: a free slot takes the next job at once;
    the console shows one line as each job starts and ends, each job's own output is in its log."""

    option, keys = "slots", ("slots", "jobs_per_gpu")

    def __init__(self, slots: Optional[int] = None, jobs_per_gpu: int = 1, **unknown: Any) -> None:
        super().__init__(**unknown)
        self.slots, self.jobs_per_gpu = slots, jobs_per_gpu

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from dlexp.runs.files import display_path
        from dlexp.search.slots import Job, SlotPool, describe, slot_envs

        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        device = str(self.config.get("trainer", {}).get("device", "auto"))
        envs = slot_envs(self.slots, device=device, jobs_per_gpu=self.jobs_per_gpu)
        envs = envs[: max(1, len(job_overrides))]  # no more slots than jobs
        print(f"{len(job_overrides)} jobs on {describe(envs)}; each job's console output in {display_path(sweep_dir / 'logs')}/",
              flush=True)
        pool = SlotPool(envs, hydra_context=self.hydra_context, task_function=self.task_function, config=self.config,
                        sweep_dir=sweep_dir)
        queue = [Job(initial_job_idx + i, list(o), f"job {initial_job_idx + i}") for i, o in enumerate(job_overrides)]
        results: dict[int, JobReturn] = {}
        try:
            results = _run_all(pool, queue)
        finally:
            pool.close()
        return [results[job.num] for job in queue if job.num in results]


def _run_all(pool: Any, queue: list) -> dict[int, JobReturn]:
    from dlexp.runs.status import Status
    from dlexp.runs.sweep import job_state
    from dlexp.search.slots import log_hint
    from dlexp.training.interrupt import STOP

    results: dict[int, JobReturn] = {}
    pending, forwarded = list(queue), False
    while pending or pool.running:
        while pending and pool.free() and not STOP():
            pool.submit(pending.pop(0))
        if STOP() and not forwarded:
            pool.interrupt(STOP.signum)
            forwarded, pending = True, []
        for end in pool.wait(timeout=1.0):
            state = job_state(end.output_dir) if end.output_dir else None
            status = state.status if state else Status.FAILED if end.error else Status.INCOMPLETE
            name = end.output_dir.name if end.output_dir else end.job.label
            pool.say(f"{end.job.label} {status} in {end.seconds:.1f} s: {name}"
                     f"{': ' + end.error if end.error else ''}{log_hint(end) if status != Status.COMPLETED else ''}")
            ret = JobReturn(overrides=end.job.overrides, status=JobStatus.FAILED if end.error else JobStatus.COMPLETED)
            ret.return_value = RuntimeError(end.error) if end.error else float("nan")
            results[end.job.num] = ret
    if STOP():
        sys.exit(STOP.exit_code)
    return results
