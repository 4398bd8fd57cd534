"""Tasks: one file per task, each registering a ``Task`` subclass in ``TASKS`` (see ``dlexp.tasks.base``).

Every module of this package is imported here, so a new task is one new file.
"""
import importlib
import pkgutil

from dlexp.metrics import METRICS  # noqa: F401  (listed beside the losses by tools and tests)
from dlexp.tasks.base import LOSSES, TASKS, Batch, StepOutput, Task, build_task, labels_of, resolve_monitor  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registers the module's task and losses
