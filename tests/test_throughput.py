"""Throughput in every run: examples/s (and real tokens/s for translation) per epoch in metrics.csv and
on the console, their median in summary.json. Nothing here is timed: the checks are on what is counted."""
from __future__ import annotations

import csv
import re
import statistics

import pytest
import torch

from conftest import read_json
from dlexp.data.text import PAD_ID, numbers
from dlexp.runs.runlog import format_epoch
from dlexp.tasks import Batch, build_task
from dlexp.training.throughput import Meter, median_rates
from dlexp.training.trainer import Trainer

SPEEDS = ("train_examples_per_s", "val_examples_per_s")
TRANSLATION = ["dataset=numbers", "dataset.high=120", "model=seq2seq", "model.embed_size=8", "model.num_hiddens=16",
               "model.num_layers=1", "model.dropout=0", "trainer.batch_size=32", "trainer.checkpoints=false"]


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_epoch_reports_examples_per_second_and_the_summary_their_median(run_train, capfd):
    _, run_dir = run_train("trainer.epochs=3", "trainer.checkpoints=false")
    rows = _rows(run_dir)
    assert len(rows) == 3
    for row in rows:
        for column in SPEEDS:
            assert float(row[column]) > 0, (column, row)
        assert "train_tokens_per_s" not in row  # a classifier counts no tokens
    summary = read_json(run_dir / "summary.json")
    for column in SPEEDS:
        assert summary[column] == pytest.approx(statistics.median(float(r[column]) for r in rows), abs=0.05)
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3
    for line, row in zip(lines, rows):
        shown = re.search(r"\| train ([\d,]+) ex/s val ([\d,]+) ex/s \|", line)
        assert shown, line
        assert int(shown[1].replace(",", "")) == round(float(row["train_examples_per_s"]))


def test_translation_counts_the_target_tokens_that_are_not_padding():
    source = numbers(high=30)
    task = build_task("translation", context=source.context)
    targets = torch.tensor([[5, 6, 7, PAD_ID], [8, PAD_ID, PAD_ID, PAD_ID]])  # 3 + 1 real tokens
    batch = Batch(torch.ones(2, 3, dtype=torch.long), targets)
    assert int(task.count_tokens(batch)) == 4
    meter = Meter()
    meter.add(len(batch), task.count_tokens(batch))
    meter.add(len(batch), task.count_tokens(batch))
    meter.seconds = 2.0
    assert meter.rates("val") == {"val_examples_per_s": 2.0, "val_tokens_per_s": 4.0}


def test_a_translation_run_reports_tokens_per_second_over_its_real_tokens(run_train, monkeypatch):
    seen = {}
    fit = Trainer.fit

    def recording_fit(self, *args, **kwargs):
        seen["data"] = self.data
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    _, run_dir = run_train(*TRANSLATION, "trainer.epochs=1")
    (row,) = _rows(run_dir)
    for split in ("train", "val"):
        assert float(row[f"{split}_tokens_per_s"]) > float(row[f"{split}_examples_per_s"]) > 0
        # one clock for both rates of a pass: their ratio is the split's real target tokens per sentence
        targets = getattr(seen["data"], split).y  # (N, T), padded
        examples_per_s = float(row[f"{split}_examples_per_s"])
        ratio = float(row[f"{split}_tokens_per_s"]) / examples_per_s
        rounding = 0.1 / examples_per_s  # both rates are written to 0.1
        assert ratio == pytest.approx((targets != PAD_ID).sum().item() / len(targets), rel=rounding)
        assert ratio < targets.shape[1] - 1  # the padding is not counted
    summary = read_json(run_dir / "summary.json")
    assert summary["train_tokens_per_s"] == float(row["train_tokens_per_s"])  # one epoch: its own rate


def test_the_console_line_shows_tokens_per_second_when_counted():
    row = {"epoch": 1, "lr": 0.01, "train/loss": 0.5, "val/loss": 0.6, "train_examples_per_s": 1234.5,
           "train_tokens_per_s": 9876.0, "val_examples_per_s": 5000.0, "val_tokens_per_s": 40000.0, "epoch_seconds": 0.5}
    assert "| train 1,234 ex/s 9,876 tok/s val 5,000 ex/s 40,000 tok/s | 0.50 s" in format_epoch(row)


def test_the_median_skips_epochs_without_a_rate():
    rows = [{"train_examples_per_s": 10.0}, {"train_examples_per_s": float("nan")}, {"train_examples_per_s": 30.0}, {}]
    assert median_rates(rows) == {"train_examples_per_s": 20.0}


def _draw_a_pass(tmp_path, seconds_per_batch: float, batches: int = 40, log_every: int = 5) -> str:
    """What the bar of one pass draws on a terminal, on a clock that advances ``seconds_per_batch`` a batch."""
    import io
    import threading

    from rich.console import Console

    from dlexp.runs.runlog import RunLog
    from dlexp.training.step import EpochProgress, _Bar

    log = RunLog(tmp_path, progress=True)
    drawn = io.StringIO()
    log.console, log.show_progress = Console(file=drawn, force_terminal=True, width=120), True  # as on a terminal
    before = set(threading.enumerate())
    clock = [100.0]
    with log.progress_bar() as bar:
        bar.progress.get_time = lambda: clock[0]  # rich's own clock: its elapsed-time column reads it too
        assert set(threading.enumerate()) == before  # no refresh thread to take the GIL from the step
        state = EpochProgress.start(build_task("classification"), torch.device("cpu"))
        row = _Bar(bar, "train", batches, state, log_every=log_every)
        for _ in range(batches):
            clock[0] += seconds_per_batch
            state.loss.add(torch.tensor(0.5), 4)
            state.batches += 1
            row.update(state)
        row.close()
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.getvalue())  # the text, without colours


def test_the_progress_bar_is_drawn_by_the_loop_without_a_thread_of_its_own(tmp_path):
    # every 5 batches is every 0.625 s: each is drawn, but not the last batch (the row goes at once)
    drawn = _draw_a_pass(tmp_path, seconds_per_batch=0.125)
    assert all(f" {n}/40" in drawn for n in range(5, 40, 5)), drawn
    assert "40/40" not in drawn and "ex/s" in drawn and "loss 0.5000" in drawn
    assert "32 ex/s" in drawn  # 4 examples per 0.125 s
    assert "0:00:04" in drawn  # the elapsed time counts from the pass's start (4.4 s at 35/40), not its first draw


def test_the_progress_bar_draws_at_most_twice_a_second_and_not_at_all_for_a_short_pass(tmp_path):
    drawn = _draw_a_pass(tmp_path / "fast", seconds_per_batch=0.0625)  # every 5 batches is 0.3125 s
    assert [n for n in range(5, 40, 5) if f" {n}/40 " in drawn] == [10, 20, 30], drawn  # every 0.625 s
    assert "/40" not in _draw_a_pass(tmp_path / "short", seconds_per_batch=0.01)  # 0.4 s in all


def test_in_a_notebook_the_bar_is_tqdms_widget(tmp_path, monkeypatch, capsys):
    """A Jupyter kernel is no terminal: the passes' bar is tqdm.auto's, drawn by the loop as the terminal's is."""
    import dlexp.runs.runlog as runlog
    from dlexp.training.step import EpochProgress, _Bar

    monkeypatch.setattr(runlog, "in_notebook", lambda: True)
    log = runlog.RunLog(tmp_path, progress=True)
    with log.progress_bar() as bar:
        assert isinstance(bar, runlog.NotebookBars)
        bar.epoch("epoch 2/5")
        clock = [0.0]
        bar.clock = lambda: clock[0]
        state = EpochProgress.start(build_task("classification"), torch.device("cpu"))
        row = _Bar(bar, "train", 20, state, log_every=5)
        for _ in range(20):
            clock[0] += 0.2
            state.loss.add(torch.tensor(0.25), 8)
            state.batches += 1
            row.update(state)
        row.close()
    drawn = capsys.readouterr().err  # outside a real notebook tqdm.auto falls back to its text bar
    assert "epoch 2/5 train" in drawn and "loss 0.2500" in drawn and "40 ex/s" in drawn and "15/20" in drawn
