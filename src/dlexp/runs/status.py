"""The states of a run, named once.

A run's ``summary.json`` holds its ``status``; a sweep's ``jobs.json`` holds each job's while the sweep
runs; a rerun of a sweep reads a job's dir to decide whether to skip, resume or start it. All of them
use these values. ``Status`` is a ``str`` enum, so a value compares equal to its text (``"completed"``)
and is written to JSON as that text.
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    # written to summary.json by the run
    RUNNING = "running"  # jobs.json only: the job has started
    COMPLETED = "completed"  # trained to its last epoch, or stopped early; its test sets are scored
    PRUNED = "pruned"  # a search's pruner stopped it: a result, behind the other trials
    DIVERGED = "diverged"  # the loss or the gradients became non-finite: a result, not a crash
    FAILED = "failed"  # refused or crashed after it was accepted; summary.json says why
    INTERRUPTED = "interrupted"  # a signal stopped it; resume= (or the sweep's rerun) continues it
    # what a dir shows without a status of its own
    PENDING = "pending"  # jobs.json only: a grid job not started yet
    INCOMPLETE = "incomplete"  # files, but no summary.json: still running, or killed
    NEW = "new"  # nothing of the run on disk yet

    def __str__(self) -> str:  # f-strings and print show the text, as JSON does
        return self.value

    @property
    def finished(self) -> bool:
        """A result a sweep's rerun keeps (skips) rather than runs again."""
        return self in (Status.COMPLETED, Status.PRUNED, Status.DIVERGED)

    @property
    def resumable(self) -> bool:
        """Stopped part-way: it continues from its checkpoint, when it has one."""
        return self in (Status.INTERRUPTED, Status.INCOMPLETE)

    @classmethod
    def of(cls, value: object) -> "Status":
        """The status a file records; an unknown value (a newer dlexp's, a hand edit) reads as failed."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.FAILED


# A run's own outcomes, in the order the sweep tables count them.
OUTCOMES = (Status.COMPLETED, Status.PRUNED, Status.FAILED, Status.DIVERGED, Status.INTERRUPTED, Status.INCOMPLETE,
            Status.RUNNING, Status.PENDING)
