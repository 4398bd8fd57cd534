"""``hydra/sweeper=dlexp_searches``: several searches compared, side by side, in one sweep dir."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from omegaconf import OmegaConf

from hydra_plugins.dlexp_search.sweeper import DlexpSearchSweeper


class DlexpSearchesSweeper(DlexpSearchSweeper):
    """One Optuna search (``dlexp.search.sweeper.run_search``) per entry of ``searches`` (the ``hparams_search``
    settings it changes, e.g. its sampler and pruner) and per point of ``params`` (a grid of run overrides in
    Hydra's sweep syntax, e.g. ``seed: 0,1,2``), each in ``<sweep dir>/<search>/<point>/`` with its own study,
    all on one pool of slots. Points go in the outer loop, so a stopped sweep has compared every search on
    the points it reached."""

    def __init__(self, searches: Optional[dict[str, Any]] = None, params: Optional[dict[str, Any]] = None,
                 **unknown: Any) -> None:
        from dlexp.errors import ConfigError

        if unknown:
            raise ConfigError(f"unknown hydra.sweeper key(s) for hydra/sweeper=dlexp_searches: {', '.join(sorted(unknown))}; "
                              "it takes searches and params")
        super().__init__()
        self.searches = dict(searches or {})
        self.params = dict(params or {})

    def run(self, arguments: List[str]) -> int:
        """Every search at every point, in turn, on one pool; the first search's nonzero exit code stops them."""
        from dlexp.config.validate import search_settings
        from dlexp.errors import ConfigError
        from dlexp.runs.sweep import job_dir_name
        from dlexp.search.grid import grid_points
        from dlexp.search.slots import SlotPool, describe, slot_envs
        from dlexp.search.space import parse_space
        from dlexp.search.sweeper import run_search

        config = self.config
        if config.get("hparams_search") is None or not self.searches:
            raise ConfigError("hydra/sweeper=dlexp_searches needs the settings the searches share (hparams_search) "
                              "and the searches themselves (hydra.sweeper.searches: name -> settings)")
        plans = {name: search_settings(OmegaConf.merge(config.hparams_search, entry or {}))
                 for name, entry in self.searches.items()}
        if len({s.slots for s in plans.values()}) > 1:
            raise ConfigError("the searches share one pool of slots: set hparams_search.slots once, not per search")
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        points, shared = grid_points(self.params, arguments)
        run_cfg, mode = self.run_config([parse_space(s.params or {}, shared) for s in plans.values()])
        direction = "maximize" if mode == "max" else "minimize"
        first = next(iter(plans.values()))
        envs = slot_envs(first.slots, device=str(run_cfg.trainer.device), jobs_per_gpu=first.jobs_per_gpu)
        print(f"{len(plans)} searches x {len(points)} points: {', '.join(plans)}; {describe(envs)}", flush=True)
        pool = SlotPool(envs, hydra_context=self.hydra_context, task_function=self.task_function, config=config,
                        sweep_dir=sweep_dir, quiet=True)
        try:
            for point in points:
                overrides = [*shared, *point]
                seed = int(next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "seed"), run_cfg.seed))
                where = job_dir_name(point or [f"seed={seed}"])
                for name, settings in plans.items():
                    settings = OmegaConf.merge(settings, {"study_name": settings.study_name or f"{name}/{where}"})
                    direction_of = direction if settings.direction == "auto" else settings.direction
                    code = run_search(settings, overrides, sweep_dir / name / where, direction=direction_of, seed=seed,
                                      max_epochs=int(run_cfg.trainer.epochs), make_pool=lambda: pool, own_pool=False)
                    if code:
                        return code
        finally:
            pool.close()
        return 0
