"""Named moments of a run, and the one hook called at each: by default it does nothing.

dlexp calls ``point(name)`` at the moments where an interruption must leave a run resumable (after
the imports, when the data is loaded, after each training step, at the end of an epoch, while the
plots are drawn, ...). A test that must interrupt a run at an exact moment, rather than after a
sleep, sets the hook (``set_point_hook``) in the process it tests; the product never reads a fault
from anywhere. ``tests/support/faults.py`` holds the hook the tests use, and the docs' architecture page
says how they arm it in a child process.
"""
from __future__ import annotations

from typing import Callable, Optional

PointHook = Callable[[str], None]
_hook: Optional[PointHook] = None


def point(name: str) -> None:
    """A named moment: calls the hook, if one is set (a global read and a comparison otherwise: it runs every step)."""
    if _hook is not None:
        _hook(name)


def set_point_hook(hook: Optional[PointHook]) -> Optional[PointHook]:
    """Set (or, with None, clear) the hook; returns the one it replaces."""
    global _hook
    previous, _hook = _hook, hook
    return previous
