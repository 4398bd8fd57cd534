"""A background thread that sends what a run records to its tracker, so that the training loop never waits on it.

The loop puts an item (an epoch's row, the summary, an artifact) and goes on at once. The thread
takes every item waiting of the same kind together and sends them in one call (ten epochs that
queued while the tracker was slow, or within a second, are one request). The first failure stops the sending: the
tracker is taken to be down, so the run spends no more time on it, and every item that did not
go out is kept in ``unsent`` for the run's summary to list. ``close`` waits while the tracker keeps up.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Optional

Send = Callable[[str, list[Any]], None]  # (kind, items of that kind, in order) -> sent, or raises


class Outbox:
    def __init__(self, send: Send, name: str = "dlexp-tracker", every: float = 1.0):
        """``every``: seconds between two calls (until ``close``): short epochs go out many to a call, and the
        thread takes the interpreter from the training loop at most once in that time."""
        self._send, self.every = send, every
        self._waiting: deque[tuple[str, Any]] = deque()
        self._in_flight: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self._closing = False
        self.error: Optional[BaseException] = None  # the first failure; nothing is sent after it
        self.unsent: list[tuple[str, Any]] = []
        self.gave_up = False  # close() stopped waiting while a call was still in flight
        self.sent = 0  # items sent so far
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def put(self, kind: str, item: Any) -> None:
        """Queue ``item``; once the tracker has failed (or the outbox closed), it goes straight to ``unsent``."""
        with self._cond:
            if self.error is not None or self.gave_up:
                self.unsent.append((kind, item))
                return
            self._waiting.append((kind, item))
            self._cond.notify()

    def _take(self) -> Optional[tuple[str, list[Any]]]:
        """The next run of waiting items of one kind; None once closed and empty."""
        with self._cond:
            while not self._waiting and not self._closing:
                self._cond.wait()
            if not self._waiting:
                return None
            kind = self._waiting[0][0]
            while self._waiting and self._waiting[0][0] == kind:
                self._in_flight.append(self._waiting.popleft())
            return kind, [item for _, item in self._in_flight]

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            try:
                self._send(*taken)
            except Exception as err:  # noqa: BLE001  (whatever the tracker's client raises: the run goes on)
                with self._cond:
                    self.error = err
                    self.unsent += self._in_flight + list(self._waiting)
                    self._in_flight, self._waiting = [], deque()
                return
            with self._cond:
                self._in_flight = []
                self.sent += len(taken[1])
                self._cond.wait_for(lambda: self._closing, self.every)

    def close(self, patience: float) -> list[tuple[str, Any]]:
        """Send what is queued, for as long as the tracker keeps taking items, and give up once it has taken none
        for ``patience`` seconds; returns what did not reach the tracker (a call still in flight when this gave
        up counts as not sent, though it may yet arrive)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        seen = -1
        while self._thread.is_alive() and self.sent != seen:
            seen = self.sent
            self._thread.join(patience)
        with self._cond:
            if self._thread.is_alive():
                self.gave_up = True
                self.unsent += self._in_flight + list(self._waiting)
                self._waiting.clear()
            return list(self.unsent)
