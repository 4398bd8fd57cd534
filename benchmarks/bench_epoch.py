"""Whole-epoch benchmark: the runner's epoch (train, val, metrics, logging, diagnostics, checkpoint,
progress bar) against a bare PyTorch loop that does the same train + val on the same tensors.

Both sides get the same model (built by the registry from the same config and seed), Adam, batch size,
eval batch size and threads. Each repeat runs, interleaved so that drift on a shared machine hits both
alike: the bare loop for --epochs epochs, and a real run (``dlexp.train.train`` on a composed config,
checkpoints on, the progress bar drawn as on a terminal, into /dev/null) for --epochs epochs. A run's
window is its epochs plus the wait for its deferred writes at the end; the start-up, test sets and plots,
paid once per run, are outside it. The ratio is of the medians over the repeats of seconds per epoch; the
ratio of each repeat's pair is printed beside it, so the spread on a shared machine is in plain sight.
The two sides alternate which goes first (ABBA), so an order effect falls on both alike. A control side
(``--no-control`` leaves it out) runs the bare loop once more per repeat on another instance of the same
model: two identical loops differ by what the machine and the memory layout alone do, the noise floor
against which the runner's ratio is read.

The breakdown times the runner's parts inside the same runs (a wrapper around each: about a microsecond
per call, a few per batch): the training and validation passes without their metric sums and bar
updates, the metric sums (loss and accuracy, train and val), the progress bar, diagnostics (grad norms,
grad_norms.csv), logging (console line, metrics.csv, TensorBoard), checkpoint (handing last.pt/best.pt to
the writer, or writing them), the wait for deferred writes, and the rest of the epoch's bookkeeping.

Usage:
    python benchmarks/bench_epoch.py [--model mlp lenet] [--epochs 3] [--repeats 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SHAPE = (1, 28, 28)


def write_arrays(path: Path, n_train: int, n_val: int) -> dict[str, torch.Tensor]:
    """Noise images with a class-dependent bright bar (as bench_data.py), float32 in [0, 1], as a .npz."""
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("", n_train), ("_val", n_val)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 90, (n, 28, 28)).astype(np.float32)
        rows = 2 * labels[:, None] + np.arange(4)  # (n, 4): the bar's rows
        images[np.arange(n)[:, None], rows] = 220
        out[f"x{split}"], out[f"y{split}"] = (images / 255.0)[:, None], labels.astype(np.int64)  # (n, 1, 28, 28)
    np.savez(path, **out)
    return {k: torch.from_numpy(v) for k, v in out.items()}


class Clock:
    """Seconds spent in each part, per run; ``phase`` says which pass a metric or bar update belongs to."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = defaultdict(float)
        self.phase = ""
        self.in_loop = False
        self.window_start = 0.0  # time.perf_counter() when the current run's epochs began

    def wrap(self, owner: Any, name: str, part: str | Callable[[], str], *, only_in_loop: bool = True) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if only_in_loop and not self.in_loop:
                return original(*args, **kwargs)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.parts[part if isinstance(part, str) else part()] += time.perf_counter() - start

        setattr(owner, name, timed)

    @contextlib.contextmanager
    def pass_of(self, phase: str) -> Iterator[None]:
        self.phase = phase
        try:
            yield
        finally:
            self.phase = ""


def instrument(clock: Clock) -> None:
    """Wrap the runner's parts with timers (class attributes: every Trainer of the process is timed)."""
    from dlexp.runs.runlog import RunLog
    from dlexp.training import step, trainer
    from dlexp.runs.diagnostics import Diagnostics
    from dlexp.training.checkpointer import Checkpointer

    Trainer = trainer.Trainer
    for name, phase in (("train_epoch", "train"), ("evaluate", "val")):
        original = getattr(Trainer, name)

        def in_phase(*args: Any, _original: Callable = original, _phase: str = phase, **kwargs: Any) -> Any:
            if not clock.in_loop:
                return _original(*args, **kwargs)
            with clock.pass_of(_phase):
                return _original(*args, **kwargs)

        setattr(Trainer, name, in_phase)
        clock.wrap(Trainer, name, phase)
    clock.wrap(step.EpochProgress, "update", lambda: f"metrics_{clock.phase}")
    for name in ("__init__", "update", "close"):
        clock.wrap(step._Bar, name, lambda: f"bar_{clock.phase}")
    clock.wrap(Diagnostics, "record", "diagnostics")
    clock.wrap(RunLog, "log_epoch", "logging")
    clock.wrap(Checkpointer, "save", "checkpoint")
    if hasattr(Checkpointer, "wait"):
        clock.wrap(Checkpointer, "wait", "wait")
    clock.wrap(Trainer, "end_epoch", "end_epoch")
    fit, finish = Trainer.fit, Trainer.finish

    def timed_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        """The window is the epochs and the wait for their deferred writes: from fit's start to its finish()
        (the test sets), which runs after fit has waited for the writes."""
        clock.in_loop, clock.window_start = True, time.perf_counter()
        try:
            return fit(self, *args, **kwargs)
        finally:
            clock.in_loop = False

    def timed_finish(self: Any, *args: Any, **kwargs: Any) -> Any:
        if clock.in_loop:
            clock.parts["window"] += time.perf_counter() - clock.window_start
            clock.in_loop = False
        return finish(self, *args, **kwargs)

    Trainer.fit, Trainer.finish = timed_fit, timed_finish

    init = RunLog.__init__

    def terminal_log(self: Any, *args: Any, **kwargs: Any) -> None:
        """The progress bar drawn as on a terminal, into /dev/null; the console lines too."""
        from rich.console import Console

        init(self, *args, **kwargs)
        self.console = Console(file=open(os.devnull, "w"), force_terminal=True, width=160)
        self.show_progress = True

    RunLog.__init__ = terminal_log


def bare_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: dict[str, torch.Tensor], batch: int,
               eval_batch: int, gen: torch.Generator) -> tuple[float, float]:
    """The shortest correct train + val epoch on in-memory tensors: (train seconds, val seconds)."""
    x, y, xv, yv = data["x"], data["y"], data["x_val"], data["y_val"]
    start = time.perf_counter()
    model.train()
    order = torch.randperm(len(x), generator=gen)
    for i in range(0, len(x), batch):
        idx = order[i : i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    mid = time.perf_counter()
    model.eval()
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    with torch.no_grad():
        for i in range(0, len(xv), eval_batch):
            out = model(xv[i : i + eval_batch])
            loss_sum += F.cross_entropy(out, yv[i : i + eval_batch], reduction="sum")
            correct += (out.argmax(1) == yv[i : i + eval_batch]).sum()
    _ = loss_sum.item() / len(xv), correct.item() / len(xv)  # what a val pass reports
    return mid - start, time.perf_counter() - mid


def compare(model_name: str, args: argparse.Namespace, data_path: Path, data: dict[str, torch.Tensor],
            clock: Clock, work: Path) -> None:
    from hydra import compose, initialize_config_dir

    from dlexp.config.files import CONFIG_DIR
    from dlexp.models import build_model, count_parameters
    from dlexp.train import train

    overrides = [
        "dataset=arrays", f"dataset.path={data_path}", "dataset.test_fraction=0",  # every row trains, as in the bare loop
        f"model={model_name}", "regularizer.dropout=0.0",
        "optim=adam", "optim.lr=0.001", "scheduler=none", f"trainer.batch_size={args.batch_size}",
        f"trainer.num_threads={args.threads}", "trainer.early_stopping.patience=null", "trainer.progress=true",
    ]
    if model_name == "mlp":
        overrides.append("model.hidden=[256]")  # 784-256-10
    overrides += args.set  # e.g. trainer.checkpoints=false, to see what one part costs the rest
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, f"trainer.epochs={args.epochs}"])
        warm_cfg = compose(config_name="train", overrides=[*overrides, "trainer.epochs=1"])
    eval_batch = 4 * args.batch_size  # trainer.eval_batch_size: null

    def fresh_bare() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(cfg.seed)
        model = build_model(cfg.model, IMAGE_SHAPE, 10, 0.0)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    def runner(cfg_: Any, name: str) -> dict[str, float]:
        clock.parts.clear()
        with contextlib.redirect_stdout(io.StringIO()):  # the summary table and console lines
            train(cfg_, work / name)
        return dict(clock.parts)

    runner(warm_cfg, f"{model_name}-warm")  # first-call costs (imports, allocator, kernels) stay out
    bare_epoch(*fresh_bare(), data, args.batch_size, eval_batch, torch.Generator().manual_seed(0))
    bare: list[tuple[float, float]] = []
    control: list[tuple[float, float]] = []  # the same bare loop again, on another instance of the same model
    runs: list[dict[str, float]] = []

    def bare_run(r: int, into: list[tuple[float, float]]) -> None:
        model, optimizer = fresh_bare()
        gen = torch.Generator().manual_seed(r)
        times = [bare_epoch(model, optimizer, data, args.batch_size, eval_batch, gen) for _ in range(args.epochs)]
        into.append((sum(t for t, _ in times) / args.epochs, sum(v for _, v in times) / args.epochs))

    for r in range(args.repeats):  # ABBA order: whichever side runs second in a repeat (a warmer cache,
        # a drifting clock) is the bare loop in one repeat and the runner in the next
        if r % 2 == 0:
            bare_run(r, bare)
        runs.append({k: v / args.epochs for k, v in runner(cfg, f"{model_name}-{r}").items()})
        if r % 2 == 1:
            bare_run(r, bare)
        if args.control:
            bare_run(r, control)
    report(model_name, args, bare, runs, count_parameters(fresh_bare()[0]), len(data["x"]), len(data["x_val"]), control)


def report(model_name: str, args: argparse.Namespace, bare: list[tuple[float, float]], runs: list[dict[str, float]],
           params: int, n_train: int, n_val: int, control: list[tuple[float, float]]) -> None:
    med = statistics.median

    def part(name: str) -> float:
        return med(r.get(name, 0.0) for r in runs)

    bare_train, bare_val = med(t for t, _ in bare), med(v for _, v in bare)
    bare_epoch_s, runner_epoch_s = med(t + v for t, v in bare), part("window")
    shape = "784-256-10" if model_name == "mlp" else "LeNet-5"
    print(f"\nmodel {model_name} ({shape}, {params:,} params), {n_train:,} train + {n_val:,} val 28x28, batch "
          f"{args.batch_size}, Adam lr 1e-3, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats} interleaved runs of {args.epochs} epochs")
    print(f"{'per epoch':<58}{'seconds':>9}{'train ex/s':>12}{'vs bare':>10}")
    print(f"{'bare loop (train + val)':<58}{bare_epoch_s:>9.3f}{n_train / bare_train:>12,.0f}{1:>9.3f}x")
    runner_train = part("train") - part("metrics_train") - part("bar_train")
    print(f"{'dlexp runner (whole epoch, deferred writes included)':<58}{runner_epoch_s:>9.3f}"
          f"{n_train / part('train'):>12,.0f}{runner_epoch_s / bare_epoch_s:>9.3f}x")
    rows = [
        ("training steps (without metric sums and bar)", runner_train, bare_train),
        ("validation forward (without metric sums and bar)", part("val") - part("metrics_val") - part("bar_val"),
         bare_val),
        ("metrics: loss and accuracy sums, train + val", part("metrics_train") + part("metrics_val"), 0.0),
        ("progress bar, train + val", part("bar_train") + part("bar_val"), 0.0),
        ("diagnostics: grad norms, grad_norms.csv", part("diagnostics"), 0.0),
        ("logging: console line, metrics.csv, TensorBoard", part("logging"), 0.0),
        ("checkpoint: last.pt, best.pt", part("checkpoint"), 0.0),
        ("waiting for deferred writes at the end", part("wait"), 0.0),
    ]
    # what no timer covers, per run (medians of parts need not add up to the median of the whole)
    timed_parts = ("train", "val", "diagnostics", "logging", "checkpoint", "wait")
    other = med(r.get("window", 0.0) - sum(r.get(k, 0.0) for k in timed_parts) for r in runs)
    rows.append(("other: early stopping, best weights, loop", other, 0.0))
    print(f"\n{'where the time per epoch goes (ms)':<58}{'runner':>9}{'bare':>9}{'extra':>9}{'of bare':>9}")
    for name, ours, theirs in rows:
        print(f"{name:<58}{1e3 * ours:>9.1f}{1e3 * theirs:>9.1f}{1e3 * (ours - theirs):>+9.1f}"
              f"{100 * (ours - theirs) / bare_epoch_s:>+8.1f}%")
    print(f"{'whole epoch':<58}{1e3 * runner_epoch_s:>9.1f}{1e3 * bare_epoch_s:>9.1f}"
          f"{1e3 * (runner_epoch_s - bare_epoch_s):>+9.1f}{100 * (runner_epoch_s / bare_epoch_s - 1):>+8.1f}%")
    paired = sorted(r["window"] / (t + v) for r, (t, v) in zip(runs, bare))
    print(f"ratio {model_name}: runner / bare loop = {runner_epoch_s / bare_epoch_s:.3f}x [goal <= 1.03x]; "
          f"per repeat {', '.join(f'{x:.3f}' for x in paired)}")
    if control:  # the noise floor: identical code, another model instance, the same machine at the same time
        same = sorted((t + v) / (bt + bv) for (t, v), (bt, bv) in zip(control, bare))
        print(f"control {model_name}: bare loop on another model instance / bare loop = "
              f"{med(t + v for t, v in control) / bare_epoch_s:.3f}x (identical code; the noise floor); "
              f"per repeat {', '.join(f'{x:.3f}' for x in same)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["mlp", "lenet"], choices=["mlp", "lenet"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (a run's window covers them all)")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved runs per side (even: ABBA); the median is shown")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the bare loop a second time per repeat, on another model instance: the ratio "
                             "of two identical loops shows how far apart timings fall with no code difference")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=40000)
    parser.add_argument("--n-val", type=int, default=10000)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra overrides for the runner's side, e.g. trainer.checkpoints=false")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = Clock()
    instrument(clock)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_arrays(work / "data.npz", args.n_train, args.n_val)
        for model_name in args.model:
            compare(model_name, args, work / "data.npz", data, clock, work)


if __name__ == "__main__":
    main()
