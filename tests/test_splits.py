"""Holdout splits and the bundled digits, drawn without scikit-learn, agree with scikit-learn exactly.

Runs made before the split moved to numpy drew it with ``train_test_split``; the same indices in
the same order keep their results (tests/test_pinned_numbers.py) and every result since comparable.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from dlexp.data.sources import digits
from dlexp.data.splits import holdout, shuffled_split
from dlexp.errors import DataError


def _label_sets():
    rng = np.random.default_rng(0)
    yield "digits", load_digits().target
    yield "balanced", np.repeat(np.arange(4), 25)
    yield "skewed", np.array([0] * 70 + [1] * 20 + [2] * 7 + [3] * 3)  # fractional shares and ties
    yield "random", rng.integers(0, 7, 333)
    yield "two classes, odd", np.array([0] * 13 + [1] * 8)
    yield "string labels", np.array(["cat", "dog", "eel"] * 11)


@pytest.mark.parametrize("name, labels", list(_label_sets()), ids=[name for name, _ in _label_sets()])
@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.2, 1 / 3, 0.5])
def test_the_stratified_split_is_scikit_learns_index_for_index(name, labels, fraction):
    n = len(labels)
    for seed in (0, 1, 7, 123, 2**31 + 5):
        ours = shuffled_split(n, math.ceil(fraction * n), seed, labels)
        theirs = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=labels)
        assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1]), (name, fraction, seed)


@pytest.mark.parametrize("n, fraction", [(2, 0.5), (10, 0.15), (101, 0.2), (1000, 0.3)])
def test_the_plain_split_is_scikit_learns_index_for_index(n, fraction):
    for seed in (0, 3, 99):
        ours = shuffled_split(n, math.ceil(fraction * n), seed)
        theirs = train_test_split(np.arange(n), test_size=fraction, random_state=seed)
        assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


def test_a_stratified_split_keeps_every_class_share_and_covers_the_pool_once():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    train, test = shuffled_split(len(labels), 20, seed=4, labels=labels)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert np.bincount(labels[test]).tolist() == [14, 4, 2]


def test_a_holdout_that_leaves_nothing_to_train_on_is_refused():
    with pytest.raises(DataError, match="val_fraction=0.9 of 2 examples leaves none to train on"):
        holdout(2, None, 0, val_fraction=0.9)


def test_the_digits_are_scikit_learns_digits_and_split():
    bunch = load_digits()
    source = digits(test_fraction=0.2, test_seed=3)
    train_idx, test_idx = train_test_split(np.arange(1797), test_size=0.2, random_state=3, stratify=bunch.target)
    images = bunch.images.astype(np.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    assert np.array_equal(source.train[0].numpy(), images[train_idx])
    assert np.array_equal(source.test[1].numpy(), bunch.target[test_idx])


@pytest.mark.slow  # a whole run in a new process; the fast tier checks the imports of the registries (test_cli.py)
def test_a_default_run_never_imports_scikit_learn(tmp_path):
    code = ("import sys; from dlexp.cli.entry import cli; sys.argv = ['dlexp', 'trainer.epochs=1', 'trainer.progress=false', "
            f"'hydra.run.dir={tmp_path / 'run'}']\n"
            "try:\n    cli()\nexcept SystemExit:\n    pass\n"
            "print('sklearn loaded:', 'sklearn' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout.strip().endswith("sklearn loaded: False"), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "run" / "summary.json").is_file()
