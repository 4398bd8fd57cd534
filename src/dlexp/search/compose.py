"""Each job's config of a sweep, as Hydra's ``load_sweep_config`` composes it, in a fraction of its time.

Hydra composes every job's config from the YAML files anew: its defaults list, each file merged, then
the command line's values applied (about 0.3 s a job on a CPU core, many times a small job's training).
But the jobs of a sweep differ mostly in values (``optim.lr=0.01``, ``seed=1``), not in which files
they compose. So ``SweepComposer`` composes once per distinct set of *structural* overrides (the ones
that choose files or change the config's shape: ``model=lenet``, ``+key=...``, ``~key``, ``key@pkg``),
keeps that base, and gives each job a copy with its plain ``key=value`` overrides applied exactly as
Hydra applies them (``OmegaConf.update(cfg, key, value, merge=True)`` in struct mode, in the command
line's order), with ``hydra.overrides.task`` and ``hydra.job.override_dirname`` as Hydra sets them. A
value override of a key the base lacks is left to Hydra's own composition, so that its error is
Hydra's. Light: no torch.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict

_MISSING = object()
_SHARED: dict[str, tuple[DictConfig, "SweepComposer"]] = {}  # the sweep config of this process's sweep, its composer


class SweepComposer:
    """``composer(overrides)`` -> the job's config; ``loader`` is Hydra's config loader, ``master`` the sweep's
    config (as a launcher gets them)."""

    def __init__(self, loader: Any, master: DictConfig):
        self.loader, self.master = loader, master
        self.parser = OverridesParser.create()
        self.bases: dict[tuple[str, ...], DictConfig] = {}
        self.groups: dict[str, bool] = {}
        self.checked: dict[tuple[str, ...], DictConfig] = {}  # composed by ``check``, not yet handed out

    @classmethod
    def of(cls, loader: Any, master: DictConfig) -> "SweepComposer":
        """The composer of this sweep config in this process: the sweeper's check and the launcher's jobs
        share its bases and the configs it checked."""
        held = _SHARED.get("current")
        if held is None or held[0] is not master or held[1].loader is not loader:
            held = _SHARED["current"] = (master, cls(loader, master))  # one sweep at a time: the last one's
        return held[1]

    def check(self, overrides: Sequence[str]) -> None:
        """Compose a job's config now (raising what Hydra would), and keep it for the launcher's call."""
        self.checked[tuple(overrides)] = self(overrides)

    def __call__(self, overrides: Sequence[str]) -> DictConfig:
        checked = self.checked.pop(tuple(overrides), None)
        if checked is not None:
            return checked
        parsed = self.parser.parse_overrides(list(overrides))
        structural = [o for o in parsed if self._structural(o)]
        values = [o for o in parsed if not self._structural(o)]
        key = tuple(o.input_line for o in structural)
        base = self.bases.get(key)
        if base is None:
            base = self.bases[key] = self.loader.load_sweep_config(self.master, list(key))
        if any(_select(base, o.key_or_group) is _MISSING for o in values):
            return self.loader.load_sweep_config(self.master, list(overrides))  # Hydra composes it (and says why not)
        cfg = copy.deepcopy(base)
        OmegaConf.copy_cache(from_config=base, to_config=cfg)  # resolved ${now:} etc. as the master resolved them
        for override in values:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [o.input_line for o in parsed if not o.is_hydra_override()]
            cfg.hydra.job.override_dirname = override_dirname(cfg, [o for o in parsed if not o.is_hydra_override()])
        return cfg

    def _structural(self, override: Override) -> bool:
        """An override that chooses files or changes the config's shape: part of the base, not applied to it."""
        if override.is_hydra_override() or override.package is not None or override.is_delete() or \
                override.is_add() or override.is_force_add():
            return True
        group = override.key_or_group
        if group not in self.groups:
            self.groups[group] = bool(self.loader.get_group_options(group))
        return self.groups[group]


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)


def override_dirname(cfg: DictConfig, overrides: Sequence[Override]) -> str:
    """``hydra.job.override_dirname`` as Hydra makes it: the overrides as given, sorted and joined by its item
    separator, every ``=`` in them replaced by its key-value separator, its excluded keys left out."""
    settings = cfg.hydra.job.config.override_dirname
    excluded = set(settings.exclude_keys)
    lines = sorted(o.input_line for o in overrides if o.key_or_group not in excluded)
    return settings.item_sep.join(lines).replace("=", settings.kv_sep)
