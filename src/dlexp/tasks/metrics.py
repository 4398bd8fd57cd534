"""Metrics as accumulators: a state updated per batch, computed once at the end of a pass.

The hot loop only calls ``update`` (device ops, no host sync); ``compute`` reads
the state once per epoch. Two kinds share one interface:

- ``MeanMetric``: a mean of per-example (or per-element, per-token) values. Its
  state is a running sum and a count, reducible across processes with one
  all-reduce of ``state_tensor()``.
- a corpus metric (e.g. corpus BLEU) that is not a mean: it collects hypotheses
  and references and scores them together; across processes they are gathered.

``LossMean`` is the weighted mean of the loss the optimizer minimizes. Metrics know nothing of
processes: under torchrun the training layer hands ``sync`` a ``Reducer`` that sums or gathers
across ranks (``dlexp.training.distributed.COLLECTIVES``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Protocol, Union

import torch
from torch import Tensor

from dlexp.config.registry import Registry
from dlexp.data.base import Batch

METRICS = Registry("metric")
Count = Union[int, Tensor]  # examples known on the host, or a device tensor (e.g. non-pad tokens)


class Reducer(Protocol):
    """Combines a value over every process: ``sum`` a tensor (in place), ``gather`` lists in rank order.
    In one process both return their argument."""

    def sum(self, tensor: Tensor) -> Tensor: ...

    def gather(self, items: list) -> list: ...


class Metric:
    """The interface every metric implements. ``outputs`` is what the task produced for the batch."""

    name: str = ""
    mode: str = "max"  # "max" if higher is better, else "min"
    needs_decode: bool = False  # True: ``update`` receives the task's decoded outputs, not the logits

    def reset(self, device: torch.device) -> None:
        raise NotImplementedError

    def update(self, outputs: Any, batch: Batch) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def sync(self, reduce: Reducer) -> None:
        """Combine every rank's state into the global one (under torchrun; a no-op in one process)."""
        raise NotImplementedError

    def global_state_dict(self, reduce: Reducer) -> dict[str, Any]:
        """``state_dict`` of the global state, leaving this rank's own state as it is (for checkpoints)."""
        raise NotImplementedError


class MeanMetric(Metric):
    """sum / count, then ``finish``. Subclasses give the batch's (sum, count) in ``batch_stat``."""

    def reset(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device)  # float32 running sum on the device
        self.count: Count = 0

    def batch_stat(self, outputs: Tensor, batch: Batch) -> tuple[Tensor, Count]:
        raise NotImplementedError

    def update(self, outputs: Tensor, batch: Batch) -> None:
        value, count = self.batch_stat(outputs, batch)
        self.total.add_(value)
        self.count += count

    def finish(self, mean: float) -> float:
        return mean

    def settle(self) -> None:
        """Bring ``total`` up to date before it is read (a metric that defers its per-batch work)."""

    def compute(self) -> float:
        self.settle()
        count = int(self.count)
        return math.nan if count == 0 else self.finish(self.total.item() / count)

    def state_tensor(self) -> Tensor:
        """(2,) [sum, count] in float64: what an all-reduce sums across processes."""
        self.settle()
        return torch.stack([self.total.double(), torch.as_tensor(self.count, device=self.total.device).double()])

    def state_dict(self) -> dict[str, Any]:
        self.settle()
        return {"total": self.total.item(), "count": int(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = torch.tensor(state["total"], device=self.total.device)
        self.count = state["count"]

    def sync(self, reduce: Reducer) -> None:
        total, count = reduce.sum(self.state_tensor())  # one all-reduce of [sum, count]
        self.total, self.count = total, int(count)

    def global_state_dict(self, reduce: Reducer) -> dict[str, Any]:
        total, count = reduce.sum(self.state_tensor()).tolist()
        return {"total": total, "count": int(count)}


class CorpusMetric(Metric):
    """A score of a whole corpus, not a mean of per-example values (e.g. corpus BLEU).

    ``update`` receives the task's decoded outputs: a list of hypothesis strings for
    the batch; the references come from ``references(batch)``. Across processes the
    string lists are gathered, not summed.
    """

    needs_decode = True

    def __init__(self, name: str, mode: str, score: Callable[[list[str], list[str]], float],
                 references: Callable[[Batch], list[str]]):
        self.name, self.mode, self.score, self.references = name, mode, score, references

    def reset(self, device: torch.device) -> None:
        self.hypotheses: list[str] = []
        self.refs: list[str] = []

    def update(self, outputs: Optional[list[str]], batch: Batch) -> None:
        if outputs is None:  # a training pass does not decode: the score stays NaN
            return
        self.hypotheses.extend(outputs)
        self.refs.extend(self.references(batch))

    def compute(self) -> float:
        return self.score(self.hypotheses, self.refs) if self.hypotheses else math.nan

    def state_dict(self) -> dict[str, Any]:
        return {"hypotheses": list(self.hypotheses), "refs": list(self.refs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hypotheses, self.refs = list(state["hypotheses"]), list(state["refs"])

    def sync(self, reduce: Reducer) -> None:
        for name in ("hypotheses", "refs"):
            setattr(self, name, reduce.gather(getattr(self, name)))

    def global_state_dict(self, reduce: Reducer) -> dict[str, Any]:
        return {"hypotheses": reduce.gather(list(self.hypotheses)), "refs": reduce.gather(list(self.refs))}


class LossMean(MeanMetric):
    """The weight-averaged training objective: per-example losses, or per-token ones."""

    name = "loss"
    mode = "min"

    def add(self, loss: Tensor, weight: Count) -> None:
        """``loss`` is a batch mean over ``weight`` items; one fused op adds loss x weight to the sum."""
        if isinstance(weight, Tensor):
            self.total.add_(loss * weight)
        else:
            self.total.add_(loss, alpha=weight)
        self.count += weight


class _Elementwise(MeanMetric):
    """A mean over target elements of ``stat(outputs, targets)`` (summed)."""

    def __init__(self, name: str, mode: str, stat: Callable[[Tensor, Tensor], Tensor], finish=None):
        self.name, self.mode, self.stat = name, mode, stat
        self._finish = finish

    def batch_stat(self, outputs: Tensor, batch: Batch) -> tuple[Tensor, Count]:
        targets = batch.targets
        return self.stat(outputs, targets), targets.numel()

    def finish(self, mean: float) -> float:
        return self._finish(mean) if self._finish is not None else mean


class _DeferredCount(MeanMetric):
    """A count of matches between ``predict(outputs)`` and ``truth(targets)`` (e.g. correct arg-max classes).

    A step makes only its predictions (one op) and keeps them with its targets; the comparison and the sum
    run on ``FLUSH_EVERY`` batches at once, and before the state is read. The counts are integers, so summing
    them in another grouping gives the same total, to the bit, as one sum per batch (a float32 total is exact
    up to 2**24 matches). That saves three ops per step (compare, sum, add): a third of the metric's cost in
    a small MLP's epoch on the CPU. The outputs themselves are not kept: under CUDA graphs
    (``trainer.compile=reduce-overhead``) the next step overwrites them."""

    FLUSH_EVERY = 64  # batches kept before they are counted: at most 64 batches of predictions in memory

    def __init__(self, name: str, predict: Callable[[Tensor], Tensor], truth: Callable[[Tensor], Tensor]):
        self.name, self.mode, self.predict, self.truth = name, "max", predict, truth

    def reset(self, device: torch.device) -> None:
        super().reset(device)
        self.pending: list[tuple[Tensor, Tensor]] = []  # (predictions, targets) of batches not yet counted

    def update(self, outputs: Tensor, batch: Batch) -> None:
        targets = batch.targets
        self.pending.append((self.predict(outputs), targets))
        self.count += targets.numel()
        if len(self.pending) >= self.FLUSH_EVERY:
            self.settle()

    def settle(self) -> None:
        """Count the kept batches' matches."""
        if self.pending:
            predicted, targets = (torch.cat(t) for t in zip(*self.pending))
            self.total.add_((predicted == self.truth(targets)).sum())
            self.pending.clear()


@METRICS.register("acc")
def accuracy() -> Metric:
    """Fraction of examples whose arg-max logit is the class: outputs (B, C), targets (B,)."""
    return _DeferredCount("acc", lambda out: out.argmax(dim=1), lambda y: y)


@METRICS.register("binary_acc")
def binary_accuracy() -> Metric:
    """Accuracy of 0/1 predictions from logits (logit > 0 means class 1), per target element. Logged as ``acc``."""
    return _DeferredCount("acc", lambda out: out > 0, lambda y: y > 0.5)


def _root_mean_squared_error(name: str) -> Metric:
    return _Elementwise(name, "min", lambda out, y: ((out - y) ** 2).sum(), finish=math.sqrt)


@METRICS.register("rmse")
def rmse() -> Metric:
    """Root mean squared error over every target element."""
    return _root_mean_squared_error("rmse")


@METRICS.register("log_rmse")
def log_rmse() -> Metric:
    """RMSE between log predictions and log targets (Kaggle's house-prices score). For datasets whose
    targets are already logarithms (house_prices learns log SalePrice), so it is the RMSE of the outputs."""
    return _root_mean_squared_error("log_rmse")
