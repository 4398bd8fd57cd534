"""Every command dlexp suggests to continue work, built in one place, so that each one does what it says.

- ``resume_command``: the command that continues one run from its checkpoint;
- ``rerun_command``: a k-fold run, which starts again with the command that started it;
- ``multirun_command``: the command that was given, as a sweep (``-m``);
- ``continue_sweep_command``: the command that continues a sweep in the same sweep dir. A sweep
  without ``sweep.name`` lives in a dated dir: running its command again would start a new one, so
  the hint names the dir (``hydra.sweep.dir=...``).

The command line of the process (``set_command``) is recorded by the entry point; a sweep keeps
it in its jobs manifest, so that its jobs' processes build the same hint.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional, Sequence

from dlexp.runs.files import display_path

PROGRAM = "python -m dlexp"
_command: Optional[list[str]] = None  # this process's command line, without the program


def set_command(argv: Sequence[str]) -> None:
    """The arguments this process was started with (``sys.argv[1:]``, or an API call's equivalent)."""
    global _command
    _command = [str(a) for a in argv]


def command() -> Optional[list[str]]:
    return list(_command) if _command is not None else None


def _quote(args: Sequence[str]) -> str:
    return " ".join([PROGRAM, *(shlex.quote(a) for a in args)])


def resume_command(run_dir: Path) -> str:
    """``python -m dlexp resume=/home/me/outputs/2026-12-06/10-00-00-000000``: the dir as given (absolute, from
    Hydra), so that the hint, also kept in summary.json, works from any working directory."""
    return _quote([override_value("resume", str(Path(run_dir)))])  # a sweep job's dir holds '=' and ',


def rerun_command(argv: Optional[Sequence[str]]) -> str:
    """The command that started a run (a k-fold run starts again from its first fold)."""
    return _quote(list(argv)) if argv is not None else "the same command again"


def multirun_command(fallback: Sequence[str]) -> str:
    """This command as a sweep (``-m`` added), or ``fallback``'s arguments as one when the command is not known."""
    args = command()
    return _quote(["-m", *(args if args is not None else fallback)])


def continue_sweep_command(sweep_dir: Path, argv: Optional[Sequence[str]]) -> str:
    """The sweep's own command, pointed at its dir when the command alone would not find it again (a search's
    dir is named by its command: the command finds it)."""
    where = override_value("hydra.sweep.dir", display_path(Path(sweep_dir)))
    if argv is None:
        return f"the same command again with {where}"
    args = [a for a in argv if not a.startswith(("resume=",))]
    named = any(a.lstrip("+").startswith(("sweep.name=", "hydra.sweep.dir=", "hparams_search=")) for a in args)
    if not named:
        args.append(where)
    return _quote(args)


def override_value(key: str, value: str) -> str:
    """``key=value`` as Hydra reads it: a value with Hydra's special characters (``,`` ``=`` brackets, quotes,
    spaces) in quotes, so that it is one value, not a sweep."""
    if any(c in value for c in ",=[](){}'\" :"):
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={value}"
