"""Every YAML under conf/ composes, validates and builds; typos and bad types fail with the key's path."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY_CONV, compose_cfg
from dlexp.cli.preflight import preflight
from dlexp.config.files import CONFIG_DIR
from dlexp.config.schema import FIXED_GROUPS
from dlexp.config.validate import builder_schema
from dlexp.train import OPEN_GROUPS, validate
from dlexp.errors import ConfigError

OPTION_FILES = sorted(p for p in Path(CONFIG_DIR).glob("*/*.yaml"))


def _id(path: Path) -> str:
    return f"{path.parent.name}={path.stem}"


def test_there_are_options_in_every_group():
    groups = {p.parent.name for p in OPTION_FILES}
    assert {"model", "dataset", "split", "optim", "regularizer", "scheduler", "trainer"} <= groups


@pytest.mark.parametrize("path", OPTION_FILES, ids=_id)
def test_option_composes_validates_and_builds(path, tiny_datasets, monkeypatch):
    from dlexp.data import load_data
    from dlexp.models import build_model
    from dlexp.training.optim import build_optimizer
    from dlexp.training.schedulers import build_scheduler

    group, option = path.parent.name, path.stem
    if _is_translation(path):
        return _build_translation_option(group, option, tiny_datasets.overrides(option, monkeypatch))
    extra = ["model=linreg"] if group == "dataset" and option == "synthetic_linear" else []
    if group == "model" and option == "linreg":
        extra = ["dataset=synthetic_linear"]
    if group == "shift" and option == "concept":
        extra = ["dataset=hyperplane"]  # a rule to move: a synthetic dataset's labelling
    if group == "model" and "width_div" in OmegaConf.load(path):
        extra = TINY_CONV
    if group == "dataset":  # file-based datasets read tiny files in their real formats
        extra += tiny_datasets.overrides(option, monkeypatch)
    if group == "dataset" and option == "highdim_linear":
        extra += ["trainer.batch_size=5"]  # 20 training examples
    if group == "experiment":  # a preset's dataset from tiny files; its conv nets narrow, its batch small
        preset = compose_cfg(f"experiment={option}")
        extra += tiny_datasets.overrides(preset.dataset.name, monkeypatch) + ["trainer.batch_size=16"]
        extra += TINY_CONV if "width_div" in preset.model else []
    cfg = validate(compose_cfg(f"{group}={option}", *extra))
    data = load_data(cfg, seed=0, device=torch.device("cpu"))
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularizer.dropout)
    x = next(iter(data.train)).inputs
    assert model(x).shape == (x.shape[0], data.num_classes)
    optimizer = build_optimizer(cfg.optim, model, cfg.regularizer.weight_decay)
    build_scheduler(cfg.scheduler, optimizer, cfg.trainer.epochs, "max")


def _is_translation(path: Path) -> bool:
    from dlexp.models.seq2seq_base import TRANSLATION, model_task

    group, name = path.parent.name, OmegaConf.load(path).get("name")
    if group == "experiment":  # a preset: translation when it trains on sentence pairs
        return compose_cfg(f"experiment={path.stem}").dataset.name in ("translation", "numbers")
    return (group == "dataset" and name in ("translation", "numbers")) or (group == "model" and model_task(name) == TRANSLATION)


def _build_translation_option(group: str, option: str, extra: list[str]) -> None:
    """Translation data and models: the dataset builds, and the model runs a teacher-forced batch of it."""
    from dlexp.config.registry import builder_kwargs
    from dlexp.data import DATASETS
    from dlexp.data.text import BOS_ID, lengths
    from dlexp.models import build_model

    pair = {"model": ["dataset=numbers", "dataset.high=300"], "experiment": ["dataset.high=300"]}.get(
        group, ["model=seq2seq", "model.num_hiddens=16"])
    cfg = validate(compose_cfg(f"{group}={option}", *pair, *extra))
    source = DATASETS.build(cfg.dataset.name, **builder_kwargs(cfg.dataset))
    src, tgt = source.train[0][:8], source.train[1][:8]  # (8, S), (8, T)
    model = build_model(
        cfg.model, tuple(src.shape[1:]), source.num_classes, cfg.regularizer.dropout,
        context={"src_vocab_size": len(source.context["src_vocab"])},
    )
    tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS_ID), tgt[:, :-1]], dim=1)
    assert model(src, lengths(src), tgt_in).shape == (8, tgt.shape[1], source.num_classes)


@pytest.mark.parametrize("path", [p for p in OPTION_FILES if p.parent.name in OPEN_GROUPS], ids=_id)
def test_yaml_lists_every_key_of_its_builder(path):
    """Every builder parameter appears in its YAML, so users can override it without '+'."""
    node = OmegaConf.load(path)
    registry = OPEN_GROUPS[path.parent.name]
    schema = builder_schema(registry, node.name)
    assert set(node.keys()) == {f.name for f in dataclasses.fields(schema)}
    if registry.common is not None:  # keys every entry takes, e.g. model.init*
        assert {f.name for f in dataclasses.fields(registry.common)} <= set(node.keys())


@pytest.mark.parametrize("group", sorted(FIXED_GROUPS))
def test_fixed_group_yamls_list_every_schema_key(group):
    schema_keys = {f.name for f in dataclasses.fields(FIXED_GROUPS[group])}
    for path in Path(CONFIG_DIR, group).glob("*.yaml"):
        node = OmegaConf.load(path)
        if "defaults" in node:
            continue
        assert set(node.keys()) == schema_keys, path


def test_validate_converts_types():
    cfg = validate(compose_cfg("regularizer.weight_decay=0", "model.hidden=[32,16]"))
    assert isinstance(cfg.regularizer.weight_decay, float)
    assert list(cfg.model.hidden) == [32, 16]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+model.hiden=3"], "unknown config key 'model.hiden'"),
        (["+trainer.epoch=3"], "unknown config key 'trainer.epoch'"),
        (["trainer.epochs=abc"], "bad value for 'trainer.epochs'"),
        (["trainer.early_stopping.patience=soon"], "bad value for 'trainer.early_stopping.patience'"),
        (["model.hidden=wide"], r"'model.hidden' takes a list, got 'wide'; write it in brackets, e.g. model.hidden=\[256\]"),
        (["+lr=0.1"], "unknown top-level config key 'lr'"),
        (["seed=abc"], "config 'seed' must be of type int"),
    ],
)
def test_bad_keys_and_types_name_the_full_path(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(compose_cfg(*overrides))


def test_schema_is_checked_for_a_yaml_typo(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "typo.yaml").write_text("name: mlp\nhiden: [3]\n")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra.searchpath=[file://{tmp_path}]", "model=typo"])
    with pytest.raises(ConfigError, match="unknown config key 'model.hiden'"):
        validate(cfg)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model=lenett"], "unknown model 'lenett'"),
        (["optim=adamm"], "Did you mean 'adam'?"),
        (["-m", "optim=adam,sgdd"], "unknown optim 'sgdd'"),
        (["model.hiden=3"], "unknown key 'model.hiden' for model=mlp"),
        (["model=softmax", "model.hidden=[3]"], "unknown key 'model.hidden' for model=softmax"),
        (["trainer.early_stopping.patiense=3"], "unknown key 'trainer.early_stopping.patiense'"),
        (["-m", "model=lenet,mlp", "model.width_div=2"], "unknown key 'model.width_div' for model=mlp"),
        (["-m", "model=lenet,vgg11", "model.pool=max"], "unknown key 'model.pool' for model=vgg11"),
        (["-m", "model=vgg11,alexnet", "model.width_div=4"], r"lacks.*write \+\+model.width_div=4"),
    ],
)
def test_preflight_rejects_typos_on_the_command_line(argv, message):
    with pytest.raises(ConfigError, match=message):
        preflight(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["model=mlp", "model.hidden=[3]", "optim=sgd_momentum", "optim.lr=0.1"],
        ["-m", "optim=adam,sgd", "regularizer.weight_decay=0,1e-4"],
        ["+model.extra=1"],  # left to the schema check after composing
        ["--cfg", "job", "model=softmax"],
        ["trainer=smoke", "trainer.epochs=1"],
        ["-m", "model=vgg11,alexnet", "++model.width_div=4"],  # a key of the swept options only: ++
        ["-m", "model=mlp,lenet", "model.activation=tanh"],  # a key of every option and of the default
    ],
)
def test_preflight_accepts_valid_command_lines(argv):
    preflight(argv)


def test_user_config_dir_adds_options(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "wide_mlp.yaml").write_text("name: mlp\nhidden: [512]\nactivation: relu\ndropout: 0.0\nbatchnorm: false\n")
    preflight(["--config-dir", str(tmp_path), "model=wide_mlp", "model.hidden=[64]"])
    with pytest.raises(ConfigError):
        preflight(["model=wide_mlp"])
