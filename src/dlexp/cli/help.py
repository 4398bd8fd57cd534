"""What the command line does before Hydra starts: ``--version``, a bare ``--help``, and a first line.

Hydra's own ``--help`` composes the config once per option of every group
(about a second and a half here), and its ``--version`` prints Hydra's version;
both are answered here at once, from the files under ``conf/``, without torch.
``--help`` with overrides (``dlexp --help model=lenet``) is left to Hydra, which
prints the config those overrides compose. A training run prints one line before
its slow imports (torch, the data), so the terminal shows at once that it started.
"""
from __future__ import annotations

import sys

from dlexp import __version__
from dlexp.config.files import CONFIG_DIR, config_groups, default_choices, group_options

STARTING = "dlexp: composing config..."
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version"}


def help_text() -> str:
    """Usage and every config group's options (the default first), as listed under conf/."""
    defaults = default_choices([CONFIG_DIR])
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
        options = group_options([CONFIG_DIR], group)
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
    if argv in (["--help"], ["-h"]):
        print(help_text())
        sys.exit(0)
    if not any(arg in INFO_FLAGS or arg in ("-c", "--cfg") or arg.startswith(("--cfg=", "--shell-completion")) for arg in argv):
        print(STARTING, flush=True)
