"""The hpo_strategies lesson's finding (conf/experiment/hpo_strategies.yaml): four searches of one space and one
budget, each run once per seed by a sweep of searches, compared from their ``search.json`` records.

A search's runs are taken in the order they ended: after each, the epochs spent so far (every run's
epochs, a rung run again from scratch included) and the best val error seen so far. From that curve come
the best error, the epochs and seconds spent, and the epochs it took to reach a target error or random
search's own best.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Optional

from dlexp.course.findings import NotMeasurable, SearchFiles, finding
from dlexp.course.lessons import fmt, mean
from dlexp.results.figures import mean_std, plot_bands, plot_rungs
from dlexp.runs.files import atomic_write
from dlexp.search import halving

TARGET_ERROR = 0.04  # the stated target: a val error of 4% (val/acc 0.96) on the digits
RANDOM, SYNC, ASYNC = "random", "successive_halving", "asha"  # the searches the claims compare, by their names
HALVING = (SYNC, ASYNC)
CURVES_PLOT, RUNGS_PLOT, TABLE = "best_so_far.png", "rungs.png", "strategies.md"


def _error(value: float, direction: str) -> float:
    """The val error of a run's objective: 1 - accuracy for a maximized metric; a minimized one as it is."""
    return 1.0 - value if direction == "maximize" else value


def curve(search: SearchFiles) -> list[tuple[int, float]]:
    """(epochs spent, best val error so far) after each run, in the order the runs ended."""
    spent, best, points = 0, math.inf, []
    for run in search.runs:
        spent += int(run["epochs"])
        if run["value"] is not None:
            best = min(best, _error(float(run["value"]), search.record["direction"]))
        points.append((spent, best))
    if not points:
        raise NotMeasurable(f"{search.path / 'search.json'} lists no runs")
    return points


def epochs_to(points: list[tuple[int, float]], target: float) -> float:
    """The epochs spent when the best error first reached ``target`` (inf: never)."""
    return next((float(spent) for spent, best in points if best <= target + 1e-12), math.inf)


def _numbers(groups: dict[str, list[SearchFiles]]) -> dict[str, dict[str, list[float]]]:
    """Per search name, per seed: best error, epochs, seconds, epochs to the target, busy share, and (halving
    searches) the share of random search's epochs it took to reach random search's best error."""
    if RANDOM not in groups or not all(name in groups for name in HALVING):
        raise NotMeasurable(f"needs the searches {RANDOM}, {SYNC} and {ASYNC} (have {', '.join(groups)})")
    seeds = {len(g) for g in groups.values()}
    if len(seeds) != 1:
        raise NotMeasurable(f"the searches ran at different numbers of points ({sorted(seeds)}): a stopped sweep")
    random_curves = [curve(s) for s in groups[RANDOM]]
    out: dict[str, dict[str, list[float]]] = {}
    for name in _in_order(groups):
        searches = groups[name]
        curves = [curve(s) for s in searches]
        out[name] = {
            "best_error": [c[-1][1] for c in curves],
            "epochs": [float(c[-1][0]) for c in curves],
            "run_seconds": [math.fsum(float(r.get("run_seconds") or 0) for r in s.runs) for s in searches],
            "seconds": [float(s.record["wall_seconds"]) for s in searches],
            "epochs_to_target": [epochs_to(c, TARGET_ERROR) for c in curves],
            "busy": [float(s.record["busy_fraction"]) for s in searches],
            "share_to_random_best": [epochs_to(c, r[-1][1]) / r[-1][0] for c, r in zip(curves, random_curves)],
        }
    return out


def _in_order(groups: dict[str, list[SearchFiles]]) -> list[str]:
    """Random search, its synchronous and asynchronous halving, then the others by name."""
    return [*(n for n in (RANDOM, SYNC, ASYNC) if n in groups), *sorted(n for n in groups if n not in (RANDOM, SYNC, ASYNC))]


def _ms(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{fmt(m)} ± {fmt(s)}" if math.isfinite(m) else "never"


def _reached(values: list[float]) -> str:
    hit = [v for v in values if math.isfinite(v)]
    return f"{_ms(hit)} ({len(hit)} of {len(values)} seeds)" if hit else f"never (0 of {len(values)} seeds)"


def _table(numbers: dict[str, dict[str, list[float]]]) -> str:
    """The comparison as a Markdown table, mean ± std over the seeds."""
    lines = [f"| search | best val error | epochs | seconds of training | wall seconds | epochs to val error "
             f"{TARGET_ERROR} | share of random's epochs to its best error | slots busy |", "|---|---|---|---|---|---|---|---|"]
    for name, n in numbers.items():
        share = "-" if name == RANDOM else _reached(n["share_to_random_best"])
        lines.append(f"| `{name}` | {_ms(n['best_error'])} | {_ms(n['epochs'])} | {_ms(n['run_seconds'])} | "
                     f"{_ms(n['seconds'])} | {_reached(n['epochs_to_target'])} | {share} | {_ms(n['busy'])} |")
    return "\n".join(lines) + "\n"


def _figures(groups: dict[str, list[SearchFiles]], out: Path) -> list[str]:
    """The table, best-so-far val error against epochs spent (a band per search), and the rungs of synchronous
    successive halving at the first point."""
    numbers = _numbers(groups)
    atomic_write(out / TABLE, _table(numbers))
    series = {}
    for name in _in_order(groups):
        curves = [curve(s) for s in groups[name]]
        grid = sorted({spent for c in curves for spent, _ in c})
        series[name] = (grid, [[_best_at(c, x) for x in grid] for c in curves])
    plot_bands(series, out / CURVES_PLOT, xlabel="epochs spent (cumulative over the search's runs)",
               ylabel="best val error so far", steps=True, log_y=True, lines={f"target {TARGET_ERROR}": TARGET_ERROR},
               title=f"best-so-far val error, mean ± std over {len(groups[RANDOM])} seeds")
    first = groups[SYNC][0]
    if not first.record.get("rungs"):  # a search named successive_halving that did not run synchronous rungs
        return [TABLE, CURVES_PLOT]
    by_trial: dict[int, tuple[list[float], list[float]]] = {}
    for run in first.runs:
        if run["value"] is not None:
            epochs, errors = by_trial.setdefault(run["trial"], ([], []))
            epochs.append(run["epochs"])
            errors.append(_error(float(run["value"]), first.record["direction"]))
    plot_rungs(list(by_trial.values()), out / RUNGS_PLOT, rungs=first.record["rungs"],
               title=f"synchronous successive halving, {first.path.name}: val error at each rung")
    return [TABLE, CURVES_PLOT, RUNGS_PLOT]


def _best_at(points: list[tuple[int, float]], x: float) -> float:
    """The best error after the runs that ended by ``x`` epochs spent; after the last run, its value stays."""
    best = math.nan
    for spent, value in points:
        if spent > x:
            break
        best = value
    return best


@finding("hpo_strategies", "successive halving, synchronous and asynchronous (ASHA), reach random search's best val "
         "error in a fraction of its epochs in most seeds, and asynchronous slots are busier than synchronous ones",
         scope="searches", figures=_figures)
def _hpo_strategies(groups: dict[str, list[SearchFiles]]) -> tuple[dict, bool, tuple[str, Optional[str]]]:
    numbers = _numbers(groups)
    shares = {name: statistics.median(numbers[name]["share_to_random_best"]) for name in HALVING}
    busy = {name: mean(numbers[name]["busy"]) for name in HALVING}
    faster = all(share < 1 for share in shares.values())  # in more than half the seeds, with fewer epochs
    busier = busy[ASYNC] > busy[SYNC]
    line = "; ".join(f"{name}: val error {_ms(n['best_error'])} in {_ms(n['epochs'])} epochs, {_ms(n['run_seconds'])} s"
                     for name, n in numbers.items())
    line += (f"; random's best reached at a median {fmt(shares[SYNC])} (synchronous) and {fmt(shares[ASYNC])} (ASHA) "
             f"of its epochs; slots busy {fmt(busy[ASYNC])} (ASHA) vs {fmt(busy[SYNC])} (synchronous)")
    measured = {f"{key}/{name}": mean_std(values)[0] for name, n in numbers.items() for key, values in n.items()}
    measured.update({f"median_share_to_random_best/{k}": v for k, v in shares.items()})
    measured["seeds"] = len(groups[RANDOM])
    return measured, faster and busier, (line, _premise(groups))


def _premise(groups: dict[str, list[SearchFiles]]) -> Optional[str]:
    """What the comparison presumes: the same space, trial budget and slots in every search; each search spent
    the budget it claims (random search every trial to the last epoch, synchronous halving its rungs' runs,
    the pruned searches no trial past it, no failed run); trials of different lengths; at least 3 seeds."""
    searches = [s for g in groups.values() for s in g]
    same = {(str(s.record["settings"].get("params")), s.record["n_trials"], s.record["slots"], s.record["max_epochs"])
            for s in searches}
    if len(same) > 1:
        return "the searches differ in their space, trial budget, slots or epochs: not one comparison"
    for s in searches:
        why = _spent_as_claimed(s)
        if why:
            return f"{s.name} in {s.path.name}: {why}"
    seconds = [float(r["seconds"]) for s in groups[SYNC] + groups[ASYNC] for r in s.runs]
    spread = statistics.pstdev(seconds) / mean(seconds) if len(seconds) > 1 and mean(seconds) > 0 else 0.0
    if spread < 0.25:
        return f"the trials' lengths hardly vary (coefficient of variation {fmt(spread)}): nothing for a synchronous rung to wait for"
    if len(groups[RANDOM]) < 3:
        return f"mean ± std over seeds needs at least 3, got {len(groups[RANDOM])}"
    return None


def _spent_as_claimed(search: SearchFiles) -> Optional[str]:
    """Why ``search`` did not spend the budget it claims, or None."""
    runs, n, r_max = search.runs, int(search.record["n_trials"]), int(search.record["max_epochs"])
    failed = [r for r in runs if r["status"] not in ("completed", "pruned")]
    if failed or len({r["trial"] for r in runs}) != n or search.record.get("interrupted"):
        return f"{len({r['trial'] for r in runs})} of {n} trials ran, {len(failed)} runs failed or stopped"
    if any(int(r["epochs"]) > r_max for r in runs):
        return f"a run went past {r_max} epochs"
    rungs = search.record.get("rungs") or []
    if rungs:  # synchronous halving: n runs of r_0 epochs, n/eta of r_1, ...
        expected = halving.rung_runs(n, rungs, halving.reduction_factor(search.record["settings"]))
        counts = [sum(1 for r in runs if int(r["epochs"]) == epochs) for epochs in rungs]
        if counts != expected:
            return f"its rungs of {rungs} epochs ran {counts} runs, not {expected}"
    elif search.record["settings"]["pruner"] == "none" and any(int(r["epochs"]) != r_max for r in runs):
        return f"an unpruned trial stopped before its {r_max} epochs"
    return None
