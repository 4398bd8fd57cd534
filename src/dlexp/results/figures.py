"""Figures of comparisons over seeds that the course's findings draw: bands of mean ± std against a shared x, and
the rungs of successive halving. Drawn from numbers the caller read from run files; no torch.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from dlexp.results.plots import _figure, _save

Series = tuple[Sequence[float], Sequence[Sequence[float]]]  # (x values, one list of y values per seed)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for a single value) of the finite ``values``."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    mean = math.fsum(vals) / len(vals)
    var = math.fsum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return mean, math.sqrt(var)


def plot_bands(series: dict[str, Series], path: Path, *, xlabel: str, ylabel: str, title: str = "",
               log_x: bool = False, log_y: bool = False, steps: bool = False,
               lines: Optional[dict[str, float]] = None) -> Path:
    """One line per series, the mean over its seeds at each x, in a band of ± one standard deviation;
    ``steps``: drawn as a step function (a best-so-far value holds until the next improvement); ``lines``:
    labelled horizontal references (e.g. a target, or the accuracy before the shift)."""
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    for i, (label, (xs, runs)) in enumerate(series.items()):
        stats = [mean_std([run[j] for run in runs]) for j in range(len(xs))]
        means, stds = [m for m, _ in stats], [s for _, s in stats]
        color = f"C{i}"
        if steps:
            ax.step(xs, means, color=color, label=label, where="post")
        else:
            ax.plot(xs, means, "o-", color=color, label=label)
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], color=color,
                        alpha=0.2, linewidth=0, step="post" if steps else None)
    for j, (label, y) in enumerate((lines or {}).items()):
        ax.axhline(y, color="0.4", linestyle=("--", ":", "-.")[j % 3], linewidth=1, label=label)
    if log_x:  # the x values themselves as ticks (k = 8, 32, ...), not powers of 2
        ax.set_xscale("log", base=2)
        ticks = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_rungs(configs: Sequence[tuple[Sequence[float], Sequence[float]]], path: Path, *, rungs: Sequence[float],
               title: str = "", ylabel: str = "val error") -> Path:
    """Successive halving, rung by rung: one line per configuration through the rungs it reached (x: its epochs
    at each rung, y: its val error there), those that reached the last rung drawn bold."""
    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot()
    last = max(rungs)
    for epochs, errors in configs:
        final = max(epochs) == last
        ax.plot(epochs, errors, "o-", color="C3" if final else "0.6", linewidth=2 if final else 1,
                alpha=1.0 if final else 0.6, markersize=4)
    ax.set_xticks(list(rungs))
    ax.set_yscale("log")
    ax.set_xlabel("epochs (rung)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, Path(path))
