"""A run dir and its life: the names of its files, creating or refusing it, resuming it, and what a run records.

- ``files``: every file name dlexp writes, and where a run keeps it (light: the command line uses it);
- ``rundir``: a new run's dir, checked before anything is written into it;
- ``resume``: ``resume=`` (which checkpoint, which config, what may change);
- ``checkpoint``: the checkpoint file (atomic writes, ``weights_only`` loads);
- ``runlog``: console lines, metrics.csv, summary.json, TensorBoard;
- ``diagnostics``: grad_norms.csv, the generalization gap and the diagnosis.

Below every layer that runs or reads runs; imports only ``dlexp.config`` and ``dlexp.errors``.
"""
