"""Kept for configs that name ``dlexp.sweep.SweepSummary`` as a Hydra callback: it lives in ``dlexp.cli.sweep``."""
from dlexp.cli.sweep import SweepSummary  # noqa: F401  (re-exported)
