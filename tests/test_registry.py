import pytest

from dlexp.data import DATASETS, SPLITS
from dlexp.errors import ConfigError
from dlexp.models import MODELS
from dlexp.training.optim import OPTIMIZERS
from dlexp.training.schedulers import SCHEDULERS
from dlexp.config.registry import Registry
from dlexp.tasks import LOSSES, METRICS


def test_duplicate_registration_raises():
    reg = Registry("widget")
    reg.register("a")(lambda: 1)
    from dlexp.config.registry import NameTaken

    with pytest.raises(NameTaken, match="widget 'a' is already registered"):
        reg.register("a")(lambda: 2)
    assert reg.build("a") == 1  # the first entry was not overwritten


def test_unknown_name_lists_choices_and_suggests():
    reg = Registry("model")
    for name in ("lenet", "alexnet", "mlp"):
        reg.register(name)(lambda: None)
    with pytest.raises(ConfigError) as info:
        reg.build("lenett")
    message = str(info.value)
    assert "unknown model 'lenett'" in message
    assert "Did you mean 'lenet'?" in message
    assert "Choices: alexnet, lenet, mlp" in message


def test_config_keys_are_the_keyword_only_parameters():
    reg = Registry("thing")

    @reg.register("t")
    def build(context, *, width: int = 3, depth: int = 2):
        return context, width, depth

    assert list(reg.config_keys("t")) == ["width", "depth"]
    assert reg.build("t", "ctx", width=5) == ("ctx", 5, 2)


@pytest.mark.parametrize(
    "registry, expected",
    [
        (MODELS, {"linreg", "softmax", "mlp", "lenet", "lenet_bn", "alexnet", "vgg", "nin", "googlenet", "resnet18", "densenet"}),
        (DATASETS, {"digits", "synthetic_linear"}),
        (SPLITS, {"holdout"}),
        (OPTIMIZERS, {"sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamw"}),
        (SCHEDULERS, {"none", "step", "multistep", "exponential", "cosine", "plateau"}),
        (LOSSES, {"cross_entropy", "mse"}),
        (METRICS, {"acc", "rmse"}),
    ],
)
def test_registries_hold_the_documented_entries(registry, expected):
    assert expected <= set(registry.names())
