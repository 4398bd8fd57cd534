"""``python -m dlexp.summary [OVERRIDES]``: each layer's output shape and parameter count, without training.

The config is composed exactly as for a training run (same groups, same
overrides, same checks), the data is loaded to learn the input shape and the
number of classes, and one example goes through the model in eval mode while
forward hooks record what every layer outputs. Nothing is written to disk.

    python -m dlexp.summary model=lenet dataset.resize=28
    python -m dlexp.summary model=googlenet dataset.resize=96 --depth 2
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.table import Table

from dlexp.cli.preflight import preflight
from dlexp.config.files import CONFIG_DIR, PRIMARY_CONFIG
from dlexp.errors import ConfigError, UserError

if TYPE_CHECKING:  # annotations only: the model side imports torch
    from dlexp.models.summary import LayerRow

USAGE = """usage: python -m dlexp.summary [--config-dir DIR] [--depth N] [OVERRIDE ...]

Print each layer's output shape and parameter count for a config, without training.
OVERRIDEs are the training command's (model=googlenet dataset.resize=96 ...).
  --config-dir DIR  also look for config options in DIR (as for python -m dlexp)
  --depth N         show nested blocks down to N levels (default 1: the top-level layers)"""


def print_summary(facts: dict[str, Any], rows: list[LayerRow], total: int) -> None:
    console = Console(highlight=False)
    console = console if console.is_terminal else Console(highlight=False, width=160)  # pipes: no wrapping
    console.print(" ".join(f"{k}={_fmt_shape(v) if isinstance(v, tuple) else v}" for k, v in facts.items()))
    table = Table(show_header=True, header_style="bold")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape", justify="right")
    table.add_column("params", justify="right")
    table.add_row("input", "", _fmt_shape(facts["input"]), "")
    for row in rows:
        shape = _fmt_shape(row.shape) if row.shape is not None else "-"
        table.add_row("  " * (row.level - 1) + row.name, row.kind, shape, f"{row.params:,}")
    console.print(table)
    console.print(f"total params: {total:,}")


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def compose_config(overrides: list[str], config_dirs: list[str]) -> DictConfig:
    """Hydra's compose API on the training config: no run dir, no logging set-up."""
    for d in config_dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"--config-dir {d} is not a directory; give a folder that holds <group>/<option>.yaml files")
    extra = []
    if config_dirs:  # searched after the built-in configs, as --config-dir does for python -m dlexp
        paths = ",".join(f"'file://{Path(d).resolve()}'" for d in config_dirs)
        extra = [f"hydra.searchpath=[{paths}]"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=PRIMARY_CONFIG, overrides=[*extra, *overrides])


def parse_args(argv: list[str]) -> tuple[list[str], int, list[str]]:
    """(config dirs, depth, overrides) from the command line."""
    config_dirs, depth, overrides = [], 1, []
    args = iter(argv)
    for arg in args:
        flag, _, value = arg.partition("=")
        if flag in ("--config-dir", "-cd", "--depth"):
            value = value or next(args, "")
            if not value:
                raise ConfigError(f"{flag} needs a value; see python -m dlexp.summary --help")
            if flag == "--depth":
                if not value.isdigit() or int(value) < 1:
                    raise ConfigError(f"--depth must be a positive integer, got '{value}'")
                depth = int(value)
            else:
                config_dirs.append(value)
        elif arg.startswith("-"):
            raise ConfigError(f"unknown option '{arg}'; see python -m dlexp.summary --help")
        else:
            overrides.append(arg)
    return config_dirs, depth, overrides


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    try:
        config_dirs, depth, overrides = parse_args(argv)
        preflight([*overrides, *(f"--config-dir={d}" for d in config_dirs)], writes_outputs=False)
        cfg = compose_config(overrides, config_dirs)
        from dlexp import train  # torch: deferred, so --help and a bad override answer at once

        print_summary(*train.summarize_layers(cfg, depth))
    except (UserError, HydraException, OmegaConfBaseException) as err:
        if os.environ.get("DLEXP_TRACEBACK"):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {first}", file=sys.stderr)
        return UserError.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
