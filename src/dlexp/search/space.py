"""A search space in Hydra's sweep syntax, as Optuna distributions.

    optim.lr: tag(log, interval(1e-4, 1e-1))   -> FloatDistribution(1e-4, 1e-1, log=True)
    regularizer.dropout: interval(0.0, 0.6)    -> FloatDistribution(0.0, 0.6)
    model.depth: tag(int, interval(1, 4))      -> IntDistribution(1, 4)
    model.hidden: choice([128],[256])          -> CategoricalDistribution(("[128]", "[256]"))
    trainer.batch_size: range(32, 257, 32)     -> IntDistribution(32, 256, step=32)
    optim.momentum: 0.8,0.9                    -> CategoricalDistribution((0.8, 0.9))

Keys come from ``hparams_search.params`` and from the command line's own sweep overrides; the
command line wins for a key set in both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from dlexp.errors import ConfigError

PARAMS_PREFIX = "hparams_search.params."  # hparams_search.params.optim.lr='interval(0.01, 0.1)' on the command line


@dataclass
class SearchSpace:
    """What each trial samples (``distributions``) and the overrides every trial shares (``fixed``)."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """A trial's command line: the shared overrides, then its sampled values (in the space's key order)."""
        return [*self.fixed, *(f"{key}={format_value(params[key])}" for key in self.distributions)]

    def grid(self) -> dict[str, list[Any]]:
        """The values a grid search visits: every key must be a list of choices."""
        grid: dict[str, list[Any]] = {}
        for key, dist in self.distributions.items():
            if not isinstance(dist, CategoricalDistribution):
                raise ConfigError(f"hparams_search.sampler=grid needs a list of values for {key} (e.g. {key}=0.1,0.01), "
                                  "not an interval; or choose sampler=tpe")
            grid[key] = list(dist.choices)
        return grid


def parse_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """The space of ``hparams_search.params`` plus the sweep overrides among the command's ``arguments``."""
    parser = OverridesParser.create()
    from_yaml = parser.parse_overrides([f"{key}={value}" for key, value in params.items()])
    from_command = parser.parse_overrides(list(arguments))
    distributions: dict[str, BaseDistribution] = {}
    for override in from_yaml:
        distributions[override.get_key_element()] = to_distribution(override)
    fixed = []
    for override in from_command:
        key = override.get_key_element()
        if key.startswith(PARAMS_PREFIX) and not override.is_delete():  # a range for the space, not for a run
            distributions[key[len(PARAMS_PREFIX):]] = to_distribution(override)
        elif key.startswith("hparams_search") or not override.is_sweep_override():
            distributions.pop(key, None)  # a value on the command line fixes the key
            fixed.append(override.input_line)
        else:
            distributions[key] = to_distribution(override)
    if not distributions:
        raise ConfigError("the search has no parameters: set hparams_search.params (e.g. "
                          "'+hparams_search.params.optim.lr=tag(log, interval(1e-4, 1e-1))') or sweep a key on the command line")
    return SearchSpace(distributions, fixed)


def to_distribution(override: Override) -> BaseDistribution:
    key, value = override.get_key_element(), override.value()
    if not override.is_sweep_override():
        raise ConfigError(f"hparams_search.params.{key}={override.get_value_element_as_str()} is one value, not a range "
                          "to search: use interval(a, b), choice(a, b) or a,b; or set it as a plain override")
    log = "log" in getattr(value, "tags", set())
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end  # Hydra's interval is always float; tag(int, ...) makes it whole numbers
        if "int" in value.tags:
            return IntDistribution(int(low), int(high), log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step or 1
        last = list(override.sweep_iterator())[-1]  # range() excludes its stop: the last value it yields
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, last, step=step, log=log)
        return FloatDistribution(float(start), float(last), step=float(step), log=log)
    if isinstance(value, ChoiceSweep) or override.is_sweep_override():
        choices = [_choice(v) for v in override.sweep_iterator()]
        return CategoricalDistribution(choices)
    raise ConfigError(f"{key}: cannot search over {override.get_value_element_as_str()}")


def _choice(value: Any) -> Any:
    """Optuna stores None, bool, int, float and str: a list or dict choice is kept as its override text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else format_value(value)


def format_value(value: Any) -> str:
    """A sampled value as override text: floats in full (repr), lists as Hydra lists."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def check_space(run_cfg: DictConfig, space: SearchSpace, validate: Callable[[DictConfig], Any]) -> None:
    """Every key the search samples, set to a value of its range, validates with the run's config: a key a
    component cannot take (a model without ``dropout``) fails in one line before the first trial, not in
    every trial. Group choices (``model``) are composed per trial and left to it."""
    for key, dist in space.distributions.items():
        if "." not in key:
            continue
        value = dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low
        trial = run_cfg.copy()
        OmegaConf.update(trial, key, value, force_add=True)
        try:
            validate(trial)
        except ConfigError as err:
            raise ConfigError(f"the search samples {key}, and a trial with {key}={value} would be refused: {err}") from None
