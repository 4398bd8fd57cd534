"""The training loop's behaviour: regularizers, early stopping, schedulers, determinism, accuracy."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from conftest import compose_cfg, read_json, untimed_rows
from dlexp.train import validate
from dlexp.training.step import StepConfig, training_step
from dlexp.training.stopping import EarlyStopping
from dlexp.tasks import Batch, build_task
from dlexp.models import build_model


def _metrics(run_dir):
    return untimed_rows(run_dir)


@pytest.mark.slow  # three full runs of the default experiment (40 epochs, early stopping)
def test_default_experiment_reaches_97_percent_on_digits(run_train, tmp_path):
    """The headline number: mean test accuracy over seeds 0, 1, 2 (each run is deterministic on the CPU)."""
    accuracies = []
    for seed in (0, 1, 2):
        result, run_dir = run_train(f"seed={seed}", "trainer.checkpoints=false", run_dir=tmp_path / f"seed{seed}")
        summary = read_json(run_dir / "summary.json")
        assert result.objective == summary["best/val/acc"]
        accuracies.append(summary["test/acc"])
    assert sum(accuracies) / 3 >= 0.97, accuracies


def test_regression_reports_rmse_and_recovers_the_true_weights(run_train):
    result, run_dir = run_train(
        "dataset=synthetic_linear", "model=linreg", "optim=sgd", "optim.lr=0.03", "trainer.batch_size=10", "trainer.epochs=5"
    )
    summary = read_json(run_dir / "summary.json")
    assert summary["monitor"] == "val/rmse" and summary["mode"] == "min"
    assert summary["test/rmse"] < 0.05  # noise std is 0.01
    weights = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert torch.allclose(weights["1.weight"], torch.tensor([[2.0, -3.4]]), atol=0.02)
    assert torch.allclose(weights["1.bias"], torch.tensor([4.2]), atol=0.02)


def test_l1_penalty_changes_the_weight_gradients_but_not_the_biases():
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    grads = {}
    for l1 in (0.0, 0.1):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: keep the weights, inspect the grads
        training_step(model, Batch(x, y), build_task("classification"), optimizer, StepConfig(l1=l1))
        grads[l1] = {n: p.grad.clone() for n, p in model.named_parameters()}
        weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    for name, g in grads[0.1].items():
        if name.endswith("weight"):
            # d/dw of 0.1 * sum|w| is 0.1 * sign(w)
            assert torch.allclose(g - grads[0.0][name], 0.1 * torch.sign(weights[name]), atol=1e-6)
        else:
            assert torch.equal(g, grads[0.0][name])


def test_weight_decay_shrinks_the_weight_norm(run_train, tmp_path):
    norms = {}
    for wd in (0.0, 1.0):
        _, run_dir = run_train(
            "dataset=synthetic_linear", "model=linreg", "optim=sgd", "optim.lr=0.03", "trainer.epochs=3",
            f"regularizer.weight_decay={wd}", run_dir=tmp_path / f"wd{wd}",
        )
        state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
        norms[wd] = state["1.weight"].norm().item()
    assert norms[1.0] < 0.8 * norms[0.0]


def test_early_stopping_stops_when_the_monitor_stalls(run_train):
    # lr so small that val accuracy cannot move: no improvement after epoch 1
    _, run_dir = run_train("optim=sgd", "optim.lr=1e-12", "trainer.epochs=50", "trainer.early_stopping.patience=2")
    summary = read_json(run_dir / "summary.json")
    assert summary["stop_reason"] == "early_stopping"
    assert summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert len(_metrics(run_dir)) == 3


def test_early_stopping_modes():
    stopper = EarlyStopping("val/loss", "min", patience=2, min_delta=0.1)
    assert stopper.update(1.0, 1)
    assert not stopper.update(0.95, 2)  # within min_delta: not an improvement
    assert not stopper.should_stop
    assert not stopper.update(2.0, 3)
    assert stopper.should_stop and stopper.best_epoch == 1


def test_a_tie_on_the_monitor_goes_to_the_lower_val_loss_without_moving_the_patience():
    """A saturated val accuracy (1.0 on 21 wines) ties every epoch while the model still improves: the best
    checkpoint moves to the tied epoch with the lower val loss, and early stopping stops when it did before."""
    stopper = EarlyStopping("val/acc", "max", patience=3)
    assert stopper.update(1.0, 1, loss=0.30)
    assert stopper.update(1.0, 2, loss=0.20)  # a tie with a lower loss: the new best checkpoint
    assert not stopper.update(1.0, 3, loss=0.25)  # a tie with a higher loss is not
    assert (stopper.best_epoch, stopper.bad_epochs, stopper.best_loss) == (2, 2, 0.20)
    assert stopper.update(1.0, 4, loss=0.10) and stopper.should_stop  # 3 epochs since the accuracy rose
    restored = EarlyStopping("val/acc", "max", patience=3)
    restored.load_state_dict(stopper.state_dict())
    assert (restored.best_epoch, restored.best_loss) == (4, 0.10)
    restored.load_state_dict({"best": 1.0, "best_epoch": 1, "bad_epochs": 0})  # a checkpoint from before ties
    assert not restored.update(1.0, 2, loss=0.5) and restored.best_epoch == 1  # no loss to beat: the first stays


def test_plateau_scheduler_cuts_the_lr_when_val_stalls(run_train):
    _, run_dir = run_train(
        "optim=sgd", "optim.lr=1e-6", "scheduler=plateau", "scheduler.patience=1", "scheduler.factor=0.5",
        "trainer.epochs=4", "trainer.early_stopping.patience=null",
    )
    lrs = [float(r["lr"]) for r in _metrics(run_dir)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] <= 0.5 * lrs[0]


def test_step_scheduler_follows_its_schedule(run_train):
    _, run_dir = run_train("optim.lr=0.001", "scheduler=step", "scheduler.step_size=2", "scheduler.gamma=0.5", "trainer=smoke",
                           "trainer.epochs=4")
    lrs = [float(r["lr"]) for r in _metrics(run_dir)]
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4])


def test_same_seed_same_metrics_other_seed_different(run_train, tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        _, run_dir = run_train("trainer=smoke", "trainer.epochs=2", f"seed={seed}", run_dir=tmp_path / name)
        runs[name] = (_metrics(run_dir), read_json(run_dir / "summary.json")["test/loss"])
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


def test_regularizer_dropout_reaches_models_with_dropout():
    cfg = validate(compose_cfg("model=mlp", "model.hidden=[8,8]", "regularizer=dropout"))
    model = build_model(cfg.model, (1, 8, 8), 10, cfg.regularizer.dropout)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 2 and all(m.p == 0.5 for m in dropouts)
    # softmax regression has no hidden layer: its dropout acts on the input features
    cfg = validate(compose_cfg("model=softmax", "regularizer=dropout"))
    dropouts = [m for m in build_model(cfg.model, (1, 8, 8), 10, cfg.regularizer.dropout).modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in dropouts] == [0.5]


def test_weight_decay_skips_biases():
    from dlexp.training.optim import build_optimizer

    cfg = validate(compose_cfg("optim=sgd"))
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    optimizer = build_optimizer(cfg.optim, model, weight_decay=0.1)
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(model[0].weight), id(model[2].weight)}


def test_without_weight_decay_one_group_steps_as_two_and_loads_their_checkpoint():
    """No decay: one parameter group (weights first, as the two groups were), the same updates to the bit,
    and an optimizer state saved with two groups loads into it."""
    from dlexp.training.optim import build_optimizer, load_optimizer_state

    cfg = validate(compose_cfg("optim=adam"))

    def trained(split: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        if split:
            weights, rest = [p for p in model.parameters() if p.ndim > 1], [p for p in model.parameters() if p.ndim == 1]
            optimizer = torch.optim.Adam([{"params": weights, "weight_decay": 0.0}, {"params": rest, "weight_decay": 0.0}],
                                         lr=cfg.optim.lr)
        else:
            optimizer = build_optimizer(cfg.optim, model, weight_decay=0.0)
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
        return model, optimizer

    (one, one_opt), (two, two_opt) = trained(split=False), trained(split=True)
    assert len(one_opt.param_groups) == 1 and len(two_opt.param_groups) == 2
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values()))
    load_optimizer_state(one_opt, two_opt.state_dict())
    weight = one[0].weight
    assert torch.equal(one_opt.state[weight]["exp_avg_sq"], two_opt.state[two[0].weight]["exp_avg_sq"])
    assert torch.equal(one_opt.state[one[0].bias]["exp_avg"], two_opt.state[two[0].bias]["exp_avg"])
