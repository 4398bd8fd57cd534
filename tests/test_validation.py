"""Declared limits of config keys, suggestions for typos, override syntax, --cfg, run dirs and data content."""
from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Any, List, Literal, Optional

import numpy as np
import pytest
import torch
from annotated_types import Ge
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from conftest import assert_one_line_error, compose_cfg
from dlexp.cli.preflight import preflight
from dlexp.config.schema import FIXED_GROUPS
from dlexp.train import OPEN_GROUPS, validate
from dlexp.config.constraints import plain_dataclass, plain_type, suggest
from dlexp.errors import ConfigError, DataError, UserError

SMOKE = ["trainer=smoke", "trainer.progress=false"]

# (overrides, message): one bad value per group at least; each message starts with the key's full path.
BAD_VALUES = [
    (["optim.betas=[0.9]"], "optim.betas must have 2 values, got [0.9]"),
    (["optim.betas=[0.9,1.5]"], "optim.betas[1] must be in [0, 1), got 1.5"),
    (["optim.lr=0"], "optim.lr must be > 0, got 0.0"),
    (["optim=sgd", "optim.momentum=-0.5"], "optim.momentum must be in [0, 1), got -0.5"),
    (["optim=sgd_momentum", "optim.momentum=1.5"], "optim.momentum must be in [0, 1), got 1.5"),
    (["optim=rmsprop", "optim.momentum=1.0"], "optim.momentum must be in [0, 1), got 1.0"),
    (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size must be >= 1, got 0"),
    (["scheduler=plateau", "scheduler.factor=1.0"], "scheduler.factor must be in (0, 1), got 1.0"),
    (["dataset.resize=-1"], "dataset.resize must be auto, null or a positive number of pixels"),
    (["dataset.test_fraction=1.0"], "dataset.test_fraction must be in [0, 1), got 1.0"),
    (["dataset.normalize=Channel"], "dataset.normalize must be one of none, channel, feature, dataset, got 'Channel'"),
    (["seed=-1"], "seed must be >= 0, got -1"),
    (["model.hidden=[64,0]"], "model.hidden[1] must be >= 1, got 0"),
    (["model.dropout=1.0"], "model.dropout must be in [0, 1), got 1.0"),
    (["model=lenet", "model.pool=median"], "model.pool must be one of avg, max, got 'median'"),
    (["model=vgg11", "model.conv_arch=[[1,64,3]]"], "model.conv_arch[0] must have 2 values, got [1, 64, 3]"),
    (["model.init_range=0"], "model.init_range must be > 0, got 0.0"),
    (["split.val_fraction=0"], "split.val_fraction must be in (0, 1), got 0.0"),
    (["split=kfold", "split.k=1"], "split.k must be >= 2, got 1"),
    (["augment=flip", "augment.p=1.5"], "augment.p must be in [0, 1], got 1.5"),
    (["augment=scale", "augment.ratio=[0.5]"], "augment.ratio must have 2 values, got [0.5]"),
    (["shift=label", "shift.imbalance=0.5"], "shift.imbalance must be >= 1, got 0.5"),
    (["shift=label", "shift.correct=importance"], "shift.correct must be one of none, bbse, got 'importance'"),
    (["trainer.epochs=0"], "trainer.epochs must be >= 1, got 0"),
    (["trainer.early_stopping.mode=maximum"], "trainer.early_stopping.mode must be one of auto, min, max, got 'maximum'"),
    (["trainer.grad_clip=0"], "trainer.grad_clip must be > 0, got 0.0"),
    (["trainer.early_stopping.patience=0"], "trainer.early_stopping.patience must be >= 1, got 0"),
    (["regularizer.l1=-1"], "regularizer.l1 must be >= 0, got -1.0"),
    (["regularizer.dropout=1"], "regularizer.dropout must be in [0, 1), got 1.0"),
]


@pytest.mark.parametrize("overrides, message", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_declared_limits_fail_at_compose_time_with_the_full_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*overrides))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "args, message",
    [
        (["optim.betas=[0.9]"], "optim.betas must have 2 values"),
        (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size must be >= 1"),
        (["seed=-1"], "seed must be >= 0"),
    ],
)
def test_declared_limits_through_the_cli(tmp_path, in_process, args, message):
    proc = in_process(*SMOKE, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, message)


def test_in_range_values_pass_and_keep_their_types():
    cfg = validate(compose_cfg("optim.betas=[0.5,0.9]", "seed=0", "dataset.resize=12", "model=lenet", "model.pool=max"))
    assert list(cfg.optim.betas) == [0.5, 0.9] and cfg.dataset.resize == "12" and cfg.model.pool == "max"


@pytest.mark.parametrize("group", sorted(OPEN_GROUPS))
def test_every_config_key_of_every_builder_has_a_type(group):
    """A key without a hint would be checked for nothing: every keyword-only parameter declares its type."""
    registry = OPEN_GROUPS[group]
    for name in registry.names():
        for key, param in registry.config_keys(name).items():
            assert param.annotation is not inspect.Parameter.empty, f"{group}={name}: {key} has no type"


def test_plain_types_are_what_omegaconf_reads():
    assert plain_type(Optional[Annotated[int, Ge(1)]]) == Optional[int]
    assert plain_type(Literal["a", "b"]) is str
    assert plain_type(Annotated[List[Annotated[float, Ge(0)]], Ge(0)]) == List[float]
    for schema in FIXED_GROUPS.values():  # Literal and Annotated fields build a structured config
        node = OmegaConf.structured(plain_dataclass(schema))
        assert set(node.keys()) == {f.name for f in dataclasses.fields(schema)}
    with pytest.raises(ValidationError):  # the plain types still convert and refuse values
        OmegaConf.merge(OmegaConf.structured(plain_dataclass(FIXED_GROUPS["trainer"])), {"epochs": "many"})


# -- did you mean ---------------------------------------------------------------


def test_a_value_in_the_wrong_case_suggests_the_choice_not_a_lookalike():
    names = ["sigmoid", "relu", "elu", "gelu"]
    assert suggest("ReLU", names) == "relu"  # plain difflib on "ReLU" would pick "elu"
    assert suggest("sigmiod", names) == "sigmoid"
    assert suggest("zzz", names) is None
    with pytest.raises(ConfigError, match=r"got 'ReLU'\. Did you mean 'relu'\?$"):
        validate(compose_cfg("model.activation=ReLU"))


def test_a_group_option_in_the_wrong_case_is_suggested():
    with pytest.raises(ConfigError, match="unknown optim 'Adam'. Did you mean 'adam'?"):
        preflight(["optim=Adam"])


def test_hydra_group_options_and_names_are_checked_before_hydra_starts():
    with pytest.raises(ConfigError, match=r"unknown hydra/launcher 'jobllib'. Did you mean 'joblib'\? Choices: basic, joblib,"):
        preflight(["-m", "hydra/launcher=jobllib", "optim.lr=0.1,0.2"])
    with pytest.raises(ConfigError, match="no config group 'hydra/launchr'. Did you mean 'hydra/launcher'"):
        preflight(["hydra/launchr=joblib"])
    preflight(["-m", "hydra/launcher=joblib", "hydra/sweeper=dlexp_optuna", "hydra.sweep.dir=/tmp/dlexp_preflight_probe"])


@pytest.mark.parametrize(
    "key, meant",
    [("trainer.epoch", "trainer.epochs"), ("trainer.early_stopping.patiense", "trainer.early_stopping.patience"),
     ("model.hiden", "model.hidden"), ("optim.betaz", "optim.betas")],
)
def test_a_mistyped_key_suggests_the_real_one(key, meant):
    with pytest.raises(ConfigError, match=f"Did you mean '{meant}'"):
        preflight([f"{key}=3"])  # on the command line, before Hydra
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'. Did you mean '{meant}'"):
        validate(compose_cfg(f"+{key}=3"))  # after composing (e.g. a typo in a YAML file)


def test_a_mistyped_top_level_key_suggests_the_real_one():
    with pytest.raises(ConfigError, match="unknown top-level config key 'sed'. Did you mean 'seed'?"):
        validate(compose_cfg("+sed=1"))


# -- override syntax and --cfg ---------------------------------------------------


@pytest.mark.parametrize(
    "arg, hint",
    [
        ("optim.lr=1e-2,", "remove the extra ','"),
        ("model.hidden=[64,32", "close every '['"),
        ("model.hidden=[64]]", "'[' and ']' do not pair up"),
        ("dataset.root='my dir", "a quote is not closed"),
    ],
)
def test_a_grammar_error_is_one_line_naming_the_argument(arg, hint):
    with pytest.raises(ConfigError) as err:
        preflight([arg])
    assert str(err.value).startswith(f"cannot parse the override '{arg}'") and hint in str(err.value)


def test_a_grammar_error_on_the_cli(tmp_path, in_process):
    proc = in_process("optim.lr=1e-2,", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "cannot parse the override 'optim.lr=1e-2,'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["model.hiden=3"], "unknown key 'model.hiden' for model=mlp. Did you mean 'model.hidden'?"),
        (["optim.betas=[0.9]"], "optim.betas must have 2 values"),  # a value the schema refuses
    ],
)
def test_cfg_job_gets_the_checks_of_a_run(tmp_path, in_process, args, message):
    shown = in_process("--cfg", "job", *args, cwd=tmp_path)
    assert_one_line_error(shown, message)
    assert not (tmp_path / "outputs").exists()


def test_a_valid_cfg_job_still_prints():
    preflight(["--cfg", "job", "model=lenet", "model.pool=max"])  # no error, and no output dir needed
    with pytest.raises(ConfigError, match="model.pool must be one of avg, max"):
        preflight(["--cfg", "job", "model=lenet", "model.pool=median"])


# -- run dirs -----------------------------------------------------------------------


def test_a_run_dir_under_a_regular_file_is_one_line(tmp_path, in_process):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=f"{blocker} is not a directory; set hydra.run.dir="):
        preflight([f"hydra.run.dir={blocker}/run"])
    with pytest.raises(ConfigError, match=f"{blocker} is not a directory; set hydra.sweep.dir="):
        preflight(["-m", f"hydra.sweep.dir={blocker}/" + "${now:%H-%M-%S}"])
    proc = in_process(*SMOKE, f"hydra.run.dir={blocker}/" + "${now:%H-%M-%S}", cwd=tmp_path)
    assert_one_line_error(proc, f"{blocker} is not a directory")


def test_train_into_a_run_dir_under_a_regular_file(tmp_path):
    from dlexp.train import train

    blocker = tmp_path / "results"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write to output dir .*results/run"):
        train(compose_cfg(*SMOKE), blocker / "run")


# -- data content -------------------------------------------------------------------


def _arrays(tmp_path, name: str = "data.npz", **arrays: Any) -> list[str]:
    path = tmp_path / name
    np.savez(path, **arrays)
    return ["dataset=arrays", f"dataset.path={path}", "trainer.batch_size=4"]


def _load(overrides: list[str]):
    from dlexp.data import load_folds

    return load_folds(validate(compose_cfg(*overrides)), seed=0, device=torch.device("cpu"))


def test_string_labels_in_an_npz_are_one_line(tmp_path):
    x = np.zeros((6, 3), np.float32)
    with pytest.raises(DataError, match="array 'y' holds strings, not numbers; map each label to a class index"):
        _load(_arrays(tmp_path, x=x, y=np.array(["cat", "dog"] * 3)))
    with pytest.raises(DataError, match="array 'y' holds Python objects"):
        _load(_arrays(tmp_path, "obj.npz", x=x, y=np.array([1, "dog", None] * 2, dtype=object)))


def test_nan_and_inf_inputs_name_the_split_and_count(tmp_path):
    x, y = np.ones((20, 3), np.float32), np.arange(20) % 2
    x[3, 0], x[5, 2] = np.nan, np.inf
    x_test = np.ones((4, 3), np.float32)
    x_test[1] = np.nan
    with pytest.raises(DataError, match=r"train inputs of dataset 'arrays' hold 2 NaN or inf value\(s\) \(first in example 3\); drop"):
        _load(_arrays(tmp_path, x=x, y=y))
    with pytest.raises(DataError, match=r"test inputs of dataset 'arrays' hold 3 NaN or inf"):
        _load(_arrays(tmp_path, "t.npz", x=np.ones((20, 3), np.float32), y=y, x_test=x_test, y_test=y[:4]))
    y_reg = np.linspace(0, 1, 20).astype(np.float32)
    y_reg[7] = np.nan
    with pytest.raises(DataError, match=r"train targets of dataset 'arrays' hold 1 NaN"):
        _load(_arrays(tmp_path, "r.npz", x=np.ones((20, 3), np.float32), y=y_reg))


def test_an_empty_given_split_is_named(tmp_path):
    x, y = np.ones((20, 3), np.float32), np.arange(20) % 2
    with pytest.raises(DataError, match="the test split of dataset 'arrays' is empty"):
        _load(_arrays(tmp_path, x=x, y=y, x_test=x[:0], y_test=y[:0]))


def test_missing_values_of_tabular_data_are_left_to_its_encoder(tiny_datasets, monkeypatch):
    """house_prices keeps NaN for "missing" until its encoder fills them: no error, finite model inputs."""
    folds = _load(["dataset=house_prices", "model=linreg", *tiny_datasets.overrides("house_prices", monkeypatch)])
    x = next(iter(folds[0].train)).inputs
    assert torch.isfinite(x).all()
    assert torch.isnan(folds.source.train[0]).any()  # the raw pool did hold missing values


def test_a_nan_input_fails_before_training_via_the_cli(tmp_path, in_process):
    x, y = np.ones((20, 3), np.float32), np.arange(20) % 2
    x[0, 0] = np.nan
    proc = in_process(*SMOKE, *_arrays(tmp_path, x=x, y=y), "model=softmax", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, "train inputs of dataset 'arrays' hold 1 NaN or inf value(s)")
    assert "optim.lr" not in proc.stderr
