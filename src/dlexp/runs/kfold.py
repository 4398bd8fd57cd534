"""A k-fold run's summary: the mean and spread of its folds' summaries."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlexp.runs.status import Status


def combine_fold_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for k folds: metric entries (``best/val/acc``, ``test/acc``, ...) become the mean
    over the folds that report them, plus ``std/<key>`` (sample standard deviation, ddof=1: a prefix
    that sweep tables, which compare ``best/*`` and ``test/*`` across jobs, leave alone); other
    numbers the mean when the folds differ; the per-fold summaries are kept under ``fold_results``.
    A fold that did not complete (the last one run) gives the run its status."""
    out: dict[str, Any] = {}
    for key, value in summaries[0].items():
        values = [s[key] for s in summaries if key in s]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if "/" in key and numbers:
            out[key] = float(np.mean(numbers))
            out[f"std/{key}"] = float(np.std(numbers, ddof=1)) if len(numbers) > 1 else math.nan
        elif numbers and len(numbers) == len(values) and any(v != value for v in values):
            out[key] = float(np.mean(numbers))
        else:
            out[key] = value if all(v == value for v in values) else "mixed"
        if key == "status":
            out["folds"] = len(summaries)
    stopped = next((s for s in summaries if s.get("status") != Status.COMPLETED), None)
    if stopped is not None:  # an interrupted or diverged fold ended the run: its status and details lead
        out["status"] = stopped["status"]
        out.update({k: v for k, v in stopped.items() if k not in out})
    out["fold_results"] = [{"fold": i, **s} for i, s in enumerate(summaries, 1)]
    return out
