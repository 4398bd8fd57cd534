"""PNG plots of runs and sweeps, drawn headless from the CSV files a run writes.

Only matplotlib's object API is used (``Figure`` + the Agg renderer, never
pyplot), so plotting needs no display, keeps no global state and works in any
process. Nothing here imports torch: ``python -m dlexp.report`` redraws
everything from files on disk.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from dlexp.runs.files import ATTENTION_FILE, ATTENTION_PLOT, CURVES_PLOT, GRAD_NORMS_PLOT
from dlexp.runs.record import RunDir

MAX_EPOCH_LINES = 8  # grad-norm plot: at most this many epochs drawn, evenly spaced


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    """Render to a temp file, then rename: a reader never sees half an image."""
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if isinstance(v, float) and math.isfinite(v)]


def _integer_ticks(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _wide_range(values: Sequence[float], ratio: float = 50.0) -> bool:
    """True when positive values span more than ``ratio``x: such curves read better on a log axis."""
    vals = _finite(values)
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > ratio


# --------------------------------------------------------------------------
# One run


def write_run_plots(run_dir: Path) -> list[Path]:
    """``curves.png`` from metrics.csv, ``grad_norms.png`` from grad_norms.csv and ``attention.png`` from
    attention.json, for those of the three files that exist."""
    run_dir = Path(run_dir)
    written = []
    run = RunDir(run_dir)
    rows = run.metrics()
    summary = run.summary(missing_ok=True)
    if rows:
        written.append(plot_curves(rows, run_dir / CURVES_PLOT, title=_run_title(run_dir, summary), summary=summary))
    norms = run.grad_norms()
    if norms:
        written.append(plot_grad_norms(norms, run_dir / GRAD_NORMS_PLOT, title=_run_title(run_dir, {})))
    attention = run_dir / ATTENTION_FILE
    if attention.is_file():
        examples = [(e["source"], e["output"], e["weights"]) for e in json.loads(attention.read_text())]
        written.append(plot_attention(examples, run_dir / ATTENTION_PLOT))
    return written


def plots_after_training(run_dir: Path) -> None:
    """``write_run_plots`` at the end of a run: a failure to draw is reported, never fatal.

    The plots only re-read files the run has already written (its results are
    safe), and ``python -m dlexp.report`` can draw them again.
    """
    try:
        write_run_plots(run_dir)
    except Exception as err:  # noqa: BLE001  (any drawing problem must not turn a finished run into a failed one)
        print(f"warning: could not draw the plots of {run_dir}: {type(err).__name__}: {err}", file=sys.stderr)


def _run_title(run_dir: Path, summary: dict[str, Any]) -> str:
    title = f"{run_dir.parent.name}/{run_dir.name}" if run_dir.parent.name else run_dir.name
    if summary.get("diagnosis"):
        title += f"  |  diagnosis: {summary['diagnosis']}"
    return title


def plot_curves(rows: list[dict[str, Any]], path: Path, *, title: str = "", summary: Optional[dict] = None) -> Path:
    """Loss and metric against the epoch (train solid, val dashed); the lr on a second y axis of the loss panel."""
    summary = summary or {}
    epochs = [r["epoch"] for r in rows]
    metrics = [k.split("/", 1)[1] for k in rows[0] if k.startswith("train/") and k != "train/loss"]
    fig = _figure(11, 4)
    panels = fig.subplots(1, 1 + len(metrics[:1]), squeeze=False)[0]
    for ax, name in zip(panels, ["loss", *metrics[:1]]):
        for split, style in (("train", "-"), ("val", "--")):
            key = f"{split}/{name}"
            if key in rows[0]:
                ax.plot(epochs, [r[key] for r in rows], style, marker="o", markersize=3, label=key)
        if _wide_range([r.get(f"train/{name}", math.nan) for r in rows] + [r.get(f"val/{name}", math.nan) for r in rows]):
            ax.set_yscale("log")
        if summary.get("best_epoch"):
            ax.axvline(summary["best_epoch"], color="gray", linestyle=":", linewidth=1, label=f"best epoch {summary['best_epoch']}")
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        if name != "loss":
            ax.legend(loc="best", fontsize=8)
    legend_axes = [panels[0]]
    if "lr" in rows[0]:
        lr_ax = panels[0].twinx()
        legend_axes.append(lr_ax)
        lrs = [r["lr"] for r in rows]
        lr_ax.plot(epochs, lrs, color="tab:gray", linestyle="-.", linewidth=1, label="lr")
        if _wide_range(lrs, 10.0):
            lr_ax.set_yscale("log")
        elif _finite(lrs):
            lr_ax.set_ylim(0, 1.15 * max(_finite(lrs)) or 1.0)  # from zero: a constant lr reads as constant
        lr_ax.set_ylabel("learning rate", color="tab:gray")
        lr_ax.tick_params(axis="y", colors="tab:gray")
    handles = [h for ax in legend_axes for h in ax.get_legend_handles_labels()[0]]
    legend_axes[-1].legend(handles=handles, loc="best", fontsize=8)  # one legend, drawn above the lr line
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_grad_norms(rows: list[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Gradient norm and weight norm against layer depth, one line per epoch (light = early, dark = late).

    The lines join the weight layers (Linear, Conv, ...); normalization layers,
    whose scale parameters sit on another scale, are drawn as hollow points.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    epochs = sorted({int(r["epoch"]) for r in rows})
    if len(epochs) > MAX_EPOCH_LINES:  # evenly spaced, first and last included
        step = (len(epochs) - 1) / (MAX_EPOCH_LINES - 1)
        epochs = sorted({epochs[round(i * step)] for i in range(MAX_EPOCH_LINES)})
    layers = sorted({(int(r["depth"]), str(r["layer"]), str(r["type"])) for r in rows})
    cmap, norm = colormaps["viridis_r"], Normalize(min(epochs), max(max(epochs), min(epochs) + 1))
    fig = _figure(11, 4.5)
    axes = fig.subplots(1, 2)
    for ax, column, label in ((axes[0], "grad_norm", "gradient norm"), (axes[1], "weight_norm", "weight norm")):
        for epoch in epochs:
            points = sorted((int(r["depth"]), r[column], "Norm" in str(r["type"])) for r in rows if int(r["epoch"]) == epoch)
            color = cmap(norm(epoch))
            weights = [(d, v) for d, v, is_norm in points if not is_norm]
            ax.plot([d for d, _ in weights], [v for _, v in weights], marker="o", markersize=3, color=color)
            normed = [(d, v) for d, v, is_norm in points if is_norm]
            ax.scatter([d for d, _ in normed], [v for _, v in normed], s=12, facecolors="none", edgecolors=[color])
        if _wide_range([r[column] for r in rows], 10.0):  # norms spanning decades across depth
            ax.set_yscale("log")
        shown = layers[:: max(1, math.ceil(len(layers) / 16))]  # at most 16 labels
        crowded = len(layers) > 8
        ax.set_xticks([d for d, _, _ in shown], [f"{d}: {name} {kind}" if crowded else f"{name}\n{kind}"
                                                 for d, name, kind in shown],
                      fontsize=6 if crowded else 7, rotation=90 if crowded else 0)
        ax.set_xlabel("layer, by depth (input -> output)")
        ax.set_ylabel(f"{label} (L2, per layer)")
        ax.grid(True, alpha=0.3)
    axes[0].set_title("gradients after each epoch's last step (hollow: norm layers)", fontsize=9)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[1], label="epoch")
    _integer_ticks(bar.ax.yaxis)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# --------------------------------------------------------------------------
# A sweep


def plot_comparison(
    labels: list[str],
    runs: list[list[float]],
    means: list[float],
    stds: list[float],
    *,
    best: Optional[int],
    metric: str,
    path: Path,
) -> Path:
    """One row per config: each run's value as a dot, the mean +/- std as a bar; the best config in green."""
    fig = _figure(10, 1.2 + 0.4 * len(labels))
    ax = fig.subplots()
    ys = list(range(len(labels)))[::-1]  # first config at the top
    for y, values, mean, std, i in zip(ys, runs, means, stds, range(len(labels))):
        color = "tab:green" if i == best else "tab:blue"
        offsets = [0.12 * (k - (len(values) - 1) / 2) for k in range(len(values))]  # spread equal values apart
        ax.scatter(values, [y + o for o in offsets], color="tab:gray", s=14, zorder=4, alpha=0.8)
        if math.isfinite(mean):
            ax.errorbar([mean], [y], xerr=[std if math.isfinite(std) else 0.0], fmt="D", color=color,
                        capsize=4, markersize=6, zorder=3)
    ax.set_yticks(ys, [label + ("  (best)" if i == best else "") for i, label in enumerate(labels)], fontsize=8)
    ax.set_xlabel(f"{metric} (dots: runs; diamond: mean +/- std)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(f"{metric} per config", fontsize=10)
    return _save(fig, path)


def plot_heatmap(
    row_key: str,
    col_key: str,
    row_values: list[str],
    col_values: list[str],
    grid: list[list[tuple[float, float]]],
    *,
    metric: str,
    mode: str,
    path: Path,
) -> Path:
    """Mean (and std) of ``metric`` on a grid of two swept keys; brighter is better whatever the mode."""
    import numpy as np
    from matplotlib import colormaps

    means = np.array([[m for m, _ in row] for row in grid], dtype=float)  # (rows, cols)
    cmap = colormaps["viridis" if mode == "max" else "viridis_r"].copy()
    cmap.set_bad("lightgray")  # configs with no completed run
    fig = _figure(1.8 + 1.3 * len(col_values), 1.4 + 0.8 * len(row_values))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(means), cmap=cmap, aspect="auto")
    finite = means[np.isfinite(means)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i, row in enumerate(grid):
        for j, (mean, std) in enumerate(row):
            if not math.isfinite(mean):
                ax.text(j, i, "no run", ha="center", va="center", fontsize=8)
                continue
            text = f"{mean:.4g}" + (f"\n+/- {std:.2g}" if math.isfinite(std) else "")
            bright = (mean > mid) == (mode == "max")
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="black" if bright else "white")
    ax.set_xticks(range(len(col_values)), col_values)
    ax.set_yticks(range(len(row_values)), row_values)
    ax.set_xlabel(col_key)
    ax.set_ylabel(row_key)
    fig.colorbar(image, ax=ax, label=f"{metric} (mean)")
    ax.set_title(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)", fontsize=10)
    return _save(fig, path)


def seed_band(runs: list[list[dict[str, Any]]], key: str) -> tuple[list[float], list[float], list[float]]:
    """(epochs, mean, sample std) of ``key`` over the runs' metrics.csv rows, epoch by epoch.

    An epoch counts the runs that reached it (early stopping ends some sooner); the
    std is NaN where fewer than two did.
    """
    by_epoch: dict[float, list[float]] = {}
    for rows in runs:
        for row in rows:
            if key in row and isinstance(row[key], float) and math.isfinite(row[key]):
                by_epoch.setdefault(row["epoch"], []).append(row[key])
    epochs = sorted(by_epoch)
    means, stds = [], []
    for epoch in epochs:
        values = by_epoch[epoch]
        m = math.fsum(values) / len(values)
        means.append(m)
        stds.append(math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan)
    return epochs, means, stds


MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")  # one per config, beside its colour


def plot_sweep_curves(configs: list[tuple[str, list[list[dict[str, Any]]]]], metrics: list[str], path: Path,
                      *, title: str = "") -> Path:
    """One panel per metric (e.g. loss, acc): each config's train curve (solid) and val curve (dashed), as
    in each run's own curves.png, against the epoch, as the mean over its seeds with a +/- one std band;
    one colour and one marker per config, so that configs whose curves lie on top of each other (or
    share a colour, past 10 configs) still tell apart."""
    from matplotlib import colormaps

    colors = colormaps["tab10" if len(configs) <= 10 else "tab20"]
    fig = _figure(6 * len(metrics), 4.5)
    panels = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(panels, metrics):
        values: list[float] = []
        for i, (label, runs) in enumerate(configs):
            for split, style in (("train", "-"), ("val", "--")):
                epochs, means, stds = seed_band(runs, f"{split}/{metric}")
                if not epochs:
                    continue
                color, every = colors(i % colors.N), max(1, len(epochs) // 8)
                ax.plot(epochs, means, style, color=color, linewidth=1.5 if split == "val" else 1.0,
                        marker=MARKERS[i % len(MARKERS)], markersize=4, markevery=(i % every, every),
                        label=f"{label} ({split})" if split == "val" else None)
                low = [m - s if math.isfinite(s) else m for m, s in zip(means, stds)]
                high = [m + s if math.isfinite(s) else m for m, s in zip(means, stds)]
                ax.fill_between(epochs, low, high, color=color, alpha=0.15 if split == "val" else 0.07, linewidth=0)
                values += means
        if _wide_range(values):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        _integer_ticks(ax.xaxis)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: train solid, val dashed; mean +/- std over seeds", fontsize=9)
        ax.grid(True, alpha=0.3)
    if panels[-1].get_legend_handles_labels()[0]:  # runs without a val split draw no labelled (val) curve
        panels[-1].legend(loc="best", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_attention(examples: list[tuple[list[str], list[str], list[list[float]]]], path: Path) -> Path:
    """One heatmap per sentence: rows are output tokens, columns source tokens, cells the attention
    weight (0..1) the decoder gave that source token when it produced that output token."""
    fig = _figure(3.2 * len(examples), 3.4)
    axes = fig.subplots(1, len(examples), squeeze=False)[0]
    for ax, (source, output, weights) in zip(axes, examples):
        image = ax.imshow(weights, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(source)), source, rotation=90, fontsize=7)
        ax.set_yticks(range(len(output)), output, fontsize=7)
        ax.set_xlabel("source")
    axes[0].set_ylabel("output")
    fig.colorbar(image, ax=list(axes), label="attention weight")
    return _save(fig, path)
