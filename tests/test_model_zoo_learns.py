"""Every image model on the default data (digits) with the optimizer the README shows (optim=sgd_momentum,
with the model's own recipe where it has one): a small budget must end with a test score well above chance
(0.1 for 10 classes) and no divergence.

Models that do not learn within such a budget are listed with what was measured, so that the list is a
known gap, not a silent one: a new model must be added to one of the two."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dlexp.config.files import CONFIG_DIR, group_options

from dlexp.models import MODELS
from dlexp.models.seq2seq_base import model_task

# narrow widths keep each run to seconds on one thread; 4 epochs of the 1,221 training digits
LEARNS = {
    "mlp": [], "softmax": [], "lenet_bn": [], "resnet18": ["model.width_div=4"], "densenet": ["model.width_div=4"],
}
# measured with 4 epochs at these widths (benchmarks/bench_models.py has full-width numbers): test acc 0.103
DOES_NOT_LEARN_IN_A_SMALL_BUDGET = {
    "lenet": "sigmoid LeNet stays at chance on 12x12 digits (needs dataset.resize=28 model.init=xavier_uniform)",
    "alexnet": "width_div=8: 0.103 after 4 epochs",
    "vgg11": "width_div=8: 0.103 after 4 epochs",
    "nin": "width_div=4: 0.103 after 4 epochs",
    "googlenet": "width_div=4: 0.103 after 4 epochs",
}


def test_every_image_model_is_classified():
    """Every option of conf/model/ whose model classifies fixed-size inputs (not linreg's regression)."""
    options = group_options([CONFIG_DIR], "model")
    builders = {o: OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{o}.yaml").name for o in options}
    image_models = {o for o, b in builders.items() if b in MODELS and model_task(b) != "translation" and b != "linreg"}
    assert image_models == set(LEARNS) | set(DOES_NOT_LEARN_IN_A_SMALL_BUDGET)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LEARNS))
def test_the_model_learns_digits_with_sgd_momentum(run_train, name):
    result, run_dir = run_train(f"model={name}", "optim=sgd_momentum", *LEARNS[name], "trainer.epochs=4",
                                "trainer.checkpoints=false")
    summary = result.summary
    assert summary["status"] == "completed" and summary["diagnosis"] != "diverging"
    assert summary["test/acc"] > 0.5, summary["test/acc"]  # 5x chance
