"""The course presets' runs get the diagnosis their lesson names: the polynomial (degree 1 underfits,
3 fits, 20 overfits 20 points) and weight decay (no decay memorizes 20 examples of 200 inputs: val loss
many times its train loss; lambda=3 narrows the gap, and its val error is still several times the error of
predicting the mean: overfitting, less)."""
from __future__ import annotations

import pytest

# (preset, setting, seed, diagnosis, what its reason says); degree 3 over both of the preset's seeds: its
# val loss at the noise floor once rose 61% above its minimum, and was called overfitting
LESSONS = [
    ("polynomial", "dataset.degree=1", 0, "underfitting", "levelled off"),
    ("polynomial", "dataset.degree=3", 0, "fine", "(noise)"),
    ("polynomial", "dataset.degree=3", 1, "fine", "train loss fell"),
    ("polynomial", "dataset.degree=20", 0, "overfitting", "above its minimum"),
    ("weight_decay", "regularizer.weight_decay=0", 0, "overfitting", "x its train loss"),
    # lambda=3 narrows the gap but still does worse on val than predicting the mean (rmse 0.51 against 0.14)
    ("weight_decay", "regularizer.weight_decay=3", 0, "overfitting", "of predicting the prior"),
]


@pytest.mark.slow
@pytest.mark.parametrize("preset, setting, seed, label, says", LESSONS, ids=[f"{p}-{s}-{n}" for p, s, n, _, _ in LESSONS])
def test_each_preset_run_gets_the_diagnosis_its_lesson_names(run_train, preset, setting, label, says, seed):
    result, _ = run_train(f"experiment={preset}", setting, f"seed={seed}")
    summary = result.summary
    assert (summary["diagnosis"], says in summary["diagnosis_reason"]) == (label, True), summary["diagnosis_reason"]


def test_a_finding_that_holds_for_the_wrong_reason_does_not_hold():
    """L2 at 0.2 narrowed the gap only by crippling the model (test acc 0.77 against 0.92)."""
    from dlexp.course.findings import Finding
    from dlexp.course.lessons import _crippled

    assert _crippled({"none": 0.923, "dropout": 0.915, "L2": 0.908, "both": 0.902}) is None
    premise = _crippled({"none": 0.923, "dropout": 0.915, "L2": 0.767, "both": 0.747})
    assert premise.startswith("a regularized model must still learn: test acc L2 0.767, both 0.747 against 0.923")
    shown = Finding("dropout and weight decay each shrink the train-val loss gap", {}, False, "L2 0.0249", premise)
    assert shown.text().endswith(f": L2 0.0249: does not hold (premise: {premise})")
