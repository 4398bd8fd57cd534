"""A task of your own, with its loss, metric and a dataset to try it on: the median of a noisy line.

    python -m dlexp plugins=[quantile.py] dataset=skewed_line trainer.epochs=20   # needs: conf/dataset/skewed_line.yaml

The model predicts one number per example; the pinball loss at q = 0.5 makes it the conditional median,
which heavy-tailed noise cannot drag the way it drags a mean.
"""
import torch
from torch import Tensor, nn

from dlexp import MeanMetric, Source, Task, register_dataset, register_loss, register_metric, register_task


class Pinball(nn.Module):
    """The quantile (pinball) loss: q * (y - out) above the prediction, (1 - q) * (out - y) below it."""

    def __init__(self, q: float):
        super().__init__()
        self.q = q

    def forward(self, outputs: Tensor, targets: Tensor) -> Tensor:  # both (B, 1)
        error = targets - outputs
        return torch.maximum(self.q * error, (self.q - 1) * error).mean()


@register_loss("pinball")
def pinball(*, q: float = 0.5) -> nn.Module:
    return Pinball(q)


class MeanAbsoluteError(MeanMetric):
    name, mode = "mae", "min"

    def batch_stat(self, outputs: Tensor, batch) -> tuple[Tensor, int]:
        return (outputs - batch.targets).abs().sum(), batch.targets.numel()  # summed here, averaged by MeanMetric


@register_metric("mae")
def mae() -> MeanMetric:
    return MeanAbsoluteError()


@register_task("median_regression")
class MedianRegression(Task):
    name = "median_regression"
    default_loss = "pinball"
    default_metric = "mae"

    def prior_outputs(self, targets: Tensor) -> Tensor:
        """Without the inputs, the best guess of a median is the train targets' median."""
        return targets.float().median(dim=0, keepdim=True).values  # (1, 1)


@register_dataset("skewed_line")
def skewed_line(*, n: int = 1000, slope: float = 2.0, seed: int = 0) -> Source:
    """y = slope * x + noise, the noise heavy-tailed to one side (exponential): mean and median differ."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 2 - 1  # (n, 1)
    y = slope * x + torch.empty(n, 1).exponential_(1.0, generator=g) - 0.69  # median noise about 0
    test = n // 5
    return Source(train=(x[test:], y[test:]), test=(x[:test], y[:test]), task="median_regression", num_classes=1)
