"""``resume=``: which checkpoint a run continues from, with which config, and what may change.

``resume=`` takes a run dir or a checkpoint path. The resumed run uses the
original run's overrides plus the new command line, so ``python -m dlexp
resume=DIR`` alone continues exactly the run in DIR; settings that do not change
the result's meaning (more epochs, threads, the progress bar: the keys declared
``may_change`` in ``dlexp.config.schema``) may change, anything else (a different
model, lr, seed, ...) is refused. A run killed before its first checkpoint is
started again in its own dir from its recorded command line; a finished run
without a checkpoint is never restarted (that would replace its results).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from hydra import compose
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dlexp.config.schema import flatten, keys_a_resume_may_change
from dlexp.errors import ConfigError, UserError
from dlexp.runs import files
from dlexp.runs.checkpoint import load_checkpoint

MAY_CHANGE = keys_a_resume_may_change()  # keys that may differ between a checkpoint's config and the resumed run
RESUME_NEEDS = {"config", "epoch", "optimizer", "rng", "loader"}  # what a checkpoint must hold to be continued


@dataclass
class Resumption:
    """What an invocation runs: its config, the overrides to record, and the checkpoint to continue (or None)."""

    cfg: DictConfig
    overrides: list[str]
    checkpoint: Optional[dict[str, Any]] = None


def resolve(cfg: DictConfig, *, today: list[str], config_name: str) -> Resumption:
    """The run this invocation continues, if ``cfg.resume`` is set; else ``cfg`` as it is.

    ``today``: the command line's overrides (without ``resume=``); ``config_name``: the primary
    config they compose (both Hydra's). When resuming, the original run's overrides come first
    and today's are applied on top."""
    if not cfg.get("resume"):
        return Resumption(cfg, today)
    if files.find_checkpoint(cfg.resume) is None:  # killed before its first checkpoint: start it again, same dir
        return _restart(cfg, today, config_name)
    checkpoint = load_resume_checkpoint(cfg.resume)
    saved = list(checkpoint.get("overrides", []))
    return Resumption(recompose(config_name, saved, today, cfg.resume), [*saved, *today], checkpoint)


def load_resume_checkpoint(resume: str) -> dict[str, Any]:
    """The checkpoint ``resume=`` names, refused when it lacks what continuing needs."""
    state = load_checkpoint(files.find_checkpoint(resume))
    missing = RESUME_NEEDS - set(state)
    if missing:
        raise UserError(f"checkpoint for resume={resume} lacks {', '.join(sorted(missing))}; it cannot be resumed")
    return state


def _restart(cfg: DictConfig, today: list[str], config_name: str) -> Resumption:
    """``resume=DIR`` for a run with no checkpoint: start it again from its recorded config, in DIR.
    A finished run is never restarted, and the recorded config may change only where a resume may."""
    run_dir = Path(cfg.resume).expanduser()
    summary = run_dir / files.SUMMARY_FILE
    status = json.loads(summary.read_text()).get("status") if summary.is_file() else None
    if status in ("completed", "diverged"):
        raise ConfigError(f"the run in {cfg.resume} has finished (status {status}) and kept no checkpoint to continue "
                          f"from; start a new run without resume= (its results stay where they are)")
    saved = recorded_overrides(run_dir)
    fresh = recompose(config_name, saved, today, cfg.resume)
    check_compatible(fresh, recompose(config_name, saved, [], None), saved_as="the run was started with")
    print(f"no checkpoint in {cfg.resume} yet: starting that run again from its recorded config", flush=True)
    fresh.resume = None
    clear_attempt(run_dir)
    return Resumption(fresh, [*saved, *today])


def clear_attempt(run_dir: Path) -> None:
    """The files of an attempt that never reached a checkpoint: nothing in them can be continued."""
    for name in (files.METRICS_FILE, files.GRAD_NORMS_FILE, files.SUMMARY_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for events in run_dir.glob(files.TENSORBOARD_GLOB):
        events.unlink()


def recorded_overrides(run_dir: Path) -> list[str]:
    """The command line a run was started with (its .hydra/overrides.yaml), minus Hydra's own keys."""
    saved = yaml.safe_load(files.recorded_overrides_path(Path(run_dir).expanduser()).read_text()) or []
    return [o for o in saved if not o.startswith(("hydra.", "resume="))]


def recompose(config_name: str, saved: list[str], today: list[str], resume: Optional[str]) -> DictConfig:
    """Inside a Hydra app: the original overrides followed by today's (and ``resume=``, when given).
    Overrides that do not compose with the run's own (model=softmax on a run that set model.hidden)
    are one line naming both."""
    try:
        return compose(config_name=config_name, overrides=[*saved, *today, *([f"resume={resume}"] if resume else [])])
    except (HydraException, OmegaConfBaseException) as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(f"cannot resume with {' '.join(today)} on top of the run's own {' '.join(saved)} "
                          f"({reason}); drop those overrides, or start a new run without resume=") from None


def check_compatible(new: Any, saved: Any, saved_as: str = "the checkpoint was trained with") -> None:
    """Refuse to resume with settings that would change what the checkpoint means."""
    new_flat, saved_flat = flatten(_plain(new)), flatten(_plain(saved))
    # component names first: "model.name differs" says more than any of its keys
    for key in sorted(set(new_flat) | set(saved_flat), key=lambda k: (not k.endswith(".name"), k)):
        if key in MAY_CHANGE:
            continue
        if new_flat.get(key, "<unset>") != saved_flat.get(key, "<unset>"):
            raise ConfigError(
                f"cannot resume with {key}={new_flat.get(key, '<unset>')!r}: {saved_as} "
                f"{saved_flat.get(key, '<unset>')!r}; drop that override, or start a new run without resume="
            )


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
