"""Stops on SIGINT (Ctrl-C) and SIGTERM (e.g. cluster preemption), at any moment, the same way every time.

The command line installs ``STOP`` as its first act and keeps it to the end. The first
signal only records itself: nothing is cut off mid-import, mid-write or mid-step. The
code then stops at the next safe point: the training loop after its current step (it
checkpoints there), anything else at a ``STOP.check()``, which raises ``Interrupted``.
The command line turns that into one line, ``status: interrupted`` where a run dir
exists, and exit code 128 + the signal (130, 143). A second signal exits at once (the
last checkpoint on disk stays valid: checkpoints are written atomically).

``point(name)`` marks a moment a test may send a signal at (``DLEXP_SIGNAL_AT=name``, or
``name@N`` for its N-th time, ``:SIGTERM`` for another signal), so that interruptions are
tested at fixed points instead of after sleeps; ``DLEXP_KILL_AT`` does the same with SIGKILL, and
``DLEXP_KILL_PARENT_AT`` kills the process that started this one (a search slot's sweep process).
``DLEXP_HOLD_AT`` stops there until the process is killed, once per ``DLEXP_HOLD_FILE`` (which it
writes first, with the SLURM job id, so that a test can requeue that job while it holds).
"""
from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
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
_POINTS_SEEN: dict[str, int] = {}


# each variable that makes a point send a signal, with the signal it sends unless the spec names one
SIGNALLING = (("DLEXP_SIGNAL_AT", "SIGINT"), ("DLEXP_KILL_AT", "SIGKILL"), ("DLEXP_KILL_PARENT_AT", "SIGKILL"))
POINT_VARIABLES = (*(variable for variable, _ in SIGNALLING), "DLEXP_HOLD_AT")


@functools.lru_cache(maxsize=1)
def _armed() -> bool:
    """Whether the process was started with an interrupt point set: read once, since ``point`` runs every
    training step and reading the environment costs microseconds each time."""
    return any(os.environ.get(variable) for variable in POINT_VARIABLES)


def point(name: str) -> None:
    """A moment tests may interrupt at: ``DLEXP_SIGNAL_AT`` / ``DLEXP_KILL_AT`` = ``name[@N][:SIGNAL]``."""
    _POINTS_SEEN[name] = _POINTS_SEEN.get(name, 0) + 1
    if not _armed():
        return
    _hold(name)
    for variable, default in SIGNALLING:
        spec = os.environ.get(variable)
        if not spec:
            continue
        where, _, sig = spec.partition(":")
        at, _, nth = where.partition("@")
        if at == name and _POINTS_SEEN[name] == int(nth or 1):
            sys.stdout.flush()
            if variable == "DLEXP_KILL_PARENT_AT":  # a slot's sweep process; the slot dies with it, here
                os.kill(os.getppid(), signal.Signals[sig or default])
                time.sleep(60)  # the parent's teardown takes a moment: go no further meanwhile
            else:
                os.kill(os.getpid(), signal.Signals[sig or default])


def _hold(name: str) -> None:
    where, _, nth = os.environ.get("DLEXP_HOLD_AT", "").partition("@")
    marker = os.environ.get("DLEXP_HOLD_FILE")
    if where != name or _POINTS_SEEN[name] != int(nth or 1) or not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # one process holds: the first to get here
    except FileExistsError:
        return
    os.write(fd, (os.environ.get("SLURM_JOB_ID", str(os.getpid())) + "\n").encode())
    os.close(fd)
    sys.stdout.flush()
    for _ in range(600):  # a preempted job: killed here, not ended
        time.sleep(1)


def signal_name(signum: Optional[int]) -> str:
    """``SIGTERM`` for 15; empty when no signal arrived."""
    return signal.Signals(signum).name if signum else ""
