"""Validation of a composed run config: every key known, every value of its type and within its limits.

Two kinds of group:
- fixed groups (``trainer``, ``regularizer``, ``decode``) have a dataclass schema (``dlexp.config.schema``);
- open groups (``model``, ``dataset``, ``split``, ``augment``, ``shift``, ``optim``, ``scheduler``) select a
  registry entry by ``name:``, and the schema is that builder's keyword-only
  signature (see ``dlexp.config.registry``), so adding an entry needs no schema code.

``validate`` runs right after Hydra composes the config and before any data is
loaded: a mistyped key, a value of the wrong type or one outside the limits its
hint declares (``Annotated[int, Ge(1)]``, ``Literal[...]``; see ``dlexp.config.constraints``)
fails at once with the key's full path (``model.hiden``), never silently ignored.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import typing
from dataclasses import field
from typing import Any, Mapping

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from dlexp.config.constraints import check, check_fields, did_you_mean, plain_dataclass, plain_type
from dlexp.config.registry import Registry
from dlexp.config.schema import FIXED_GROUPS, PLUGINS_KEY, SEARCH_GROUP, TOP_LEVEL_KEYS, SearchConfig
from dlexp.errors import ConfigError


def builder_schema(registry: Registry, name: str) -> type:
    """A dataclass with ``name``, one field per keyword-only builder parameter, then the registry's common keys.

    Field types keep the builder's declared limits (``Annotated[int, Ge(1)]``, ``Literal[...]``);
    ``_check`` hands OmegaConf their plain form and checks the limits itself. Made once per builder (a
    plugin's builder registered anew, after an edit, gets its own)."""
    return _builder_schema(registry, name, registry.get(name))


@functools.lru_cache(maxsize=None)
def _builder_schema(registry: Registry, name: str, builder: Any) -> type:
    hints = typing.get_type_hints(builder, include_extras=True)
    fields: list[tuple[str, Any, Any]] = [("name", str, field(default=name))]
    for key, param in registry.config_keys(name).items():
        default = param.default
        if default is inspect.Parameter.empty:
            spec = field(default=MISSING)  # required: must be set in the YAML
        elif isinstance(default, (list, tuple, dict)):
            value = list(default) if isinstance(default, tuple) else default
            spec = field(default_factory=lambda v=value: copy.deepcopy(v))
        else:
            spec = field(default=default)
        fields.append((key, hints.get(key, Any), spec))
    if registry.common is not None:  # keys shared by every entry, e.g. model.init
        common_hints = typing.get_type_hints(registry.common, include_extras=True)
        fields += [(f.name, common_hints[f.name], field(default=f.default)) for f in dataclasses.fields(registry.common)]
    return dataclasses.make_dataclass(f"{registry.kind}_{name}_config", fields)


def _check(path: str, schema: type, node: Any) -> DictConfig:
    """Merge ``node`` into ``schema`` and check its declared limits; any unknown key, bad type,
    missing or out-of-range value is a ConfigError naming the key's full path."""
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config '{path}' must be a mapping, got {node!r}")
    _check_lists(path, schema, node)
    try:
        merged = OmegaConf.merge(_structured(plain_dataclass(schema)), node)
    except ConfigKeyError as err:
        raise ConfigError(_unknown_key_message(path, schema, err.full_key or "")) from None
    except OmegaConfBaseException as err:
        key = f"{path}.{err.full_key}" if getattr(err, "full_key", None) else path
        raise ConfigError(f"bad value for '{key}': {_first_line(err)}; fix it in the YAML or with {key}=...") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        key = f"{path}.{missing[0]}"
        raise ConfigError(f"config '{key}' is required; set it in the option's YAML file, or on the command line with "
                          f"{key}=... (+{key}=... if the YAML file does not list it)")
    check_fields(path, schema, OmegaConf.to_container(merged, resolve=True))
    OmegaConf.set_struct(merged, True)
    return merged


@functools.lru_cache(maxsize=None)
def _structured(plain: type) -> DictConfig:
    """The schema as a config, made once: ``OmegaConf.merge`` copies it, and never changes it."""
    return OmegaConf.structured(plain)


def _check_lists(path: str, schema: type, node: DictConfig) -> None:
    """``model.hidden=256`` for a list key: OmegaConf says "AnyNode is not a ListConfig"; suggest ``[256]``."""
    hints = typing.get_type_hints(plain_dataclass(schema))
    raw = OmegaConf.to_container(node, resolve=False)  # each value as written: interpolations unresolved
    for f in dataclasses.fields(schema):
        hint = hints.get(f.name)
        if typing.get_origin(hint) is typing.Union:  # Optional[List[int]]
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if f.name not in node or typing.get_origin(hint) is not list:
            continue
        value = raw[f.name]
        if value is None or isinstance(value, list) or OmegaConf.is_interpolation(node, f.name):
            continue
        key = f"{path}.{f.name}"
        if isinstance(value, str):  # not an item of the list either: show the list's form with its default
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            example = ",".join(map(str, default)) if isinstance(default, (list, tuple)) and default else "..."
            raise ConfigError(f"'{key}' takes a list, got {value!r}; write it in brackets, e.g. {key}=[{example}]")
        raise ConfigError(f"'{key}' takes a list, got {value!r}; write {key}=[{value}] (several values: "
                          f"{key}=[{value},{value}])")


def _first_line(err: Exception) -> str:
    text = getattr(err, "msg", None) or str(err)
    return text.strip().splitlines()[0].rstrip(".")


def _unknown_key_message(path: str, schema: type, dotted: str) -> str:
    """``unknown config key 'trainer.epoch'. Did you mean 'trainer.epochs'? Valid keys for trainer: ...``"""
    *parents, leaf = dotted.split(".") if dotted else [""]
    node_schema, node_path = schema, path
    for part in parents:  # walk down nested groups, e.g. trainer.early_stopping
        hint = typing.get_type_hints(node_schema).get(part)
        if not dataclasses.is_dataclass(hint):
            break
        node_schema, node_path = hint, f"{node_path}.{part}"
    keys = [f.name for f in dataclasses.fields(node_schema) if f.name != "name"]
    key = f"{path}.{dotted}" if dotted else path
    return (
        f"unknown config key '{key}'.{did_you_mean(leaf, keys, prefix=node_path + '.')} "
        f"Valid keys for {node_path}: {', '.join(keys) or '(none)'}"
    )


def validate(cfg: DictConfig, groups: Mapping[str, Registry]) -> DictConfig:
    """A typed copy of a composed run config, or a ConfigError naming the bad key.

    ``groups`` maps each open group to the registry its ``name:`` selects from (``dlexp.train.OPEN_GROUPS``)."""
    known = set(groups) | set(FIXED_GROUPS) | set(TOP_LEVEL_KEYS) | {SEARCH_GROUP, PLUGINS_KEY}
    for key in cfg.keys():
        if key not in known:
            raise ConfigError(
                f"unknown top-level config key '{key}'.{did_you_mean(key, known)} Valid keys: {', '.join(sorted(known))}"
            )
    out: dict[str, Any] = {}
    for group, registry in groups.items():
        node = cfg.get(group)
        if node is None or not isinstance(node, DictConfig) or "name" not in node:
            raise ConfigError(f"config group '{group}' needs a 'name:'; choose one with {group}=<option>")
        name = node.name
        if name not in registry:
            raise ConfigError(f"{group}.name: {registry.unknown_message(name)}. Your own {group}? Name the file that "
                              f"registers it: plugins=[your_file.py]")
        out[group] = _check(group, builder_schema(registry, name), node)
    for group, schema in FIXED_GROUPS.items():
        out[group] = _check(group, schema, cfg.get(group, OmegaConf.create({})))
    for key, hint in TOP_LEVEL_KEYS.items():
        out[key] = _check_top_level(key, hint, cfg.get(key))
    out[PLUGINS_KEY] = plugin_names(cfg.get(PLUGINS_KEY))
    if out["regularizer"].dropout is not None and not groups["model"].takes(out["model"].name, "dropout"):
        name = out["model"].name
        raise ConfigError(f"model '{name}' takes no 'dropout' keyword, but regularizer.dropout="
                          f"{out['regularizer'].dropout} passes it one: add a dropout parameter to {name}'s builder "
                          f"({groups['model'].origin(name)}), or leave regularizer.dropout unset")
    if out["regularizer"].dropout is not None and "dropout" in out["model"]:
        out["model"].dropout = out["regularizer"].dropout  # the value that takes effect, wherever it is recorded
    if cfg.get(SEARCH_GROUP) is not None:  # checked here, kept out of the run's own config: the search's, not a run's
        search_settings(cfg[SEARCH_GROUP])
    typed = OmegaConf.create(out)
    OmegaConf.set_struct(typed, True)
    return typed


def plugin_names(value: Any) -> list[str]:
    """``plugins``: a list of names (files, entry points or modules; ``dlexp.config.plugins``)."""
    if value is None:
        return []
    names = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else None
    if names is None or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"config '{PLUGINS_KEY}' takes a list of plugin names or .py files, got {value!r}; e.g. "
                          f"{PLUGINS_KEY}=[my_models.py]")
    return names


def search_settings(node: Any) -> DictConfig:
    """The checked ``hparams_search`` node of a search (``dlexp.config.schema.SearchConfig``)."""
    return _check(SEARCH_GROUP, SearchConfig, node)


def check_one_dropout(cfg: DictConfig, own: Any) -> None:
    """Two keys set a model's dropout: ``model.dropout`` (the model option's own, ``own`` in its file) and
    ``regularizer.dropout`` (``regularizer=dropout``: 0.5), which overrides it. Both set, to different
    values, would ignore one of them: a one-line error naming both."""
    model, reg = cfg.get("model") or {}, cfg.get("regularizer") or {}
    mine, theirs = model.get("dropout"), reg.get("dropout")
    if theirs is None or mine is None or own is None or mine == own or float(mine) == float(theirs):
        return
    raise ConfigError(f"model.dropout={mine} (from the command line or a preset) and regularizer.dropout={theirs} "
                      f"(from regularizer=dropout or the command line) both set the model's dropout; keep one: "
                      f"drop model.dropout, or use regularizer=none with model.dropout={mine}")


def _check_top_level(key: str, hint: Any, value: Any) -> Any:
    typ = plain_type(hint)
    optional = typing.get_origin(typ) is typing.Union
    base = typing.get_args(typ)[0] if optional else typ
    if not ((value is None and optional) or (isinstance(value, base) and not isinstance(value, bool))):
        raise ConfigError(f"config '{key}' must be of type {base.__name__}, got {value!r}")
    check(key, hint, value)
    return value
