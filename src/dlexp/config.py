"""Config schemas and validation.

Two kinds of group:
- fixed groups (``trainer``, ``regularizer``) have a dataclass schema below;
- open groups (``model``, ``dataset``, ``split``, ``augment``, ``shift``, ``optim``, ``scheduler``) select a
  registry entry by ``name:``, and the schema is that builder's keyword-only
  signature (see ``dlexp.registry``), so adding an entry needs no schema code.

``validate`` runs right after Hydra composes the config and before any data is
loaded: a mistyped key, a value of the wrong type or one outside the limits its
hint declares (``Annotated[int, Ge(1)]``, ``Literal[...]``; see ``dlexp.constraints``)
fails at once with the key's full path (``model.hiden``), never silently ignored.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from dlexp.constraints import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Seed,
    check,
    check_fields,
    did_you_mean,
    plain_dataclass,
    plain_type,
)
from dlexp.errors import ConfigError
from dlexp.registry import Registry


@dataclass
class EarlyStoppingConfig:
    monitor: str = "auto"  # "auto" = the task's val metric, e.g. val/acc; or val/loss, ...
    mode: Literal["auto", "min", "max"] = "auto"
    patience: Optional[PositiveInt] = None  # epochs without improvement before stopping (0 would stop at once); None = off
    min_delta: NonNegativeFloat = 0.0  # smallest change that counts as an improvement


@dataclass
class TrainerConfig:
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 64
    eval_batch_size: Optional[PositiveInt] = None  # None = 4 x batch_size (no gradients to hold)
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    num_threads: Optional[PositiveInt] = None  # CPU intra-op threads; None = PyTorch's default
    loss: str = "auto"  # "auto" = the task's loss (cross_entropy / mse); or a LOSSES name
    metric: str = "auto"  # "auto" = the task's metric (acc / rmse); or a METRICS name
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    grad_clip: Optional[PositiveFloat] = None  # max global grad norm; None = no clipping
    limit_train_batches: Optional[PositiveInt] = None  # smoke runs: stop each epoch after N batches
    limit_eval_batches: Optional[PositiveInt] = None
    progress: bool = True  # live progress bar on a terminal
    log_every_n_steps: PositiveInt = 20  # progress-bar refresh; each refresh reads the loss (a device sync)
    checkpoints: bool = True  # write checkpoints/last.pt and best.pt
    checkpoint_every_n_steps: Optional[PositiveInt] = None  # also mid-epoch, every N optimizer steps
    checkpoint_every_minutes: Optional[PositiveFloat] = None  # also mid-epoch, every M minutes (one process)
    limit_test_batches: Optional[PositiveInt] = None  # smoke runs: score at most N test batches (said in the summary)
    precision: Literal["32", "bf16", "16"] = "32"  # through torch.autocast; "16" (float16) adds a gradient scaler
    compile: Any = False  # false | true | a torch.compile mode: default, reduce-overhead, max-autotune, ...
    channels_last: Any = "auto"  # auto (on for conv nets on CUDA) | true | false
    sync_batchnorm: bool = False  # under torchrun on CUDA: BatchNorm statistics over every rank's batch
    label_smoothing: Fraction = 0.0  # cross-entropy losses only (classes or tokens); an error with any other loss


@dataclass
class RegularizerConfig:
    weight_decay: NonNegativeFloat = 0.0  # L2, applied by the optimizer to weights (not biases or norms)
    l1: NonNegativeFloat = 0.0  # coefficient of sum(|w|) added to the loss, biases excluded
    dropout: Optional[Fraction] = None  # None = each model's own default


@dataclass
class DecodeConfig:
    """How sequence tasks (translation) turn a model into output sentences; an error for other tasks."""

    beam_size: PositiveInt = 1  # 1 = greedy decoding
    length_penalty: NonNegativeFloat = 0.75  # beam score log P / L**alpha (the course's alpha)
    max_len_a: NonNegativeFloat = 1.5  # output limit a * source length (tokens, with <eos>) + b, as fairseq's
    max_len_b: NonNegativeInt = 5


FIXED_GROUPS: dict[str, type] = {"trainer": TrainerConfig, "regularizer": RegularizerConfig, "decode": DecodeConfig}
TOP_LEVEL_KEYS: dict[str, Any] = {
    "seed": Seed, "resume": Optional[str],
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
    """A dataclass with ``name``, one field per keyword-only builder parameter, then the registry's common keys.

    Field types keep the builder's declared limits (``Annotated[int, Ge(1)]``, ``Literal[...]``);
    ``_check`` hands OmegaConf their plain form and checks the limits itself.
    """
    hints = typing.get_type_hints(registry.get(name), include_extras=True)
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
    try:
        merged = OmegaConf.merge(OmegaConf.structured(plain_dataclass(schema)), node)
    except ConfigKeyError as err:
        raise ConfigError(_unknown_key_message(path, schema, err.full_key or "")) from None
    except OmegaConfBaseException as err:
        key = f"{path}.{err.full_key}" if getattr(err, "full_key", None) else path
        raise ConfigError(f"bad value for '{key}': {_first_line(err)}; fix it in the YAML or with {key}=...") from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(f"config '{path}.{missing[0]}' is required; set it in the YAML or with {path}.{missing[0]}=...")
    check_fields(path, schema, OmegaConf.to_container(merged, resolve=True))
    OmegaConf.set_struct(merged, True)
    return merged


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


def validate(cfg: DictConfig) -> DictConfig:
    """Return a typed copy of a composed run config, or raise ConfigError naming the bad key."""
    groups = open_groups()
    known = set(groups) | set(FIXED_GROUPS) | set(TOP_LEVEL_KEYS)
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
            raise ConfigError(f"{group}.name: {registry.unknown_message(name)}")
        out[group] = _check(group, builder_schema(registry, name), node)
    for group, schema in FIXED_GROUPS.items():
        out[group] = _check(group, schema, cfg.get(group, OmegaConf.create({})))
    for key, hint in TOP_LEVEL_KEYS.items():
        out[key] = _check_top_level(key, hint, cfg.get(key))
    from dlexp.findings import check_name

    check_name(out["finding"])
    typed = OmegaConf.create(out)
    OmegaConf.set_struct(typed, True)
    return typed


def _check_top_level(key: str, hint: Any, value: Any) -> Any:
    typ = plain_type(hint)
    optional = typing.get_origin(typ) is typing.Union
    base = typing.get_args(typ)[0] if optional else typ
    if not ((value is None and optional) or (isinstance(value, base) and not isinstance(value, bool))):
        raise ConfigError(f"config '{key}' must be of type {base.__name__}, got {value!r}")
    check(key, hint, value)
    return value


def chosen_options(cfg: DictConfig) -> dict[str, str]:
    """The options the run was composed from (``optim: sgd_momentum``), and each registry builder they
    select (``optim_builder: sgd``) where the two names differ. Without Hydra (tests), the builder names."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    except ValueError:
        choices = {}
    out: dict[str, str] = {}
    for group in ("model", "dataset", "optim"):
        builder = cfg[group].name
        out[group] = choices.get(group) or builder
        if out[group] != builder:
            out[f"{group}_builder"] = builder
    return out


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
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version"}


def _extra_config_dirs(argv: list[str]) -> list[str]:
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


def group_options(dirs: list[str], group: str) -> list[str]:
    options = set()
    for d in dirs:
        options.update(p.stem for p in (Path(d) / group).glob("*.yaml"))
    return sorted(options)


def default_choices(dirs: list[str]) -> dict[str, str]:
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
    """Reject a malformed override (``optim.lr=1e-2,``), a mistyped group option (``model=lenett``)
    or key (``model.hiden=3``) with a one-line hint.

    Hydra would also refuse these, but with a multi-line report; anything this
    check does not understand (sweep functions, packages, ``+``/``~`` edits) is
    left to Hydra. ``writes_outputs=False`` (commands that write nothing, such
    as ``dlexp.summary``) skips the output-dir check. ``--cfg`` (print the
    config, run nothing) gets every check a run gets, the full schema included.
    """
    if any(arg in INFO_FLAGS for arg in argv):
        return
    _check_grammar(_positional_args(argv))
    shows_config = any(arg in ("-c", "--cfg") or arg.startswith("--cfg=") for arg in argv)
    dirs = [CONFIG_DIR, *_extra_config_dirs(argv)]
    groups = {p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir()}
    overrides = [a for a in argv if "=" in a and not a.startswith(("-", "~", "hydra"))]
    defaults = default_choices(dirs)
    chosen = dict(defaults)
    for arg in overrides:
        key, value = arg.lstrip("+").split("=", 1)
        if key in groups and "@" not in key and not any(f in value for f in _SWEEP_FUNCS):
            options = group_options(dirs, key)
            for option in value.split(","):
                if option not in options:
                    raise ConfigError(
                        f"unknown {key} '{option}'.{did_you_mean(option, options)} Choices: {', '.join(options)} (use {key}=<choice>)"
                    )
            chosen[key] = value  # a sweep (a,b) is checked against each of its options
    _check_hydra_groups([a for a in argv if a.lstrip("+").startswith("hydra/") and "=" in a], dirs)
    chosen = _with_experiment_choices(dirs, chosen, explicit={a.lstrip("+").split("=", 1)[0] for a in overrides})
    if writes_outputs and not shows_config:
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
    if shows_config:
        _validate_shown_config(argv)


# Hydra's flags that take the next argument as their value (``--cfg job``, ``-cn train``).
_FLAGS_WITH_VALUE = {
    "--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
    "--experimental-rerun",
}


def _positional_args(argv: list[str]) -> list[str]:
    """The overrides of a command line: every argument that is not a flag or a flag's value."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _check_grammar(args: list[str]) -> None:
    """Parse each override with Hydra's own parser, so a typo in its syntax is one line, not Hydra's report."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in args:
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            raise ConfigError(f"cannot parse the override '{arg}': {_grammar_hint(arg)}") from None


def _grammar_hint(arg: str) -> str:
    key, eq, value = arg.partition("=")
    if not eq:
        return f"an override is key=value, e.g. {key}=1"
    if value.rstrip().endswith(",") or ",," in value:
        return f"a comma separates sweep values and none follows it; remove the extra ',' (e.g. {key}={value.strip(',')})"
    for opening, closing in ("[]", "{}", "()"):
        if value.count(opening) != value.count(closing):
            return f"'{opening}' and '{closing}' do not pair up; close every '{opening}' (e.g. model.hidden=[64,32])"
    if value.count("'") % 2 or value.count('"') % 2:
        return "a quote is not closed; close it or drop it"
    return "quote a value that holds spaces or special characters, e.g. 'dataset.root=\"my dir\"'"


def _validate_shown_config(argv: list[str]) -> None:
    """``--cfg`` prints the config without running it: compose it here and check it as a run would."""
    if any(a in argv for a in ("-m", "--multirun", "--config-name", "-cn", "--config-path", "-cp")):
        return  # one config per job, or another primary config: left to Hydra
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    overrides = _positional_args(argv)
    extra = [f"file://{Path(d).absolute()}" for d in _extra_config_dirs(argv)]
    if extra:
        overrides.append(f"hydra.searchpath=[{','.join(extra)}]")
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides)
    except (HydraException, OmegaConfBaseException):
        return  # Hydra composes the same command line next and reports the problem itself
    validate(cfg)


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
            hint = did_you_mean(part, node.keys(), prefix=walked + ".") if isinstance(node, DictConfig) else ""
            raise ConfigError(f"unknown key '{walked}.{part}' for {group}={option}.{hint} Valid keys: {keys}")
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


def _check_hydra_groups(args: list[str], dirs: list[Path]) -> None:
    """``hydra/launcher=...`` and Hydra's other groups: their options come from Hydra, its plugins and
    conf/hydra/, so ask Hydra's config loader (0.2 s, only when such an override is given)."""
    if not args:
        return
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(dirs[0]), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for arg in args:
            group, value = arg.lstrip("+").split("=", 1)
            options = loader.get_group_options(group)
            if not options:
                groups = [f"hydra/{g}" for g in sorted(loader.list_groups("hydra"))]
                raise ConfigError(f"'{arg}': Hydra has no config group '{group}'.{did_you_mean(group, groups)} "
                                  f"Hydra's groups: {', '.join(groups)}")
            for option in value.split(","):
                if option not in options:
                    raise ConfigError(f"unknown {group} '{option}'.{did_you_mean(option, options)} "
                                      f"Choices: {', '.join(options)} (use {group}=<choice>)")


def _check_output_dir(argv: list[str]) -> None:
    """Hydra creates the run dir before dlexp runs; make sure it can, or say how to fix it."""
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    target = next((a.split("=", 1)[1] for a in argv if a.startswith(key + "=")), "outputs")
    static = target
    if "${" in target:  # resolved by Hydra later (e.g. ${now:...}): check the fixed folders before it
        static = target.split("${", 1)[0].rpartition("/")[0]
        if not static:
            return
    path = Path(static).expanduser().absolute()
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    reason = "not a directory" if not ancestor.is_dir() else None if _can_make_dir_in(ancestor) else "not writable"
    if reason:
        shown = path if static == target else target
        raise ConfigError(f"cannot create output dir {shown}: {ancestor} is {reason}; set {key}=<writable path>")


def _can_make_dir_in(folder: Path) -> bool:
    """Make (and remove) a folder there: permission bits alone say yes to root on read-only or virtual
    file systems (e.g. /proc), where Hydra's mkdir would then fail with a traceback."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dlexp-probe-", dir=folder))
    except OSError:
        return False
    return True
