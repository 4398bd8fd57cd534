"""The config files: where ``conf/`` is, the options of each group, and what ``train.yaml`` chooses by default.

Read with OmegaConf alone (no Hydra, no torch), so the command line can answer
``--help`` and check overrides before anything heavy is imported.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlexp.config.schema import flatten

PRIMARY_CONFIG = "train"  # conf/train.yaml: the defaults list every run is composed from


def _find_config_dir() -> str:
    package = Path(__file__).resolve().parents[1]  # src/dlexp (or site-packages/dlexp)
    packaged = package / "conf"  # non-editable install (shipped in the wheel)
    source = package.parents[1] / "conf"  # source checkout / editable install
    return str(packaged if packaged.is_dir() else source)


CONFIG_DIR = _find_config_dir()


def config_groups() -> list[str]:
    """The group folders under conf/ (``hydra`` included: it holds dlexp's own launcher options)."""
    return sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir())


def group_options(dirs: list[str], group: str) -> list[str]:
    """The options of ``group``: its YAML files in any of ``dirs``."""
    options = set()
    for d in dirs:
        options.update(p.stem for p in (Path(d) / group).glob("*.yaml"))
    return sorted(options)


def default_choices(dirs: list[str]) -> dict[str, str]:
    """group -> option chosen by the defaults list of train.yaml."""
    primary = Path(CONFIG_DIR) / f"{PRIMARY_CONFIG}.yaml"
    choices: dict[str, str] = {}
    for entry in OmegaConf.load(primary).get("defaults", []):
        if isinstance(entry, DictConfig):
            for key, value in entry.items_ex(resolve=False):
                if isinstance(value, str) and "${" not in value:  # not a choice made from others (conf/recipe/)
                    choices[str(key).lstrip("/")] = value
    return choices


def find_option_file(dirs: list[str], group: str, option: str) -> "Path | None":
    """``<dir>/<group>/<option>.yaml`` in the first of ``dirs`` that has it."""
    return next((Path(d) / group / f"{option}.yaml" for d in dirs if (Path(d) / group / f"{option}.yaml").is_file()), None)


def recipe_keys(recipe: str, dirs: "list[str] | None" = None) -> list[str]:
    """The dotted keys that ``conf/recipe/<recipe>.yaml`` sets (e.g. ``optim.lr``), in file order; [] if no file."""
    path = find_option_file(dirs or [CONFIG_DIR], "recipe", recipe)
    if path is None:
        return []
    settings = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return [key for key in flatten(settings) if key != "defaults"]
