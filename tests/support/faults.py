"""Faults at exact moments of a run, for the tests that kill or interrupt dlexp.

dlexp calls ``dlexp.hooks.point(name)`` at named moments and does nothing there by itself. A test
arms a child process through its environment; ``tests/support/sitecustomize.py`` (on the
``PYTHONPATH`` of every process the tests start, see conftest.py) reads it when Python starts and
sets the hook:

- ``DLEXP_SIGNAL_AT=name[@N][:SIGNAL]``: send this process SIGNAL (default SIGINT) at the N-th time
  (default the first) it reaches ``name``;
- ``DLEXP_KILL_AT``: the same with SIGKILL (a crash: nothing runs after it);
- ``DLEXP_KILL_PARENT_AT``: kill the process that started this one (a search slot's sweep process);
- ``DLEXP_HOLD_AT=name[@N]`` with ``DLEXP_HOLD_FILE=PATH``: the first process to get there writes PATH
  (with its SLURM job id) and waits there until it is killed, as a preempted job would be;
- ``DLEXP_ONCE_FILE=PATH``: a signal is sent by the first process to get there only (it writes PATH),
  not again by the processes that replace it (a search's new slot worker inherits the environment).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional

# each variable that makes a point send a signal, with the signal it sends unless the spec names one
SIGNALLING = (("DLEXP_SIGNAL_AT", "SIGINT"), ("DLEXP_KILL_AT", "SIGKILL"), ("DLEXP_KILL_PARENT_AT", "SIGKILL"))
VARIABLES = (*(variable for variable, _ in SIGNALLING), "DLEXP_HOLD_AT")
HOLD_SECONDS = 600  # a held process waits this long at most for the test to kill it


@dataclass
class Faults:
    """The faults one process was armed with; called at every point."""

    env: Mapping[str, str]
    seen: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Optional["Faults"]:
        armed = {k: env[k] for k in (*VARIABLES, "DLEXP_HOLD_FILE", "DLEXP_ONCE_FILE") if env.get(k)}
        return cls(armed) if any(k in armed for k in VARIABLES) else None

    def __call__(self, name: str) -> None:
        self.seen[name] = self.seen.get(name, 0) + 1
        self._hold(name)
        for variable, default in SIGNALLING:
            spec = self.env.get(variable)
            if not spec:
                continue
            where, _, sig = spec.partition(":")
            if _at(where, name, self.seen[name]) and _first(self.env.get("DLEXP_ONCE_FILE")):
                sys.stdout.flush()
                if variable == "DLEXP_KILL_PARENT_AT":  # a slot's sweep process; the slot dies with it, here
                    os.kill(os.getppid(), signal.Signals[sig or default])
                    time.sleep(60)  # the parent's teardown takes a moment: go no further meanwhile
                else:
                    os.kill(os.getpid(), signal.Signals[sig or default])

    def _hold(self, name: str) -> None:
        marker = self.env.get("DLEXP_HOLD_FILE")
        if not marker or not _at(self.env.get("DLEXP_HOLD_AT", ""), name, self.seen[name]):
            return
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # one process holds: the first to get here
        except FileExistsError:
            return
        os.write(fd, (os.environ.get("SLURM_JOB_ID", str(os.getpid())) + "\n").encode())
        os.close(fd)
        sys.stdout.flush()
        for _ in range(HOLD_SECONDS):  # a preempted job: killed here, not ended
            time.sleep(1)


def _first(marker: Optional[str]) -> bool:
    """No marker, or this process is the first to create it."""
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _at(where: str, name: str, count: int) -> bool:
    """``where`` is ``name`` or ``name@N``, and this is the N-th time (default the first) at ``name``."""
    at, _, nth = where.partition("@")
    return at == name and count == int(nth or 1)


def arm_from_env() -> None:
    """Set dlexp's point hook when this process's environment asks for a fault (sitecustomize calls it)."""
    faults = Faults.from_env()
    if faults is not None:
        from dlexp.hooks import set_point_hook

        set_point_hook(faults)
