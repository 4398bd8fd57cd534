"""The schemas of the fixed groups (``trainer``, ``regularizer``, ``decode``) and the top-level keys.

Open groups (``model``, ``dataset``, ``optim``, ...) have no schema here: each of their
options is a registry entry whose builder signature is its schema (``dlexp.config.validate``).

A key declared with ``may_change(default)`` may differ when a run is resumed (more epochs,
another device, the progress bar); every other key is fixed by the run it continues
(``dlexp.runs.resume``), so this file is the one place that says which is which.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from dlexp.config.constraints import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Seed,
)

RESUME_MAY_CHANGE = "resume_may_change"  # dataclass field metadata: the key may differ on resume


def may_change(default: Any) -> Any:
    """A field whose value a resumed run may change without changing what its checkpoint means."""
    return field(default=default, metadata={RESUME_MAY_CHANGE: True})


@dataclass
class EarlyStoppingConfig:
    monitor: str = "auto"  # "auto" = the task's val metric, e.g. val/acc; or val/loss, ...
    mode: Literal["auto", "min", "max"] = "auto"
    patience: Optional[PositiveInt] = may_change(None)  # epochs without improvement before stopping; None = off
    min_delta: NonNegativeFloat = 0.0  # smallest change that counts as an improvement


@dataclass
class TrainerConfig:
    epochs: PositiveInt = may_change(30)
    batch_size: PositiveInt = 64
    eval_batch_size: Optional[PositiveInt] = None  # None = 4 x batch_size (no gradients to hold)
    device: str = may_change("auto")  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    num_threads: Optional[PositiveInt] = may_change(None)  # CPU intra-op threads; None = PyTorch's default
    loss: str = "auto"  # "auto" = the task's loss (cross_entropy / mse); or a LOSSES name
    metric: str = "auto"  # "auto" = the task's metric (acc / rmse); or a METRICS name
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    grad_clip: Optional[PositiveFloat] = None  # max global grad norm; None = no clipping
    limit_train_batches: Optional[PositiveInt] = None  # smoke runs: stop each epoch after N batches
    limit_eval_batches: Optional[PositiveInt] = None
    progress: bool = may_change(True)  # live progress bar on a terminal
    log_every_n_steps: PositiveInt = may_change(20)  # progress-bar refresh; each refresh reads the loss (a device sync)
    checkpoints: bool = True  # write checkpoints/last.pt and best.pt
    checkpoint_every_n_steps: Optional[PositiveInt] = may_change(None)  # also mid-epoch, every N optimizer steps
    checkpoint_every_minutes: Optional[PositiveFloat] = may_change(None)  # also mid-epoch, every M minutes (one process)
    # smoke runs: score at most N test batches (said in the summary)
    limit_test_batches: Optional[PositiveInt] = may_change(None)
    precision: Literal["32", "bf16", "16"] = "32"  # through torch.autocast; "16" (float16) adds a gradient scaler
    compile: Any = may_change(False)  # false | true | a torch.compile mode: default, reduce-overhead, max-autotune, ...
    channels_last: Any = may_change("auto")  # auto (on for conv nets on CUDA) | true | false
    sync_batchnorm: bool = False  # under torchrun on CUDA: BatchNorm statistics over every rank's batch
    label_smoothing: Fraction = 0.0  # cross-entropy losses only (classes or tokens); an error with any other loss


@dataclass
class RegularizerConfig:
    weight_decay: NonNegativeFloat = 0.0  # L2, applied by the optimizer to weights (not biases or norms)
    l1: NonNegativeFloat = 0.0  # coefficient of sum(|w|) added to the loss, biases excluded
    dropout: Optional[Fraction] = None  # None = each model's own default


@dataclass
class DecodeConfig:
    """How sequence tasks (translation) turn a model into output sentences; an error for other tasks.

    Decoding only changes how a model's outputs are read at evaluation, so a resume may change it."""

    beam_size: PositiveInt = may_change(1)  # 1 = greedy decoding
    length_penalty: NonNegativeFloat = may_change(0.75)  # beam score log P / L**alpha (the course's alpha)
    max_len_a: NonNegativeFloat = may_change(1.5)  # output limit a * source length (tokens, with <eos>) + b, as fairseq's
    max_len_b: NonNegativeInt = may_change(5)


@dataclass
class SweepConfig:
    """How a -m sweep names its dir and treats what a rerun of the same command finds; an error in a single run."""

    name: Optional[str] = may_change(None)  # outputs/multirun/<name>: the same dir for the same command
    retry_failed: bool = may_change(True)  # a rerun runs failed jobs again (completed ones are skipped)
    fail_fast: bool = may_change(False)  # stop the sweep at its first failed job
    # the metric the sweep's tables rank on (a summary.json key, e.g. test_shifted/acc); None = the best
    # monitored val metric. A preset names the metric its lesson is about; harmless in a single run.
    rank_by: Optional[str] = may_change(None)


@dataclass
class SearchConfig:
    """An Optuna search (``-m hparams_search=optuna``, ``dlexp.search``); an error in a single run.

    Not part of a run's own config: the search decides which runs there are, each run is one trial."""

    n_trials: PositiveInt = 20  # trials in the study, over every rerun and worker: a rerun continues toward it
    sampler: Literal["tpe", "random", "grid", "gp", "cmaes"] = "tpe"
    seed: Optional[int] = None  # the sampler's seed; None: the run's seed
    pruner: Literal["none", "median", "successive_halving", "hyperband"] = "median"
    min_epochs: PositiveInt = 1  # no trial is pruned before it has run this many epochs
    direction: Literal["auto", "maximize", "minimize"] = "auto"  # auto: the monitored val metric's mode
    storage: Optional[str] = None  # None: <sweep dir>/optuna.journal; sqlite:///study.db; postgresql://...
    study_name: Optional[str] = None  # None: the sweep dir's name
    slots: Optional[PositiveInt] = None  # trials at once in this worker; None: one per GPU, else one per core
    jobs_per_gpu: PositiveInt = 1  # more than 1 shares each GPU between that many trials
    synchronous: bool = False  # true: batches of ``slots`` trials, each batch waiting for its slowest
    lease_seconds: PositiveFloat = 300.0  # a trial whose worker stopped renewing its lease this long is taken over
    params: dict[str, Any] = field(default_factory=dict)  # key: Hydra sweep syntax, e.g. tag(log, interval(1e-4, 0.1))


SEARCH_GROUP = "hparams_search"
FIXED_GROUPS: dict[str, type] = {
    "trainer": TrainerConfig, "regularizer": RegularizerConfig, "decode": DecodeConfig, "sweep": SweepConfig,
}
PLUGINS_KEY = "plugins"  # the user's own modules to import, e.g. plugins=[my_models.py] (dlexp.config.plugins)
TOP_LEVEL_KEYS: dict[str, Any] = {
    "seed": Seed, "resume": Optional[str],
    "finding": Optional[str],  # a course preset's claim, checked from the run files (dlexp.course)
    "expected_test_acc": Optional[float],  # a published result the preset reproduces (the d2l_* table)
}


def keys_a_resume_may_change() -> set[str]:
    """Dotted keys (``trainer.epochs``) declared with ``may_change``, and ``resume`` itself."""
    keys = {"resume"}

    def walk(schema: type, prefix: str) -> None:
        for f in dataclasses.fields(schema):
            if f.metadata.get(RESUME_MAY_CHANGE):
                keys.add(prefix + f.name)
            elif f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
                walk(f.default_factory, f"{prefix}{f.name}.")

    for group, schema in FIXED_GROUPS.items():
        walk(schema, f"{group}.")
    return keys


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``; lists and other values stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
