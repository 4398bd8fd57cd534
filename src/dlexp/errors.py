"""User-facing errors, and how a bug is told apart from them.

A ``UserError`` is a mistake the user can fix (a typo in a config, a missing file, an impossible
setting). The command line prints its one-line message and exits 2 without a traceback; set
``DLEXP_TRACEBACK=1`` to see the trace.

Any other exception is a bug in dlexp (or in a library under it), never the user's config: the
command line says so in one line, writes the traceback into the run's ``run.log`` and exits
``BUG_EXIT_CODE``. Only a component's builder refusing the values the config gave it (``building``)
turns an ordinary exception into a config error.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

BUG_EXIT_CODE = 70  # sysexits' EX_SOFTWARE: an internal software error
# What a builder raises for values it cannot take: a bad keyword or type (TypeError), a value out of its
# range (ValueError), a shape it cannot build (RuntimeError from torch, e.g. a kernel larger than its input).
CONFIG_VALUE_ERRORS = (TypeError, ValueError, RuntimeError, ArithmeticError)


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""

    exit_code = 2


class ConfigError(UserError):
    """A config names something that does not exist or has a wrong value."""


class DataError(UserError):
    """A dataset is missing, unreadable or unusable as configured."""


class RunDirInUse(UserError):
    """A new run pointed at a dir that holds another run: nothing may be written there."""


@contextmanager
def building(what: str) -> Iterator[None]:
    """Around a builder called with the config's values (``model=lenet``): an error it raises for those values
    becomes one line naming them. A user mistake stays as it is; any other exception (an AttributeError,
    a KeyError, ...) is a bug and keeps its traceback."""
    try:
        yield
    except UserError:
        raise
    except CONFIG_VALUE_ERRORS as err:
        if os.environ.get("DLEXP_TRACEBACK"):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        group = what.split("=", 1)[0]
        raise ConfigError(f"building {what} failed ({type(err).__name__}: {first}); check the {group}.* settings") from None


def bug_message(err: BaseException, log: Optional[str]) -> str:
    """The one line of a failure inside dlexp: what failed, that it is not the config, where the trace is."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    what = f"{type(err).__name__}: {first}" if first else type(err).__name__
    where = f"the traceback is in {log}" if log is not None else "rerun with DLEXP_TRACEBACK=1 for the traceback"
    return (f"internal error in dlexp ({what}); this is a bug, not a mistake in your config: {where}; please report it "
            f"(exit code {BUG_EXIT_CODE})")


def plugin_error_message(err: BaseException, where: str, log: Optional[str]) -> str:
    """The one line of a failure raised in a user's plugin (``where``: its file and line)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    what = f"{type(err).__name__}: {first}" if first else type(err).__name__
    trace = f"the traceback is in {log}" if log is not None else "DLEXP_TRACEBACK=1 shows the traceback"
    return f"your plugin failed at {where} ({what}); fix the plugin: {trace}"
