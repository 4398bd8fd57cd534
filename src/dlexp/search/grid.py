"""The grid of a sweep of searches (``hydra/sweeper=dlexp_searches``): the points each search is run at.

    hydra.sweeper.params: {seed: 0,1,2}   ->   [["seed=0"], ["seed=1"], ["seed=2"]]

Keys come from ``hydra.sweeper.params`` and from the command line's own sweep overrides (the command line
wins for a key set in both); the product runs with the last key changing fastest, as Hydra's grid does. An
``hparams_search`` override, a range of ``hparams_search.params`` included, is the searches' own, not an axis.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser

from dlexp.errors import ConfigError


def grid_points(params: Mapping[str, Any], arguments: Sequence[str]) -> tuple[list[list[str]], list[str]]:
    """(the points: one list of overrides each, the command line's other overrides, shared by every point)."""
    parser = OverridesParser.create()
    axes: dict[str, list[str]] = {}
    shared = []
    for override in parser.parse_overrides([f"{k}={v}" for k, v in params.items()]) + parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        if not override.is_sweep_override() or key.startswith("hparams_search"):  # a search's setting or range: its own
            if key in axes:  # a value on the command line fixes a key the grid sweeps
                del axes[key]
            shared.append(override.input_line)
            continue
        if not override.is_discrete_sweep():
            raise ConfigError(f"{key}: a sweep of searches takes lists of values (a,b,c or range(...)), not "
                              f"{override.input_line.split('=', 1)[1]}; a range to search goes in hparams_search.params")
        axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
    return [list(point) for point in itertools.product(*axes.values())], shared
