"""Graceful stops on SIGINT (Ctrl-C) and SIGTERM (e.g. cluster preemption).

The first signal only sets a flag: the training loop finishes its current step,
saves a checkpoint and reports status ``interrupted``. A second signal exits at
once (the last checkpoint on disk stays valid: checkpoints are written atomically).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            sys.stderr.write(f"\n{name} again: exiting now\n")
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"\n{name}: finishing the current step and saving a checkpoint (send it again to exit at once)\n")

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        """Handle the signals while the block runs (only possible in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in HANDLED}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def signal_name(signum: Optional[int]) -> str:
    """``SIGTERM`` for 15; empty when no signal arrived."""
    return signal.Signals(signum).name if signum else ""
