"""``resume=``: which checkpoint a run continues from, with which config, and what may change.

``resume=`` takes a run dir or a checkpoint path. The run's own record rules: the resumed run
takes the config its checkpoint was trained with (or, for a run killed before its first
checkpoint, the config its dir records) and the options its groups were composed from, and
today's command line may change only the keys declared ``may_change`` in
``dlexp.config.schema`` (more epochs, threads, the progress bar, decoding). Anything else (a
different model, lr, seed, ...) is refused, unless it repeats what the run already has. So
``python -m dlexp resume=DIR`` alone continues exactly the run in DIR, and nothing about the
run is taken from today's defaults. A finished run without a checkpoint is never restarted
(that would replace its results).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from dlexp.config.files import config_groups
from dlexp.config.schema import SEARCH_GROUP, flatten, keys_a_resume_may_change
from dlexp.errors import ConfigError, UserError
from dlexp.runs import files
from dlexp.runs.checkpoint import load_checkpoint
from dlexp.runs.record import RunDir
from dlexp.runs.status import Status

MAY_CHANGE = keys_a_resume_may_change()  # keys that may differ between a checkpoint's config and the resumed run
RESUME_NEEDS = {"config", "epoch", "optimizer", "rng", "loader"}  # what a checkpoint must hold to be continued
UNSET = "<unset>"


@dataclass
class Resumption:
    """What an invocation runs: its config, the overrides to record, the checkpoint to continue (or None),
    and the option each group was composed from (the run's own, when resuming; None: today's)."""

    cfg: DictConfig
    overrides: list[str]
    checkpoint: Optional[dict[str, Any]] = None
    choices: Optional[dict[str, str]] = None
    restart: bool = False  # a run killed before its first checkpoint, started again in its own dir
    changes: list[str] = field(default_factory=list)  # today's overrides that the resumed run takes
    note: Optional[str] = None  # what the run says once it is accepted (a run started from the beginning)


def resolve(cfg: DictConfig, *, today: list[str]) -> Resumption:
    """The run this invocation continues, if ``cfg.resume`` is set; else ``cfg`` as it is.

    ``today``: the command line's overrides (without ``resume=``). Nothing is written: a refusal
    leaves the run's dir as it was."""
    if not cfg.get("resume"):
        return Resumption(cfg, today)
    run_dir = Path(files.run_dir_of(cfg.resume, ""))
    choices = RunDir(run_dir).choices()
    if files.find_checkpoint(cfg.resume, run_dir=str(run_dir)) is None:
        if not RunDir(run_dir).recorded:  # killed before its record: nothing of the run to keep
            return _from_the_beginning(cfg, run_dir, today)
        return _restart(cfg, run_dir, today, choices)  # killed before its first checkpoint: again, from its record
    checkpoint = load_resume_checkpoint(cfg.resume)
    recorded = OmegaConf.create(checkpoint["config"])
    changes = accepted_changes(today, recorded, choices, saved_as="the checkpoint was trained with")
    saved = list(checkpoint.get("overrides", []))
    return Resumption(_with(recorded, changes, cfg.resume), [*saved, *changes], checkpoint, choices, changes=changes)


def load_resume_checkpoint(resume: str) -> dict[str, Any]:
    """The checkpoint ``resume=`` names, refused when it lacks what continuing needs."""
    state = load_checkpoint(files.find_checkpoint(resume))
    missing = RESUME_NEEDS - set(state)
    if missing:
        raise UserError(f"checkpoint for resume={resume} lacks {', '.join(sorted(missing))}; it cannot be resumed")
    return state


def _restart(cfg: DictConfig, run_dir: Path, today: list[str], choices: dict[str, str]) -> Resumption:
    """``resume=DIR`` for a run with no checkpoint: start it again from its recorded config, in DIR."""
    run = RunDir(run_dir)
    status = run.status()
    if status in (Status.COMPLETED, Status.DIVERGED):
        raise ConfigError(f"the run in {cfg.resume} has finished (status {status}) and kept no checkpoint to continue "
                          f"from; start a new run without resume= (its results stay where they are)")
    recorded = OmegaConf.create(run.config())
    changes = accepted_changes(today, recorded, choices, saved_as="the run was started with")
    fresh = _with(recorded, changes, None)
    return Resumption(fresh, [*recorded_overrides(run_dir), *changes], None, choices, restart=True, changes=changes)


def _from_the_beginning(cfg: DictConfig, run_dir: Path, today: list[str]) -> Resumption:
    """``resume=DIR`` where nothing of a run was recorded (a dir the command made, killed before its record):
    today's command is the run, started in DIR from the beginning."""
    fresh = cfg.copy()
    fresh.resume = None
    return Resumption(fresh, today, note=f"no run was recorded in {files.display_path(run_dir)} yet (it stopped before "
                                          "its first record): starting it from the beginning")


def clear_attempt(run_dir: Path) -> None:
    """The files of an attempt that cannot be continued (no checkpoint yet, or a k-fold run): all it wrote
    but its record, so that the run starts again in its own dir."""
    for name in files.RUN_FILES:
        path = Path(run_dir) / name
        if name not in (files.HYDRA_DIR, files.RESUME_HYDRA_DIR):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    for pattern in (files.TENSORBOARD_GLOB, files.FOLD_DIR.format("*")):
        for path in Path(run_dir).glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def kfold_to_start_again(run_dir: Path, today: list[str]) -> bool:
    """Whether ``run_dir`` holds an interrupted k-fold run of today's command: k-fold runs cannot be resumed,
    so the command that started one starts it again there (another command is refused, as for any run)."""
    run = RunDir(run_dir)
    if not run.has(files.FOLD_DIR.format(1)) or not run.recorded or run.status() not in (Status.INTERRUPTED,
                                                                                         Status.INCOMPLETE):
        return False
    return recorded_overrides(run_dir) == [o for o in today if not o.startswith(("hydra.", "resume="))]


def recorded_overrides(run_dir: Path) -> list[str]:
    """The command line a run was started with (its .hydra/overrides.yaml), minus Hydra's own keys."""
    return [o for o in RunDir(run_dir).overrides() if not o.startswith(("hydra.", "resume="))]


def accepted_changes(today: list[str], recorded: DictConfig, choices: dict[str, str], saved_as: str) -> list[str]:
    """Today's overrides that the resumed run takes: those of keys a resume may change. One that repeats
    what the run has is dropped; any other is refused in one line."""
    groups = set(config_groups())
    flat = flatten(OmegaConf.to_container(recorded, resolve=True))
    kept = []
    for override, text in zip(OverridesParser.create().parse_overrides(today), today):
        key = override.key_or_group.lstrip("+~")
        if key in groups:
            _check_same_option(override, key, choices, saved_as)
        elif key in MAY_CHANGE and not override.is_delete():
            kept.append(text)
        else:
            value = override.value() if not override.is_delete() else UNSET
            if not same_value(flat.get(key, UNSET), value):
                raise ConfigError(f"cannot resume with {key}={value!r}: {saved_as} {flat.get(key, UNSET)!r}; drop that "
                                  f"override, or start a new run without resume=")
    return kept


def _check_same_option(override: Override, group: str, choices: dict[str, str], saved_as: str) -> None:
    option, recorded = str(override.value()), choices.get(group)
    if recorded is None:
        raise ConfigError(f"cannot resume with {group}={option}: the run's record names no {group} option (a run "
                          f"from an older dlexp); drop that override, or start a new run without resume=")
    if option != recorded:
        raise ConfigError(f"cannot resume with {group}={option}: {saved_as} {group}={recorded}; drop that "
                          f"override, or start a new run without resume=")


def _with(recorded: DictConfig, changes: list[str], resume: Optional[str]) -> DictConfig:
    """The recorded config with today's accepted changes (values as Hydra parses them), and ``resume=``."""
    cfg = recorded.copy()
    for override in OverridesParser.create().parse_overrides(changes):
        OmegaConf.update(cfg, override.key_or_group.lstrip("+"), override.value(), force_add=True)
    cfg.resume = resume
    return cfg


def check_compatible(new: Any, saved: Any, saved_as: str = "the checkpoint was trained with") -> None:
    """Refuse to continue a checkpoint with settings that would change what it means (``train`` called
    with a config and a checkpoint, and a sweep's rerun of an interrupted job)."""
    # a search's settings are the search's, not the run's (a trial's config holds them, its checkpoint not)
    new_flat, saved_flat = (flatten(_effective({k: v for k, v in _plain(c).items() if k != SEARCH_GROUP}))
                            for c in (new, saved))
    # component names first: "model.name differs" says more than any of its keys
    for key in sorted(set(new_flat) | set(saved_flat), key=lambda k: (not k.endswith(".name"), k)):
        if key in MAY_CHANGE:
            continue
        if not same_value(new_flat.get(key, UNSET), saved_flat.get(key, UNSET)):
            raise ConfigError(
                f"cannot resume with {key}={new_flat.get(key, UNSET)!r}: {saved_as} "
                f"{saved_flat.get(key, UNSET)!r}; drop that override, or start a new run without resume="
            )


def same_value(a: Any, b: Any) -> bool:
    """Whether two values of one key are one setting as the config types them: ``16`` from the command line
    and ``'16'`` recorded for a key that takes a number or a word (``dataset.resize``) are; so are ``1`` and
    ``1.0``. A string is read as YAML reads a value (``'true'`` is true), lists item by item."""
    return _typed(a) == _typed(b)


def _typed(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    if isinstance(value, str) and value != UNSET:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
    return value


def _effective(config: dict[str, Any]) -> dict[str, Any]:
    """A config as it takes effect: ``regularizer.dropout``, when set, is the model's dropout (as the
    validated config that a checkpoint stores records it), so a composed config compares equal to it."""
    model, reg = config.get("model"), config.get("regularizer") or {}
    if isinstance(model, dict) and "dropout" in model and reg.get("dropout") is not None:
        config = {**config, "model": {**model, "dropout": reg["dropout"]}}
    return config


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
