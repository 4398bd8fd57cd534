"""dlexp: a command-line deep-learning experiment runner, and its Python API.

``import dlexp`` is light: the API's names are imported when first used (PEP 562), so the command line's
``--help`` and a plugin module's ``from dlexp import register_model`` pay only for what they use.
"""

__version__ = "0.1.0"

# public name -> the module of the API that holds it
_API = {
    **{name: "dlexp.api.components" for name in (
        "register_model", "register_dataset", "register_task", "register_loss", "register_metric", "register_optimizer",
        "register_scheduler", "Source", "Batch", "Task", "StepOutput", "Metric", "MeanMetric")},
    **{name: "dlexp.api.notebook" for name in ("run", "sweep", "load", "RunOutcome", "SweepOutcome")},
}


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'dlexp' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
