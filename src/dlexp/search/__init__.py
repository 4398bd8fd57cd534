"""Searches and parallel sweeps: Optuna's ask-and-tell driven by dlexp, and slots that run jobs side by side.

- ``space``: a search space written in Hydra's sweep syntax (``interval``, ``tag(log, ...)``, ``choice``,
  comma lists) as Optuna distributions;
- ``study``: the study's storage (a journal file by default, SQLite, PostgreSQL), samplers, pruners,
  the trial budget shared by every worker, leases on running trials, and the link a trial's run uses
  to report each epoch to its study;
- ``slots``: long-lived worker processes, one per CPU share or GPU, that run Hydra jobs with their
  console output in a log of their own;
- ``sweeper``: the search loop: a slot that frees up gets the next trial at once.

Hydra finds the sweeper and the launcher through ``hydra_plugins.dlexp_search``. May import runs,
config and errors; never torch at load (the sweep's own process stays light), the trainer or the
command line.
"""
