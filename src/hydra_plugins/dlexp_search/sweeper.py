"""``hydra/sweeper=dlexp_optuna``: Hydra hands the command's overrides to dlexp's search loop."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict


class DlexpSearchSweeper(Sweeper):
    """Optuna's ask-and-tell, driven by ``dlexp.search.sweeper.run_search``; its settings are the
    run config's ``hparams_search`` node (checked by ``dlexp.config.schema.SearchConfig``)."""

    def __init__(self, **unused: Any) -> None:
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def sweep(self, arguments: List[str]) -> None:
        from dlexp.errors import UserError

        try:
            code = self._search(arguments)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(err.exit_code)
        if code:
            sys.exit(code)

    def _search(self, arguments: List[str]) -> int:
        from dlexp import train  # torch: the direction of the monitored metric needs the dataset's task
        from dlexp.config.validate import search_settings
        from dlexp.errors import ConfigError
        from dlexp.runs.files import display_path
        from dlexp.search.slots import SlotPool, describe, slot_envs
        from dlexp.search.space import check_space, parse_space
        from dlexp.search.sweeper import run_search

        config = self.config
        if config.get("hparams_search") is None:
            raise ConfigError("hydra/sweeper=dlexp_optuna needs its settings: use hparams_search=optuna")
        settings = search_settings(config.hparams_search)
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        run_cfg = OmegaConf.masked_copy(config, [k for k in config if k not in ("hydra", "hparams_search")])
        dirs = [s.path for s in config.hydra.runtime.config_sources if s.schema == "file" and s.provider in ("main", "command-line")]
        train.load_plugins(run_cfg.get("plugins") or [], dirs)  # the user's components, before their names are checked
        with open_dict(run_cfg):
            check_space(run_cfg, parse_space(settings.params or {}, arguments), train.validate)
            run_cfg = train.validate(run_cfg)
        direction = settings.direction
        if direction == "auto":
            direction = "maximize" if train.monitored_mode(run_cfg) == "max" else "minimize"
        envs = slot_envs(settings.slots, device=str(run_cfg.trainer.device), jobs_per_gpu=settings.jobs_per_gpu)

        def make_pool() -> SlotPool:
            print(f"{describe(envs)}; each trial's console output in {display_path(sweep_dir / 'logs')}/", flush=True)
            return SlotPool(envs, hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                            sweep_dir=sweep_dir)

        return run_search(settings, arguments, sweep_dir, direction=direction, seed=int(run_cfg.seed),
                          max_epochs=int(run_cfg.trainer.epochs), make_pool=make_pool)
