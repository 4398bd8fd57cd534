"""User-facing errors.

A ``UserError`` is a mistake the user can fix (a typo in a config, a missing
file, an impossible setting). The CLI prints its one-line message and exits
non-zero without a traceback; set ``DLEXP_TRACEBACK=1`` to see the trace.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""

    exit_code = 2


class ConfigError(UserError):
    """A config names something that does not exist or has a wrong value."""


class DataError(UserError):
    """A dataset is missing, unreadable or unusable as configured."""
