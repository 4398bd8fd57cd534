"""Config schemas and validation.

Two kinds of group:
- fixed groups (``trainer``, ``regularizer``) have a dataclass schema below;
- open groups (``model``, ``dataset``, ``split``, ``augment``, ``shift``, ``optim``, ``scheduler``) select a
  registry entry by ``name:``, and the schema is that builder's keyword-only
  signature (see ``dlexp.registry``), so adding an entry needs no schema code.

``validate`` runs right after Hydra composes the config and before any data is
loaded: a mistyped key or a value of the wrong type fails at once with the key's
full path (``model.hiden``), never silently ignored.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from dlexp.errors import ConfigError
from dlexp.registry import Registry


@dataclass
class EarlyStoppingConfig:
    monitor: str = "auto"  # "auto" = the task's val metric, e.g. val/acc; or val/loss, ...
    mode: str = "auto"  # "auto" | "min" | "max"
    patience: Optional[int] = None  # epochs without improvement before stopping; None = off
    min_delta: float = 0.0  # smallest change that counts as an improvement


@dataclass
class TrainerConfig:
    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: Optional[int] = None  # None = 4 x batch_size (no gradients to hold)
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    num_threads: Optional[int] = None  # CPU intra-op threads; None = PyTorch's default
    loss: str = "auto"  # "auto" = the task's loss (cross_entropy / mse); or a LOSSES name
    metric: str = "auto"  # "auto" = the task's metric (acc / rmse); or a METRICS name
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    grad_clip: Optional[float] = None  # max global grad norm; None = no clipping
    limit_train_batches: Optional[int] = None  # smoke runs: stop each epoch after N batches
    limit_eval_batches: Optional[int] = None
    progress: bool = True  # live progress bar on a terminal
    log_every_n_steps: int = 20  # progress-bar refresh; each refresh reads the loss (a device sync)
    checkpoints: bool = True  # write checkpoints/last.pt and best.pt


@dataclass
class RegularizerConfig:
    weight_decay: float = 0.0  # L2, applied by the optimizer to weights (not biases or norms)
    l1: float = 0.0  # coefficient of sum(|w|) added to the loss, biases excluded
    dropout: Optional[float] = None  # None = each model's own default


FIXED_GROUPS: dict[str, type] = {"trainer": TrainerConfig, "regularizer": RegularizerConfig}
TOP_LEVEL_KEYS: dict[str, Any] = {
    "seed": int, "resume": Optional[str],
    "finding": Optional[str],  # a course preset's claim, checked from the run files (dlexp.findings)
    "expected_test_acc": Optional[float],  # a published result the preset reproduces (the d2l_* table)
}


def open_groups() -> dict[str, Registry]:
    """Group name -> the registry its ``name:`` selects from (imported lazily: torch)."""
    from dlexp.data import AUGMENTS, DATASETS, SHIFTS, SPLITS
    from dlexp.models import MODELS
    from dlexp.optim import OPTIMIZERS, SCHEDULERS

    return {
        "model": MODELS, "dataset": DATASETS, "split": SPLITS, "optim": OPTIMIZERS, "scheduler": SCHEDULERS,
        "augment": AUGMENTS, "shift": SHIFTS,
    }


def builder_schema(registry: Registry, name: str) -> type:
    """A dataclass with ``name``, one field per keyword-only builder parameter, then the registry's common keys."""
    hints = typing.get_type_hints(registry.get(name))
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
        common_hints = typing.get_type_hints(registry.common)
        fields += [(f.name, common_hints[f.name], field(default=f.default)) for f in dataclasses.fields(registry.common)]
    return dataclasses.make_dataclass(f"{registry.kind}_{name}_config", fields)


def _check(path: str, schema: type, node: Any) -> DictConfig:
    """Merge ``node`` into ``schema``; any unknown key, bad type or missing value is a ConfigError."""
    if not isinstance(node, DictConfig):
        raise ConfigError(f"config '{path}' must be a mapping, got {node!r}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as err:
        key = f"{path}.{err.full_key}" if err.full_key else path
        raise ConfigError(f"unknown config key '{key}'. {_key_hint(schema, path)}") from None
    except OmegaConfBaseException as err:
        key = f"{path}.{err.full_key}" if getattr(err, "full_key", None) else path
        raise ConfigError(f"bad value for '{key}': {_first_line(err)}; fix it in the YAML or with {key}=...") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(f"config '{path}.{missing[0]}' is required; set it in the YAML or with {path}.{missing[0]}=...")
    OmegaConf.set_struct(merged, True)
    return merged


def _first_line(err: Exception) -> str:
    text = getattr(err, "msg", None) or str(err)
    return text.strip().splitlines()[0].rstrip(".")


def _key_hint(schema: type, path: str) -> str:
    keys = [f.name for f in dataclasses.fields(schema) if f.name != "name"]
    return f"Valid keys for {path}: {', '.join(keys) or '(none)'}"


def validate(cfg: DictConfig) -> DictConfig:
    """Return a typed copy of a composed run config, or raise ConfigError naming the bad key."""
    groups = open_groups()
    known = set(groups) | set(FIXED_GROUPS) | set(TOP_LEVEL_KEYS)
    for key in cfg.keys():
        if key not in known:
            raise ConfigError(f"unknown top-level config key '{key}'. Valid keys: {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    for group, registry in groups.items():
        node = cfg.get(group)
        if node is None or not isinstance(node, DictConfig) or "name" not in node:
            raise ConfigError(f"config group '{group}' needs a 'name:'; choose one with {group}=<option>")
        name = node.name
        if name not in registry:
            raise ConfigError(f"{group}.name: {registry.unknown_message(name)}")
        out[group] = _check(group, builder_schema(registry, name), node)
    for group, schema in FIXED_GROUPS.items():
        out[group] = _check(group, schema, cfg.get(group, OmegaConf.create({})))
    for key, typ in TOP_LEVEL_KEYS.items():
        value = cfg.get(key)
        optional = typing.get_origin(typ) is typing.Union
        base = typing.get_args(typ)[0] if optional else typ
        if (value is None and optional) or (isinstance(value, base) and not isinstance(value, bool)):
            out[key] = value
            continue
        raise ConfigError(f"config '{key}' must be of type {base.__name__}, got {value!r}")
    from dlexp.findings import check_name

    check_name(out["finding"])
    typed = OmegaConf.create(out)
    OmegaConf.set_struct(typed, True)
    return typed


# --------------------------------------------------------------------------
# Where the configs live, and a check of command-line overrides before Hydra.


def _find_config_dir() -> str:
    packaged = Path(__file__).resolve().parent / "conf"  # non-editable install (shipped in the wheel)
    source = Path(__file__).resolve().parents[2] / "conf"  # source checkout / editable install
    return str(packaged if packaged.is_dir() else source)


CONFIG_DIR = _find_config_dir()


def _register_resolvers() -> None:
    """Resolvers that conf/train.yaml uses to put a resumed run back in its own directory."""
    from dlexp import resume

    if not OmegaConf.has_resolver("dlexp_run_dir"):
        OmegaConf.register_new_resolver("dlexp_run_dir", resume.run_dir_of)
        OmegaConf.register_new_resolver("dlexp_hydra_subdir", resume.hydra_subdir)


_register_resolvers()
_SWEEP_FUNCS = ("range(", "choice(", "interval(", "glob(", "tag(", "sort(", "shuffle(")
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version"}


def _extra_config_dirs(argv: list[str]) -> list[str]:
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


def _group_options(dirs: list[str], group: str) -> list[str]:
    options = set()
    for d in dirs:
        options.update(p.stem for p in (Path(d) / group).glob("*.yaml"))
    return sorted(options)


def _default_choices(dirs: list[str]) -> dict[str, str]:
    """group -> option chosen by the defaults list of train.yaml."""
    primary = Path(CONFIG_DIR) / "train.yaml"
    choices: dict[str, str] = {}
    for entry in OmegaConf.load(primary).get("defaults", []):
        if isinstance(entry, DictConfig):
            for key, value in entry.items():
                if isinstance(value, str):
                    choices[str(key).lstrip("/")] = value
    return choices


def preflight(argv: list[str], *, writes_outputs: bool = True) -> None:
    """Reject a mistyped group option (``model=lenett``) or key (``model.hiden=3``) with a one-line hint.

    Hydra would also refuse these, but with a multi-line report; anything this
    check does not understand (sweep functions, packages, ``+``/``~`` edits) is
    left to Hydra. ``writes_outputs=False`` (commands that write nothing, such
    as ``dlexp.summary``) skips the output-dir check.
    """
    if any(arg in _INFO_FLAGS or arg in ("-c", "--cfg") or arg.startswith("--cfg=") for arg in argv):
        return
    dirs = [CONFIG_DIR, *_extra_config_dirs(argv)]
    groups = {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "~", "hydra"))]
    defaults = _default_choices(dirs)
    chosen = dict(defaults)
    for arg in overrides:
        key, value = arg.lstrip("+").split("=", 1)
        if key in groups and "@" not in key and not any(f in value for f in _SWEEP_FUNCS):
            options = _group_options(dirs, key)
            for option in value.split(","):
                if option not in options:
                    hint = difflib.get_close_matches(option, options, n=1)
                    mean = f" Did you mean '{hint[0]}'?" if hint else ""
                    raise ConfigError(f"unknown {key} '{option}'.{mean} Choices: {', '.join(options)} (use {key}=<choice>)")
            chosen[key] = value  # a sweep (a,b) is checked against each of its options
    chosen = _with_experiment_choices(dirs, chosen, explicit={a.lstrip("+").split("=", 1)[0] for a in overrides})
    if writes_outputs:
        _check_output_dir(argv)
    for arg in overrides:
        if arg.startswith("resume=") and arg != "resume=null":
            from dlexp.resume import checkpoint_path

            checkpoint_path(arg.split("=", 1)[1])  # must exist before Hydra creates a run dir there
    for arg in overrides:
        if arg.startswith("+"):
            continue  # an explicit addition; the schema check after composing still applies
        key = arg.split("=", 1)[0]
        group, _, rest = key.partition(".")
        if group in groups and rest and group in chosen:
            for option in chosen[group].split(","):
                _check_key_exists(dirs, group, option, rest)
            if "," in chosen[group] and group in defaults:
                _check_sweep_key(dirs, group, defaults[group], chosen[group], arg)


def _with_experiment_choices(dirs: list[str], chosen: dict[str, str], explicit: set[str]) -> dict[str, str]:
    """The group options after ``experiment=NAME``: its ``override /group: option`` entries switch groups
    that the command line does not set itself. A group that a sweep over experiments may switch is
    dropped (its keys are left to Hydra and the schema check after composing)."""
    names = [n for n in chosen.get("experiment", "null").split(",") if n != "null"]
    switched: dict[str, set[str]] = {}
    for name in names:
        path = next((Path(d) / "experiment" / f"{name}.yaml" for d in dirs if (Path(d) / "experiment" / f"{name}.yaml").is_file()), None)
        for entry in (OmegaConf.load(path).get("defaults", []) if path is not None else []):
            for key, value in (entry.items() if isinstance(entry, DictConfig) else []):
                group = str(key).removeprefix("override").strip().lstrip("/")
                if group not in explicit and isinstance(value, str):
                    switched.setdefault(group, set()).add(value)
    out = dict(chosen)
    for group, options in switched.items():
        if len(names) == 1:
            out[group] = options.pop()
        else:
            out.pop(group, None)
    return out


def _check_key_exists(dirs: list[str], group: str, option: str, dotted: str) -> None:
    for d in dirs:
        path = Path(d) / group / f"{option}.yaml"
        if path.is_file():
            node: Any = OmegaConf.load(path)
            break
    else:
        return
    if "defaults" in node:
        return  # composed from other files: let Hydra decide
    walked = group
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():  # keys(): a required ??? value counts
            keys = ", ".join(k for k in node.keys() if k != "name") if isinstance(node, DictConfig) else "(none)"
            raise ConfigError(f"unknown key '{walked}.{part}' for {group}={option}. Valid keys: {keys}")
        if OmegaConf.is_missing(node, part):
            return
        node = node[part]
        walked += "." + part


def _check_sweep_key(dirs: list[str], group: str, default: str, swept: str, arg: str) -> None:
    """Hydra composes a sweep's master config with the group's default option and applies
    plain overrides to it, so ``-m model=vgg11,alexnet model.width_div=4`` fails when the
    default model has no ``width_div``; ``++`` (add or override) works for every job."""
    try:
        _check_key_exists(dirs, group, default, arg.split("=", 1)[0].partition(".")[2])
    except ConfigError:
        raise ConfigError(
            f"'{arg}' sets a key that the default {group}={default} lacks, and Hydra applies it there "
            f"before sweeping {group}={swept}; write ++{arg}"
        ) from None


def _check_output_dir(argv: list[str]) -> None:
    """Hydra creates the run dir before dlexp runs; make sure it can, or say how to fix it."""
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    target = next((a.split("=", 1)[1] for a in argv if a.startswith(key + "=")), "outputs")
    if "${" in target:
        return
    path = Path(target).expanduser().absolute()
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        reason = "not a directory" if not ancestor.is_dir() else "not writable"
        raise ConfigError(f"cannot create output dir {path}: {ancestor} is {reason}; set {key}=<writable path>")
