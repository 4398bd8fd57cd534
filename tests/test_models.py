"""The model zoo: every registered model is sized from the data, trains, and initializes as configured.

Tests loop over ``MODELS.names()`` and ``INITS.names()``, so a new model or
init is tested the day it is registered. The fast tier pairs each model with one image dataset (each
dataset with at least one model); every other pair, the multirun that trains every model option and
the quality bar are marked slow.
"""
from __future__ import annotations

import csv
import functools
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from conftest import compose_cfg, read_json, tiered
from dlexp.config.files import CONFIG_DIR
from dlexp.train import validate
from dlexp.errors import ConfigError
from dlexp.models import MODELS, build_model, count_parameters, input_size
from dlexp.models.init import INITS, InitConfig, apply_init
from dlexp.models.seq2seq_base import TRANSLATION, model_task

# Models of fixed-size inputs; the translation models have their own tests (test_translation_models.py).
FIXED_INPUT_MODELS = [name for name in MODELS.names() if model_task(name) != TRANSLATION]

CHANNELS, CLASSES = 3, 7  # deliberately not 1 and 10: nothing may hard-code the digits' shape


def _small(name: str) -> dict:
    """Builder keys that make a model tiny (narrow convs, small FC layers) where it has them."""
    keys = MODELS.config_keys(name)
    return {k: v for k, v in {"width_div": 8, "fc_width": 32}.items() if k in keys}


@functools.lru_cache(maxsize=None)
def _side(name: str) -> int:
    """32, or the model's smallest input side when 32 is too small (read from its error message)."""
    try:
        MODELS.build(name, (CHANNELS, 32, 32), CLASSES, **_small(name))
        return 32
    except ConfigError as err:
        return int(re.search(r"at least (\d+)x\1", str(err)).group(1))


def _build(name: str, **overrides) -> tuple[nn.Module, tuple[int, ...]]:
    shape = (CHANNELS, _side(name), _side(name))
    return MODELS.build(name, shape, CLASSES, **{**_small(name), **overrides}), shape


def _kernels(model: nn.Module) -> list[nn.Module]:
    """The layers with a weight matrix / conv kernel, i.e. what model.init initializes."""
    return [m for m in model.modules() if isinstance(getattr(m, "weight", None), nn.Parameter) and m.weight.dim() >= 2]


@pytest.mark.parametrize("name", FIXED_INPUT_MODELS)
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model, shape = _build(name)
    x, y = torch.randn(4, *shape), torch.randint(0, CLASSES, (4,))
    out = model(x)
    assert out.shape == (4, CLASSES)
    F.cross_entropy(out, y).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {pname}"
    # the signal reaches the first layer (a narrow ReLU path may be dead, but not the whole net)
    assert next(model.parameters()).grad.abs().sum() > 0


@pytest.mark.parametrize("name", FIXED_INPUT_MODELS)
def test_eval_mode_is_deterministic_and_train_mode_drops_out(name):
    torch.manual_seed(0)
    model, shape = _build(name)
    x = torch.randn(4, *shape)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
            model.train()
            assert not torch.equal(model(x), model(x))  # dropout is live in training


@pytest.mark.parametrize("name", FIXED_INPUT_MODELS)  # translation models: tests/test_translation_models.py
def test_regularizer_dropout_reaches_every_model(name):
    """regularizer.dropout is never ignored: every model gets an nn.Dropout(0.5) that is live in training."""
    torch.manual_seed(0)
    side = _side(name)
    x = torch.randn(8, CHANNELS, side, side)

    def outputs(p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        model = build_model(OmegaConf.create({"name": name, **_small(name)}), (CHANNELS, side, side), CLASSES, dropout=p)
        assert any(isinstance(m, nn.Dropout) and m.p == p for m in model.modules()) or p == 0
        with torch.no_grad():  # two train-mode passes (BatchNorm uses batch statistics: deterministic), one eval
            return model.train()(x), model.train()(x), model.eval()(x)

    first, second, evaluated = outputs(0.5)
    assert not torch.allclose(first, evaluated) and not torch.allclose(first, second)  # new masks every pass
    first, second, _ = outputs(0.0)
    assert torch.equal(first, second)  # the randomness above came from the dropout


def test_lenet_is_the_textbook_lenet():
    model = MODELS.build("lenet", (1, 28, 28), 10)
    assert count_parameters(model) == 61_706
    assert isinstance(model[1], nn.Sigmoid) and isinstance(model[2], nn.AvgPool2d)
    # The classifier follows the input: at 32x32 the convs end at (16, 6, 6), not (16, 5, 5).
    assert count_parameters(MODELS.build("lenet", (1, 32, 32), 10)) == 61_706 + (16 * 6 * 6 - 16 * 5 * 5) * 120
    relu_max = MODELS.build("lenet", (1, 28, 28), 10, activation="relu", pool="max")
    assert isinstance(relu_max[1], nn.ReLU) and isinstance(relu_max[2], nn.MaxPool2d)
    bn = MODELS.build("lenet_bn", (1, 28, 28), 10)
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in bn.modules()) == 4  # 2 convs + 2 hidden FC


@pytest.mark.parametrize("name", FIXED_INPUT_MODELS)
def test_too_small_input_names_the_minimum_and_the_fix(name):
    side = _side(name)
    if side == 32:  # 32x32 works: check that 8x8 does too, or fails with the hint
        try:
            MODELS.build(name, (1, 8, 8), CLASSES, **_small(name))
            return
        except ConfigError as err:
            side = int(re.search(r"at least (\d+)x", str(err)).group(1))
    MODELS.build(name, (1, side, side), CLASSES, **_small(name))(torch.zeros(2, 1, side, side))
    with pytest.raises(ConfigError, match=rf"needs images of at least {side}x{side} .*use dataset\.resize=\d+"):
        MODELS.build(name, (1, side - 1, side - 1), CLASSES, **_small(name))


def test_lenet_on_8x8_digits_kept_small_says_to_resize_to_28(run_train):
    with pytest.raises(ConfigError, match=r"LeNet needs images of at least 12x12 but the data is 8x8; use dataset\.resize=28"):
        run_train("model=lenet", "dataset.resize=null")


def test_declared_minimum_input_size_is_the_real_one():
    """INPUT_SIZES must agree with the layers: the declared minimum side builds, one pixel less does not."""
    for name in MODELS.names():
        sizes = input_size(name, {})
        if sizes is None:
            continue
        minimum, textbook, auto = sizes
        assert textbook >= minimum and textbook >= auto >= minimum
        MODELS.build(name, (1, minimum, minimum), CLASSES, **_small(name))
        if minimum > 1:
            with pytest.raises(ConfigError, match=f"at least {minimum}x{minimum}"):
                MODELS.build(name, (1, minimum - 1, minimum - 1), CLASSES, **_small(name))
    assert input_size("vgg", {"conv_arch": [[1, 8], [1, 8]]})[0] == 4
    assert input_size("densenet", {"block_convs": [2, 2]})[0] == 5
    MODELS.build("densenet", (1, 5, 5), CLASSES, block_convs=[2, 2], width_div=8)
    with pytest.raises(ConfigError, match="at least 5x5"):
        MODELS.build("densenet", (1, 4, 4), CLASSES, block_convs=[2, 2], width_div=8)


IMAGE_DATASETS = ["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "image_folder", "image_csv"]
# registry name -> the conf/model option that selects it (vgg's YAML is vgg11)
MODEL_YAML = {OmegaConf.load(p).name: p.stem for p in sorted(Path(CONFIG_DIR, "model").glob("*.yaml"))}


# every model that takes images (not the translation ones) with every image dataset; the fast tier takes
# model i with dataset i (mod 7), so that each model and each dataset is there
MODEL_DATASET = [(name, dataset) for dataset in IMAGE_DATASETS for name in FIXED_INPUT_MODELS]
MODEL_DATASET_IDS = [f"{name}-{dataset}" for name, dataset in MODEL_DATASET]
DIAGONAL = {f"{name}-{IMAGE_DATASETS[i % len(IMAGE_DATASETS)]}" for i, name in enumerate(FIXED_INPUT_MODELS)}


@pytest.mark.parametrize("name, dataset", tiered(MODEL_DATASET, fast=DIAGONAL, ids=MODEL_DATASET_IDS))
def test_every_model_composes_with_every_image_dataset(name, dataset, tiny_datasets, monkeypatch):
    """With the default dataset.resize=auto, images smaller than a model's minimum are resized up to it."""
    from dlexp.data import load_data

    small = [f"model.{k}={v}" for k, v in _small(name).items()]
    overrides = [f"model={MODEL_YAML[name]}", f"dataset={dataset}", *small, *tiny_datasets.overrides(dataset, monkeypatch)]
    cfg = validate(compose_cfg(*overrides))
    data = load_data(cfg, seed=0, device=torch.device("cpu"))
    sizes = input_size(name, {})
    if sizes is not None:
        assert min(data.input_shape[1:]) >= sizes[0]
    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.regularizer.dropout).eval()
    x = next(iter(data.val)).inputs
    assert model(x[:2]).shape == (min(2, len(x)), data.num_classes)


def test_conv_net_on_flat_data_says_so():
    with pytest.raises(ConfigError, match=r"ResNet-18 needs image examples .* shape \(2,\)"):
        MODELS.build("resnet18", (2,), 1)


def _expected_std(init: str, weight: torch.Tensor, cfg: InitConfig) -> float:
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    return {
        "normal": cfg.init_sigma,
        "uniform": cfg.init_range / math.sqrt(3),  # U(-a, a) has std a / sqrt(3)
        "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)),
        "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
        "kaiming_uniform": math.sqrt(2 / fan_in),
        "kaiming_normal": math.sqrt(2 / fan_in),
        "orthogonal": math.sqrt(1 / fan_in),  # orthonormal rows of length 1 over fan_in entries
    }[init]


@pytest.mark.parametrize("init", INITS.names())
def test_every_init_sets_the_weights_and_zeroes_the_biases(init):
    cfg = validate(compose_cfg("model=lenet", f"model.init={init}", "model.init_sigma=0.05", "model.init_value=0.3"))
    settings = InitConfig(**{k: cfg.model[k] for k in ("init", "init_sigma", "init_range", "init_value")})
    torch.manual_seed(0)
    model = build_model(cfg.model, (1, 28, 28), 10)
    torch.manual_seed(0)
    plain = MODELS.build("lenet", (1, 28, 28), 10)  # PyTorch's own init, same random draws
    if init == "default":
        for a, b in zip(model.state_dict().values(), plain.state_dict().values()):
            assert torch.equal(a, b)
        return
    for layer in _kernels(model):
        w = layer.weight.detach()
        assert torch.count_nonzero(layer.bias) == 0
        if init in ("constant", "zeros"):
            assert torch.all(w == (settings.init_value if init == "constant" else 0.0))
            continue
        if init == "uniform":
            assert w.abs().max() <= settings.init_range
        if init == "orthogonal" and w.shape[0] <= w[0].numel():
            flat = w.flatten(1)  # (out, in*kh*kw): orthonormal rows
            assert torch.allclose(flat @ flat.T, torch.eye(len(flat)), atol=1e-4)
        if w.numel() >= 10_000:  # enough draws to pin the spread down to a few percent
            assert w.std().item() == pytest.approx(_expected_std(init, w, settings), rel=0.05)
            assert abs(w.mean().item()) < 0.1 * w.std().item()


@pytest.mark.parametrize("name", FIXED_INPUT_MODELS)
def test_init_reaches_every_layer_and_spares_the_norms(name):
    model, _ = _build(name)
    apply_init(model, InitConfig(init="constant", init_value=0.02))
    assert _kernels(model)
    for layer in _kernels(model):
        assert torch.all(layer.weight == 0.02)
        assert layer.bias is None or torch.count_nonzero(layer.bias) == 0
    for norm in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)  # BN keeps its identity init


def test_bad_init_settings_are_config_errors():
    with pytest.raises(ConfigError, match="model.init must be one of default, normal, .*got 'kaiming'"):
        validate(compose_cfg("model.init=kaiming"))
    with pytest.raises(ConfigError, match="model.init_sigma must be > 0"):
        validate(compose_cfg("model.init=normal", "model.init_sigma=0"))


def test_constant_init_keeps_the_hidden_units_identical(run_train, tmp_path):
    """The textbook's symmetry lesson: identical units get identical gradients, so they never differ."""
    rows = {}
    for init in ("constant", "xavier_uniform"):
        _, run_dir = run_train(
            "model=mlp", "model.hidden=[16]", "model.dropout=0", f"model.init={init}", "model.init_value=0.05", "trainer=smoke",
            run_dir=tmp_path / init,
        )
        rows[init] = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]["1.weight"]  # (16, 64)
        summary = read_json(run_dir / "summary.json")
        assert summary["init"] == init and summary["epochs_run"] == 2
    sym = rows["constant"]
    assert torch.allclose(sym, sym[:1].expand_as(sym), rtol=0, atol=1e-6)  # all 16 hidden units alike
    assert not torch.allclose(sym, torch.full_like(sym, 0.05), atol=1e-3)  # ... though training moved them
    free = rows["xavier_uniform"]
    assert (free - free[:1]).abs().max() > 0.1
    assert read_json(tmp_path / "constant" / "summary.json")["init_value"] == 0.05


@pytest.mark.slow  # 13 epochs at 28x28
def test_lenet_bn_beats_95_percent_where_sigmoid_lenet_starts_slowly(run_train, tmp_path):
    """The README's quality bar: digits at 28x28, 10 epochs of Adam at a constant lr 1e-3."""
    textbook = ("optim.lr=0.001", "scheduler=none")
    _, bn_dir = run_train("model=lenet_bn", "dataset.resize=28", "trainer.epochs=10", *textbook, run_dir=tmp_path / "bn")
    assert read_json(bn_dir / "summary.json")["test/acc"] >= 0.95
    _, plain_dir = run_train("model=lenet", "dataset.resize=28", "trainer.epochs=3", *textbook, run_dir=tmp_path / "plain")
    with open(plain_dir / "metrics.csv", newline="") as handle:
        val_acc = [float(r["val/acc"]) for r in csv.DictReader(handle)]
    assert max(val_acc) < 0.3  # still near chance (0.1) after 3 epochs


# -- the summary command ------------------------------------------------------

LENET_SHAPES = [
    (1, 6, 28, 28), (1, 6, 28, 28), (1, 6, 14, 14), (1, 16, 10, 10), (1, 16, 10, 10), (1, 16, 5, 5),
    (1, 400), (1, 120), (1, 120), (1, 84), (1, 84), (1, 10),
]


def test_summary_lists_each_layer_of_lenet():
    from dlexp.train import summarize_layers as summarize

    facts, rows, total = summarize(compose_cfg("model=lenet", "dataset.resize=28"))
    assert total == 61_706 == sum(r.params for r in rows)
    assert [r.shape for r in rows] == LENET_SHAPES
    assert [r.params for r in rows if r.params] == [156, 2_416, 48_120, 10_164, 850]
    assert facts["input"] == (1, 1, 28, 28) and facts["outputs"] == 10


def test_summary_depth_shows_nested_blocks():
    from dlexp.train import summarize_layers as summarize

    _, rows, total = summarize(compose_cfg("model=googlenet", "dataset.resize=96", "model.width_div=16"), depth=2)
    inception = [r for r in rows if r.kind == "Inception"]
    assert len(inception) == 9 and all(r.level == 2 for r in inception)
    assert sum(r.params for r in rows if r.level == 1) == total
    assert rows[-1].shape == (1, 10)


def test_summary_command_prints_the_table_and_writes_nothing(tmp_path, in_process):
    proc = in_process("model=lenet", "dataset.resize=28", "model.init=xavier_uniform", cwd=tmp_path, module="dlexp.summary")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "model=lenet dataset=digits input=(1, 1, 28, 28) outputs=10 init=xavier_uniform" in lines[0]
    assert re.search(r"AvgPool2d\s+│\s+\(1, 16, 5, 5\)\s+│\s+0", proc.stdout)
    assert re.search(r"Linear\s+│\s+\(1, 120\)\s+│\s+48,120", proc.stdout)
    assert lines[-1] == "total params: 61,706"
    assert list(tmp_path.iterdir()) == []  # no run dir, no outputs/


def test_summary_user_errors_are_one_line_and_exit_2(capsys):
    from dlexp.cli.summary import main

    for argv, message in [
        (["model=lenet", "dataset.resize=null"], "LeNet needs images of at least 12x12 but the data is 8x8; use dataset.resize=28"),
        (["model=lenett"], "unknown model 'lenett'. Did you mean 'lenet'?"),
        (["model=lenet", "dataset.resize=28", "model.pool=median"], "model.pool must be one of avg, max, got 'median'"),
        (["--depth", "0"], "--depth must be a positive integer"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_summary_main_takes_a_config_dir(tmp_path, capsys):
    from dlexp.cli.summary import main

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tiny_vgg.yaml").write_text(
        "name: vgg\nconv_arch: [[1, 4], [1, 8]]\nactivation: relu\ndropout: 0.5\nwidth_div: 1\nfc_width: 16\n"
    )
    assert main(["--config-dir", str(tmp_path), "model=tiny_vgg", "dataset.resize=16"]) == 0
    out = capsys.readouterr().out
    assert "(1, 8, 4, 4)" in out and "(1, 128)" in out
    assert out.strip().splitlines()[-1] == f"total params: {4 * 9 + 4 + 8 * 4 * 9 + 8 + 128 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10:,}"
    assert main(["model=tiny_vgg"]) == 2  # not found without the config dir
    assert "unknown model 'tiny_vgg'" in capsys.readouterr().err


# -- every model through the real CLI -----------------------------------------

MODEL_OPTIONS = sorted(
    p.stem for p in Path(CONFIG_DIR, "model").glob("*.yaml") if OmegaConf.load(p).name in FIXED_INPUT_MODELS
)


@pytest.mark.slow  # NiN and VGG at 68x68; the fast tier builds and steps every model (above), and trains several
def test_every_model_yaml_trains_a_smoke_epoch_through_the_cli(tmp_path, in_process):
    """One multirun over every conf/model option: digits resized past the largest minimum (NiN: 67)."""
    sweep_dir = tmp_path / "sweep"
    proc = in_process(
        "-m", f"model={','.join(MODEL_OPTIONS)}", "dataset.resize=68", "trainer=smoke", "trainer.epochs=1",
        "trainer.batch_size=8", "trainer.limit_train_batches=2", "trainer.limit_eval_batches=1",
        "trainer.checkpoints=false", "trainer.progress=false", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    from dlexp.results.report import find_job_dirs

    jobs = [d / "summary.json" for d in find_job_dirs(sweep_dir)]  # in the order the sweep launched them
    assert len(jobs) == len(MODEL_OPTIONS)
    for option, path in zip(MODEL_OPTIONS, jobs):
        summary = read_json(path)
        assert summary["status"] == "completed", (option, summary)
        builder = OmegaConf.load(Path(CONFIG_DIR, "model", f"{option}.yaml")).name
        assert summary["model"] == option and summary.get("model_builder", option) == builder
        assert summary["epochs_run"] == 1 and summary["init"] == "default"
        assert 0.0 <= summary["test/acc"] <= 1.0 and math.isfinite(summary["test/loss"])
        if option == "lenet":  # the first FC layer sized itself to 68x68 input: 16 x 15 x 15 features
            assert summary["num_params"] == 156 + 2_416 + (16 * 15 * 15 * 120 + 120) + 10_164 + 850
        with open(path.parent / "metrics.csv", newline="") as handle:
            assert len(list(csv.DictReader(handle))) == 1

