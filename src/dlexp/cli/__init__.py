"""The command line: the entry point and its exit codes, the checks before Hydra, ``--help`` and
``--version``, the Hydra application, the sweep callback, and the other commands (``summary``,
``report``, ``translate``).

The top layer: it may import every folder below it. It defers torch: ``dlexp.train`` (and the
modules that need torch) are imported inside the functions that start a run, each with a comment,
so ``--help``, ``--cfg`` and the report command never pay for it.
"""
