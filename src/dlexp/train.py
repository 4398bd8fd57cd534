"""The dlexp entrypoint: Hydra composes the config, ``train`` runs it, results land in the run dir.

``train(cfg, run_dir)`` is a plain function (tests call it directly); ``main`` is
the thin ``@hydra.main`` wrapper behind ``python -m dlexp`` and the ``dlexp``
console script. Heavy imports (torch) happen inside ``train`` so that
``--help`` and ``--cfg job`` stay fast.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from dlexp.config import CONFIG_DIR, chosen_options, preflight, validate
from dlexp.errors import ConfigError, RunDirInUse, UserError, building
from dlexp.resume import check_compatible, checkpoint_path, recompose, recorded_overrides
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
    cfg = validate(cfg)  # imports the registries (torch): before the clock starts, so that a sweep's
    started = time.perf_counter()  # first job does not carry the process start-up in its wall_seconds
    run_dir = _prepare_run_dir(Path(run_dir))
    if cfg.resume and checkpoint is None:
        checkpoint = _load_resume_checkpoint(cfg.resume)
    if checkpoint is not None:
        check_compatible(cfg, checkpoint["config"])
    else:
        _refuse_earlier_run(run_dir)

    from dlexp.data import load_folds
    from dlexp.device import seed_everything, setup_runtime
    from dlexp.distributed import ranks_from_env

    runtime = setup_runtime(cfg.trainer, ranks_from_env())
    seed_everything(cfg.seed)  # the same seed on every rank: the same initial weights and data order
    with building(f"dataset={cfg.dataset.name}"):
        folds = load_folds(cfg, seed=cfg.seed, device=runtime.device, shard=(runtime.rank, runtime.world_size),
                           reuse_pool=True)
    if len(folds) > 1 and checkpoint is not None:
        raise UserError("resume= continues one training; a split=kfold run cannot be resumed: start it again")
    facts = {"device": str(runtime.device), "seed": cfg.seed, **chosen_options(cfg)}
    if len(folds) == 1:
        log, summary, exit_code = _record_run(cfg, folds[0], runtime, run_dir, overrides, checkpoint, facts=facts, started=started)
    else:
        log, summary, exit_code = _record_folds(cfg, folds, runtime, run_dir, overrides, facts=facts, started=started)
    if _in_sweep():
        log.summary_line(summary)  # one line per job; the sweep's own table follows at the end
    else:
        log.summary_table(summary)
    if cfg.finding is not None and runtime.is_main:  # a course preset's claim, checked from the files just written
        from dlexp.findings import after_run

        after_run(OmegaConf.to_container(cfg), run_dir)
    return RunResult(objective=summary[f"best/{summary['monitor']}"], summary=summary, exit_code=exit_code)


def _in_sweep() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and _is_multirun()


def _record_run(cfg: DictConfig, data: Any, runtime: Any, run_dir: Path, overrides: Sequence[str],
                checkpoint: Optional[dict[str, Any]] = None, *, facts: Optional[dict[str, Any]] = None,
                started: Optional[float] = None, resumable: bool = True) -> tuple[Any, dict[str, Any], int]:
    """One training in ``run_dir`` with its own run log: metrics, summary.json, TensorBoard, plots.

    Returns (the log, the summary, the exit code: non-zero when a signal stopped the run)."""
    from dlexp.trainer import Trainer

    log = _open_log(cfg, runtime, run_dir)
    trainer = Trainer(cfg, data, runtime, log, run_dir, overrides=overrides, resumable=resumable)
    summary = trainer.fit(checkpoint)
    exit_code = summary.pop("exit_code", 0)
    return log, _close_log(log, summary, runtime, run_dir, facts, started), exit_code


def _record_folds(cfg: DictConfig, folds: Any, runtime: Any, run_dir: Path, overrides: Sequence[str], *,
                  facts: dict[str, Any], started: float) -> tuple[Any, dict[str, Any], int]:
    """k-fold: one recorded training per fold in ``fold_<i>/``; the run's summary holds their mean and std."""
    log = _open_log(cfg, runtime, run_dir)
    summaries: list[dict[str, Any]] = []
    for i, data in enumerate(folds, 1):
        log.info(f"[bold]fold {i}/{len(folds)}[/bold]")
        fold_dir = _prepare_run_dir(run_dir / f"fold_{i}")
        _, summary, exit_code = _record_run(cfg, data, runtime, fold_dir, overrides, resumable=False)
        summaries.append(summary)
        if summary["status"] != "completed":
            break  # interrupted or diverged: the remaining folds do not run
    return log, _close_log(log, folds.combine(summaries, run_dir), runtime, run_dir, facts, started), exit_code


def _open_log(cfg: DictConfig, runtime: Any, run_dir: Path) -> Any:
    from dlexp.runlog import RunLog

    log = RunLog(run_dir, is_main=runtime.is_main, progress=cfg.trainer.progress)
    log.log_hparams(OmegaConf.to_container(cfg, resolve=True))
    return log


def _close_log(log: Any, summary: dict[str, Any], runtime: Any, run_dir: Path,
               facts: Optional[dict[str, Any]], started: Optional[float]) -> dict[str, Any]:
    """summary.json (with the run's facts and wall time), TensorBoard's hparams, curves.png, grad_norms.png."""
    summary.update(facts or {})
    if started is not None:
        summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    log.write_summary(summary)
    if runtime.is_main:
        from dlexp.plots import plots_after_training

        plots_after_training(run_dir)
    return summary


def _load_resume_checkpoint(resume: str) -> dict[str, Any]:
    from dlexp.checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint_path(resume))
    missing = {"config", "epoch", "optimizer", "rng", "loader"} - set(state)
    if missing:
        raise UserError(f"checkpoint for resume={resume} lacks {', '.join(sorted(missing))}; it cannot be resumed")
    return state


def _refuse_earlier_run(run_dir: Path) -> None:
    """A new run must not write over another run's files (e.g. a reused hydra.run.dir)."""
    earlier = [p for p in ("metrics.csv", "checkpoints/last.pt", "fold_1") if (run_dir / p).exists()]
    summary = run_dir / "summary.json"
    if summary.exists() and '"failed"' not in summary.read_text():
        earlier.append("summary.json")
    if earlier:
        raise RunDirInUse(
            f"{run_dir} already holds a run ({', '.join(earlier)}); continue it with resume={run_dir}, "
            f"or choose another dir (hydra.run.dir=...)"
        )


def _prepare_run_dir(run_dir: Path) -> Path:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to output dir {run_dir} ({err.strerror}); set hydra.run.dir=<writable path>") from None
    return run_dir


def _warm_imports(cfg: DictConfig) -> None:
    """In a sweep, import once what a run otherwise imports lazily on first use, so that the first
    job's wall_seconds measures its run like every other job's, not the process's warm-up."""
    import matplotlib.pyplot  # noqa: F401  (the plots)
    import torch._dynamo  # noqa: F401  (torch.optim imports it when the first optimizer is built)

    if cfg.split.name == "kfold":
        import sklearn.model_selection  # noqa: F401  (k-fold draws its folds with scikit-learn)


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    from dlexp.distributed import join_submitit_tasks

    join_submitit_tasks(forced_cpu=cfg.trainer.get("device") == "cpu")  # a SLURM job with tasks_per_node > 1
    try:
        cfg, overrides, checkpoint = _resolve_resume(cfg)
        share_threads(cfg)  # parallel launchers: each job gets its share of the CPU cores
        if _is_multirun():
            _warm_imports(cfg)
        result = train(cfg, run_dir, overrides=overrides, checkpoint=checkpoint)
        _FINISHED["single run"] = not _is_multirun()  # its files are written and closed
    except UserError as err:
        from dlexp.runlog import record_failure

        if os.environ.get("DLEXP_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        if not isinstance(err, RunDirInUse):  # the report must not call it "still running"
            record_failure(run_dir, str(err))
        if _is_multirun():  # one bad job must not stop the rest of the sweep
            return failed_objective(err)  # NaN, or the error again for sweepers that record failed trials
        sys.exit(err.exit_code)
    except Exception as err:  # a bug, not a user mistake: keep the trace, but let the sweep go on
        if not _is_multirun():
            raise
        import traceback

        from dlexp.runlog import record_failure

        traceback.print_exc()
        record_failure(run_dir, f"{type(err).__name__}: {err}")
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
_FINISHED = {"single run": False}  # set once a single (not multirun) run has written and closed its files


def _resolve_resume(cfg: DictConfig) -> tuple[DictConfig, list[str], Optional[dict[str, Any]]]:
    """The config, the overrides to record and the checkpoint for this invocation.

    When resuming, the original run's overrides come first and today's command
    line is applied on top, so ``resume=DIR`` alone continues the same run.
    """
    from hydra.core.hydra_config import HydraConfig

    today = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    if not cfg.get("resume"):
        return cfg, today, None
    if checkpoint_path(cfg.resume) is None:  # killed before its first checkpoint: start it again, same dir
        return _restart(cfg, today)
    checkpoint = _load_resume_checkpoint(cfg.resume)
    saved = list(checkpoint.get("overrides", []))
    return recompose(cfg, saved), [*saved, *today], checkpoint


def _restart(cfg: DictConfig, today: list[str]) -> tuple[DictConfig, list[str], None]:
    """``resume=DIR`` for a run with no checkpoint: start it again from its recorded config, in DIR.
    A finished run is never restarted (that would replace its results), and the recorded config may
    change only where a resume may."""
    run_dir = Path(cfg.resume).expanduser()
    summary = run_dir / "summary.json"
    status = json.loads(summary.read_text()).get("status") if summary.is_file() else None
    if status in ("completed", "diverged"):
        raise ConfigError(f"the run in {cfg.resume} has finished (status {status}) and kept no checkpoint to continue "
                          f"from; start a new run without resume= (its results stay where they are)")
    saved = recorded_overrides(cfg.resume)
    fresh = recompose(cfg, saved)
    check_compatible(fresh, recompose(cfg, saved, today=False), saved_as="the run was started with")
    print(f"no checkpoint in {cfg.resume} yet: starting that run again from its recorded config", flush=True)
    fresh.resume = None
    _clear_attempt(run_dir)
    return fresh, [*saved, *today], None


def _clear_attempt(run_dir: Path) -> None:
    """The files of an attempt that never reached a checkpoint: nothing in them can be continued."""
    for name in ("metrics.csv", "grad_norms.csv", "summary.json"):
        (run_dir / name).unlink(missing_ok=True)
    for events in run_dir.glob("events.out.tfevents.*"):
        events.unlink()


def cli() -> None:
    """Console-script entry: catch common command-line mistakes before Hydra does, then run.

    Under torchrun every rank joins the process group first and takes rank 0's run dir."""
    from dlexp.cli_flags import before_hydra

    before_hydra(sys.argv[1:])  # --version and a bare --help at once; a run's first line
    try:
        preflight(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    from dlexp import distributed

    if not distributed.launched_by_torchrun():
        main()
        return
    distributed.quiet_other_ranks()
    distributed.join_process_group(sys.argv)
    try:
        main()
    finally:
        distributed.leave_process_group()


def entry() -> None:
    """The ``dlexp`` console script and ``python -m dlexp``: ``cli``, then, after a single run on one
    process, leave without the interpreter's teardown. Tearing down the modules torch._dynamo brings
    in takes about a second (measured: ``import torch._dynamo`` exits 0.9 s later than the same with
    ``os._exit``) and does nothing for a run whose files are all written, flushed and closed.
    Sweeps (their launchers and the sweep summary use exit hooks), torchrun ranks and crashes
    leave the usual way."""
    from dlexp import distributed

    try:
        cli()
        code: Any = 0
    except SystemExit as stop:
        code = stop.code
        if not _FINISHED["single run"] or not isinstance(code, (int, type(None))):
            raise
    if not _FINISHED["single run"] or distributed.launched_by_torchrun():
        sys.exit(code)
    import logging

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code or 0)


if __name__ == "__main__":
    entry()
