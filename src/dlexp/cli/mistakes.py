"""One-line help for the natural mistakes of a command line, which Hydra answers with its own multi-line
report (exit 1): a group's key without its group (``weight_decay=1e-3``), a group's name misspelt
(``optimizer=sgd``), a sweep list without ``-m`` (``optim.lr=0.1,0.01``), and a space inside a list
(``-m optim.lr=0.1 0.01``). Read from the YAML files and the schemas alone, without torch.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from dlexp.config.constraints import suggest
from dlexp.config.files import find_option_file, group_options
from dlexp.config.schema import FIXED_GROUPS, PLUGINS_KEY, TOP_LEVEL_KEYS
from dlexp.errors import ConfigError
from dlexp.runs.hints import multirun_command


_GLOBAL_GROUPS = ("experiment", "hparams_search")  # presets that set keys of other groups, not keys of their own


def check_top_level_keys(overrides: list[str], dirs: list[str], groups: set[str], chosen: dict[str, str]) -> None:
    """``optimizer=sgd`` or ``weight_decay=1e-3``: a key that is neither a group nor a top-level key gets
    the override the user most likely meant. ``+key=...`` (an explicit addition) is left to the schema."""
    known = groups | set(FIXED_GROUPS) | set(TOP_LEVEL_KEYS) | {PLUGINS_KEY}
    for arg in overrides:
        if arg.startswith(("+", "~")) or "@" in arg.split("=", 1)[0]:
            continue
        key, value = arg.split("=", 1)
        head, dot, rest = key.partition(".")
        if head in known or head == "hydra":
            continue
        meant = _meant(head, rest, value, dirs, sorted(groups - {"hydra"}), sorted(known - {"hydra"}), chosen)
        hint = f" Did you mean {' or '.join(repr(m) for m in meant)}?" if meant else ""
        raise ConfigError(f"unknown config key '{key}'.{hint} Top-level keys and groups: "
                          f"{', '.join(sorted(known - {'hydra'}))}")


def _meant(head: str, rest: str, value: str, dirs: list[str], groups: list[str], known: list[str],
           chosen: dict[str, str]) -> list[str]:
    close = suggest(head, known)
    if close is not None:  # optimizer=sgd -> optim=sgd; optimizer.lr=0.1 -> optim.lr=0.1
        return [f"{close}{'.' + rest if rest else ''}={value}"]
    if not rest:
        owners = [g for g in groups if value in group_options(dirs, g)]
        if len(owners) == 1:  # network=lenet -> model=lenet
            return [f"{owners[0]}={value}"]
    key = f"{head}.{rest}" if rest else head
    return [f"{path}={value}" for path in _keys_named(key, dirs, groups, chosen)]


def _keys_named(name: str, dirs: list[str], groups: list[str], chosen: dict[str, str]) -> list[str]:
    """The dotted keys of the chosen group options that end with ``name`` (``weight_decay``, ``early_stopping.patience``);
    failing that, the one whose last part is closest to a plain ``name``."""
    keys: list[str] = []
    for group in (g for g in groups if g not in _GLOBAL_GROUPS):
        keys += [f"{group}.{k}" for k in _option_keys(dirs, group, chosen.get(group))]
    for group, schema in FIXED_GROUPS.items():
        keys += [f"{group}.{k}" for k in _schema_keys(schema)]
    keys = sorted(set(keys))
    exact = [k for k in keys if k.endswith("." + name)]
    if exact or "." in name:
        return exact
    leaves = {k.rpartition(".")[2]: k for k in keys}
    return [leaves[m] for m in difflib.get_close_matches(name, list(leaves), n=1)]


def _option_keys(dirs: list[str], group: str, option: Optional[str]) -> list[str]:
    path = find_option_file(dirs, group, option) if option and "," not in option else None
    if path is None:
        return []
    node = OmegaConf.load(path)
    return _flat_keys(OmegaConf.to_container(node, resolve=False)) if isinstance(node, DictConfig) else []


def _flat_keys(node: dict, prefix: str = "") -> list[str]:
    out = []
    for key, child in node.items():
        if key in ("defaults", "name"):
            continue
        if isinstance(child, dict):
            out += _flat_keys(child, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def _schema_keys(schema: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(schema):
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            out += _schema_keys(f.default_factory, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def check_sweep_needs_multirun(args: list[str], multirun: bool) -> None:
    """``optim.lr=0.1,0.01`` without ``-m``: Hydra says "Ambiguous value"; say to add -m (or quote it)."""
    if multirun:
        return
    parser = OverridesParser.create()
    for arg in args:
        override = parser.parse_overrides([arg])[0]
        if override.is_sweep_override():
            key = arg.split("=", 1)[0]
            raise ConfigError(f"'{arg}' is a sweep (one run per value): add -m to run it: {multirun_command(args)}; "
                              f"for a single run give {key} one value")


def space_in_list_hint(args: list[str], index: int) -> Optional[str]:
    """``-m optim.lr=0.1 0.01`` or ``model.hidden=[64, 32]``: the shell split one override at a space.
    The joined override, or None when the argument at ``index`` does not look like such a piece."""
    arg = args[index]
    before = args[index - 1] if index > 0 else ""
    after = args[index + 1] if index + 1 < len(args) else ""
    if "=" not in arg and "=" in before:  # the piece after the space
        joined = f"{before.rstrip(',')},{arg.lstrip(',')}"
    elif "=" in arg and after and "=" not in after and (arg.endswith(",") or arg.count("[") > arg.count("]")):
        joined = f"{arg.rstrip(',')},{after.lstrip(',')}"  # the piece before it
    else:
        return None
    return f"a space splits one override in two; write the list without spaces: {joined}"
