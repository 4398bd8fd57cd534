"""dlexp's grid sweeper, the default: it takes over Hydra's ``hydra/sweeper=basic`` option (its config, stored
below under that name, replaces Hydra's when Hydra imports its plugins, Hydra's own first). The jobs of a ``-m``
command, as Hydra's basic sweeper makes them (the product of each key's values, in its order, in batches of ``max_batch_size``), each job's
config checked before the first job runs. Hydra's basic sweeper checks them by composing each one from the
YAML files anew (about 0.2 s a job on a CPU core, more than a small job's training); this one composes from a
cached base (``dlexp.search.compose``), and makes the sweep dir only once every job's config composes."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.dlexp_search.grid.GridSweeper"
    max_batch_size: Optional[int] = None  # jobs handed to the launcher at once (None: all)
    params: Optional[dict[str, str]] = None  # key: values swept as if given on the command line, before it


# Not a YAML file of the same name: Hydra would match that against its own schema of the option, and warn.
ConfigStore.instance().store(group="hydra/sweeper", name="basic", node=GridSweeperConf, provider="dlexp")


class GridSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[dict[str, str]] = None,
                 **unknown: Any) -> None:
        from dlexp.errors import ConfigError

        if unknown:
            raise ConfigError(f"unknown hydra.sweeper key(s) for hydra/sweeper=basic: {', '.join(sorted(unknown))}; "
                              "it takes max_batch_size and params")
        if max_batch_size is not None and max_batch_size != -1 and max_batch_size < 1:
            raise ConfigError(f"hydra.sweeper.max_batch_size must be >= 1 (or null: one batch), got {max_batch_size}")
        self.max_batch_size, self.params = max_batch_size, dict(params or {})
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function,
                                                                config=config)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        from dlexp.cli.plan import grid_jobs
        from dlexp.search.compose import SweepComposer

        loader = self.hydra_context.config_loader
        jobs = grid_jobs(self.params, arguments, loader)
        composer = SweepComposer.of(loader, self.config)  # the launcher's too: each config composed once
        for overrides in jobs:  # every job's config composes, or the sweep stops here, before its first job
            composer.check(overrides)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        size = len(jobs) if self.max_batch_size in (None, -1) else self.max_batch_size
        returns: list[Sequence[JobReturn]] = []
        for start in range(0, len(jobs), max(size, 1)):
            results = self.launcher.launch(jobs[start:start + size], initial_job_idx=start)
            for result in results:
                _ = result.return_value  # a job's error is raised here, after its batch, as Hydra's sweepers do
            returns.append(results)
        return returns
