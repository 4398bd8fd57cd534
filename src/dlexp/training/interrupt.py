"""Stops on SIGINT (Ctrl-C) and SIGTERM (e.g. cluster preemption), at any moment, the same way every time.

The command line installs ``STOP`` as its first act and keeps it to the end. The first
signal only records itself: nothing is cut off mid-import, mid-write or mid-step. The
code then stops at the next safe point: the training loop after its current step (it
checkpoints there), anything else at a ``STOP.check()``, which raises ``Interrupted``.
The command line turns that into one line, ``status: interrupted`` where a run dir
exists, and exit code 128 + the signal (130, 143). A second signal exits at once (the
last checkpoint on disk stays valid: checkpoints are written atomically).

Tests interrupt a run at exact moments through ``dlexp.hooks.point`` (see there), not through
anything this module reads.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A signal asked the run to stop; raised at a safe point. A BaseException, so that no ``except
    Exception`` on the way up mistakes it for a failure."""

    def __init__(self, signum: int):
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopRequest:
    """Whether a stop was asked for, and by which signal; one per process (``STOP``)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._depth = 0
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal arrived: called where stopping leaves nothing half done."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            sys.stderr.write(f"\n{signal_name(signum)} again: exiting now\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        """Handle the signals while the block runs (the main thread only). Nested blocks share the outer
        one's handlers; the outermost starts with no stop asked for."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        if self._depth == 0:
            self.signum = None
            self._previous = {sig: signal.signal(sig, self._handle) for sig in HANDLED}
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if self._depth == 0:
                for sig, handler in self._previous.items():
                    signal.signal(sig, handler)


STOP = StopRequest()


def signal_name(signum: Optional[int]) -> str:
    """``SIGTERM`` for 15; empty when no signal arrived."""
    return signal.Signals(signum).name if signum else ""
