"""The Python API: what a user's own code imports from ``dlexp``.

- ``components``: the decorators that register a user's own models, datasets, tasks, losses, optimizers and
  schedulers (``from dlexp import register_model``), and the types their builders take and return;
- ``notebook``: ``dlexp.run``, ``dlexp.sweep`` and ``dlexp.load``, the command line as Python calls for
  notebooks and scripts.

The top layer, beside the command line: it may import every folder below it (it runs runs through the
command line's own app). ``dlexp/__init__.py`` re-exports these names lazily, so ``import dlexp`` stays
light.
"""
