"""Distribution shift applied to the test set, so a run reports clean and shifted test metrics.

A ``Shift`` transforms the raw test inputs (covariate shift), resamples which
test examples are kept (label shift) or relabels them by a moved rule (concept
shift), before the preprocessing fitted on the training split is applied, as data
met after deployment would be.

Each shift may also be corrected (``shift.correct``): covariate shift by importance
weights on the training loss (``importance_weights``), label shift by black-box
shift estimation of the test priors from a confusion matrix (``bbse``), concept shift
by a few update steps on newly labelled examples (``NewLabels``, run by the trainer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, List, Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge, MinLen
from torch import Tensor

from dlexp.config.constraints import NonNegativeFloat, PositiveFloat, PositiveInt, Seed
from dlexp.data.base import SHIFTS, NewLabels, OutputsOf, Pair, Source
from dlexp.data.preprocess import nan_mean_std
from dlexp.errors import ConfigError

DEFAULT_MAX_WEIGHT = 10.0  # importance weights are clipped here (in units of p_test(x)/p_train(x))


@dataclass
class Shift:
    select: Optional[Callable[[np.ndarray], np.ndarray]] = None  # class labels (N,) -> indices of kept examples
    inputs: Optional[Callable[..., Tensor]] = None  # (raw x, covariate mask or None) -> shifted x
    correct: str = "none"  # none | importance (covariate) | bbse (label) | finetune (concept)
    max_weight: float = DEFAULT_MAX_WEIGHT  # correct=importance: the clip on each training example's weight
    drift: Optional[float] = None  # concept shift: how far the dataset's labelling rule moves (``Source.concept``)
    new_labels: tuple[int, ...] = ()  # correct=finetune: the sizes k of the newly labelled sets
    update_steps: int = 0  # correct=finetune: full-batch steps from the trained weights
    scratch_steps: int = 0  # correct=finetune: full-batch steps from the run's initial weights, for comparison


def image_shift(x: Tensor, brightness: float, contrast: float, rotate: float) -> Tensor:
    """(N, C, H, W) raw images: contrast about each image's mean, plus brightness, then a fixed rotation.

    Images stored in [0, 1] stay in [0, 1] (a camera saturates).
    """
    in_unit_range = bool(x.min() >= 0) and bool(x.max() <= 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    x = (x - mean) * contrast + mean + brightness
    if rotate:
        n, _, h, w = x.shape
        a = math.radians(rotate)
        theta = torch.tensor([[math.cos(a), -math.sin(a) * h / w, 0.0], [math.sin(a) * w / h, math.cos(a), 0.0]])
        grid = F.affine_grid(theta.expand(n, 2, 3).to(x), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x.clamp(0, 1) if in_unit_range else x


def feature_shift(x: Tensor, shift: float, mask: Optional[Tensor]) -> Tensor:
    """Move the mean of every feature by ``shift`` of its standard deviation (NaNs stay missing).

    ``mask`` (features,) picks the features that may move (e.g. numeric columns, not category codes).
    """
    flat = x.reshape(len(x), -1)  # (N, features)
    _, std = nan_mean_std(flat)
    delta = shift * std
    if mask is not None:
        delta = delta * mask.to(delta)
    return (flat + delta).reshape(x.shape)


@SHIFTS.register("none")
def none() -> Optional[Shift]:
    return None


@SHIFTS.register("covariate")
def covariate(
    *, brightness: float = 0.2, contrast: NonNegativeFloat = 0.6, rotate: float = 0.0, feature_shift_std: float = 0.5,
    correct: Literal["none", "importance"] = "none", max_weight: Optional[PositiveFloat] = None,
) -> Shift:
    """p(x) changes, p(y|x) does not. Images: ``contrast`` factor about each image's mean, ``brightness`` added
    (in raw pixel units, [0, 1] for images) and a fixed ``rotate`` in degrees. Other data: each feature's
    mean moves by ``feature_shift_std`` standard deviations.

    ``correct=importance`` weights each training example's loss by p_test(x)/p_train(x), estimated by a
    logistic regression that tells training from (shifted) test inputs, clipped at ``max_weight``
    (default 10; null means the default)."""
    if max_weight is not None and correct != "importance":
        raise ConfigError(f"shift.max_weight clips importance weights, which shift.correct={correct} does not use; "
                          "set shift.correct=importance or drop shift.max_weight")

    def inputs(x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        if x.dim() == 4:
            return image_shift(x, brightness, contrast, rotate)
        return feature_shift(x, feature_shift_std, mask)

    return Shift(inputs=inputs, correct=correct, max_weight=DEFAULT_MAX_WEIGHT if max_weight is None else max_weight)


@SHIFTS.register("label")
def label(*, imbalance: Annotated[float, Ge(1)] = 10.0, seed: Seed = 0, correct: Literal["none", "bbse"] = "none") -> Shift:
    """p(y) changes, p(x|y) does not: keep the largest subset of the test set whose class priors fall
    geometrically from the most to the least frequent class by a factor ``imbalance`` (class order
    drawn with ``seed``).

    ``correct=bbse`` estimates the shifted priors after training (black-box shift estimation, ``bbse``)
    and also scores the shifted test set with predictions reweighted by them."""

    def select(labels: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(seed)
        classes, counts = np.unique(labels, return_counts=True)
        k = len(classes)
        rank = rng.permutation(k) / max(k - 1, 1)  # 0 for the most frequent class, 1 for the least
        prior = imbalance ** (-rank)
        prior /= prior.sum()
        total = np.min(counts / prior)  # the largest test set with these priors that the examples allow
        keep = np.floor(prior * total + 1e-9).astype(int).clip(min=1)
        chosen = [rng.permutation(np.flatnonzero(labels == c))[:n] for c, n in zip(classes, keep)]
        return np.sort(np.concatenate(chosen))

    return Shift(select=select, correct=correct)


@SHIFTS.register("concept")
def concept(
    *, drift: float = 45.0, correct: Literal["none", "finetune"] = "none",
    new_labels: Annotated[List[PositiveInt], MinLen(1)] = (8, 32, 128, 512),
    update_steps: PositiveInt = 20, scratch_steps: PositiveInt = 200,
) -> Shift:
    """p(y|x) changes, p(x) does not: the test inputs keep their distribution and are labelled by the dataset's
    rule moved by ``drift`` (dataset=hyperplane: degrees of rotation). Every run reports ``shift/domain_auc``,
    how well a classifier tells the training inputs from the shifted test inputs (0.5: not at all).

    ``correct=finetune``, the textbook's remedy: after training, for each k in ``new_labels``, the trained
    model takes ``update_steps`` full-batch steps of the run's optimizer on k fresh inputs labelled by the
    moved rule (``test_shifted_finetune_<k>/*``); for comparison the run's initial weights take
    ``scratch_steps`` steps on the same k (``test_shifted_scratch_<k>/*``). The sets are nested: the k
    examples are the first k of the largest set."""
    sizes = tuple(sorted(set(new_labels)))
    return Shift(correct=correct, drift=drift, new_labels=sizes if correct == "finetune" else (),
                 update_steps=update_steps, scratch_steps=scratch_steps)


def relabelled(test: Pair, source: Source, name: str, drift: float) -> Pair:
    """The test set labelled by the dataset's rule moved by ``drift``; its label noise is drawn once (seed 0),
    the same in every run."""
    if source.concept is None:
        raise ConfigError(f"shift=concept moves the labelling rule of a synthetic dataset, and dataset '{name}' has "
                          "none (its labels come from files); use dataset=hyperplane, or shift=covariate / label")
    return test[0], source.concept.label(test[0], drift, 0)


def fresh_labelled(shift: Optional[Shift], source: Source, seed: int) -> Optional[Pair]:
    """shift.correct=finetune: the largest set of newly labelled examples (fresh inputs from p(x), labelled by the
    moved rule), a draw of its own for each run ``seed``; None for every other shift."""
    if shift is None or not shift.new_labels:
        return None
    x = source.concept.draw(max(shift.new_labels), seed)
    return x, source.concept.label(x, shift.drift, seed + 1)


def new_labels_of(shift: Optional[Shift], pair: Optional[Pair]) -> Optional[NewLabels]:
    """The update's examples of one fold (``pair``: prepared as the model sees them), with the shift's steps."""
    if shift is None or pair is None:
        return None
    return NewLabels(pair[0], pair[1], shift.new_labels, shift.update_steps, shift.scratch_steps)


def domain_auc(x_old: Tensor, x_new: Tensor, seed: int = 0) -> float:
    """How well a logistic regression tells old inputs (N, ...) from new ones (M, ...), on inputs it was not
    fitted on: the ROC AUC of its 2-fold cross-validated scores. 0.5 when p(x) did not move, near 1 when it did:
    what the importance weights of covariate shift (the same classifier) can see."""
    from sklearn.linear_model import LogisticRegression  # imported here: only concept-shift runs need it
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    xs = torch.cat([x_old.reshape(len(x_old), -1), x_new.reshape(len(x_new), -1)]).cpu().double().numpy()
    is_new = np.r_[np.zeros(len(x_old)), np.ones(len(x_new))]
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(max_iter=1000), xs, is_new, cv=folds, method="decision_function")
    return float(roc_auc_score(is_new, scores))


# --------------------------------------------------------------------------
# Corrections


def importance_weights(x_train: Tensor, x_test: Tensor, max_weight: float) -> Tensor:
    """(N_train,) weights p_test(x)/p_train(x) for the training inputs, clipped at ``max_weight``.

    A logistic regression h tells training inputs (label 0) from test inputs (label 1), both (N, ...) and
    preprocessed alike; then p(test|x)/p(train|x) = exp(h(x)), and n_train/n_test turns that odds ratio
    into the density ratio. Clipping bounds the few far-out examples that would otherwise dominate the loss.
    """
    from sklearn.linear_model import LogisticRegression  # imported here: only runs that correct need it

    xs = torch.cat([x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)]).cpu().double().numpy()
    is_test = np.r_[np.zeros(len(x_train)), np.ones(len(x_test))]
    h = LogisticRegression(max_iter=1000).fit(xs, is_test).decision_function(xs[: len(x_train)])  # (N_train,) logits
    ratio = np.exp(np.minimum(h, 50.0)) * len(x_train) / len(x_test)  # exp capped: no inf before the clip
    return torch.from_numpy(np.minimum(ratio, max_weight)).float().to(x_train.device)


def bbse(val_pred: np.ndarray, val_y: np.ndarray, test_pred: np.ndarray, k: int) -> np.ndarray:
    """(k,) w_j = q(y=j)/p(y=j) by black-box shift estimation (Lipton et al., 2018).

    ``val_pred``, ``val_y``: predicted and true classes (N_val,) on held-out data from the training
    distribution; ``test_pred`` (N_test,): predicted classes on the shifted inputs. With the confusion
    matrix C[i, j] = P(yhat=i, y=j) (on val) and mu[i] = P(yhat=i) (on test), C w = mu; least squares,
    clipped at 0 (a prior cannot be negative).
    """
    confusion = np.zeros((k, k))
    np.add.at(confusion, (val_pred, val_y), 1.0)
    confusion /= len(val_y)
    mu = np.bincount(test_pred, minlength=k) / len(test_pred)
    w, *_ = np.linalg.lstsq(confusion, mu, rcond=None)
    return np.clip(w, 0.0, None)


def label_shift_scores(val_logits: Tensor, val_y: Tensor, test_logits: Tensor, test_y: Tensor, k: int) -> dict[str, Any]:
    """BBSE on one fold: the shifted test priors estimated from the (N, k) logits, their L1 error against
    the shifted test set's true class shares, and the accuracy of predictions reweighted by w_j = q_j/p_j."""
    val_y, test_y = val_y.numpy(), test_y.numpy()
    w = bbse(val_logits.argmax(1).numpy(), val_y, test_logits.argmax(1).numpy(), k)  # (k,)
    p_train = np.bincount(val_y, minlength=k) / len(val_y)  # p(y) of the training distribution, on val
    estimated = w * p_train / max(float((w * p_train).sum()), 1e-12)
    true = np.bincount(test_y, minlength=k) / len(test_y)
    corrected = (test_logits.softmax(1).numpy() * w).argmax(1)  # argmax_j p(j|x) w_j
    return {
        "test_shifted_corrected/acc": float((corrected == test_y).mean()),
        "label_shift/estimated_priors": [round(float(q), 6) for q in estimated],
        "label_shift/true_priors": [round(float(q), 6) for q in true],
        "label_shift/prior_error": float(np.abs(estimated - true).sum()),  # L1, in [0, 2]
    }


def fold_corrections(shift: Optional[Shift], parts: dict[str, Any], ready: Callable[[Tensor], Tensor], eval_bs: int,
                     writer: Optional[Callable], num_classes: int) -> tuple[Optional[dict[str, Tensor]], Optional[Callable]]:
    """The shift correction of one fold: importance weights for the training loader's extras, and the
    after-fit hook (the predictions ``writer``, then BBSE) that returns extra summary entries.

    ``parts``: the fold's (x, y) pairs by split (``train``, ``val``, ``shifted``); ``ready`` turns their
    inputs into what the model sees (the per-batch resize and normalization, when there is one)."""
    correct = "none" if shift is None else shift.correct
    extras, entries = None, {}
    if correct == "importance":  # computed once per fold, from this fold's train inputs
        w = importance_weights(ready(parts["train"][0]), ready(parts["shifted"][0]), shift.max_weight)
        extras = {"weight": w}
        entries = {f"importance_weight/{k}": float(getattr(w, k)()) for k in ("min", "mean", "max")}
    if shift is not None and shift.drift is not None:  # concept shift: can the inputs alone tell it?
        entries["shift/domain_auc"] = domain_auc(ready(parts["train"][0]), ready(parts["shifted"][0]))
    if writer is None and not entries and correct in ("none", "finetune"):
        return extras, None

    def after_fit(outputs_of: OutputsOf, run_dir: Path) -> dict[str, Any]:
        if writer is not None:
            writer(outputs_of, run_dir)
        if correct != "bbse":
            return dict(entries)
        val, shifted = parts["val"], parts["shifted"]
        logits = {k: outputs_of(ready(p[0]), eval_bs) for k, p in (("val", val), ("shifted", shifted))}
        return label_shift_scores(logits["val"], val[1].cpu(), logits["shifted"], shifted[1].cpu(), num_classes)

    return extras, after_fit
