"""One run of a composed config, in two steps: ``prepare`` decides, ``train`` writes.

- ``prepare`` makes every check a run can fail before anything is written: the config (validated
  here, once), a resumed checkpoint's compatibility, the device, the data files, the task, the model,
  its optimizer and scheduler. It builds what the run trains (data, task, the first model) and
  returns it as a ``PreparedRun``.
- ``train`` runs it in its dir: a ``Trainer`` per fold, the run's log, summary and plots.

The composition root: the one module that puts the layers together. Both are plain functions (tests
call them directly) that know nothing of Hydra; ``dlexp.cli.app`` is the Hydra application behind
``python -m dlexp`` that decides, accepts the run dir, then trains. The command line imports this
module only when a run needs it (it imports torch).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dlexp.config import plugins as user_plugins
from dlexp.config import validate as config_validation
from dlexp.config.files import CONFIG_DIR
from dlexp.config.registry import Registry, builder_kwargs
from dlexp.config.schema import DecodeConfig
from dlexp.data import (
    AUGMENTS, DATASETS, SHIFTS, SPLITS, Batch, DataBundle, Folds, Source, TensorLoader, build_source, load_folds,
)
from dlexp.data.checks import check_fields
from dlexp.data.preprocess import NORMALIZE_MODES
from dlexp.errors import DataError, UserError, building
from dlexp.hooks import point
from dlexp.models import MODELS, build_model, count_parameters
from dlexp.models.init import init_summary
from dlexp.models.summary import LayerRow, layer_rows
from dlexp.results.plots import plots_after_training
from dlexp.runs import hints
from dlexp.runs.files import fold_dir
from dlexp.runs.kfold import combine_fold_summaries
from dlexp.runs.resume import check_compatible, load_resume_checkpoint
from dlexp.runs.rundir import prepare_run_dir, refuse_earlier_run
from dlexp.runs.runlog import RunLog
from dlexp.runs.status import Status
from dlexp.tasks import LOSSES, METRICS, TASKS, Task, build_task, resolve_monitor
from dlexp.training.distributed import ranks_from_env
from dlexp.training.interrupt import STOP
from dlexp.training.optim import OPTIMIZERS, build_optimizer
from dlexp.training.runtime import Runtime, seed_everything, setup_runtime
from dlexp.training.schedulers import SCHEDULERS, build_scheduler, schedule_horizon
from dlexp.training.trainer import Trainer

# Each open group and the registry its ``name:`` selects from: the schema of the group's options.
OPEN_GROUPS: dict[str, Registry] = {
    "model": MODELS, "dataset": DATASETS, "split": SPLITS, "optim": OPTIMIZERS, "scheduler": SCHEDULERS,
    "augment": AUGMENTS, "shift": SHIFTS,
}
SHOWN_GROUPS = ("model", "dataset", "optim")  # the options a run's banner and summary name
# Every registry a plugin may add to: a plugin file imported again (it changed) first loses what it registered.
REGISTRIES: tuple[Registry, ...] = (*OPEN_GROUPS.values(), TASKS, LOSSES, METRICS)


def load_plugins(names: Sequence[str], search: Sequence[str] = ()) -> list[user_plugins.Plugin]:
    """Import the run's plugins (``dlexp.config.plugins``): the user's own components, registered by name."""
    def forget(module: str) -> None:
        for registry in REGISTRIES:
            registry.unregister_module(module)

    return user_plugins.load(names, search=search, forget=forget)


def validate(cfg: DictConfig) -> DictConfig:
    """A typed copy of a composed run config, or a ConfigError naming the bad key (``dlexp.config.validate``)."""
    return config_validation.validate(cfg, OPEN_GROUPS)


@dataclass
class RunResult:
    objective: float  # best value of the monitored val metric (what a sweeper optimizes)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0  # non-zero when the run was interrupted by a signal


@dataclass
class PreparedRun:
    """A run decided: its config checked, its data loaded, its task and first model built; nothing written."""

    cfg: DictConfig  # validated
    overrides: list[str]  # the command line that composed it, stored in checkpoints for resume=
    checkpoint: Optional[dict[str, Any]]  # the checkpoint it continues, or None
    runtime: Runtime
    task: Task
    folds: Folds
    first: DataBundle  # the first fold's data (the only one, for a holdout split)
    model: nn.Module  # the first fold's model, built from the seeded generator as training would build it
    chosen: dict[str, str]  # chosen_options
    started: float  # time.perf_counter() once the config was valid: the run's wall clock starts here
    plugins: dict[str, str] = field(default_factory=dict)  # name -> origin (version): the user's components it uses

    def facts(self) -> dict[str, Any]:
        """Summary entries every run reports: where it ran, its seed and options, the dropout that took effect."""
        facts: dict[str, Any] = {"device": str(self.runtime.device), "seed": self.cfg.seed, **self.chosen}
        if "dropout" in self.cfg.model:
            facts["dropout"] = self.cfg.model.dropout  # regularizer.dropout, when set, is this value
        if self.plugins:
            facts["plugins"] = dict(self.plugins)
        return facts


def prepare(cfg: DictConfig, *, overrides: Sequence[str] = (), checkpoint: Optional[dict[str, Any]] = None,
            choices: Optional[dict[str, str]] = None, download: bool = True, config_dirs: Sequence[str] = ()) -> PreparedRun:
    """Every check a run makes before its first write, and what it trains. With ``cfg.resume`` set (and no
    ``checkpoint`` given), the checkpoint it names is loaded and checked against ``cfg``. ``choices``: the
    option each group was composed from (``optim: sgd_momentum``), for the banner and the summary.
    ``download=False`` (``--cfg``) fetches no data: a dataset not on disk yet skips the data checks.
    ``config_dirs``: where the run's plugin files may also be (beside its configs)."""
    if cfg.get("resume") and checkpoint is None:
        checkpoint = load_resume_checkpoint(cfg.resume)
    # the user's components, before their names are checked; a resumed run's also where it found them then
    search = [*(d for d in config_dirs if Path(d) != Path(CONFIG_DIR)),
              *user_plugins.recorded_dirs((checkpoint or {}).get("plugins") or {})]
    used = load_plugins(config_validation.plugin_names(cfg.get("plugins")), search)
    cfg = validate(cfg)  # imports the registries (torch) first: the run's clock does not count the imports
    started = time.perf_counter()
    if checkpoint is not None:
        check_compatible(cfg, checkpoint["config"])
        _say_changed_plugins(checkpoint, used)
    runtime = setup_runtime(cfg.trainer, ranks_from_env())
    seed_everything(cfg.seed)  # the same seed on every rank: the same initial weights and data order
    source = _build_source(cfg, download)
    check_fields(source, cfg.dataset.name, TASKS, NORMALIZE_MODES)  # a user's dataset builder makes these
    point("data")
    STOP.check()  # signals outside the training loop stop the run at these points, nothing half done
    task = build_run_task(cfg, source)
    with building(f"dataset={cfg.dataset.name}"):
        folds = load_folds(cfg, seed=cfg.seed, device=runtime.device, shard=(runtime.rank, runtime.world_size),
                           reuse_pool=True, source=source)
        first = folds[0]
    if len(folds) > 1 and checkpoint is not None:
        raise UserError("resume= continues one training; a split=kfold run cannot be resumed: start it again")
    model = build_run_model(cfg, first, task)
    check_fit(cfg, model, first, task)
    check_optimization(cfg, model, first, task)
    point("model")
    STOP.check()
    return PreparedRun(cfg, list(overrides), checkpoint, runtime, task, folds, first, model,
                       chosen_options(cfg, choices), started, user_plugins.record(used))


def _say_changed_plugins(checkpoint: dict[str, Any], used: Sequence[user_plugins.Plugin]) -> None:
    """A resumed run whose plugin changed since the run started goes on with the plugin as it is now, and says so."""
    changed = user_plugins.changed_since(checkpoint.get("plugins") or {}, used)
    if changed:
        print(f"warning: the run's plugin changed since it started ({'; '.join(changed)}); it goes on with the plugin "
              "as it is now", flush=True)


def train(run: Union[PreparedRun, DictConfig], run_dir: Path, overrides: Sequence[str] = (), *,
          checkpoint: Optional[dict[str, Any]] = None, choices: Optional[dict[str, str]] = None, in_sweep: bool = False,
          on_epoch: Optional[Callable[[int, float], bool]] = None, plots: bool = True) -> RunResult:
    """Train ``run`` in ``run_dir``: metrics, summary, checkpoints, plots. ``run`` is a ``PreparedRun``, or a
    composed config that is prepared here with ``overrides``, ``checkpoint`` and ``choices`` (then ``run_dir``
    must hold no other run, unless the run continues a checkpoint). ``in_sweep``: one line per run instead of
    the summary table. ``plots=False`` (a sweep's jobs) leaves the run's plots to ``python -m dlexp.report``:
    drawing them costs a small job more than its training.
    ``on_epoch(epoch, monitored val value)`` returns whether to stop there (a search's pruner): the run
    ends ``pruned``, without scoring its test sets. Returns the result; never raises for a signal."""
    with STOP.installed():  # the command line's, or (train called directly) this run's own: SIGINT is a stop
        if not isinstance(run, PreparedRun):
            run = prepare(run, overrides=overrides, checkpoint=checkpoint, choices=choices)
            if run.checkpoint is None:
                refuse_earlier_run(Path(run_dir))
        run_dir = prepare_run_dir(Path(run_dir))
        log = _open_log(run, run_dir)
        if len(run.folds) == 1:
            summary = Trainer(run.cfg, run.first, run.task, run.runtime, log, run_dir, model=run.model,
                              overrides=run.overrides, choices=run.chosen, on_epoch=on_epoch,
                              plugins=run.plugins).fit(run.checkpoint)
        else:
            summary = _train_folds(run, run_dir, log, plots)
        exit_code = summary.pop("exit_code", 0)
        summary = _close_log(run, log, summary, run_dir, plots=plots)
        log.summary_line(summary) if in_sweep else log.summary_table(summary)
        return RunResult(objective=summary[f"best/{summary['monitor']}"], summary=summary, exit_code=exit_code)


def _train_folds(run: PreparedRun, run_dir: Path, log: RunLog, plots: bool) -> dict[str, Any]:
    """k-fold: one recorded training per fold in ``fold_<i>/``; the run's summary holds their mean and std."""
    summaries: list[dict[str, Any]] = []
    for i in range(len(run.folds)):
        log.info(f"[bold]fold {i + 1}/{len(run.folds)}[/bold]", markup=True)
        data = run.first if i == 0 else run.folds[i]  # built in turn: one fold's tensors in memory at a time
        folder = prepare_run_dir(fold_dir(run_dir, i + 1))
        fold_log = _open_log(run, folder)
        summary = Trainer(run.cfg, data, run.task, run.runtime, fold_log, folder, model=run.model if i == 0 else None,
                          overrides=run.overrides, resumable=False, choices=run.chosen, plugins=run.plugins).fit()
        exit_code = summary.pop("exit_code", 0)
        summaries.append(_close_log(run, fold_log, summary, folder, with_facts=False, plots=plots))
        if summary["status"] != Status.COMPLETED:
            break  # interrupted or diverged: the remaining folds do not run
    run.folds.write_mean_predictions(run_dir)
    combined = combine_fold_summaries(summaries)
    if combined["status"] == Status.INTERRUPTED:  # k-fold starts again: its hint is the command that started it
        combined["resume_with"] = hints.rerun_command(hints.command())
    return {**combined, "exit_code": exit_code}


def _open_log(run: PreparedRun, run_dir: Path) -> RunLog:
    log = RunLog(run_dir, is_main=run.runtime.is_main, progress=run.cfg.trainer.progress)
    log.log_hparams(OmegaConf.to_container(run.cfg, resolve=True))
    return log


def _close_log(run: PreparedRun, log: RunLog, summary: dict[str, Any], run_dir: Path, *,
               with_facts: bool = True, plots: bool = True) -> dict[str, Any]:
    """summary.json (with the run's facts and wall time), TensorBoard's hparams, then (``plots``) the plots."""
    if with_facts:
        summary.update(run.facts())
        summary["wall_seconds"] = round(time.perf_counter() - run.started, 3)
    log.write_summary(summary)
    point("plots")
    stopped = summary.get("status") == Status.INTERRUPTED  # the loop already honoured a signal
    if plots and run.runtime.is_main and (stopped or not STOP()):
        plots_after_training(run_dir)
    if not stopped:
        STOP.check()  # a signal while the plots were drawn: the run says so, and a resume draws them
    return summary


class NotDownloaded(DataError):
    """``prepare(download=False)`` on a dataset that a run would download first."""


def _build_source(cfg: DictConfig, download: bool) -> Source:
    """The dataset's source; without ``download``, a dataset that a run would fetch first and that is not
    on disk yet is ``NotDownloaded``."""
    fetches = not download and bool(cfg.dataset.get("download"))
    if fetches:
        cfg.dataset.download = False
    try:
        with building(f"dataset={cfg.dataset.name}"):
            return build_source(cfg)
    except DataError as err:
        if fetches:
            raise NotDownloaded(str(err)) from None
        raise


def build_run_task(cfg: DictConfig, source: Source) -> Task:
    """The task of ``source``'s targets, with the run's loss, metric and decoding settings; a model
    that cannot learn it is refused before it is built."""
    trainer = cfg.trainer
    task = build_task(source.task, source.task_args, context=source.context, loss=trainer.loss, metric=trainer.metric,
                      label_smoothing=trainer.label_smoothing, decode=DecodeConfig(**cfg.decode))
    task.check_model(cfg.model.name)
    return task


def build_run_model(cfg: DictConfig, data: DataBundle, task: Task) -> nn.Module:
    """The model of ``cfg`` for ``data``'s shapes; a builder refusing the config's values is a config error, and
    one that cannot take what the task passes every model (a vocabulary's size) is told so by name."""
    missing = [key for key in task.model_args() if not MODELS.takes(cfg.model.name, key)]
    if missing:
        raise UserError(f"model '{cfg.model.name}' takes no '{missing[0]}' keyword, which a {task.name} task passes "
                        f"every model: add it to the builder ({MODELS.origin(cfg.model.name)}), or choose a model made "
                        f"for {task.name}")
    with building(f"model={cfg.model.name}"):
        return build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularizer.dropout, task.model_args())


def check_fit(cfg: DictConfig, model: nn.Module, data: DataBundle, task: Task) -> None:
    """Two val examples through the model and the task's loss, in eval mode (no dropout, no BatchNorm update: no
    random numbers drawn, nothing learned), before the run is accepted: a model that cannot take the data's
    inputs, or gives another number of outputs than the data has classes, is one line now, not a traceback at
    the first step. Data streamed from files is left to the first step (its loader starts worker processes)."""
    if not isinstance(data.val, TensorLoader):
        return
    first = next(iter(data.val)).to(torch.device("cpu"))
    batch = Batch(first.inputs[:2], None if first.targets is None else first.targets[:2],
                  {k: v[:2] for k, v in first.extras.items()})
    model.eval()
    try:
        with torch.no_grad():
            outputs = task.step(model, batch).outputs
    except Exception as err:  # noqa: BLE001  (a model and data that do not fit: the user's choice of the two)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"model={cfg.model.name} fails on two examples of dataset={cfg.dataset.name} ({type(err).__name__}: "
                        f"{first_line}); check that the model takes inputs of shape {tuple(data.input_shape)}") from None
    finally:
        model.train()
    expected = task.expected_outputs(data.num_classes)
    if expected is not None and outputs.dim() >= 2 and outputs.shape[-1] != expected:
        raise UserError(f"model={cfg.model.name} gives {outputs.shape[-1]} outputs per example, but dataset="
                        f"{cfg.dataset.name} has {expected} (its classes or targets); build the last layer with "
                        "num_classes")


def check_optimization(cfg: DictConfig, model: nn.Module, data: DataBundle, task: Task) -> None:
    """The optimizer and scheduler of ``cfg`` build for ``model`` (neither draws random numbers: building
    them here changes nothing the run's own will do)."""
    with building(f"optim={cfg.optim.name}"):
        optimizer = build_optimizer(cfg.optim, model, cfg.regularizer.weight_decay)
    mode = resolve_monitor(cfg.trainer.early_stopping.monitor, cfg.trainer.early_stopping.mode, task)[1]
    with building(f"scheduler={cfg.scheduler.name}"):
        build_scheduler(cfg.scheduler, optimizer, schedule_horizon(cfg, len(data.train)), mode)


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


def warm_imports(cfg: DictConfig) -> None:
    """In a sweep, import once what a run otherwise imports lazily on first use, so that the first
    job's wall_seconds measures its run like every other job's, not the process's warm-up."""
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


def check_buildable(cfg: DictConfig, config_dirs: Sequence[str] = ()) -> None:
    """``--cfg`` prints a config only once every check a run makes before its first step passes, so that it
    never shows a config a run would refuse. It downloads nothing: a dataset not fetched yet is checked
    without its data (a run fetches it first, and checks the rest then)."""
    try:
        prepare(cfg, download=False, config_dirs=config_dirs)
    except NotDownloaded:
        pass
