"""Experiment trackers: where a run is recorded beyond the files of its run dir.

- ``loggers``: the ``logger`` group (``logger=default``, ``logger=mlflow``): its registry, each option's
  settings, and the checks a run makes before it is accepted (the tracker's address, the experiment);
- ``outbox``: a background thread that sends what a run records, in batches, off the training loop;
- ``mlflow_run``: one dlexp run as one MLflow run (params, tags, metrics per epoch, artifacts, status);
- ``sweeps``: a sweep or search as a parent MLflow run, its jobs as children, found through the sweep dir;
- ``attach``: a run's tracker on its ``RunLog``, opened, closed and abandoned as ``dlexp.train`` trains it.

MLflow is an optional extra: it is imported inside the functions that talk to it, never when this
package is imported. May import ``dlexp.results``, ``dlexp.runs``, ``dlexp.config``, ``dlexp.errors`` and
``dlexp.training.interrupt`` (a signal that ends a run).
"""
