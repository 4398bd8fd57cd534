"""Every image model on the default data (digits) with the optimizer the README shows (optim=sgd_momentum,
with the model's own recipe where it has one): a small budget must end with a test score well above chance
(0.1 for 10 classes) and no divergence.

A new model must be added to LEARNS, with the budget it learns in (or a recipe in conf/recipe/ that makes it
learn)."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dlexp.config.files import CONFIG_DIR, group_options

from dlexp.models import MODELS
from dlexp.models.seq2seq_base import model_task

# Each model's budget: narrow widths and few epochs keep each run to seconds on one thread (1,221 training
# digits). Sigmoid LeNet, cheap at full width, gets 15 epochs, as it sits at chance for the first 5 or so;
# NiN learns slowest and needs half its width.
LEARNS = {
    "mlp": ["trainer.epochs=4"],
    "softmax": ["trainer.epochs=4"],
    "lenet": ["trainer.epochs=15"],
    "lenet_bn": ["trainer.epochs=4"],
    "alexnet": ["model.width_div=4", "model.fc_width=512", "trainer.epochs=6"],
    "vgg11": ["model.width_div=8", "trainer.epochs=8"],
    "nin": ["model.width_div=2", "trainer.epochs=16"],
    "googlenet": ["model.width_div=4", "trainer.epochs=10"],
    "resnet18": ["model.width_div=4", "trainer.epochs=4"],
    "densenet": ["model.width_div=4", "trainer.epochs=4"],
}


def test_every_image_model_is_classified():
    """Every option of conf/model/ whose model classifies fixed-size inputs (not linreg's regression)."""
    options = group_options([CONFIG_DIR], "model")
    builders = {o: OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{o}.yaml").name for o in options}
    image_models = {o for o, b in builders.items() if b in MODELS and model_task(b) != "translation" and b != "linreg"}
    assert image_models == set(LEARNS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LEARNS))
def test_the_model_learns_digits_with_sgd_momentum(run_train, name):
    result, run_dir = run_train(f"model={name}", "optim=sgd_momentum", *LEARNS[name], "trainer.checkpoints=false")
    summary = result.summary
    assert summary["status"] == "completed" and summary["diagnosis"] != "diverging"
    assert summary["test/acc"] > 0.5, summary["test/acc"]  # 5x chance
