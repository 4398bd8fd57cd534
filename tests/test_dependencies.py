"""The installed Hydra, OmegaConf, Optuna and MLflow are versions that dlexp's use of them was reviewed for.

dlexp uses only their public APIs, but some of its behaviour follows theirs closely, and an upgrade
outside these ranges needs a look before the range (here and in pyproject.toml) is widened:

- Hydra: ``dlexp.cli.plan.pending_jobs`` expands a grid in the basic sweeper's order (the sweeper is
  private; tests/test_sweeps.py compares the two); ``dlexp.search.slots.job_error`` reads a failed
  job's exception through ``JobReturn.return_value``, which raises it; the sweeper and launcher plugins
  (``src/hydra_plugins``) follow Hydra's plugin interfaces.
- OmegaConf: values read as written (``to_container(resolve=False)``) in the config checks.
- MLflow (the ``mlflow`` extra): the client's public API, but the checks made before a run read its
  store's ``experiments`` table and its server's REST endpoints without importing it.
- Optuna: trials by number through BaseStorage's public methods (``dlexp.search.study.TrialStore``),
  ``Trial(study, trial_id)`` for a trial's run, and TPE's defaults (Optuna 5 changed ``multivariate``:
  dlexp sets every TPE option whose default differs between the versions, and the TPE test in
  tests/test_search.py pins the proposals of a seed).
"""
from __future__ import annotations

from importlib.metadata import version

import pytest
from packaging.version import Version

# package: (lowest, below), the range reviewed; the versions the tests ran on, and what to re-check
REVIEWED = {
    "hydra-core": ("1.3.4", "1.4", "1.3.8 (the grid, search and failure tests also on 1.3.4)", "pending_jobs against the basic sweeper (its order, its sweep types), "
                   "JobReturn.return_value, the Sweeper and Launcher plugin interfaces"),
    "omegaconf": ("2.3.1", "2.4", "2.3.1", "OmegaConf.to_container(resolve=False) in the list-key and option-key checks"),
    "optuna": ("4.9", "6", "4.9.0 and 5.1.0", "BaseStorage's trial methods, Trial(study, trial_id), TPESampler's "
               "defaults (tests/test_search.py's pinned TPE proposals)"),
    "mlflow": ("3.17", "3.18", "3.17.2", "the checks before a run (dlexp.tracking.loggers reads the experiments "
               "table's name and lifecycle_stage, and the server's experiments/get-by-name and /health), the "
               "MLFLOW_HTTP_REQUEST_* settings dlexp.tracking.store sets, tests/test_mlflow.py against a real server"),
}


@pytest.mark.parametrize("package", sorted(REVIEWED))
def test_the_installed_version_is_one_the_private_api_review_covered(package):
    lowest, below, tested, recheck = REVIEWED[package]
    installed = Version(version(package))
    assert Version(lowest) <= installed < Version(below), (
        f"{package} {installed} is outside {lowest} <= v < {below}, the range dlexp's use of it was reviewed for "
        f"(tested on {tested}). Re-check: {recheck}; then widen the range here and in pyproject.toml."
    )
