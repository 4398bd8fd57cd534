"""Writes that do not block the next epoch: one thread per run performs them, in the order handed over.

A checkpoint is handed over as a snapshot (every tensor cloned when it is handed over), so training goes
on while the file is written; the thread writes each file as it would be written in line (temp file,
fsync, rename), so a kill at any instant leaves the previous file or the new one. ``wait`` returns when
every write handed over is on disk, and raises the first write's error (e.g. a full disk) there. A run
waits for its writes before it scores the test sets and before it returns, interrupted or not.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional

from torch import Tensor


def snapshot(obj: Any) -> Any:
    """A copy of a (nested) state dict whose tensors no later optimizer step can change."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class BackgroundWriter:
    """A FIFO of write calls run by one daemon thread, started on the first ``submit``."""

    def __init__(self, name: str = "dlexp-writer"):
        self.name = name
        self._queue: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def submit(self, write: Callable[..., None], *args: Any) -> None:
        """Queue ``write(*args)``; raises the error of an earlier write, if one failed."""
        self._raise_error()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put((write, args))

    def wait(self) -> None:
        """Block until every write handed over so far is done; raise the first one's error."""
        if self._thread is not None:
            self._queue.join()
        self._raise_error()

    @property
    def pending(self) -> int:
        """Writes handed over and not yet done (for tests)."""
        return self._queue.unfinished_tasks

    def _work(self) -> None:
        while True:
            write, args = self._queue.get()
            try:
                if self._error is None:  # after a failed write, the later ones (newer states) are not made
                    write(*args)
            except BaseException as err:  # handed to the main thread by wait/submit
                self._error = err
            finally:
                self._queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
