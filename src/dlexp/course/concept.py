"""The concept_shift lesson's finding (conf/experiment/concept_shift.yaml): what concept shift does to a
trained model, what a domain classifier sees of it, and how updates on k new labels compare, over seeds.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from dlexp.course.findings import NotMeasurable, RunFiles, finding
from dlexp.course.lessons import _summary_value, fmt, mean
from dlexp.results.figures import mean_std, plot_bands

CONCEPT_PLOT = "concept_shift.png"  # the finding's figure, beside finding.json


def _new_label_sizes(job: RunFiles) -> list[int]:
    """The set sizes k whose updates a concept-shift run scored (``test_shifted_finetune_<k>/acc``)."""
    sizes = sorted(int(key.split("_")[-1].split("/")[0]) for key in job.summary()
                   if key.startswith("test_shifted_finetune_") and key.endswith("/acc"))
    if not sizes:
        raise NotMeasurable(f"{job.path / 'summary.json'} has no updates on new labels: set shift.correct=finetune")
    return sizes


def _paired_gain(a: list[float], b: list[float]) -> tuple[float, float]:
    """The mean of a - b over seeds (paired: the same seed's runs) and its standard error."""
    diffs = [x - y for x, y in zip(a, b)]
    if len(diffs) < 2:
        return mean(diffs), math.inf
    m = mean(diffs)
    return m, math.sqrt(math.fsum((d - m) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs))


def _concept_numbers(groups: dict[str, list[RunFiles]]) -> dict[str, Any]:
    """Per seed: the old rule's test acc, the shifted one's without update, the domain AUC, and per k the
    accuracy after fine-tuning and after training from scratch (each a list over the seeds)."""
    jobs = [job for seed in groups.values() for job in seed]
    sizes = _new_label_sizes(jobs[0])
    per_seed = {"old": [_summary_value(j, "test/acc") for j in jobs],
                "none": [_summary_value(j, "test_shifted/acc") for j in jobs],
                "domain_auc": [_summary_value(j, "shift/domain_auc") for j in jobs]}
    for how in ("finetune", "scratch"):
        for k in sizes:
            per_seed[f"{how}/{k}"] = [_summary_value(j, f"test_shifted_{how}_{k}/acc") for j in jobs]
    return {"sizes": sizes, "seeds": len(jobs), "per_seed": per_seed}


def _concept_figure(groups: dict[str, list[RunFiles]], out: Path) -> list[str]:
    numbers = _concept_numbers(groups)
    sizes, runs = numbers["sizes"], numbers["per_seed"]
    series = {how: (sizes, [[runs[f"{how}/{k}"][i] for k in sizes] for i in range(numbers["seeds"])])
              for how in ("finetune", "scratch")}
    series["no update"] = (sizes, [[v] * len(sizes) for v in runs["none"]])
    lines = {"old rule, before the shift": mean_std(runs["old"])[0]}
    plot_bands(series, out / CONCEPT_PLOT, xlabel="k newly labelled examples", ylabel="accuracy on the shifted test set",
               title=f"concept shift: updates on k new labels ({numbers['seeds']} seeds, mean ± std)", log_x=True, lines=lines)
    return [CONCEPT_PLOT]


@finding("concept_shift", "concept shift lowers the accuracy while a domain classifier sees no change in the inputs; "
         "a few update steps from the trained weights on k new labels beat no update and training from scratch "
         "at the smallest k, and scratch catches up as k grows", axis="seed", figures=_concept_figure)
def _concept_shift(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, tuple[str, Optional[str]]]:
    numbers = _concept_numbers(groups)
    sizes, runs = numbers["sizes"], numbers["per_seed"]
    small, large = sizes[0], sizes[-1]
    avg = {key: mean(values) for key, values in runs.items()}
    drop = avg["old"] - avg["none"]
    over_none, over_scratch = (_paired_gain(runs[f"finetune/{small}"], runs[key]) for key in ("none", f"scratch/{small}"))
    gap = {k: [f - s for f, s in zip(runs[f"finetune/{k}"], runs[f"scratch/{k}"])] for k in (small, large)}
    closing = _paired_gain(gap[small], gap[large])
    # each comparison over seeds, paired: the mean gain must exceed twice its standard error
    beats = all(g > 2 * se for g, se in (over_none, over_scratch))
    holds = drop > 0.05 and beats and closing[0] > 2 * closing[1]
    line = (f"old-rule test acc {fmt(avg['old'])}, shifted {fmt(avg['none'])} with inputs a domain classifier tells "
            f"apart at AUC {fmt(avg['domain_auc'])}; k={small}: fine-tuned {fmt(avg[f'finetune/{small}'])} vs scratch "
            f"{fmt(avg[f'scratch/{small}'])} vs none {fmt(avg['none'])}; k={large}: fine-tuned "
            f"{fmt(avg[f'finetune/{large}'])} vs scratch {fmt(avg[f'scratch/{large}'])} ({numbers['seeds']} seeds)")
    measured = {**avg, "drop": drop, f"gain_over_none/{small}": over_none[0], f"gain_over_scratch/{small}": over_scratch[0],
                "gap_closed": closing[0], "seeds": numbers["seeds"]}
    return measured, holds, (line, _concept_premise(avg, numbers["seeds"]))


def _concept_premise(avg: dict[str, float], seeds: int) -> Optional[str]:
    """Concept shift presumes inputs that did not move (a domain AUC within 0.05 of chance), a model that had
    learned the old rule (test acc at least 0.8), and a comparison over at least 3 seeds."""
    if abs(avg["domain_auc"] - 0.5) > 0.05:
        return (f"the inputs moved too: a domain classifier tells them apart at AUC {fmt(avg['domain_auc'])}, not about "
                "0.5, so this is not concept shift alone")
    if avg["old"] < 0.8:
        return f"the model never learned the old rule (test acc {fmt(avg['old'])}), so there is no accuracy to lose"
    if seeds < 3:
        return f"a comparison over seeds needs at least 3, got {seeds}"
    return None
