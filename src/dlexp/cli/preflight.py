"""Checks of the command line before Hydra: a malformed override, a mistyped group option or key, an
unusable output dir, a ``resume=`` that names nothing, each as one line naming the fix.

Hydra would refuse most of these too, but with a multi-line report; anything these checks do not
understand (sweep functions, packages, ``+``/``~`` edits) is left to Hydra. Everything here reads the
YAML files alone, without torch; only ``--cfg`` (which prints the config a run would use) imports the
registries to validate it fully.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from dlexp import course
from dlexp.cli.help import INFO_FLAGS
from dlexp.cli.mistakes import check_sweep_needs_multirun, check_top_level_keys, space_in_list_hint
from dlexp.config.constraints import did_you_mean
from dlexp.config.schema import SearchConfig
from dlexp.config.validate import check_one_dropout
from dlexp.config.files import (
    CONFIG_DIR, PRIMARY_CONFIG, config_groups, default_choices, find_option_file, group_options,
)
from dlexp.errors import ConfigError
from dlexp.runs.files import find_checkpoint, run_dir_of

CHDIR_REFUSED = ("hydra.job.chdir=true is not supported: it moves the working directory into the run dir, so relative "
                 "data paths and the paths dlexp prints would be wrong; leave it false (a run writes only into its run "
                 "dir anyway)")
_SWEEP_FUNCS = ("range(", "choice(", "interval(", "glob(", "tag(", "sort(", "shuffle(")


def extra_config_dirs(argv: list[str]) -> list[str]:
    """The folders ``--config-dir`` adds to the config search path."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


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
    multirun = "-m" in argv or "--multirun" in argv
    if writes_outputs:
        check_sweep_needs_multirun(_positional_args(argv), multirun)
    dirs = [CONFIG_DIR, *extra_config_dirs(argv)]
    _check_config_dirs(extra_config_dirs(argv))
    groups = set(config_groups())
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
    if str(last_value(argv, "hydra.job.chdir")).lower() == "true":
        raise ConfigError(CHDIR_REFUSED)
    _check_search_keys(argv)
    if multirun and chosen.get("hparams_search") in (None, "null") and not any(  # a grid (an experiment may pick
            a.lstrip("+").startswith(("hydra/sweeper=", "experiment=")) for a in argv):  # its own sweeper)
        _check_grid_values([a for a in overrides if not a.lstrip("+").startswith("hparams_search.")])
    chosen = _with_experiment_choices(dirs, chosen, explicit={a.lstrip("+").split("=", 1)[0] for a in overrides})
    check_top_level_keys(overrides, dirs, groups, chosen)
    if writes_outputs and not shows_config:
        _check_output_dir(argv)
    resume = last_value(overrides, "resume")
    if resume and resume != "null":
        find_checkpoint(resume, run_dir=last_value(argv, "hydra.run.dir"))  # before Hydra makes a dir there
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
    parser = OverridesParser.create()
    for i, arg in enumerate(args):
        try:
            parser.parse_overrides([arg])
        except OverrideParseException:
            hint = space_in_list_hint(args, i) or _grammar_hint(arg)
            raise ConfigError(f"cannot parse the override '{arg}': {hint}") from None


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
    overrides = _positional_args(argv)
    extra = [f"file://{Path(d).absolute()}" for d in extra_config_dirs(argv)]
    if extra:
        overrides.append(f"hydra.searchpath=[{','.join(extra)}]")
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=PRIMARY_CONFIG, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException):
        return  # Hydra composes the same command line next and reports the problem itself
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    check_run_config(cfg, choices, [CONFIG_DIR, *extra_config_dirs(argv)])
    from dlexp import train  # torch: --cfg builds what a run builds, to refuse what a run refuses

    with contextlib.redirect_stdout(sys.stderr):  # notes of the build (e.g. a resize) must not mix into the YAML
        train.check_buildable(cfg, config_dirs=[CONFIG_DIR, *extra_config_dirs(argv)])


def check_run_config(cfg: DictConfig, choices: Optional[dict[str, str]] = None, dirs: Sequence[str] = (CONFIG_DIR,)) -> None:
    """The checks of a composed config that need its files rather than its schema (one value per setting,
    a course preset's ``finding``), for ``--cfg`` and for a run; ``dlexp.train.prepare`` validates the
    rest. ``choices``: the option each group was composed from (``model: mlp``), found in ``dirs``."""
    option = (choices or {}).get("model")
    path = find_option_file(list(dirs), "model", option) if option else None
    check_one_dropout(cfg, OmegaConf.load(path).get("dropout") if path is not None else None)
    finding = cfg.get("finding")
    if finding is not None:
        course.findings.check_name(str(finding))


def _with_experiment_choices(dirs: list[str], chosen: dict[str, str], explicit: set[str]) -> dict[str, str]:
    """The group options after ``experiment=NAME``: its ``override /group: option`` entries switch groups
    that the command line does not set itself. A group that a sweep over experiments may switch is
    dropped (its keys are left to Hydra and the schema check after composing)."""
    names = [n for n in chosen.get("experiment", "null").split(",") if n != "null"]
    switched: dict[str, set[str]] = {}
    for name in names:
        path = find_option_file(dirs, "experiment", name)
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


def _check_config_dirs(extra: list[str]) -> None:
    """Each ``--config-dir`` exists, and none of its option files has the name of a built-in option: Hydra would
    take dlexp's own and silently ignore the user's."""
    for folder in extra:
        if not Path(folder).is_dir():
            raise ConfigError(f"--config-dir {folder}: no such folder (relative paths start in {Path.cwd()})")
        for own in sorted(Path(folder).glob("*/*.yaml")):
            if (Path(CONFIG_DIR) / own.parent.name / own.name).is_file():
                raise ConfigError(f"{own} has the name of dlexp's own {own.parent.name}={own.stem}, which takes its place: "
                                  f"yours is never used; rename it (e.g. {own.parent / ('my_' + own.name)})")


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
            own = "" if Path(d) == Path(CONFIG_DIR) else (
                f" (if its builder takes '{part}', set it in {path}, or add it here with +{walked}.{part}=...)")
            raise ConfigError(f"unknown key '{walked}.{part}' for {group}={option}.{hint} Valid keys: {keys or '(none)'}{own}")
        if OmegaConf.is_missing(node, part):
            return
        node = node[part]
        walked += "." + part


def _check_grid_values(overrides: list[str]) -> None:
    """A grid lists values: ``interval(...)`` (a range to search) in a plain ``-m`` sweep is one line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    for arg in overrides:
        if "interval(" not in arg:
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([arg])
        except HydraException:
            continue  # Hydra's own grammar error, left to Hydra
        if override.is_sweep_override() and not override.is_discrete_sweep():
            key = override.get_key_element()
            value = arg.split("=", 1)[1]
            raise ConfigError(f"'{arg}' is a range to search, not values to list: a grid sweep takes {key}=a,b,c or "
                              f"{key}=range(...); search it with -m hparams_search=optuna "
                              f"'hparams_search.params.{key}={value}'")


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


OLD_SWEEPER_KEYS = ("n_trials", "n_jobs", "storage", "study_name", "sampler", "direction", "params", "max_failure_rate")


def _check_search_keys(argv: list[str]) -> None:
    """``hparams_search.n_trial=5`` (its schema, ``SearchConfig``), and ``hydra.sweeper.n_trials=50``: the old
    Optuna sweeper plugin's keys; dlexp's search reads ``hparams_search.*``."""
    fields = [f.name for f in dataclasses.fields(SearchConfig)]
    for arg in argv:
        key = arg.lstrip("+~").split("=", 1)[0]
        if key.startswith("hparams_search.") and key.split(".")[1] not in fields:
            raise ConfigError(f"unknown key '{key}'.{did_you_mean(key.split('.')[1], fields, prefix='hparams_search.')} "
                              f"Valid keys for hparams_search: {', '.join(fields)}")
        if key.startswith("hydra.sweeper.") and key.split(".")[2] in OLD_SWEEPER_KEYS:
            leaf = key.split(".", 2)[2]
            new = "slots" if leaf == "n_jobs" else leaf
            raise ConfigError(f"'{key}' is the old Optuna sweeper's key; dlexp's search takes hparams_search.{new}"
                              f" (e.g. hparams_search.{new}={arg.split('=', 1)[1] if '=' in arg else '...'})")


def last_value(argv: list[str], key: str) -> Optional[str]:
    """The value Hydra gives ``key``: that of its last ``key=``, ``+key=`` or ``++key=`` on the command line."""
    values = [a.split("=", 1)[1] for a in argv if a.lstrip("+").startswith(key + "=")]
    return values[-1] if values else None


def run_dir_target(argv: list[str]) -> str:
    """The run dir (a single run) or sweep dir (-m) Hydra will make, as given: a path, or a ``${...}`` pattern."""
    if "-m" in argv or "--multirun" in argv:
        return last_value(argv, "hydra.sweep.dir") or "outputs/multirun/${now:}"
    resume = last_value(argv, "resume")
    if resume and resume != "null":
        return run_dir_of(resume, "")
    return last_value(argv, "hydra.run.dir") or "outputs/${now:}"


def _check_output_dir(argv: list[str]) -> None:
    """Hydra creates the run dir before dlexp runs; make sure it can, or say how to fix it."""
    multirun = "-m" in argv or "--multirun" in argv
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    target = last_value(argv, key) or "outputs"
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
