"""What the command line does before Hydra starts: ``--version``, a bare ``--help``, and a first line.

Hydra's own ``--help`` composes the config once per option of every group
(about a second and a half here), and its ``--version`` prints Hydra's version;
both are answered here at once, from the files under ``conf/``, without torch.
``--help`` with overrides (``dlexp --help model=lenet``) is left to Hydra, which
prints the config those overrides compose. A training run prints one line before
its slow imports (torch, the data), so the terminal shows at once that it started.
"""
from __future__ import annotations

import os
import sys

from dlexp import __version__
from dlexp.config.files import CONFIG_DIR, config_groups, default_choices, group_options

STARTING = "dlexp: composing config..."
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version"}


def help_text(extra_dirs: list[str] = ()) -> str:
    """Usage and every config group's options (the default first), as listed under conf/ and the
    ``--config-dir`` folders (a user's own options among them)."""
    dirs = [CONFIG_DIR, *extra_dirs]
    defaults = default_choices(dirs)
    groups = [g for g in config_groups() if g != "hydra"]
    lines = [
        f"dlexp {__version__}: train a model on a dataset, one run or a sweep (-m).",
        "",
        "usage: dlexp [GROUP=OPTION ...] [KEY=VALUE ...]   e.g. dlexp model=lenet optim=sgd_momentum trainer.epochs=10",
        "       dlexp -m KEY=A,B ...                       a sweep: one run per combination",
        "",
        "config groups (the default first):",
    ]
    for group in groups:
        options = group_options(dirs, group)
        default = defaults.get(group)
        ordered = ([default] if default in options else []) + [o for o in options if o != default]
        lines.append(f"  {group:<15} {', '.join(ordered)}")
    lines += [
        "",
        "dlexp --cfg job [OVERRIDES]    print the composed config",
        "dlexp --help OVERRIDES         this help with the config those overrides compose (Hydra's)",
        "dlexp --hydra-help             Hydra's own flags (launchers, sweepers, --multirun, ...)",
        "dlexp --version                dlexp's version",
    ]
    return "\n".join(lines)


def before_hydra(argv: list[str]) -> None:
    """Answer ``--version`` and a bare ``--help`` and exit; otherwise, for a run, print the first line."""
    if "--version" in argv:
        print(f"dlexp {__version__}")
        sys.exit(0)
    rest, extra_dirs = _without_config_dirs(argv)
    if rest in (["--help"], ["-h"]):
        print(help_text(extra_dirs))
        sys.exit(0)
    if not any(arg in INFO_FLAGS or arg in ("-c", "--cfg") or arg.startswith(("--cfg=", "--shell-completion")) for arg in argv):
        print(STARTING, flush=True)


def _without_config_dirs(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the arguments without ``--config-dir DIR`` / ``-cd DIR`` / ``--config-dir=DIR``, those dirs)."""
    rest, dirs, skip = [], [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(argv[i + 1])
            skip = True
        elif arg.startswith("--config-dir="):
            dirs.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return rest, dirs


PROJECT_CONFIG_DIR = "DLEXP_CONFIG_DIR"  # a project's config dir, added to every command as --config-dir


def with_project_config_dir(argv: list[str]) -> list[str]:
    """``argv`` with ``--config-dir $DLEXP_CONFIG_DIR`` first, when that is set and the command names no config
    dir itself: a project's own options (and plugins beside them) in every command, tab completion included."""
    folder = os.environ.get(PROJECT_CONFIG_DIR)
    if not folder or _without_config_dirs(argv)[1]:
        return list(argv)
    return ["--config-dir", folder, *argv]
