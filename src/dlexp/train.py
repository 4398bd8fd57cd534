"""The dlexp entrypoint: Hydra composes the config, ``train`` runs it, results land in the run dir.

``train(cfg, run_dir)`` is a plain function (tests call it directly); ``main`` is
the thin ``@hydra.main`` wrapper behind ``python -m dlexp`` and the ``dlexp``
console script. Heavy imports (torch) happen inside ``train`` so that
``--help`` and ``--cfg job`` stay fast.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from dlexp.config import CONFIG_DIR, preflight, validate
from dlexp.errors import UserError
from dlexp.resume import check_compatible, checkpoint_path, recompose
from dlexp.sweep import failed_objective, share_threads  # also registers ${dlexp.direction:} (Optuna preset)


@dataclass
class RunResult:
    objective: float  # best value of the monitored val metric (what a sweeper optimizes)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0  # non-zero when the run was interrupted by a signal


def train(
    cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (), checkpoint: Optional[dict[str, Any]] = None
) -> RunResult:
    """Train the composed config ``cfg``, writing metrics, summary and checkpoints into ``run_dir``.

    ``overrides`` (the command line that produced ``cfg``) is stored in checkpoints
    so that ``resume=`` can recompose the same config. With ``cfg.resume`` set, the
    run continues from that checkpoint (``checkpoint`` if already loaded).
    """
    started = time.perf_counter()
    cfg = validate(cfg)
    _check_values(cfg)
    run_dir = _prepare_run_dir(Path(run_dir))
    if cfg.resume and checkpoint is None:
        checkpoint = _load_resume_checkpoint(cfg.resume)
    if checkpoint is not None:
        check_compatible(cfg, checkpoint["config"])

    from dlexp.data import load_folds
    from dlexp.device import seed_everything, setup_runtime
    from dlexp.runlog import RunLog

    runtime = setup_runtime(cfg.trainer)
    seed_everything(cfg.seed)
    log = RunLog(run_dir, is_main=runtime.is_main, progress=cfg.trainer.progress)
    log.log_hparams(OmegaConf.to_container(cfg, resolve=True))
    folds = load_folds(cfg, seed=cfg.seed, device=runtime.device)

    if len(folds) == 1:
        summary = fit(cfg, folds[0], runtime, log, run_dir, overrides=list(overrides), checkpoint=checkpoint)
    elif checkpoint is not None:
        raise UserError("resume= continues one training; a split=kfold run cannot be resumed: start it again")
    else:
        summary = _fit_folds(cfg, folds, runtime, log, run_dir, list(overrides))
    exit_code = summary.pop("exit_code", 0)
    summary.update(
        {
            "device": str(runtime.device),
            "seed": cfg.seed,
            "model": cfg.model.name,
            "dataset": cfg.dataset.name,
            "optim": cfg.optim.name,
            "wall_seconds": round(time.perf_counter() - started, 3),
        }
    )
    log.write_summary(summary)
    if runtime.is_main:
        from dlexp.plots import plots_after_training

        plots_after_training(run_dir)  # curves.png, grad_norms.png
    log.summary_table(summary)
    return RunResult(objective=summary[f"best/{summary['monitor']}"], summary=summary, exit_code=exit_code)


def _check_values(cfg: DictConfig) -> None:
    """Range checks that the type schema cannot express."""
    trainer, reg = cfg.trainer, cfg.regularizer
    if trainer.epochs < 1:
        raise UserError(f"trainer.epochs must be >= 1, got {trainer.epochs}")
    if reg.l1 < 0:
        raise UserError(f"regularizer.l1 must be >= 0, got {reg.l1}")
    if reg.dropout is not None and not 0.0 <= reg.dropout < 1.0:
        raise UserError(f"regularizer.dropout must be in [0, 1), got {reg.dropout}")
    if trainer.early_stopping.mode not in ("auto", "min", "max"):
        raise UserError(f"trainer.early_stopping.mode must be auto, min or max, got '{trainer.early_stopping.mode}'")
    if trainer.grad_clip is not None and not trainer.grad_clip > 0:
        raise UserError(f"trainer.grad_clip must be > 0 (or null for no clipping), got {trainer.grad_clip}")


def _load_resume_checkpoint(resume: str) -> dict[str, Any]:
    from dlexp.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint_path(resume))
    missing = {"config", "epoch", "optimizer", "rng", "loader"} - set(state)
    if missing:
        raise UserError(f"checkpoint for resume={resume} lacks {', '.join(sorted(missing))}; it cannot be resumed")
    return state


def fit(
    cfg: DictConfig,
    data: Any,
    runtime: Any,
    log: Any,
    run_dir: Path,
    *,
    overrides: Sequence[str] = (),
    checkpoint: Optional[dict[str, Any]] = None,
    resumable: bool = True,
) -> dict[str, Any]:
    """One training run on ``data`` (a DataBundle): epochs, checkpoints, then the test set.

    Returns the run's summary entries (status, epochs, best and test metrics, ...).
    Stops early on a signal (status ``interrupted``, checkpoint saved mid-epoch) or
    a non-finite loss (status ``diverged``); ``checkpoint`` continues an earlier run.
    """
    from dlexp.checkpoint import load_checkpoint, save_checkpoint
    from dlexp.device import capture_rng, restore_rng
    from dlexp.diagnostics import Diagnostics
    from dlexp.engine import Diverged, EarlyStopping, EpochProgress, StepConfig, run_epoch
    from dlexp.interrupt import StopRequest
    from dlexp.models import build_model, count_parameters
    from dlexp.models.init import init_summary
    from dlexp.optim import build_optimizer, build_scheduler, iter_lrs, step_scheduler
    from dlexp.tasks import monitor_mode, resolve_task

    trainer, reg = cfg.trainer, cfg.regularizer
    loss_fn, metric = resolve_task(data.task, trainer.loss, data.metric if trainer.metric == "auto" else trainer.metric)
    es = trainer.early_stopping
    monitor = f"val/{metric.name}" if es.monitor == "auto" else es.monitor
    mode = monitor_mode(monitor, metric) if es.mode == "auto" else es.mode
    if monitor not in (f"val/{metric.name}", "val/loss"):
        raise UserError(f"trainer.early_stopping.monitor='{monitor}' is not logged; use val/{metric.name} or val/loss")
    stopper = EarlyStopping(monitor, mode, es.patience, es.min_delta)

    model = runtime.prepare_model(build_model(cfg.model, data.input_shape, data.num_classes, reg.dropout))
    optimizer = build_optimizer(cfg.optim, model, reg.weight_decay)
    scheduler = build_scheduler(cfg.scheduler, optimizer, trainer.epochs, mode)
    step = StepConfig(l1=reg.l1, grad_clip=trainer.grad_clip)
    num_params = count_parameters(model)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    diagnostics = Diagnostics(run_dir, is_main=runtime.is_main)
    ckpt_dir = run_dir / "checkpoints"

    def save(epochs_done: int, partial: Optional[EpochProgress] = None, best: bool = False) -> None:
        """A flat checkpoint; ``partial`` holds the sums of an epoch stopped midway."""
        if not (trainer.checkpoints and runtime.is_main):
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": epochs_done,
            "partial": partial.state_dict() if partial is not None else None,
            "early_stopping": stopper.state_dict(),
            "rng": capture_rng(),
            "loader": data.train.state_dict(mid_epoch=partial is not None),
            "config": plain_cfg,
            "overrides": list(overrides),
        }
        save_checkpoint(ckpt_dir / "last.pt", state)
        if best:
            save_checkpoint(ckpt_dir / "best.pt", state)

    completed, partial = 0, None
    if checkpoint is not None:  # continue exactly where the checkpoint stopped
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None and checkpoint["scheduler"] is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        stopper.load_state_dict(checkpoint["early_stopping"])
        data.train.load_state_dict(checkpoint["loader"])
        restore_rng(checkpoint["rng"])
        completed, partial = checkpoint["epoch"], checkpoint.get("partial")
        log.keep_epochs_up_to(completed)  # a kill between the CSV row and the checkpoint: redo that epoch
        diagnostics.keep_epochs_up_to(completed)  # the same for grad_norms.csv; earlier epochs feed the diagnosis
        where = f"epoch {completed + 1}, batch {partial['batches'] + 1}" if partial else f"epoch {completed + 1}"
        log.info(f"resuming from {where} (checkpoint of {completed} finished epochs)")

    log.info(
        f"[bold]dlexp[/bold] model={cfg.model.name} dataset={cfg.dataset.name} optim={cfg.optim.name} "
        f"params={num_params:,} device={runtime.describe()} train/val/test="
        f"{data.train.num_examples}/{data.val.num_examples}/{data.test.num_examples if data.test else 0}"
    )
    best_state: Optional[dict[str, Any]] = None
    outcome: dict[str, Any] = {"status": "completed", "stop_reason": "max_epochs"}
    stop = StopRequest()
    with stop.installed(), log.progress_bar() as bar:
        for epoch in range(completed + 1, trainer.epochs + 1):
            if stop() or stopper.should_stop:
                break
            bar_epoch = bar if log.show_progress else None
            if bar_epoch is not None:
                bar.columns[0].text_format = f"[bold]epoch {epoch}/{trainer.epochs}" + " {task.description}"
            t0 = time.perf_counter()
            lr = next(iter(iter_lrs(optimizer)))  # the lr used during this epoch
            progress = EpochProgress.start(runtime.device, partial)
            partial = None
            try:
                train_stats = run_epoch(
                    model, data.train, loss_fn, metric, optimizer=optimizer, step=step,
                    limit_batches=trainer.limit_train_batches, progress=bar_epoch, log_every=trainer.log_every_n_steps,
                    state=progress, should_stop=stop, check_every=runtime.check_every,
                )
            except Diverged as err:
                outcome = _diverged(err, epoch, cfg)
                break
            if train_stats is None:  # a signal arrived mid-epoch: keep the partial epoch too
                save(completed, partial=progress)
                break
            val_stats = run_epoch(model, data.val, loss_fn, metric, limit_batches=trainer.limit_eval_batches, progress=bar_epoch)
            row = {"epoch": epoch, "lr": lr}
            row.update({f"train/{k}": v for k, v in train_stats.items()})
            row.update({f"val/{k}": v for k, v in val_stats.items()})
            row["epoch_seconds"] = round(time.perf_counter() - t0, 4)
            log.log_epoch(row)
            diagnostics.record(model, row)  # grad/weight norms left by the epoch's last step

            improved = stopper.update(row[monitor], epoch)
            step_scheduler(scheduler, row[monitor])
            if improved:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            completed = epoch
            save(completed, best=improved)
            if stopper.should_stop:
                outcome["stop_reason"] = "early_stopping"
                log.info(
                    f"early stopping: {monitor} has not improved for {stopper.patience} epochs "
                    f"(best {stopper.best:.4f} at epoch {stopper.best_epoch})"
                )
    if stop():
        outcome = {"status": "interrupted", "signal": signal_name(stop.signum), "exit_code": stop.exit_code,
                   "resume_with": f"python -m dlexp resume={run_dir}" if resumable else "(k-fold runs start again)"}
        if resumable:
            log.info(f"interrupted: checkpoint saved; continue with: python -m dlexp resume={run_dir}")
        else:
            log.info("interrupted: k-fold runs cannot be resumed; run the same command again to start over")

    summary: dict[str, Any] = {
        **outcome,
        "epochs_run": completed,
        "best_epoch": stopper.best_epoch,
        "monitor": monitor,
        "mode": mode,
        f"best/{monitor}": stopper.best,
    }
    summary.update(diagnostics.summarize(metric.name, stopper.best_epoch, diverged=outcome.get("hint")))  # gap, diagnosis
    if outcome["status"] == "completed":
        if best_state is None and (ckpt_dir / "best.pt").is_file():  # best epoch came before a resume
            best_state = load_checkpoint(ckpt_dir / "best.pt")["model"]
        if best_state is not None:  # score the test sets with the weights chosen on val
            model.load_state_dict(best_state)
        for name, loader in {"test": data.test, **data.extra_tests}.items():
            if loader is not None:
                test_stats = run_epoch(model, loader, loss_fn, metric, limit_batches=trainer.limit_eval_batches)
                summary.update({f"{name}/{k}": v for k, v in test_stats.items()})
        if data.after_fit is not None and runtime.is_main:  # e.g. predictions for an unlabeled test file
            data.after_fit(model, run_dir)
    summary["num_params"] = num_params
    summary.update(init_summary(cfg.model))  # e.g. init: normal, init_sigma: 0.01
    return summary


def _fit_folds(cfg: DictConfig, folds: Any, runtime: Any, log: Any, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """k-fold: one training per fold in ``fold_<i>/``; the run summary holds their mean and std."""
    from dlexp.runlog import RunLog

    summaries, exit_code = [], 0
    for i, data in enumerate(folds, 1):
        log.info(f"[bold]fold {i}/{len(folds)}[/bold]")
        fold_dir = _prepare_run_dir(run_dir / f"fold_{i}")
        fold_log = RunLog(fold_dir, is_main=runtime.is_main, progress=cfg.trainer.progress)
        fold_log.log_hparams(OmegaConf.to_container(cfg, resolve=True))
        summary = fit(cfg, data, runtime, fold_log, fold_dir, overrides=overrides, resumable=False)
        exit_code = summary.pop("exit_code", 0)
        fold_log.write_summary(summary)
        if runtime.is_main:
            from dlexp.plots import plots_after_training

            plots_after_training(fold_dir)  # the fold's curves.png, grad_norms.png
        summaries.append(summary)
        if summary["status"] != "completed":
            break  # interrupted or diverged: the remaining folds do not run
    return {**folds.combine(summaries, run_dir), "exit_code": exit_code}


def _diverged(err: Any, epoch: int, cfg: DictConfig) -> dict[str, Any]:
    lr = cfg.optim.get("lr")
    hint = f"lower optim.lr (now {lr})" if lr is not None else "lower the learning rate"
    if cfg.trainer.grad_clip is None:
        hint += " or set trainer.grad_clip=1.0"
    return {
        "status": "diverged",
        "stop_reason": "non_finite",
        "diverged_at": {"epoch": epoch, "step": err.step, "what": err.what},
        "hint": f"{err.what} became non-finite at epoch {epoch}, step {err.step}; {hint}",
    }


def signal_name(signum: Optional[int]) -> str:
    import signal

    return signal.Signals(signum).name if signum else ""


def _prepare_run_dir(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to output dir {run_dir} ({err.strerror}); set hydra.run.dir=<writable path>") from None
    return run_dir


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        cfg, overrides, checkpoint = _resolve_resume(cfg)
        share_threads(cfg)  # parallel launchers: each job gets its share of the CPU cores
        result = train(cfg, run_dir, overrides=overrides, checkpoint=checkpoint)
    except UserError as err:
        if os.environ.get("DLEXP_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        if _is_multirun():  # one bad job must not stop the rest of the sweep
            _write_failed_summary(run_dir, str(err))
            return failed_objective(err)  # NaN, or the error again for sweepers that record failed trials
        sys.exit(err.exit_code)
    except Exception as err:  # a bug, not a user mistake: keep the trace, but let the sweep go on
        if not _is_multirun():
            raise
        import traceback

        traceback.print_exc()
        _write_failed_summary(run_dir, f"{type(err).__name__}: {err}")
        return failed_objective(err)
    if result.exit_code:  # interrupted: stop here, a sweep included
        sys.exit(result.exit_code)
    if result.summary["status"] == "diverged":
        print(f"error: training diverged: {result.summary['hint']}", file=sys.stderr)
        if not _is_multirun():  # in a sweep a diverged job is a result, not a crash
            sys.exit(DIVERGED_EXIT_CODE)
        return failed_objective(RuntimeError(f"training diverged: {result.summary['hint']}"))
    return result.objective


DIVERGED_EXIT_CODE = 3


def _resolve_resume(cfg: DictConfig) -> tuple[DictConfig, list[str], Optional[dict[str, Any]]]:
    """The config, the overrides to record and the checkpoint for this invocation.

    When resuming, the original run's overrides come first and today's command
    line is applied on top, so ``resume=DIR`` alone continues the same run.
    """
    from hydra.core.hydra_config import HydraConfig

    today = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    if not cfg.get("resume"):
        return cfg, today, None
    checkpoint = _load_resume_checkpoint(cfg.resume)
    saved = list(checkpoint.get("overrides", []))
    return recompose(cfg, saved), [*saved, *today], checkpoint


def _write_failed_summary(run_dir: Path, error: str) -> None:
    from dlexp.runlog import SUMMARY_FILE, write_json_atomic

    try:
        write_json_atomic(run_dir / SUMMARY_FILE, {"status": "failed", "error": error})
    except OSError:
        pass  # the run dir itself is unusable; the error was already printed


def cli() -> None:
    """Console-script entry: catch common command-line mistakes before Hydra does, then run."""
    from dlexp.cli_flags import before_hydra

    before_hydra(sys.argv[1:])  # --version and a bare --help at once; a run's first line
    try:
        preflight(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    main()


if __name__ == "__main__":
    cli()
