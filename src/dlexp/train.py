"""``train(cfg, run_dir)``: one run of a composed config: source -> task -> folds -> a Trainer per fold -> results.

The composition root: the one module that puts the layers together. ``train`` is a plain
function (tests call it directly) that knows nothing of Hydra; ``dlexp.cli.app`` is the Hydra
application behind ``python -m dlexp`` that calls it. The command line imports this module
only when a run needs it (it imports torch).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from dlexp.config import validate as config_validation
from dlexp.config.registry import Registry, builder_kwargs
from dlexp.config.schema import DecodeConfig
from dlexp.data import AUGMENTS, DATASETS, SHIFTS, SPLITS, Batch, DataBundle, Folds, Source, build_source, load_folds
from dlexp.errors import DataError, UserError, building
from dlexp.models import MODELS, build_model, count_parameters
from dlexp.models.init import init_summary
from dlexp.models.summary import LayerRow, layer_rows
from dlexp.results.plots import plots_after_training
from dlexp.runs.files import fold_dir
from dlexp.runs.resume import check_compatible, load_resume_checkpoint
from dlexp.runs.rundir import prepare_run_dir, refuse_earlier_run
from dlexp.runs.kfold import combine_fold_summaries
from dlexp.runs.runlog import RunLog
from dlexp.tasks import Task, build_task, resolve_monitor
from dlexp.training.distributed import ranks_from_env
from dlexp.training.interrupt import STOP, point
from dlexp.training.optim import OPTIMIZERS, build_optimizer
from dlexp.training.runtime import Runtime, seed_everything, setup_runtime
from dlexp.training.schedulers import SCHEDULERS, build_scheduler
from dlexp.training.trainer import Trainer

# Each open group and the registry its ``name:`` selects from: the schema of the group's options.
OPEN_GROUPS: dict[str, Registry] = {
    "model": MODELS, "dataset": DATASETS, "split": SPLITS, "optim": OPTIMIZERS, "scheduler": SCHEDULERS,
    "augment": AUGMENTS, "shift": SHIFTS,
}
SHOWN_GROUPS = ("model", "dataset", "optim")  # the options a run's banner and summary name
point("imports")  # a moment a test may signal at: while the command line imports a run's modules


def validate(cfg: DictConfig) -> DictConfig:
    """A typed copy of a composed run config, or a ConfigError naming the bad key (``dlexp.config.validate``)."""
    return config_validation.validate(cfg, OPEN_GROUPS)


@dataclass
class RunResult:
    objective: float  # best value of the monitored val metric (what a sweeper optimizes)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0  # non-zero when the run was interrupted by a signal


def train(
    cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (), checkpoint: Optional[dict[str, Any]] = None, *,
    choices: Optional[dict[str, str]] = None, in_sweep: bool = False, reuse_dir: bool = False,
    on_start: Optional[Callable[[], None]] = None, on_epoch: Optional[Callable[[int, float], bool]] = None,
) -> RunResult:
    """Train the composed config ``cfg``, writing metrics, summary and checkpoints into ``run_dir``.

    ``overrides`` (the command line that produced ``cfg``) is stored in checkpoints so that
    ``resume=`` can recompose the same config; with ``cfg.resume`` set, the run continues from that
    checkpoint (``checkpoint`` if already loaded). ``choices``: the option each group was composed
    from (``optim: sgd_momentum``), for the banner and the summary; ``in_sweep``: one line per run
    instead of the summary table. ``reuse_dir``: the caller has decided that the dir's files may be
    replaced (a run killed before its first checkpoint, started again); ``on_start`` is called once
    the data and model are built, right before training: until then nothing is written into a dir
    that holds an earlier run. ``on_epoch(epoch, monitored val value)`` returns whether to stop there
    (a search's pruner): the run ends ``pruned``, without scoring its test sets."""
    with STOP.installed():  # the command line's, or (train called directly) this run's own: SIGINT is a stop
        return _train(cfg, Path(run_dir), list(overrides), checkpoint, choices, in_sweep, reuse_dir, on_start, on_epoch)


def _train(cfg: DictConfig, run_dir: Path, overrides: list[str], checkpoint: Optional[dict[str, Any]],
           choices: Optional[dict[str, str]], in_sweep: bool, reuse_dir: bool,
           on_start: Optional[Callable[[], None]], on_epoch: Optional[Callable[[int, float], bool]] = None) -> RunResult:
    cfg = validate(cfg)  # imports the registries (torch): before the clock starts, so that a sweep's
    started = time.perf_counter()  # first job does not carry the process start-up in its wall_seconds
    run_dir = prepare_run_dir(Path(run_dir))
    if cfg.resume and checkpoint is None:
        checkpoint = load_resume_checkpoint(cfg.resume)
    if checkpoint is not None:
        check_compatible(cfg, checkpoint["config"])
    elif not reuse_dir:
        refuse_earlier_run(run_dir)
    runtime = setup_runtime(cfg.trainer, ranks_from_env())
    seed_everything(cfg.seed)  # the same seed on every rank: the same initial weights and data order
    with building(f"dataset={cfg.dataset.name}"):
        source = build_source(cfg)
    point("data")
    STOP.check()  # signals outside the training loop stop the run at these points, nothing half done
    task = build_run_task(cfg, source)
    with building(f"dataset={cfg.dataset.name}"):
        folds = load_folds(cfg, seed=cfg.seed, device=runtime.device, shard=(runtime.rank, runtime.world_size),
                           reuse_pool=True, source=source)
    STOP.check()
    if len(folds) > 1 and checkpoint is not None:
        raise UserError("resume= continues one training; a split=kfold run cannot be resumed: start it again")
    chosen = chosen_options(cfg, choices)
    facts = {"device": str(runtime.device), "seed": cfg.seed, **chosen}
    if "dropout" in cfg.model:
        facts["dropout"] = cfg.model.dropout  # the value that took effect (regularizer.dropout, if set, is it)
    run = Run(cfg, task, runtime, list(overrides), chosen, facts, started, on_start, on_epoch)
    if len(folds) == 1:
        log, summary, exit_code = run.record(folds[0], run_dir, checkpoint)
    else:
        log, summary, exit_code = run.record_folds(folds, run_dir)
    if in_sweep:
        log.summary_line(summary)  # one line per job; the sweep's own table follows at the end
    else:
        log.summary_table(summary)
    return RunResult(objective=summary[f"best/{summary['monitor']}"], summary=summary, exit_code=exit_code)


def build_run_task(cfg: DictConfig, source: Source) -> Task:
    """The task of ``source``'s targets, with the run's loss, metric and decoding settings; a model
    that cannot learn it is refused before it is built."""
    trainer = cfg.trainer
    task = build_task(source.task, source.task_args, context=source.context, loss=trainer.loss, metric=trainer.metric,
                      label_smoothing=trainer.label_smoothing, decode=DecodeConfig(**cfg.decode))
    task.check_model(cfg.model.name)
    return task


def chosen_options(cfg: DictConfig, choices: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The options the run was composed from (``optim: sgd_momentum``), and each registry builder they
    select (``optim_builder: sgd``) where the two names differ. Without ``choices``, the builder names."""
    out: dict[str, str] = {}
    for group in SHOWN_GROUPS:
        builder = cfg[group].name
        out[group] = (choices or {}).get(group) or builder
        if out[group] != builder:
            out[f"{group}_builder"] = builder
    if (choices or {}).get("recipe"):  # conf/recipe/<model>_<optim>.yaml set the model's own optimizer settings
        out["recipe"] = choices["recipe"]
    return out


@dataclass
class Run:
    """What every training of one run shares: its config, task and runtime, what it records, its clock."""

    cfg: DictConfig
    task: Task
    runtime: Runtime
    overrides: list[str]
    chosen: dict[str, str]  # chosen_options
    facts: dict[str, Any]  # summary entries every training of the run reports (device, seed, options)
    started: float  # time.perf_counter() at the start of the run
    on_start: Optional[Callable[[], None]] = None  # called once, when the first training is about to begin
    on_epoch: Optional[Callable[[int, float], bool]] = None  # a search's pruner: stop after this epoch?

    def record(self, data: DataBundle, run_dir: Path, checkpoint: Optional[dict[str, Any]] = None, *,
               resumable: bool = True, facts: bool = True) -> tuple[RunLog, dict[str, Any], int]:
        """One training in ``run_dir`` with its own run log: metrics, summary.json, TensorBoard, plots.

        Returns (the log, the summary, the exit code: non-zero when a signal stopped the run)."""
        log = self.open_log(run_dir)
        trainer = Trainer(self.cfg, data, self.task, self.runtime, log, run_dir, overrides=self.overrides,
                          resumable=resumable, choices=self.chosen, on_epoch=self.on_epoch)
        point("model")
        STOP.check()
        if self.on_start is not None:
            self.on_start()
            self.on_start = None
        summary = trainer.fit(checkpoint)
        exit_code = summary.pop("exit_code", 0)
        return log, self.close_log(log, summary, run_dir, with_facts=facts), exit_code

    def record_folds(self, folds: Folds, run_dir: Path) -> tuple[RunLog, dict[str, Any], int]:
        """k-fold: one recorded training per fold in ``fold_<i>/``; the run's summary holds their mean and std."""
        log = self.open_log(run_dir)
        summaries: list[dict[str, Any]] = []
        for i, data in enumerate(folds, 1):
            log.info(f"[bold]fold {i}/{len(folds)}[/bold]")
            _, summary, exit_code = self.record(data, prepare_run_dir(fold_dir(run_dir, i)), resumable=False, facts=False)
            summaries.append(summary)
            if summary["status"] != "completed":
                break  # interrupted or diverged: the remaining folds do not run
        folds.write_mean_predictions(run_dir)
        return log, self.close_log(log, combine_fold_summaries(summaries), run_dir), exit_code

    def open_log(self, run_dir: Path) -> RunLog:
        log = RunLog(run_dir, is_main=self.runtime.is_main, progress=self.cfg.trainer.progress)
        log.log_hparams(OmegaConf.to_container(self.cfg, resolve=True))
        return log

    def close_log(self, log: RunLog, summary: dict[str, Any], run_dir: Path, *, with_facts: bool = True) -> dict[str, Any]:
        """summary.json (with the run's facts and wall time), TensorBoard's hparams, then the plots."""
        if with_facts:
            summary.update(self.facts)
            summary["wall_seconds"] = round(time.perf_counter() - self.started, 3)
        log.write_summary(summary)
        point("plots")
        stopped = summary.get("status") == "interrupted"  # the loop already honoured a signal
        if self.runtime.is_main and (stopped or not STOP()):
            plots_after_training(run_dir)
        if not stopped:
            STOP.check()  # a signal while the plots were drawn: the run says so, and a resume draws them
        return summary


def warm_imports(cfg: DictConfig) -> None:
    """In a sweep, import once what a run otherwise imports lazily on first use, so that the first
    job's wall_seconds measures its run like every other job's, not the process's warm-up."""
    import matplotlib.pyplot  # noqa: F401  (the plots)
    import torch._dynamo  # noqa: F401  (torch.optim imports it when the first optimizer is built)

    if cfg.split.name == "kfold":
        import sklearn.model_selection  # noqa: F401  (k-fold draws its folds with scikit-learn)


def monitored_mode(cfg: DictConfig) -> str:
    """"max" or "min": the mode of the val metric a run of ``cfg`` monitors, decided as a run decides it.

    With ``auto`` metric and monitor this needs the dataset's task, so the dataset is built to learn it."""
    es = cfg.trainer.early_stopping
    if es.mode in ("min", "max"):
        return es.mode
    if es.monitor == "val/loss":
        return "min"
    source = DATASETS.build(cfg.dataset.name, **builder_kwargs(cfg.dataset))
    task = build_task(source.task, source.task_args, loss=cfg.trainer.loss, metric=cfg.trainer.metric)
    return resolve_monitor(es.monitor, es.mode, task)[1]


def summarize_layers(cfg: DictConfig, depth: int = 1) -> tuple[dict[str, Any], list[LayerRow], int]:
    """The data and model of a composed config, without training: (header facts, layer rows, total params)."""
    cfg = validate(cfg)
    seed_everything(cfg.seed)  # the same weights a training run with this seed starts from
    source = build_source(cfg)
    data = load_folds(cfg, seed=cfg.seed, device=torch.device("cpu"), source=source)[0]
    task = build_task(source.task, source.task_args, context=source.context)
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularizer.dropout, task.model_args())
    first = next(iter(data.val))  # one real example as the model sees it (resized, streamed): (1, *input_shape)
    batch = Batch(first.inputs[:1], first.targets[:1], {k: v[:1] for k, v in first.extras.items()})
    facts = {
        "model": cfg.model.name,
        "dataset": cfg.dataset.name,
        "input": tuple(batch.inputs.shape),
        "outputs": data.num_classes,
        **init_summary(cfg.model),
    }
    return facts, layer_rows(model, lambda m: task.forward(m, batch), depth), count_parameters(model)


def check_buildable(cfg: DictConfig) -> None:
    """Every check a run makes before its first step, without training or writing anything: the data, the
    task (a model that cannot learn it, decode.* on a task that does not decode), the model, its optimizer
    and scheduler. ``--cfg`` prints a config only once this passes, so that it never shows a config a run
    would refuse."""
    cfg = validate(cfg)
    seed_everything(cfg.seed)
    downloads = bool(cfg.dataset.get("download"))
    if downloads:
        cfg.dataset.download = False  # --cfg downloads nothing: the data at hand, or only the checks without it
    try:
        with building(f"dataset={cfg.dataset.name}"):
            source = build_source(cfg)
    except DataError:
        if downloads:
            return  # not downloaded yet: a run fetches it first, and checks the rest then
        raise
    task = build_run_task(cfg, source)
    with building(f"dataset={cfg.dataset.name}"):
        data = load_folds(cfg, seed=cfg.seed, device=torch.device("cpu"), source=source)[0]
    mode = resolve_monitor(cfg.trainer.early_stopping.monitor, cfg.trainer.early_stopping.mode, task)[1]
    reg = cfg.regularizer
    with building(f"model={cfg.model.name}"):
        model = build_model(cfg.model, data.input_shape, data.num_classes, reg.dropout, task.model_args())
    with building(f"optim={cfg.optim.name}"):
        optimizer = build_optimizer(cfg.optim, model, reg.weight_decay)
    with building(f"scheduler={cfg.scheduler.name}"):
        build_scheduler(cfg.scheduler, optimizer, cfg.trainer.epochs, mode)
