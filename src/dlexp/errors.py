"""User-facing errors.

A ``UserError`` is a mistake the user can fix (a typo in a config, a missing
file, an impossible setting). The CLI prints its one-line message and exits
non-zero without a traceback; set ``DLEXP_TRACEBACK=1`` to see the trace.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


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
    """Turn an error raised while building ``what`` from the config (e.g. ``model=lenet``) into one line
    naming it; a user mistake stays as it is, and errors during training keep their traceback."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001  (any failure here comes from the config's values)
        if os.environ.get("DLEXP_TRACEBACK"):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        group = what.split("=", 1)[0]
        raise ConfigError(f"building {what} failed ({type(err).__name__}: {first}); check the {group}.* settings") from None
