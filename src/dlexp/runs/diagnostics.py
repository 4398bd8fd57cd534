"""Training diagnostics: per-layer gradient and weight norms, the generalization gap, and a diagnosis.

Gradients are measured once per epoch, right after the training pass, from the
``.grad`` tensors left by the epoch's *last* optimizer step (after clipping when
``trainer.grad_clip`` is set). The hot loop is untouched: all norms of an epoch
are stacked on the device and read back in one transfer.

The diagnosis looks at the loss curves (metrics.csv) and at what predicting the train targets'
prior scores (``Task.prior``: class frequencies, or the mean; its loss and its monitored metric),
by these rules, tried in this order (``tr``/``va`` are the per-epoch train/val losses):

1. ``diverging``: a train or val loss is NaN or infinite (the run stopped on it: status ``diverged``).
2. ``unstable``: the train loss blew up while every value stayed finite: it rose to
   ``EXPLODE`` (100) times its first epoch's; or, for a task whose loss starts near the prior's (a
   classifier's cross-entropy at initialization is about ln(classes); a regression's squared error
   starts wherever its first outputs land), it reached ``EXPLODE`` times the loss of predicting the
   prior; or it ended more than ``ABOVE_PRIOR`` (10) times that loss (a model worse than a constant;
   e.g. Adam at lr 1e9: train losses of 1e16 to 1e20). The reason gives the numbers and the likely
   cause, the learning rate, with a smaller value to try.
3. ``too_short``: fewer than ``MIN_EPOCHS`` (3) epochs. One or two epochs cannot tell a model
   that is still learning from one that underfits.
4. ``diverging``: the final train loss is more than ``DIVERGE_RISE`` (10%) above the first
   epoch's (training made the training loss clearly worse). A loss that stays where it started,
   e.g. at chance level (ln(classes) for a classifier that has learned nothing), wobbles by a few
   per cent either way: that is not divergence but rule 6.
5. ``overfitting``: the final val loss is more than ``OVERFIT_RISE`` (20%) above its minimum while
   the train loss kept falling after that minimum, by more than ``NEGLIGIBLE`` (0.1%) of the first
   train loss (smaller rises are within the epoch-to-epoch noise of a small val set, or of a fit
   at its noise floor); or the final val loss is ``GAP_RATIO`` (10) times the final train loss and
   above it by ``WIDE_GAP`` (a quarter) of the first train loss (memorized: the val loss never
   came down, e.g. 20 points and 200 weights with no weight decay).
6. ``underfitting``: the final train loss is more than ``UNDERFIT_LEFT`` (half) of the first
   epoch's (the model barely fitted the training data; within ``FLAT`` (2%) of it, the reason
   says the model is not learning at all); or it is still above ``FITTED`` (a tenth) of it while
   the last epoch lowered the train loss by more than ``STILL_FALLING`` (5%) and set a val loss
   more than 5% below the best before it (training stopped while the model was still improving
   on unseen data; a new best, not a mere dip, so that noisy curves do not count); or, in a run of
   8 epochs or more, it is still above ``FITTED`` of the first and has levelled off (within
   ``LEVEL``, 20%, over the run's last quarter): the model cannot fit the training data (a line
   through a cubic).
7. Where the curves alone would say ``fine`` but the model learned nothing that carries to unseen
   data: the best val metric stayed within ``NEAR_CHANCE`` (10%) of the way from the prior's score
   to a perfect one, or never beat it (accuracy 0.16 where predicting the most frequent digit
   scores 0.10), or the final train loss is still within 10% of the prior's loss, or above it:
   ``overfitting`` when the train data is fitted (train loss under half the prior's) and the val
   metric never beat the prior's, else ``underfitting``.
8. ``fine`` otherwise.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from dlexp.runs.files import GRAD_NORMS_FILE, METRICS_FILE, atomic_write, csv_text
GRAD_COLUMNS = ["epoch", "depth", "layer", "type", "grad_norm", "weight_norm", "grad_to_weight"]

MIN_EPOCHS = 3  # fewer epochs than this are too short to diagnose
DIVERGE_RISE = 0.10  # final train loss this far (relative) above the first epoch's: diverging
FLAT = 0.02  # final train loss within this (relative) of the first epoch's: not learning
OVERFIT_RISE = 0.20  # val loss this far (relative) above its minimum counts as rising
UNDERFIT_LEFT = 0.5  # final train loss above this fraction of the first epoch's: barely fitted
FITTED = 0.1  # final train loss below this fraction of the first epoch's: the training data is fitted
STILL_FALLING = 0.05  # relative drop of both losses in the last epoch that means "still learning"
NEGLIGIBLE = 1e-3  # a val loss rise under this fraction of the first train loss: the noise of a converged fit
GAP_RATIO = 10.0  # final val loss this many times the final train loss...
WIDE_GAP = 0.25  # ...and above it by this fraction of the first train loss: overfitting, even if val never rose
LEVEL = 0.2  # train loss within this (relative) over the run's last quarter: it has levelled off
EXPLODE = 100.0  # a train loss this many times its first epoch's: blown up
ABOVE_PRIOR = 10.0  # a final train loss this many times the prior's: worse than predicting a constant
NEAR_CHANCE = 0.1  # best val metric within this share of the way from the prior's score to a perfect one


def parameter_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters directly, input to output (their order of definition)."""
    return [(name or type(m).__name__, m) for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]


def layer_norms(model: nn.Module) -> list[dict[str, Any]]:
    """One row per parameter-owning layer: L2 norms over all of that layer's parameters (weight and bias).

    A layer whose parameters have no gradient yet gets NaN as its gradient norm.
    """
    layers = parameter_layers(model)
    grads, weights = [], []
    for _, module in layers:
        params = list(module.parameters(recurse=False))
        weights.append(torch.linalg.vector_norm(torch.stack([p.detach().float().norm() for p in params])))
        g = [p.grad.detach().float().norm() for p in params if p.grad is not None]
        grads.append(torch.linalg.vector_norm(torch.stack(g)) if g else torch.full_like(weights[-1], math.nan))
    values = torch.stack([torch.stack(grads), torch.stack(weights)]).cpu().tolist()  # (2, L): one sync
    rows = []
    for depth, ((name, module), grad, weight) in enumerate(zip(layers, values[0], values[1]), start=1):
        ratio = grad / weight if weight > 0 else math.nan
        rows.append({"depth": depth, "layer": name, "type": type(module).__name__,
                     "grad_norm": grad, "weight_norm": weight, "grad_to_weight": ratio})
    return rows


def generalization_gap(rows: Sequence[dict[str, Any]], metric: str, best_epoch: int) -> dict[str, float]:
    """train minus val, for the loss and the metric, at the best epoch and at the last one.

    With a loss, a negative gap (train below val) is the usual sign of overfitting;
    with a higher-is-better metric such as acc, a positive one.
    """
    gap: dict[str, float] = {}
    by_epoch = {int(r["epoch"]): r for r in rows}
    for label, epoch in (("best", best_epoch), ("final", int(rows[-1]["epoch"]) if rows else 0)):
        row = by_epoch.get(epoch)
        for name in ("loss", metric):
            if row is not None and f"train/{name}" in row and f"val/{name}" in row:
                gap[f"gap/{label}/{name}"] = float(row[f"train/{name}"]) - float(row[f"val/{name}"])
    return gap


def diagnose(train_loss: Sequence[float], val_loss: Sequence[float], *, prior: Optional[dict[str, float]] = None,
             val_metric: Sequence[float] = (), mode: str = "max", lr: Optional[float] = None) -> tuple[str, str]:
    """(label, reason) from per-epoch train and val losses, by the rules in this module's docstring.

    ``prior``: the loss and monitored metric of predicting the train targets' prior (``Task.prior``);
    ``val_metric``: the monitored metric per epoch, ``mode`` its direction; ``lr``: the run's learning rate,
    for the advice of an unstable run."""
    tr, va = [float(v) for v in train_loss], [float(v) for v in val_loss]
    for name, curve in (("train", tr), ("val", va)):
        bad = next((i for i, v in enumerate(curve) if not math.isfinite(v)), None)
        if bad is not None:
            return "diverging", f"{name} loss is {curve[bad]} at epoch {bad + 1}"
    blown = blown_up(tr, prior)
    if blown:
        return "unstable", f"{blown}; {lr_advice(lr)}"
    label, reason = _from_curves(tr, va)
    learned_nothing = near_chance(val_metric, prior, mode) or at_prior(tr, prior)
    if label != "fine" or not learned_nothing:
        return label, reason
    fitted = tr[-1] < UNDERFIT_LEFT * prior["loss"]  # the train data is fitted: what fails is unseen data
    if fitted and worse_than_prior(val_metric, prior, mode):
        return "overfitting", (f"it fits its train data (train loss {tr[-1]:.4g}, under the {prior['loss']:.4g} of predicting "
                               f"the prior) but {learned_nothing.removeprefix('the ')}")
    return "underfitting", learned_nothing


def worse_than_prior(val_metric: Sequence[float], prior: dict[str, Any], mode: str) -> bool:
    """Whether the best val metric is no better than predicting the train targets' prior scores."""
    values = [float(v) for v in val_metric if math.isfinite(float(v))]
    best = (max if mode == "max" else min)(values)
    return best <= prior["metric"] if mode == "max" else best >= prior["metric"]


def at_prior(tr: list[float], prior: Optional[dict[str, float]]) -> Optional[str]:
    """Why the train loss shows that nothing was learned from the inputs (rule 7), or None."""
    base = (prior or {}).get("loss")
    if not tr or base is None or not math.isfinite(base) or tr[-1] < (1 - NEAR_CHANCE) * base:
        return None
    return (f"the train loss ended at {tr[-1]:.4g}, no lower than the {base:.4g} of predicting the train targets' "
            "prior without looking at the inputs")


def blown_up(tr: list[float], prior: Optional[dict[str, float]]) -> Optional[str]:
    """Why finite train losses show a blow-up (rule 2), or None."""
    if not tr:
        return None
    peak = max(range(len(tr)), key=tr.__getitem__)
    if peak > 0 and tr[peak] >= EXPLODE * tr[0] > 0:
        return f"train loss rose to {tr[peak]:.3g} at epoch {peak + 1}, {tr[peak] / tr[0]:.3g}x its first epoch's {tr[0]:.3g}"
    base = (prior or {}).get("loss")
    if base is None or not math.isfinite(base) or base <= 0:
        return None
    if prior.get("starts_near") and tr[peak] >= EXPLODE * base:  # a fresh classifier's loss starts near the prior's
        return (f"train loss reached {tr[peak]:.3g} at epoch {peak + 1}, {tr[peak] / base:.3g}x the {base:.3g} of "
                f"predicting the train targets' prior without looking at the inputs (it ended at {tr[-1]:.3g})")
    if tr[-1] > ABOVE_PRIOR * base:
        return (f"train loss ended at {tr[-1]:.3g} (epoch {len(tr)}), {tr[-1] / base:.3g}x the {base:.3g} of predicting "
                "the train targets' prior without looking at the inputs")
    return None


def lr_advice(lr: Optional[float]) -> str:
    """The likely cause of a blow-up, with a value to try: a tenth of the learning rate (1e-3 from an absurd one)."""
    if lr is None:
        return "the learning rate is likely too high: lower it"
    suggested = 1e-3 if lr >= 1.0 else lr / 10
    return f"the learning rate is likely too high: try optim.lr={suggested:.3g} (now {lr:.3g}), or trainer.grad_clip=1.0"


def near_chance(val_metric: Sequence[float], prior: Optional[dict[str, float]], mode: str) -> Optional[str]:
    """Why the monitored val metric never got clear of the prior's score (rule 7), or None."""
    chance = (prior or {}).get("metric")
    values = [float(v) for v in val_metric if math.isfinite(float(v))]
    if chance is None or not math.isfinite(chance) or not values:
        return None
    if mode == "max":  # e.g. accuracy: perfect is 1
        best, room = max(values), 1.0 - chance
        near = room > 0 and best <= chance + NEAR_CHANCE * room
    else:  # e.g. rmse: perfect is 0
        best = min(values)
        near = chance > 0 and best >= (1 - NEAR_CHANCE) * chance
    if not near:
        return None
    return (f"the val metric stayed near chance: best {best:.4g} against {chance:.4g} for predicting the train "
            "targets' prior without looking at the inputs")


def _from_curves(tr: list[float], va: list[float]) -> tuple[str, str]:
    """Rules 3 to 6 and 8, from the finite loss curves alone."""
    if min(len(tr), len(va)) < MIN_EPOCHS:
        return "too_short", f"too short to diagnose: {min(len(tr), len(va))} epoch(s); run trainer.epochs>={MIN_EPOCHS}"
    if tr[-1] > (1 + DIVERGE_RISE) * tr[0]:
        return "diverging", f"train loss rose from {tr[0]:.4g} (epoch 1) to {tr[-1]:.4g} (epoch {len(tr)})"
    best = min(range(len(va)), key=va.__getitem__)
    rose = va[-1] - va[best] > NEGLIGIBLE * tr[0]  # a rise of a converged fit's noise floor is no sign
    if va[-1] > (1 + OVERFIT_RISE) * va[best] and tr[-1] < tr[best] and rose:
        rise = va[-1] / va[best] - 1
        return "overfitting", (
            f"val loss rose {rise:.0%} above its minimum {va[best]:.4g} (epoch {best + 1}) "
            f"while train loss fell to {tr[-1]:.4g}"
        )
    if va[-1] > GAP_RATIO * tr[-1] and va[-1] - tr[-1] > WIDE_GAP * tr[0]:
        return "overfitting", (
            f"val loss {va[-1]:.4g} is {va[-1] / max(tr[-1], 1e-300):.3g}x its train loss {tr[-1]:.4g}: "
            f"a gap of {(va[-1] - tr[-1]) / tr[0]:.0%} of the first epoch's train loss"
        )
    if abs(tr[-1] - tr[0]) <= FLAT * tr[0]:
        return "underfitting", (
            f"not learning: train loss stayed at {tr[0]:.4g} -> {tr[-1]:.4g} (a classifier's chance level is "
            f"ln(classes)); try another optim.lr, model.init or model.activation"
        )
    if tr[-1] > UNDERFIT_LEFT * tr[0]:
        return "underfitting", f"train loss fell only {1 - tr[-1] / tr[0]:.0%} ({tr[0]:.4g} -> {tr[-1]:.4g})"
    tail = tr[-max(2, len(tr) // 4):]  # the last quarter of the run
    if tr[-1] > FITTED * tr[0] and max(tail) - min(tail) < LEVEL * tr[-1] and len(tr) >= 8:
        return "underfitting", (
            f"train loss levelled off at {tr[-1]:.4g}, {tr[-1] / tr[0]:.0%} of its first epoch's {tr[0]:.4g} "
            f"(within {LEVEL:.0%} over the last {len(tail)} epochs): the model cannot fit the training data"
        )
    still_falling = len(tr) >= 2 and tr[-1] < (1 - STILL_FALLING) * tr[-2] and va[-1] < (1 - STILL_FALLING) * min(va[:-1])
    if still_falling and tr[-1] > FITTED * tr[0]:
        return "underfitting", (
            f"still learning when training stopped: the last epoch cut the train loss {1 - tr[-1] / tr[-2]:.0%} "
            f"and set a val loss {1 - va[-1] / min(va[:-1]):.0%} below its previous best: train longer"
        )
    if va[-1] > (1 + OVERFIT_RISE) * va[best]:
        held = (f"val loss {va[-1]:.4g} rose {va[-1] / va[best] - 1:.0%} above its minimum {va[best]:.4g}, by less "
                f"than {NEGLIGIBLE:.1%} of the first train loss (noise)")
    else:
        held = f"val loss {va[-1]:.4g} within {OVERFIT_RISE:.0%} of its minimum"
    return "fine", (f"train loss fell {1 - tr[-1] / tr[0]:.1%} ({tr[0]:.4g} -> {tr[-1]:.4g}); {held}, "
                    f"{va[-1] / max(tr[-1], 1e-300):.3g}x the train loss")


class Diagnostics:
    """Collects each epoch's row and layer norms; writes grad_norms.csv (main process only)."""

    def __init__(self, run_dir: Path, *, is_main: bool = True):
        self.path = Path(run_dir) / GRAD_NORMS_FILE
        self.is_main = is_main
        self.rows: list[dict[str, Any]] = []
        self._started = False

    def record(self, model: nn.Module, row: dict[str, Any]) -> None:
        """Call once per epoch, after the training pass (``row`` is the epoch's metrics.csv row)."""
        self.rows.append(dict(row))
        if not self.is_main:
            return
        norms = layer_norms(model)
        mode = "a" if self._started or (self.path.exists() and self.path.stat().st_size > 0) else "w"
        # No fsync, unlike metrics.csv: this runs between the epoch's metrics.csv row and its
        # checkpoint, a window kept short; a resume drops rows that the checkpoint does not cover.
        with open(self.path, mode, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=GRAD_COLUMNS)
            if mode == "w":
                writer.writeheader()
            writer.writerows({"epoch": row["epoch"], **n} for n in norms)
        self._started = True

    def keep_epochs_up_to(self, last_epoch: int) -> None:
        """On resume: drop grad_norms.csv rows after ``last_epoch`` and take the earlier epochs from metrics.csv."""
        metrics = self.path.with_name(METRICS_FILE)
        if metrics.is_file():
            with open(metrics, newline="") as handle:
                self.rows = [{k: float(v) if v else math.nan for k, v in row.items()}
                             for row in csv.DictReader(handle) if int(row["epoch"]) <= last_epoch]
        if not self.is_main or not self.path.is_file():
            return
        with open(self.path, newline="") as handle:
            kept = [[row[c] for c in GRAD_COLUMNS] for row in csv.DictReader(handle) if int(row["epoch"]) <= last_epoch]
        atomic_write(self.path, csv_text(kept, header=GRAD_COLUMNS))

    def summarize(self, metric: str, best_epoch: Optional[int], *, diverged: Optional[str] = None,
                  prior: Optional[dict[str, float]] = None, mode: str = "max", lr: Optional[float] = None,
                  interrupted: bool = False) -> dict[str, Any]:
        """Summary entries: the generalization gap at the best and final epochs, and the diagnosis.

        ``diverged`` is the reason when the run stopped on a non-finite loss (its last epoch never
        reached the curves); ``prior`` what predicting the train targets' prior scores (``Task.prior``),
        ``mode`` the monitored metric's direction, ``lr`` the learning rate (the advice of an unstable run).
        """
        out: dict[str, Any] = generalization_gap(self.rows, metric, best_epoch or 0)
        label, reason = diagnose([r["train/loss"] for r in self.rows], [r["val/loss"] for r in self.rows], prior=prior,
                                 val_metric=[r.get(f"val/{metric}", math.nan) for r in self.rows], mode=mode, lr=lr)
        if diverged:
            label, reason = "diverging", diverged
        elif label == "too_short" and interrupted:  # stopped early by a signal: the epochs set are not the problem
            reason = f"too short to diagnose: {len(self.rows)} epoch(s) so far; the run was interrupted: resume it"
        out["diagnosis"] = label
        out["diagnosis_reason"] = reason
        return out
