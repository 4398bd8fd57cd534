"""Resuming a run: where its checkpoint is, which config it continues with, what may change.

``resume=`` takes a run dir or a checkpoint path. The resumed run uses the
original run's overrides plus the new command line, so ``python -m dlexp
resume=DIR`` alone continues exactly the run in DIR; settings that do not change
the result's meaning (more epochs, threads, the progress bar) may change, anything
else (a different model, lr, seed, ...) is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from dlexp.errors import ConfigError
from dlexp.util import flatten

# Keys that may differ between a checkpoint's config and the resumed run.
MAY_CHANGE = {
    "resume",
    "trainer.epochs",
    "trainer.progress",
    "trainer.log_every_n_steps",
    "trainer.num_threads",
    "trainer.device",
    "trainer.early_stopping.patience",
    "trainer.compile",
    "trainer.channels_last",
    "trainer.checkpoint_every_n_steps",
    "trainer.checkpoint_every_minutes",
    "trainer.limit_test_batches",
    # decoding only changes how a translation model's outputs are read at evaluation
    "decode.beam_size",
    "decode.length_penalty",
    "decode.max_len_a",
    "decode.max_len_b",
}


RECORDED_OVERRIDES = Path(".hydra") / "overrides.yaml"  # Hydra's record of a run's command line


def checkpoint_path(resume: str) -> Optional[Path]:
    """``resume`` may name a run dir (its checkpoints/last.pt is used) or a checkpoint file.

    None: a run dir that has no checkpoint yet (killed before its first one) but a recorded
    command line, so the run can start again from it."""
    path = Path(resume).expanduser()
    if path.is_dir():
        if (path / "checkpoints" / "last.pt").is_file():
            return path / "checkpoints" / "last.pt"
        if (path / RECORDED_OVERRIDES).is_file():
            return None
        raise ConfigError(f"resume={resume}: no checkpoints/last.pt and no .hydra/ record in that dir; is it a dlexp run dir?")
    if not path.exists():
        raise ConfigError(f"resume={resume}: no such run dir or checkpoint; check the path")
    return path


def recorded_overrides(run_dir: str) -> list[str]:
    """The command line a run was started with (its .hydra/overrides.yaml), minus Hydra's own keys."""
    import yaml

    saved = yaml.safe_load((Path(run_dir).expanduser() / RECORDED_OVERRIDES).read_text()) or []
    return [o for o in saved if not o.startswith(("hydra.", "resume="))]


def run_dir_of(resume: Optional[str], default: str) -> str:
    """The run dir a (possibly resumed) run writes to: the original one when resuming."""
    if not resume:
        return default
    path = Path(resume).expanduser()
    if path.is_file():  # outputs/.../checkpoints/last.pt -> outputs/...
        path = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    return str(path)


def hydra_subdir(resume: Optional[str]) -> str:
    """Keep the original run's .hydra/ record; a resume writes its own next to it."""
    return ".hydra_resume" if resume else ".hydra"


def recompose(cfg: DictConfig, saved_overrides: list[str], *, today: bool = True) -> DictConfig:
    """Inside a Hydra app: the original overrides followed by today's command line (``today=False``:
    the original alone, the config the run was started with). Overrides that do not compose with the
    run's own (model=softmax on a run that set model.hidden) are one line naming both."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    hydra_cfg = HydraConfig.get()
    added = [o for o in hydra_cfg.overrides.task if not o.startswith("resume=")] if today else []
    try:
        return compose(config_name=hydra_cfg.job.config_name,
                       overrides=[*saved_overrides, *added, *([f"resume={cfg.resume}"] if today else [])])
    except (HydraException, OmegaConfBaseException) as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(f"cannot resume with {' '.join(added)} on top of the run's own {' '.join(saved_overrides)} "
                          f"({reason}); drop those overrides, or start a new run without resume=") from None


def check_compatible(new: dict[str, Any], saved: dict[str, Any], saved_as: str = "the checkpoint was trained with") -> None:
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
