"""The ``Trainer``: one training run on one fold, as a sequence of named steps.

    for epoch in epochs:
        train_stats = self.train_epoch(...)     # task.step per batch; may stop mid-epoch on a signal
        val_stats = self.evaluate(data.val)      # task metrics (and decoding, for tasks that decode)
        self.end_epoch(...)                      # log, diagnostics, early stopping, scheduler, checkpoint

Everything device-specific comes from the ``Runtime``; everything about the batch
layout, the loss and the metrics from the ``Task``; checkpoint files from the
``Checkpointer``.
"""
from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from rich.markup import escape
from torch import nn

from dlexp.config.files import recipe_keys
from dlexp.data.base import DataBundle, Loader
from dlexp.errors import UserError, building
from dlexp.models import build_model, count_parameters
from dlexp.models.init import init_summary
from dlexp.runs.diagnostics import Diagnostics
from dlexp.runs.files import CHECKPOINT_DIR
from dlexp.runs.runlog import Bars, RunLog
from dlexp.tasks.base import Task, resolve_monitor
from dlexp.training.checkpointer import Checkpointer
from dlexp.hooks import point
from dlexp.runs.hints import resume_command
from dlexp.runs.status import Status
from dlexp.training.interrupt import STOP, signal_name
from dlexp.training.optim import build_optimizer, load_optimizer_state
from dlexp.training.runtime import Runtime, capture_rng, restore_rng
from dlexp.training.schedulers import build_scheduler, current_lr, extend_schedule, schedule_horizon, step_scheduler
from dlexp.training.step import Diverged, EpochProgress, Pass, StepConfig, run_epoch
from dlexp.training.stopping import EarlyStopping
from dlexp.training.throughput import Meter, median_rates


MIN_ESTIMATE_S = 5.0  # the run's estimated time is said only when the epochs left take at least this long


class Trainer:
    def __init__(self, cfg: DictConfig, data: DataBundle, task: Task, runtime: Runtime, log: RunLog, run_dir: Path, *,
                 model: Optional[nn.Module] = None, overrides: Sequence[str] = (), resumable: bool = True,
                 choices: Optional[dict[str, str]] = None, on_epoch: Optional[Callable[[int, float], bool]] = None,
                 plugins: Optional[dict[str, str]] = None):
        """``model``: built by ``dlexp.train.prepare`` for this data (else built here, from the config);
        ``plugins``: the user's components the run uses, recorded in its checkpoints."""
        trainer, reg = cfg.trainer, cfg.regularizer
        self.on_epoch = on_epoch  # (epoch, monitored val value) -> stop here? (a search's pruner)
        self.cfg, self.data, self.runtime, self.log, self.run_dir = cfg, data, runtime, log, Path(run_dir)
        self.task = task.for_targets(data.train_targets)  # fitted to this fold's train part (a regression's scale)
        self.resumable = resumable
        # the options the run was composed from (optim=sgd_momentum), for the banner; the builder names without them
        self.choices = choices or {group: cfg[group].name for group in ("model", "dataset", "optim")}
        es = trainer.early_stopping
        monitor, mode = resolve_monitor(es.monitor, es.mode, self.task)
        self.stopper = EarlyStopping(monitor, mode, es.patience, es.min_delta)
        if model is None:
            with building(f"model={cfg.model.name}"):
                model = build_model(cfg.model, data.input_shape, data.num_classes, reg.dropout, self.task.model_args())
        self.model, self.raw_model = runtime.prepare_model(model)  # compile, DDP: a failure here is dlexp's, not the config's
        with building(f"optim={cfg.optim.name}"):
            self.optimizer = build_optimizer(cfg.optim, self.raw_model, reg.weight_decay)
        self.per_step = cfg.scheduler.interval == "step"  # else the scheduler steps in end_epoch
        self.horizon = schedule_horizon(cfg, len(data.train))  # the run's length in the scheduler's intervals
        self.extended_from: Optional[int] = None  # a resumed run's old horizon, when trainer.epochs changed it
        with building(f"scheduler={cfg.scheduler.name}"):
            self.scheduler = build_scheduler(cfg.scheduler, self.optimizer, self.horizon, mode)
        self.step_cfg = StepConfig(l1=reg.l1, grad_clip=trainer.grad_clip, autocast=runtime.autocast,
                                   scaler=runtime.grad_scaler(), world_size=runtime.world_size,
                                   scheduler=self.scheduler if self.per_step else None)
        self.diagnostics = Diagnostics(self.run_dir, is_main=runtime.is_main)
        self.checkpointer = Checkpointer(
            self.run_dir / CHECKPOINT_DIR, enabled=trainer.checkpoints and runtime.is_main,
            config=OmegaConf.to_container(cfg, resolve=True), overrides=list(overrides), plugins=plugins or {},
        )
        # mid-epoch checkpoints, read once: a config read costs tens of microseconds, and this is per step
        self.checkpoint_every_n = trainer.checkpoint_every_n_steps or 0
        self.checkpoint_every_s = 60.0 * (trainer.checkpoint_every_minutes or 0)
        if trainer.checkpoint_every_minutes and runtime.distributed:  # ranks' clocks would disagree on when
            raise UserError("trainer.checkpoint_every_minutes needs one process; under torchrun use "
                            "trainer.checkpoint_every_n_steps")
        self.stop = STOP  # the process's: the command line installs it before anything else
        self.completed = 0  # epochs finished (and checkpointed)
        self.best_state: Optional[dict[str, Any]] = None  # CPU copy of the weights of the best epoch
        self.epoch_lr = current_lr(self.optimizer)  # the lr when the current epoch began
        self.said_time = False  # the run's estimated time, said once after its second epoch (or a long first)
        self.epochs_here = 0  # epochs this process has trained (a resumed run counts from its resume)

    # -- the loop ---------------------------------------------------------------
    def fit(self, checkpoint: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """Train (continuing ``checkpoint``, if given) epoch by epoch, then score the test sets with the best
        weights; returns the run's summary entries. The loop is written out here, not in a helper, so that a
        training step is a few calls deep (docs: architecture)."""
        partial = self.restore(checkpoint) if checkpoint is not None else None
        self.log_header()
        outcome: dict[str, Any] = {"status": Status.COMPLETED,
                                   "stop_reason": "early_stopping" if self.stopper.should_stop else "max_epochs"}
        with self.stop.installed():  # the loop and the test sets: a signal anywhere here is a stop, not a traceback
            try:
                with self.log.progress_bar() as bar:
                    for epoch in range(self.completed + 1, self.cfg.trainer.epochs + 1):
                        if self.stop() or self.stopper.should_stop:
                            break
                        # the lr at the epoch's start (a per-step schedule moves it; a resumed partial epoch saved it)
                        started, lr = time.perf_counter(), (partial or {}).get("lr", current_lr(self.optimizer))
                        self.epoch_lr = lr
                        train_meter, val_meter = Meter(), Meter()  # examples (and tokens) per second of each pass
                        try:
                            train_stats = self.train_epoch(epoch, bar, partial, train_meter)
                        except Diverged as err:
                            outcome = diverged_outcome(err, epoch, self.cfg)
                            break
                        partial = None
                        if train_stats is None:  # a signal arrived mid-epoch; the partial epoch is saved
                            break
                        point("val")
                        val_stats = self.evaluate(self.data.val, self.cfg.trainer.limit_eval_batches, bar, val_meter)
                        value = self.end_epoch(epoch, lr, train_stats, val_stats, started,
                                               {**train_meter.rates("train"), **val_meter.rates("val")})
                        if self.pruned(epoch, value):
                            outcome = {"status": Status.PRUNED, "stop_reason": "pruned"}
                            break
                        if self.stopper.should_stop:
                            outcome["stop_reason"] = "early_stopping"
                            self.log_early_stop()
            finally:
                self.checkpointer.wait()  # the deferred checkpoint writes, before the test sets and the return
            if self.stop():
                outcome = self.interrupted_outcome()
            return self.finish(outcome)

    def pruned(self, epoch: int, value: float) -> bool:
        """Whether a search's pruner stops the run after ``epoch`` (``on_epoch``); says so when it does."""
        if self.on_epoch is None or not self.on_epoch(epoch, value):
            return False
        self.log.info(f"pruned after epoch {epoch}: {self.stopper.monitor} {value:.4f} is behind the search's "
                      "other trials at this epoch")
        return True

    def train_epoch(self, epoch: int, bar: Bars, partial: Optional[dict[str, Any]],
                    meter: Optional[Meter] = None) -> Optional[dict[str, float]]:
        """One pass over the training data; None if a signal stopped it (then it is checkpointed)."""
        trainer = self.cfg.trainer
        bar.epoch(f"epoch {epoch}/{trainer.epochs}")
        # a resumed partial epoch's sums are global: rank 0 carries them, the other ranks start from zero
        progress = EpochProgress.start(self.task, self.runtime.device, partial, with_sums=self.runtime.is_main)
        how = Pass(
            optimizer=self.optimizer, step=self.step_cfg, limit_batches=trainer.limit_train_batches,
            progress=bar if self.log.show_progress else None, log_every=trainer.log_every_n_steps,
            should_stop=self.stop, check_every=self.runtime.check_every, prepare=self.runtime.prepare_batch,
            world_size=self.runtime.world_size, on_step=self.checkpoint_if_due, meter=meter,
        )
        stats = run_epoch(self.model, self.data.train, self.task, how, progress)
        if stats is None:  # every rank stopped at the same step
            self.checkpointer.save(self.state(partial=progress))
        return stats

    def checkpoint_if_due(self, progress: EpochProgress) -> None:
        """A mid-epoch checkpoint every ``checkpoint_every_n_steps`` steps or ``checkpoint_every_minutes``."""
        every_n, every_s = self.checkpoint_every_n, self.checkpoint_every_s
        due = bool(every_n) and progress.batches % every_n == 0
        due = due or (bool(every_s) and time.monotonic() - self.checkpointer.last_save >= every_s)
        if due:
            self.checkpointer.save(self.state(partial=progress))
        point("train_step")

    def evaluate(self, loader: Loader, limit_batches: Optional[int], bar: Optional[Bars] = None,
                 meter: Optional[Meter] = None) -> dict[str, float]:
        """Loss and task metrics on ``loader`` with the current weights (decoding, for tasks that decode)."""
        how = Pass(limit_batches=limit_batches, progress=bar if self.log.show_progress else None, meter=meter,
                   prepare=self.runtime.prepare_batch, autocast=self.runtime.autocast, world_size=self.runtime.world_size)
        return run_epoch(self.model, loader, self.task, how)

    def end_epoch(self, epoch: int, lr: float, train_stats: dict, val_stats: dict, started: float,
                  rates: Optional[dict[str, float]] = None) -> float:
        """Log the epoch, update diagnostics, early stopping and the scheduler, then checkpoint; returns the
        epoch's value of the monitored val metric."""
        row = {"epoch": epoch, "lr": lr}
        row.update({f"train/{k}": v for k, v in train_stats.items()})
        row.update({f"val/{k}": v for k, v in val_stats.items()})
        row.update(rates or {})  # train_examples_per_s, val_examples_per_s (and tokens, for translation)
        row["epoch_seconds"] = round(time.perf_counter() - started, 4)
        self.log.log_epoch(row)
        self.epochs_here += 1
        if not self.said_time and (self.epochs_here >= 2 or row["epoch_seconds"] > 30):
            self.say_time(epoch, row["epoch_seconds"])  # the second epoch: the first one pays the warm-up
        self.diagnostics.record(self.raw_model, row)  # grad/weight norms left by the epoch's last step
        improved = self.stopper.update(row[self.stopper.monitor], epoch, row.get("val/loss", math.nan))
        if not self.per_step:
            step_scheduler(self.scheduler, row[self.stopper.monitor])
        if improved:
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.raw_model.state_dict().items()}
        self.completed = epoch
        self.checkpointer.save(self.state(), best=improved)
        point("end_epoch")
        return float(row[self.stopper.monitor])

    # -- checkpoint state -----------------------------------------------------
    def state(self, partial: Optional[EpochProgress] = None) -> dict[str, Any]:
        """A flat checkpoint; ``partial`` holds the sums of an epoch stopped midway."""
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.completed,
            "partial": {**partial.state_dict(self.runtime.world_size), "lr": self.epoch_lr} if partial is not None else None,
            "early_stopping": self.stopper.state_dict(),
            "rng": capture_rng(),
            "loader": self.data.train.state_dict(mid_epoch=partial is not None),
            "scaler": self.step_cfg.scaler.state_dict() if self.step_cfg.scaler is not None else None,
            "world_size": self.runtime.world_size,
            "schedule_horizon": self.horizon,  # a resume with another trainer.epochs compares its own with it
            # what a tool needs to use the weights without the data (e.g. dlexp.translate's vocabularies)
            "task": {"name": self.data.task, "input_shape": list(self.data.input_shape),
                     "num_classes": self.data.num_classes, **self.task.state_dict()},
        }

    def restore(self, checkpoint: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Continue exactly where ``checkpoint`` stopped; returns the partial epoch's sums, if any."""
        saved_world = checkpoint.get("world_size", 1)
        if saved_world != self.runtime.world_size:
            raise UserError(
                f"this checkpoint was trained by {saved_world} process(es) and cannot continue with "
                f"{self.runtime.world_size}: the data order and batch shards would differ; resume with "
                f"torchrun --nproc_per_node={saved_world}" if saved_world > 1 else
                f"this checkpoint was trained by 1 process and cannot continue under torchrun with "
                f"{self.runtime.world_size}; resume it with python -m dlexp"
            )
        self.raw_model.load_state_dict(checkpoint["model"])
        load_optimizer_state(self.optimizer, checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.stopper.load_state_dict(checkpoint["early_stopping"])
        self.extend(checkpoint)
        if self.step_cfg.scaler is not None and checkpoint.get("scaler"):
            self.step_cfg.scaler.load_state_dict(checkpoint["scaler"])
        self.data.train.load_state_dict(checkpoint["loader"])
        restore_rng(checkpoint["rng"])
        self.completed, partial = checkpoint["epoch"], checkpoint.get("partial")
        self.log.keep_epochs_up_to(self.completed)  # a kill between the CSV row and the checkpoint: redo that epoch
        self.diagnostics.keep_epochs_up_to(self.completed)  # the same for grad_norms.csv
        where = f"epoch {self.completed + 1}, batch {partial['batches'] + 1}" if partial else f"epoch {self.completed + 1}"
        self.log.info(f"resuming from {where} (checkpoint of {self.completed} finished epochs)")
        return partial

    def extend(self, checkpoint: dict[str, Any]) -> None:
        """A resumed run with another ``trainer.epochs``: its schedule and early stopping say, in one line each,
        what the new epochs use (a schedule over the whole run is rebuilt over the new length; a run that
        had stopped early counts its patience again)."""
        saved = checkpoint.get("schedule_horizon")  # older checkpoints: from the config they were trained with
        old = saved or schedule_horizon(OmegaConf.create(checkpoint["config"]), len(self.data.train))
        self.scheduler, said = extend_schedule(self.cfg, self.optimizer, self.scheduler, old, self.horizon,
                                               self.stopper.mode)
        if self.per_step:
            self.step_cfg.scheduler = self.scheduler
        epochs = (checkpoint["config"].get("trainer") or {}).get("epochs", self.cfg.trainer.epochs)
        if said:
            self.log.info(f"trainer.epochs {epochs} -> {self.cfg.trainer.epochs}: {said}")
        self.extended_from = old if old != self.horizon else None
        if self.stopper.should_stop and self.cfg.trainer.epochs > epochs:  # extended: more epochs than it had
            s = self.stopper
            self.log.info(f"the run had stopped early after epoch {checkpoint['epoch']} ({s.monitor} had not improved for "
                          f"{s.patience} epochs); trainer.epochs={self.cfg.trainer.epochs} continues it, and early "
                          f"stopping counts its patience of {s.patience} again from epoch {checkpoint['epoch'] + 1}")
            s.bad_epochs = 0

    # -- the end of the run -----------------------------------------------------
    def finish(self, outcome: dict[str, Any]) -> dict[str, Any]:
        """The run's summary entries; a completed run scores its test sets with the weights chosen on val."""
        summary: dict[str, Any] = {
            **outcome,
            "epochs_run": self.completed,
            "best_epoch": self.stopper.best_epoch,
            "monitor": self.stopper.monitor,
            "mode": self.stopper.mode,
            f"best/{self.stopper.monitor}": self.stopper.best,
        }
        metric = self.task.monitor_metric.name
        summary.update(self.diagnostics.summarize(metric, self.stopper.best_epoch, diverged=outcome.get("hint"),
                                                  prior=self.task.prior(self.data.train_targets),
                                                  mode=self.task.monitor_metric.mode, lr=self.cfg.optim.get("lr"),
                                                  interrupted=outcome["status"] == Status.INTERRUPTED))
        if summary["diagnosis"] == "unstable":  # completed, but its numbers mean nothing: said, not only filed
            self.log.info(f"[bold]unstable:[/bold] {escape(summary['diagnosis_reason'])}", markup=True)
        summary.update(median_rates(self.diagnostics.rows))  # the epochs' median examples/s (and tokens/s)
        if outcome["status"] == Status.COMPLETED:
            point("test")
            summary.update(self.test())
            if self.stop():  # a signal while the test sets were scored: the run continues from its last checkpoint
                summary.update(self.interrupted_outcome())
        elif outcome["status"] != Status.PRUNED and self.stopper.best_epoch:  # diverged or interrupted: its best epoch
            # so far still gets a test score (a search's pruned trial does not: it lost on val)
            summary.update(self.test(outputs=False))
            summary["tested"] = (f"the best checkpoint (epoch {self.stopper.best_epoch}) of a run that "
                                 f"{'diverged' if outcome['status'] == Status.DIVERGED else 'was interrupted'}")
        summary["schedule"] = {"scheduler": self.cfg.scheduler.name, "interval": self.cfg.scheduler.interval,
                               "horizon": self.horizon, **({"extended_from": self.extended_from} if self.extended_from else {})}
        summary["num_params"] = count_parameters(self.raw_model)
        summary.update(init_summary(self.cfg.model))  # e.g. init: normal, init_sigma: 0.01
        return summary

    def test(self, outputs: bool = True) -> dict[str, float]:
        """Load the best weights, score every test set, then (``outputs``) write the data's own outputs
        (predictions, translations): a run that did not complete scores its best epoch, and writes no files."""
        best = self.best_state if self.best_state is not None else self.checkpointer.load_best_model()
        if best is not None:  # None: no epoch improved, or the best came before a resume without checkpoints
            self.raw_model.load_state_dict(best)
        scores: dict[str, Any] = {}
        limit = self.cfg.trainer.limit_test_batches
        for name, loader in {"test": self.data.test, **self.data.extra_tests}.items():
            if loader is not None:
                stats = self.evaluate(loader, limit)
                scores.update({f"{name}/{k}": v for k, v in stats.items()})
                if limit is not None and limit < len(loader):  # say so: these are not the full test set's numbers
                    scores[f"{name}_batches"] = f"{limit} of {len(loader)} (cut by trainer.limit_test_batches)"
        if not outputs:
            return scores
        if self.data.after_fit is not None and self.runtime.is_main:  # e.g. predictions for an unlabeled test file
            outputs_of = functools.partial(self.task.predict, self.raw_model)  # (inputs, batch size) -> outputs, on the CPU
            scores.update(self.data.after_fit(outputs_of, self.run_dir) or {})  # and the data's own scores
        if self.data.test is not None and self.runtime.is_main:  # e.g. translations.tsv, attention.png
            scores.update(self.task.write_outputs(self.raw_model, self.data.test, self.run_dir, self.log.info))
        return scores

    # -- console ------------------------------------------------------------------
    def log_header(self) -> None:
        data, chosen = self.data, self.choices
        test_size = data.test.num_examples if data.test else 0
        self.log.info(
            "[bold]dlexp[/bold] " + escape(
                f"model={chosen['model']} dataset={chosen['dataset']} optim={chosen['optim']} {self.recipe_note()}"
                f"params={count_parameters(self.raw_model):,} device={self.runtime.describe()} train/val/test="
                f"{data.train.num_examples}/{data.val.num_examples}/{test_size}"), markup=True)

    def say_time(self, epoch: int, seconds: float) -> None:
        """Once, after the second epoch this process trains (or a first one of over 30 s): the run's estimated
        time (the epochs left times the pace measured), and, for a CPU run of over 10 minutes, a shorter budget."""
        self.said_time = True
        left = self.cfg.trainer.epochs - epoch
        estimate = left * seconds
        if estimate < MIN_ESTIMATE_S:  # a few seconds more: nothing worth a line
            return
        line = (f"estimated time: about {_duration(estimate)} for the {left} epoch(s) left "
                f"({seconds:.1f} s per epoch, measured on epoch {epoch}; early stopping may end it sooner)")
        if self.runtime.device.type == "cpu" and estimate > 600:
            quick = max(1, int(600 // max(seconds, 1e-9)))
            line += (f"; over 10 minutes on the CPU: for a first look, try trainer.epochs={quick}"
                     + (" or model.width_div=4" if "width_div" in self.cfg.model else ""))
        self.log.info(line)

    def recipe_note(self) -> str:
        """``recipe=alexnet_sgd_momentum (optim.lr=0.01 model.init=xavier_uniform) ``: the settings a model's own
        recipe for this optimizer makes, as they took effect (the command line may have overridden some)."""
        recipe = self.choices.get("recipe")
        if not recipe:
            return ""
        settings = " ".join(f"{key}={OmegaConf.select(self.cfg, key)}" for key in recipe_keys(recipe))
        return f"recipe={recipe} ({settings}) " if settings else f"recipe={recipe} "

    def log_early_stop(self) -> None:
        s = self.stopper
        reached = self.completed - s.bad_epochs  # the epoch the monitor last rose to its best
        best = (f"best {s.best:.4f} at epoch {s.best_epoch}" if s.best_epoch == reached else
                f"best {s.best:.4f} since epoch {reached}; the best checkpoint is epoch {s.best_epoch}, "
                f"the tie with the lowest val loss")
        self.log.info(f"early stopping: {s.monitor} has not improved for {s.patience} epochs ({best})")

    def interrupted_outcome(self) -> dict[str, Any]:
        """The summary entries of a run a signal stopped (the command line says it in one line)."""
        return {"status": Status.INTERRUPTED, "signal": signal_name(self.stop.signum), "exit_code": self.stop.exit_code,
                "resume_with": resume_command(self.run_dir) if self.resumable else None}


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def diverged_outcome(err: Diverged, epoch: int, cfg: DictConfig) -> dict[str, Any]:
    lr = cfg.optim.get("lr")
    hint = f"lower optim.lr (now {lr})" if lr is not None else "lower the learning rate"
    if cfg.trainer.grad_clip is None:
        hint += " or set trainer.grad_clip=1.0"
    return {
        "status": Status.DIVERGED,
        "stop_reason": "non_finite",
        "diverged_at": {"epoch": epoch, "step": err.step, "what": err.what},
        "hint": f"{err.what} became non-finite at epoch {epoch}, step {err.step}; {hint}",
    }
