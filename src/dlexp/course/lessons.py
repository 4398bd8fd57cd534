"""The course's findings, one per preset (conf/experiment/<name>.yaml): each claim and how it is measured
from the files its run or sweep wrote (``dlexp.course.findings`` registers and records them).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional

from dlexp.course.findings import NotMeasurable, RunFiles, finding
from dlexp.runs.files import SUBMISSION_FILE, checkpoint_file


# --------------------------------------------------------------------------
# Small helpers for the findings below


def mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


def geomean(values: list[float]) -> float:
    """For ratios spanning decades; 0 and negative values give 0."""
    if not values or min(values) <= 0:
        return 0.0 if values else math.nan
    return math.exp(mean([math.log(v) for v in values]))


def over_seeds(jobs: list[RunFiles], fn: Callable[[RunFiles], float], *, geometric: bool = False) -> float:
    values = [fn(j) for j in jobs]
    return geomean(values) if geometric else mean(values)


def need(groups: dict[str, list[RunFiles]], *values: str) -> list[list[RunFiles]]:
    missing = [v for v in values if v not in groups]
    if missing:
        raise NotMeasurable(f"no completed job with {', '.join(missing)} (have {', '.join(groups)})")
    return [groups[v] for v in values]


def fmt(value: float) -> str:
    """3 significant digits; 3e-05 style for small ratios."""
    return f"{value:.2g}" if value != 0 and abs(value) < 1e-2 else f"{value:.3g}"


def epochs_to_reach(rows: list[dict[str, Any]], key: str, target: float) -> float:
    """The first epoch whose ``key`` is >= ``target``; inf when none is."""
    return next((float(r["epoch"]) for r in rows if r[key] >= target), math.inf)


# --------------------------------------------------------------------------
# The course's findings, one per preset (conf/experiment/<name>.yaml)


def _first_to_last_grad(job: RunFiles, epoch: int = 1) -> float:
    """First weight layer's gradient norm over the last one's, after ``epoch`` (grad_norms.csv)."""
    rows = [r for r in job.grad_norms() if int(r["epoch"]) == epoch and "Norm" not in str(r["type"])]
    rows.sort(key=lambda r: r["depth"])
    return rows[0]["grad_norm"] / rows[-1]["grad_norm"]


@finding("vanishing_gradients", "deep sigmoid nets have vanishing gradients", axis="model.activation")
def _vanishing_gradients(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    sigmoid, relu = (over_seeds(g, _first_to_last_grad, geometric=True) for g in need(groups, "sigmoid", "relu"))
    line = f"first-layer grad norm is {fmt(sigmoid)} x the last layer's (sigmoid) vs {fmt(relu)} x (relu)"
    # "vanishing": at least a hundredfold smaller than the same net with ReLU, after epoch 1
    return {"ratio/sigmoid": sigmoid, "ratio/relu": relu}, sigmoid < relu / 100, line


def _unit_spread(weights: Any) -> float:
    """How far apart the hidden units of a layer are: max |row - mean row| / mean |row|, over the rows
    (one row of the (out, in) weight matrix per unit); 0 when every unit is identical."""
    rows = weights.float()  # (units, inputs)
    return float((rows - rows.mean(0)).norm(dim=1).max() / rows.norm(dim=1).mean().clamp_min(1e-12))


@finding("symmetry", "constant init leaves the hidden units of a layer identical; random init does not", scope="run")
def _symmetry(run: RunFiles) -> tuple[dict, bool, str]:
    import torch  # only this finding reads a checkpoint: the report command stays without torch

    path = checkpoint_file(run.path)
    if not path.is_file():
        raise NotMeasurable(f"{path} is missing: keep trainer.checkpoints=true")
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    kernels = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2][:-1]  # hidden layers only
    if not kernels:
        raise NotMeasurable("the model has no hidden layer")
    spread = max(_unit_spread(w) for w in kernels)
    init = str(run.config.get("model", {}).get("init", "default"))
    symmetric = init in ("constant", "zeros")
    line = f"after training, hidden units differ by {fmt(spread)} (relative spread, init={init})"
    # identical means equal to float rounding; distinct means clearly apart
    return {"spread": spread, "init": init}, (spread < 1e-5) if symmetric else (spread > 0.1), line


def _final_gap(job: RunFiles) -> float:
    """val loss minus train loss at the last epoch (how much worse unseen data fares)."""
    return job.final("val/loss") - job.final("train/loss")


@finding("dropout_vs_weight_decay", "dropout and weight decay each shrink the train-val loss gap",
         axis="regularizer.dropout,regularizer.weight_decay")
def _dropout_vs_weight_decay(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    names = {(False, False): "none", (True, False): "dropout", (False, True): "L2", (True, True): "both"}
    labelled = {names[tuple(float(v) > 0 for v in key.split())]: jobs for key, jobs in groups.items()}
    gaps = {label: over_seeds(g, _final_gap) for label, g in zip(names.values(), need(labelled, *names.values()))}
    line = ", ".join(f"{label} {fmt(gap)}" for label, gap in gaps.items()) + " (val minus train loss)"
    holds = all(gaps[k] < 0.75 * gaps["none"] for k in ("dropout", "L2", "both"))  # each at least a quarter smaller
    tests = {label: over_seeds(g, _test_acc) for label, g in zip(names.values(), need(labelled, *names.values()))}
    measured = {**{f"gap/{k}": v for k, v in gaps.items()}, **{f"test_acc/{k}": v for k, v in tests.items()}}
    return measured, holds, (line, _crippled(tests))


def _crippled(test_acc: dict[str, float], points: float = 0.05) -> Optional[str]:
    """A regularizer narrows the gap for the right reason only if the model still learns: none of the
    settings may score more than ``points`` below the best one on the test set."""
    best = max(test_acc.values())
    worse = {k: v for k, v in test_acc.items() if v < best - points}
    if not worse:
        return None
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in worse.items())
    return (f"a regularized model must still learn: test acc {shown} against {fmt(best)} for the best setting, "
            f"more than {points:.0%} below it: the gap narrows because the model is crippled")


@finding("polynomial", "degree 1 underfits, degree 3 fits, degree 20 overfits 20 points", axis="dataset.degree")
def _polynomial(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    losses = {}
    for degree, jobs in zip(("1", "3", "20"), need(groups, "1", "3", "20")):
        losses[degree] = (over_seeds(jobs, lambda j: j.final("train/loss")), over_seeds(jobs, lambda j: j.final("val/loss")))
    (tr1, va1), (tr3, va3), (tr20, va20) = losses.values()
    line = ", ".join(f"degree {d}: train {fmt(t)} val {fmt(v)}" for d, (t, v) in losses.items()) + " (final MSE)"
    underfits = tr1 > 5 * tr3 and va1 > 5 * va3  # degree 1 cannot fit even the training points
    overfits = va20 > 1.5 * va3 and va20 - tr20 > va3 - tr3  # worse on unseen points, with a wider gap
    measured = {f"{split}/degree_{d}": v for d, pair in losses.items() for split, v in zip(("train", "val"), pair)}
    return measured, underfits and overfits, line


def _weight_norm(job: RunFiles) -> float:
    """The L2 norm of the (only) linear layer's parameters at the last epoch."""
    rows = job.grad_norms()
    last = max(r["epoch"] for r in rows)
    return next(r["weight_norm"] for r in rows if r["epoch"] == last)


@finding("weight_decay", "the held-out loss and the norm of w fall as weight decay grows", axis="regularizer.weight_decay")
def _weight_decay(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    lambdas = sorted(groups, key=float)
    val = [over_seeds(groups[lam], lambda j: j.final("val/loss")) for lam in lambdas]
    norm = [over_seeds(groups[lam], _weight_norm) for lam in lambdas]
    line = ", ".join(f"lambda={lam}: val loss {fmt(v)}, |w| {fmt(n)}" for lam, v, n in zip(lambdas, val, norm))
    falls = all(a > b for a, b in zip(val, val[1:])) and all(a > b for a, b in zip(norm, norm[1:]))
    measured = {**{f"val_loss/{lam}": v for lam, v in zip(lambdas, val)}, **{f"w_norm/{lam}": n for lam, n in zip(lambdas, norm)}}
    return measured, falls, line


def _final_train_loss(jobs: list[RunFiles]) -> float:
    return over_seeds(jobs, lambda j: j.final("train/loss"))


@finding("optimizers", "momentum and Nesterov speed up SGD; every optimizer lowers the training loss", axis="optim")
def _optimizers(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    final = {name: _final_train_loss(jobs) for name, jobs in groups.items()}
    first = {name: over_seeds(jobs, lambda j: float(j.metrics()[0]["train/loss"])) for name, jobs in groups.items()}
    need(groups, "sgd", "sgd_momentum", "nesterov")
    sgd, momentum, nesterov = final["sgd"], final["sgd_momentum"], final["nesterov"]
    line = "final train loss " + ", ".join(f"{name} {fmt(v)}" for name, v in final.items())
    holds = momentum < sgd and nesterov < sgd and all(final[n] < first[n] for n in final)
    return {f"final_train_loss/{n}": v for n, v in final.items()}, holds, line


def _late_val_loss(job: RunFiles, epochs: int = 3) -> float:
    """The mean val loss of the last ``epochs`` epochs (SGD's hovering averages out)."""
    return mean([float(r["val/loss"]) for r in job.metrics()[-epochs:]])


@finding("lr_decay", "a decaying learning rate ends with a lower held-out loss than a constant one", axis="scheduler")
def _lr_decay(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    final = {n: over_seeds(jobs, _late_val_loss) for n, jobs in zip(("none", "step", "plateau"), need(groups, "none", "step", "plateau"))}
    line = "val loss over the last 3 epochs: " + ", ".join(f"{'constant' if n == 'none' else n} {fmt(v)}" for n, v in final.items())
    return {f"late_val_loss/{n}": v for n, v in final.items()}, final["step"] < final["none"] and final["plateau"] < final["none"], line


@finding("activations", "ReLU and tanh train faster than sigmoid", axis="model.activation")
def _activations(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    final = {name: _final_train_loss(jobs) for name, jobs in zip(("relu", "tanh", "sigmoid"), need(groups, "relu", "tanh", "sigmoid"))}
    line = "final train loss " + ", ".join(f"{n} {fmt(v)}" for n, v in final.items())
    holds = final["relu"] < final["sigmoid"] / 2 and final["tanh"] < final["sigmoid"] / 2  # at least twice as low
    return {f"final_train_loss/{n}": v for n, v in final.items()}, holds, line


def _seconds_per_epoch(job: RunFiles) -> float:
    return mean([float(r["epoch_seconds"]) for r in job.metrics()])


@finding("hidden_width", "doubling the hidden width doubles the cost but barely changes the accuracy", axis="model.hidden")
def _hidden_width(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    widths = sorted(groups, key=lambda w: int(w.strip("[]").split(",")[0]))
    params = [float(groups[w][0].summary()["num_params"]) for w in widths]
    acc = [over_seeds(groups[w], lambda j: float(j.summary()[f"best/{j.summary()['monitor']}"])) for w in widths]
    secs = [over_seeds(groups[w], _seconds_per_epoch) for w in widths]
    line = ", ".join(f"{w}: {int(p):,} params, {fmt(s)} s/epoch, best val {fmt(a)}" for w, p, s, a in zip(widths, params, secs, acc))
    # cost: parameters (deterministic; time per epoch is reported but too noisy on a shared CPU to judge by)
    doubles = all(1.8 < b / a < 2.2 for a, b in zip(params, params[1:]))
    barely = max(acc) - min(acc) < 0.03  # within 3 points of accuracy
    measured = {**{f"params/{w}": p for w, p in zip(widths, params)}, **{f"best_val/{w}": a for w, a in zip(widths, acc)},
                **{f"seconds_per_epoch/{w}": s for w, s in zip(widths, secs)}}
    return measured, doubles and barely, line


@finding("batch_size", "batch 1 takes far longer per epoch than batch 256 but learns more per epoch", axis="trainer.batch_size")
def _batch_size(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    one, big = need(groups, "1", "256")
    secs = [over_seeds(g, _seconds_per_epoch) for g in (one, big)]
    acc = [over_seeds(g, lambda j: float(j.metrics()[0][f"val/{j.summary()['monitor'].split('/')[-1]}"])) for g in (one, big)]
    line = f"batch 1: {fmt(secs[0])} s/epoch, epoch-1 val {fmt(acc[0])}; batch 256: {fmt(secs[1])} s/epoch, epoch-1 val {fmt(acc[1])}"
    # 256x the optimizer steps: even on a busy machine the time ratio is far above 3
    holds = secs[0] > 3 * secs[1] and acc[0] > acc[1]
    return {"seconds_per_epoch/1": secs[0], "seconds_per_epoch/256": secs[1], "epoch1_val/1": acc[0],
            "epoch1_val/256": acc[1]}, holds, line


@finding("early_stopping", "early stopping ends an overfitting run sooner with the same chosen-epoch test score",
         axis="trainer.early_stopping.patience")
def _early_stopping(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    full, stopped = need(groups, "null", "5")
    metric = f"test/{full[0].summary()['monitor'].split('/')[-1]}"
    metric = metric if metric in full[0].summary() else "test/acc"
    epochs = [over_seeds(g, lambda j: float(j.summary()["epochs_run"])) for g in (full, stopped)]
    test = [over_seeds(g, lambda j: float(j.summary()[metric])) for g in (full, stopped)]
    rise = over_seeds(full, lambda j: j.final("val/loss") / min(float(r["val/loss"]) for r in j.metrics()))
    line = (f"{fmt(epochs[1])} epochs instead of {fmt(epochs[0])}, {metric} {fmt(test[1])} vs {fmt(test[0])}; "
            f"the full run's final val loss is {fmt(rise)} x its best")
    holds = epochs[1] < epochs[0] and abs(test[1] - test[0]) <= 0.01 and rise > 1.2  # it did overfit
    return {"epochs/full": epochs[0], "epochs/early": epochs[1], f"{metric}/full": test[0],
            f"{metric}/early": test[1], "val_loss_rise/full": rise}, holds, line


def _test_acc(job: RunFiles) -> float:
    return float(job.summary().get("test/acc", math.nan))


@finding("augmentation", "augmentation closes the train-val loss gap of a small training set", axis="augment")
def _augmentation(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    none, aug = need(groups, "none", "scale")
    gaps = [over_seeds(g, _final_gap) for g in (none, aug)]
    test = [over_seeds(g, _test_acc) for g in (none, aug)]
    line = (f"val minus train loss {fmt(gaps[1])} with random resized crops vs {fmt(gaps[0])} without "
            f"(test acc {fmt(test[1])} vs {fmt(test[0])})")
    # closed: at most half the unaugmented gap (the augmented batches may even be harder than val)
    return {"gap/none": gaps[0], "gap/scale": gaps[1], "test_acc/none": test[0], "test_acc/scale": test[1]}, \
        gaps[1] < 0.5 * gaps[0], line


@finding("batchnorm", "batch normalization reaches 90% val accuracy in fewer epochs", axis="model")
def _batchnorm(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    plain, bn = need(groups, "lenet", "lenet_bn")
    epochs = [over_seeds(g, lambda j: epochs_to_reach(j.metrics(), "val/acc", 0.9)) for g in (plain, bn)]
    line = f"epochs to 90% val acc: {fmt(epochs[1])} (LeNet-BN) vs {fmt(epochs[0])} (LeNet; inf = never)"
    return {"epochs_to_0.9/lenet": epochs[0], "epochs_to_0.9/lenet_bn": epochs[1]}, epochs[1] < epochs[0], line


@finding("kfold_house_prices", "5-fold cross-validation gives a stable log-RMSE estimate and a submission", scope="run")
def _kfold_house_prices(run: RunFiles) -> tuple[dict, bool, str]:
    summary = run.summary()
    key = f"best/{summary['monitor']}"
    value, std, folds = float(summary[key]), float(summary.get(f"std/{key}", math.nan)), int(summary.get("folds", 1))
    submission = run.path / SUBMISSION_FILE
    rows = max(len(submission.read_text().splitlines()) - 1, 0) if submission.is_file() else 0
    line = f"{summary['monitor']} {fmt(value)} +/- {fmt(std)} over {folds} folds; submission.csv with {rows} predictions"
    holds = folds >= 2 and std < value / 2 and rows > 0  # the folds agree to within half the error itself
    return {"mean": value, "std": std, "folds": folds, "submission_rows": rows}, holds, line


@finding("d2l_table", "the run reproduces the textbook's Fashion-MNIST test accuracy (within 2 points)", scope="run")
def _d2l_table(run: RunFiles) -> tuple[dict, bool, str]:
    expected = run.config.get("expected_test_acc")
    if expected is None:
        raise NotMeasurable("the preset sets no expected_test_acc")
    measured = float(run.summary().get("test/acc", math.nan))
    line = f"test acc {fmt(measured)} vs the book's {fmt(float(expected))}"
    return {"test_acc": measured, "expected_test_acc": float(expected)}, abs(measured - float(expected)) <= 0.02, line


def _summary_value(job: RunFiles, key: str) -> float:
    summary = job.summary()
    if key not in summary:
        raise NotMeasurable(f"{job.path / 'summary.json'} has no {key}")
    return float(summary[key])


@finding("covariate_shift", "importance weights recover accuracy on covariate-shifted test inputs", axis="shift.correct")
def _covariate_shift(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    none, weighted = need(groups, "none", "importance")
    acc = [over_seeds(g, lambda j: _summary_value(j, "test_shifted/acc")) for g in (none, weighted)]
    loss = [over_seeds(g, lambda j: _summary_value(j, "test_shifted/loss")) for g in (none, weighted)]
    clean = [over_seeds(g, lambda j: _summary_value(j, "test/acc")) for g in (none, weighted)]
    line = (f"shifted test acc {fmt(acc[1])} with importance weights vs {fmt(acc[0])} without (loss {fmt(loss[1])} vs "
            f"{fmt(loss[0])}; unshifted test acc {fmt(clean[1])} vs {fmt(clean[0])})")
    measured = {"shifted_acc/none": acc[0], "shifted_acc/importance": acc[1], "shifted_loss/none": loss[0],
                "shifted_loss/importance": loss[1], "test_acc/none": clean[0], "test_acc/importance": clean[1]}
    return measured, acc[1] > acc[0] + 0.05, line  # at least 5 points better on the shifted inputs


@finding("label_shift", "BBSE estimates the shifted class priors and its reweighted predictions beat the "
         "uncorrected ones", axis="shift.correct")
def _label_shift(groups: dict[str, list[RunFiles]]) -> tuple[dict, bool, str]:
    none, corrected = need(groups, "none", "bbse")
    plain = over_seeds(none, lambda j: _summary_value(j, "test_shifted/acc"))
    fixed = over_seeds(corrected, lambda j: _summary_value(j, "test_shifted_corrected/acc"))
    error = over_seeds(corrected, lambda j: _summary_value(j, "label_shift/prior_error"))
    priors = corrected[0].summary().get("label_shift/estimated_priors", [])
    line = (f"shifted test acc {fmt(fixed)} corrected vs {fmt(plain)} uncorrected; estimated priors "
            f"{'/'.join(fmt(p) for p in priors)} (seed of the first run), L1 error {fmt(error)}")
    measured = {"shifted_acc/none": plain, "shifted_acc/bbse": fixed, "prior_error/bbse": error}
    # 2 points of accuracy, and priors within 0.15 in L1 (a tenth of the 2 that disjoint priors would give)
    return measured, fixed > plain + 0.02 and error < 0.15, line
