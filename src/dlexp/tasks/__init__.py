"""Tasks: how a batch feeds the model, the loss and what it weighs, the metrics and the monitor.

One file per task, each registering a ``Task`` subclass in ``TASKS`` (``dlexp.tasks.base``); every
module of this package is imported here, so a new task is one new file. ``metrics`` holds the
metric accumulators (``METRICS``), ``bleu`` the translation scores, ``translator`` a trained
translation run used on new sentences.

May import data, models, runs and config; never training or anything above it.
"""
import importlib
import pkgutil

from dlexp.data.base import Batch  # noqa: F401  (what every task's step takes)
from dlexp.tasks.base import LOSSES, TASKS, StepOutput, Task, build_task, resolve_monitor  # noqa: F401
from dlexp.tasks.metrics import METRICS  # noqa: F401  (listed beside the losses by tools and tests)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")  # registers the module's task and losses
