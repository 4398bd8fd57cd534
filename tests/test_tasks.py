"""The task layer and the metric accumulators."""
from __future__ import annotations

import math

import pytest
import torch

from dlexp.errors import ConfigError
from dlexp.tasks.metrics import METRICS, CorpusMetric, LossMean
from dlexp.data.base import class_labels as labels_of
from dlexp.tasks import TASKS, Batch, build_task, resolve_monitor

CPU = torch.device("cpu")


def _batches(n_batches: int = 3, size: int = 7, classes: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, Batch]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, classes, generator=gen), Batch(torch.zeros(size, 2), torch.randint(classes, (size,), generator=gen)))
            for _ in range(n_batches)]


@pytest.mark.parametrize("name", METRICS.names())
def test_an_accumulated_metric_equals_the_metric_of_all_batches_at_once(name):
    classes = 1 if name in ("binary_acc", "rmse", "log_rmse") else 4
    pairs = _batches(classes=classes)
    if classes == 1:  # one output column: 0/1 or float targets of the same shape
        pairs = [(out, Batch(b.inputs, (out + torch.randn_like(out) > 0).float())) for out, b in pairs]
    split, whole = METRICS.build(name), METRICS.build(name)
    split.reset(CPU)
    whole.reset(CPU)
    for out, batch in pairs:
        split.update(out, batch)
    whole.update(torch.cat([o for o, _ in pairs]), Batch(torch.zeros(1), torch.cat([b.targets for _, b in pairs])))
    assert split.compute() == pytest.approx(whole.compute(), rel=1e-6)
    assert whole.compute() == pytest.approx(whole.finish(float(whole.total) / whole.count), rel=1e-12)


@pytest.mark.parametrize("name", ["acc", "binary_acc"])
def test_an_accuracy_counted_in_groups_of_batches_is_exact_at_every_point(name):
    """Accuracy counts its matches every FLUSH_EVERY batches; read at any point (a mid-epoch checkpoint, the
    end of a pass), the count equals that of one sum per batch."""
    classes = 1 if name == "binary_acc" else 4
    pairs = _batches(n_batches=150, classes=classes)
    if classes == 1:
        pairs = [(out, Batch(b.inputs, (torch.randn_like(out) > 0).float())) for out, b in pairs]
    metric = METRICS.build(name)
    metric.reset(CPU)
    correct = 0
    for i, (out, batch) in enumerate(pairs, 1):
        metric.update(out, batch)
        predicted = out.argmax(dim=1) if classes > 1 else out > 0
        correct += int((predicted == (batch.targets if classes > 1 else batch.targets > 0.5)).sum())
        if i in (1, 63, 64, 70, 129):
            assert metric.state_dict() == {"total": float(correct), "count": i * 7}
    assert metric.compute() == correct / (150 * 7)
    assert metric.pending == []  # reading the state counted every batch kept


def test_metric_states_of_two_processes_add_up_to_the_global_metric():
    """What one all-reduce of state_tensor() does under torchrun: sum [sum, count] over ranks."""
    pairs = _batches(n_batches=4)
    ranks = [METRICS.build("acc") for _ in range(2)]
    everything = METRICS.build("acc")
    for m in (*ranks, everything):
        m.reset(CPU)
    for i, (out, batch) in enumerate(pairs):
        ranks[i % 2].update(out, batch)
        everything.update(out, batch)
    total, count = (ranks[0].state_tensor() + ranks[1].state_tensor()).tolist()
    assert total / count == pytest.approx(everything.compute())


def test_a_mean_metric_survives_a_checkpoint_round_trip():
    out, batch = _batches(n_batches=1)[0]
    metric = METRICS.build("acc")
    metric.reset(CPU)
    metric.update(out, batch)
    restored = METRICS.build("acc")
    restored.reset(CPU)
    restored.load_state_dict(metric.state_dict())
    restored.update(out, batch)
    metric.update(out, batch)
    assert restored.compute() == metric.compute()


def test_a_corpus_metric_scores_the_whole_corpus_not_a_mean_of_batches():
    # the share of all characters that sit in exactly matched hypotheses: long sentences weigh more
    def score(hyps, refs):
        return 100 * sum(len(r) for h, r in zip(hyps, refs) if h == r) / sum(len(r) for r in refs)

    metric = CorpusMetric("match", "max", score, references=lambda batch: batch.extras["refs"])
    metric.reset(CPU)
    assert math.isnan(metric.compute())
    metric.update(["a"], Batch(torch.zeros(1), None, {"refs": ["b"]}))
    metric.update(["long sentence"], Batch(torch.zeros(1), None, {"refs": ["long sentence"]}))
    assert metric.compute() == pytest.approx(100 * 13 / 14)  # a mean of batch scores would give 50
    copy = CorpusMetric("match", "max", score, references=lambda batch: batch.extras["refs"])
    copy.reset(CPU)
    copy.load_state_dict(metric.state_dict())
    assert copy.compute() == metric.compute()


def test_loss_mean_weighs_each_batch_by_its_items():
    loss = LossMean()
    loss.reset(CPU)
    loss.add(torch.tensor(1.0), 3)
    loss.add(torch.tensor(2.0), torch.tensor(1))  # e.g. a token count on the device
    assert loss.compute() == pytest.approx((3 * 1.0 + 1 * 2.0) / 4)


def test_batch_to_moves_inputs_targets_and_extras():
    batch = Batch(torch.zeros(2, 3), torch.ones(2), {"lengths": torch.tensor([3, 1])}).to(torch.device("meta"))
    assert {batch.inputs.device.type, batch.targets.device.type, batch.extras["lengths"].device.type} == {"meta"}
    assert len(batch) == 2


@pytest.mark.parametrize(("task", "metric", "mode"), [("classification", "acc", "max"), ("regression", "rmse", "min"),
                                                     ("binary", "acc", "max")])
def test_each_task_names_its_monitor_and_mode(task, metric, mode):
    built = build_task(task)
    assert resolve_monitor("auto", "auto", built) == (f"val/{metric}", mode)
    assert resolve_monitor("val/loss", "auto", built) == ("val/loss", "min")
    with pytest.raises(ConfigError, match=f"not logged; use val/{metric} or val/loss"):
        resolve_monitor("val/f1", "auto", built)


def test_the_data_can_choose_the_metric_and_the_trainer_can_override_it():
    assert build_task("regression", {"metric": "log_rmse"}).monitor_metric.name == "log_rmse"
    assert build_task("regression", {"metric": "log_rmse"}, metric="rmse").monitor_metric.name == "rmse"
    with pytest.raises(ConfigError, match="unknown metric 'acuracy'"):
        build_task("classification", metric="acuracy")


def test_a_step_weighs_the_loss_by_examples_and_labels_come_from_the_task():
    model = torch.nn.Linear(2, 3)
    batch = Batch(torch.randn(5, 2), torch.tensor([0, 1, 2, 1, 0]))
    out = build_task("classification").step(model, batch)
    assert out.weight == 5 and out.outputs.shape == (5, 3)
    assert out.loss.item() == pytest.approx(torch.nn.functional.cross_entropy(model(batch.inputs), batch.targets).item())
    assert labels_of("classification", batch.targets).tolist() == [0, 1, 2, 1, 0]
    assert labels_of("binary", torch.tensor([[1.0], [0.0]])).tolist() == [1, 0]
    assert labels_of("regression", torch.randn(3, 1)) is None
    assert set(TASKS.names()) >= {"classification", "regression", "binary"}


def test_a_standardized_regression_learns_scaled_targets_and_reports_their_units():
    torch.manual_seed(0)
    model, x = torch.nn.Linear(2, 2), torch.randn(6, 2)
    train_targets = torch.tensor([[1000.0, 0.1], [3000.0, 0.3], [2000.0, 0.2], [4000.0, 0.2]])  # (N, 2) of unlike units
    plain = build_task("regression")
    assert plain.for_targets(train_targets) is plain  # nothing to fit unless the data asks for it
    task = build_task("regression", {"standardize": True}).for_targets(train_targets)
    scale = train_targets.std(dim=0, unbiased=False)
    assert torch.allclose(task.scale, scale) and task.state_dict() == {"target_scale": scale.tolist()}
    targets = torch.randn(6, 2) * scale
    out = task.step(model, Batch(x, targets))
    assert torch.allclose(out.outputs, model(x) * scale)  # the metrics see outputs in the targets' units
    assert out.loss.item() == pytest.approx(torch.nn.functional.mse_loss(model(x), targets / scale).item(), rel=1e-6)
    assert torch.allclose(task.predict(model, x, batch_size=4), model(x).detach() * scale)
    prior = task.prior(train_targets)
    assert prior["metric"] == pytest.approx(plain.prior(train_targets)["metric"])  # RMSE in units: the targets' spread
    assert prior["loss"] == pytest.approx(1.0)  # the standardized targets' variance about their mean


@pytest.mark.parametrize(("task", "targets"), [("classification", torch.tensor([0, 1, 2, 1, 0])),
                                               ("regression", torch.randn(5, 3)),
                                               ("binary", torch.tensor([[1.0], [0.0], [1.0], [1.0], [0.0]]))])
def test_a_weighted_step_is_the_weighted_mean_of_the_per_example_losses(task, targets):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, targets.shape[1] if targets.dim() == 2 else 3)
    x, weight = torch.randn(5, 2), torch.tensor([1.0, 0.0, 3.0, 0.5, 2.0])
    built = build_task(task)
    plain = built.step(model, Batch(x, targets))
    out = built.step(model, Batch(x, targets, {"weight": weight}))
    per_example = torch.stack([built.loss_fn(model(x[i : i + 1]), targets[i : i + 1]) for i in range(5)])  # (5,)
    assert out.weight == 5  # still the example count: the epoch mean weighs batches by examples
    assert out.loss.item() == pytest.approx(((weight * per_example).sum() / weight.sum()).item(), rel=1e-5)
    assert out.loss.item() != pytest.approx(plain.loss.item(), rel=1e-3)
    ones = built.step(model, Batch(x, targets, {"weight": torch.ones(5)}))
    assert ones.loss.item() == pytest.approx(plain.loss.item(), rel=1e-6)
    assert built.loss_fn.reduction == "mean"  # the unweighted loss is left as it was
