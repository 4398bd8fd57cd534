"""Pinned numbers: fixed explicit configs must give the same metrics, to the last digit, on the CPU.

The reference (``tests/reference/pinned_metrics.json``) was written by the code
before the training core was restructured; a change that alters any number here
must say why and regenerate the file on purpose:

    DLEXP_UPDATE_REFERENCE=1 .venv/bin/python -m pytest tests/test_pinned_numbers.py

Convolutions round differently on CPUs whose kernels differ (AVX2 vs AVX-512, one vendor's
microcode or another's), in the last bit of a float32 sum. ``pinned_metrics_by_cpu.json`` holds
the records of such CPUs, written by the same code: on a CPU listed there (or in the main file)
the comparison is exact; on a CPU no record was written on, every number must agree to float32
rounding (a relative 1e-6) and the test says which CPU it saw.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import read_json, untimed_rows
from datafiles import write_arrays

REFERENCE = Path(__file__).parent / "reference" / "pinned_metrics.json"
BY_CPU = Path(__file__).parent / "reference" / "pinned_metrics_by_cpu.json"
FLOAT32_ROUNDING = 1e-6  # relative: one rounding of a float32 sum is about 6e-8
NO_STOP = ["trainer.early_stopping.patience=null"]
# defaults the pinned configs were written under, stated so that tuning the default experiment cannot move them
WRITTEN_UNDER = ["scheduler=none", "model.dropout=0.0"]

# name -> (array file options or None, overrides). Explicit on purpose: a default that changes later
# must not move these numbers.
CONFIGS = {
    "arrays_mlp_sgd_momentum": (
        {"task": "classification"},
        ["dataset=arrays", "model=mlp", "model.hidden=[32]", "optim=sgd_momentum", "optim.lr=0.05",
         "trainer.epochs=4", "trainer.batch_size=8", *NO_STOP, *WRITTEN_UNDER],
    ),
    "arrays_binary_clip_l1_step": (
        {"task": "binary"},
        ["dataset=arrays", "model=mlp", "model.hidden=[16]", "optim=adam", "optim.lr=0.01", "regularizer=l1",
         "regularizer.l1=0.001", "trainer.grad_clip=1.0", "scheduler=step", "scheduler.step_size=2",
         "augment=noise", "trainer.epochs=4", "trainer.batch_size=8", *NO_STOP, "model.dropout=0.0"],
    ),
    "arrays_regression_kfold": (
        {"task": "regression"},
        ["dataset=arrays", "model=mlp", "model.hidden=[16]", "optim=sgd", "optim.lr=0.01", "split=kfold",
         "split.k=3", "trainer.epochs=2", "trainer.batch_size=8", *NO_STOP, *WRITTEN_UNDER],
    ),
    "digits_lenet_bn_dropout_wd": (
        None,
        ["dataset=digits", "dataset.resize=28", "model=lenet_bn", "optim=sgd_momentum", "optim.lr=0.05",
         "regularizer.weight_decay=0.0005", "regularizer.dropout=0.3", "trainer.epochs=2",
         "trainer.batch_size=64", "trainer.limit_train_batches=6", *NO_STOP, "scheduler=none"],
    ),
}


def _metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv rows as written (strings: the last digit counts), without the timing columns."""
    return untimed_rows(run_dir)


def _summary_numbers(summary: dict) -> dict:
    keep = ("best/", "test/", "gap/", "std/", "mean/")
    out = {k: v for k, v in summary.items() if k.startswith(keep)}
    out.update({k: summary[k] for k in ("epochs_run", "best_epoch", "monitor", "mode", "diagnosis") if k in summary})
    return out


def _run(name: str, run_train, tmp_path: Path) -> dict:
    arrays, overrides = CONFIGS[name]
    extra = []
    if arrays is not None:
        path = write_arrays(tmp_path / f"{name}.npz", n=120, seed=3, extra=("test",), **arrays)
        extra = [f"dataset.path={path}"]
    _, run_dir = run_train(*overrides, *extra, "seed=7", run_dir=tmp_path / name)
    summary = read_json(run_dir / "summary.json")
    record = {"summary": _summary_numbers(summary)}
    fold_dirs = sorted(run_dir.glob("fold_*"))
    for d in fold_dirs or [run_dir]:
        record[f"metrics:{d.name if fold_dirs else 'run'}"] = _metrics_rows(d)
    return record


def cpu_kind() -> str:
    """What decides how this CPU's kernels round: the instruction set PyTorch dispatches to, the vendor,
    and the microarchitecture, e.g. ``AVX2 AuthenticAMD family 25 model 1``."""
    import torch

    info = {}
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    return (f"{torch.backends.cpu.get_cpu_capability()} {info.get('vendor_id', '?')} "
            f"family {info.get('cpu family', '?')} model {info.get('model', '?')}")


def _by_cpu() -> dict[str, dict]:
    return json.loads(BY_CPU.read_text()) if BY_CPU.exists() else {}


def _expected(name: str) -> dict:
    """The record written on this kind of CPU, else the main file's."""
    return _by_cpu().get(cpu_kind(), {}).get(name) or json.loads(REFERENCE.read_text())[name]


def _close(got, expected) -> bool:
    """Equal, floats (also the numbers CSV files hold as text) within float32 rounding."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_close(got[k], expected[k]) for k in got)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(_close(a, b) for a, b in zip(got, expected))
    try:
        a, b = float(got), float(expected)
    except (TypeError, ValueError):
        return got == expected
    return a == b or abs(a - b) <= FLOAT32_ROUNDING * max(abs(a), abs(b))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fixed_config_gives_the_pinned_metrics(name, run_train, tmp_path):
    got = json.loads(json.dumps(_run(name, run_train, tmp_path)))  # floats as JSON stores them
    if os.environ.get("DLEXP_UPDATE_REFERENCE"):
        reference = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {}
        reference[name] = got
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
        pytest.skip("reference updated")
    expected, known = _expected(name), _by_cpu()
    varies = any(name in records for records in known.values())  # some CPU kind rounds this config differently
    if got == expected or cpu_kind() in known or not varies:
        assert got == expected  # exact: a record of this kind of CPU, or a config every CPU rounds alike
    else:  # a CPU kind no record was written on, for a config whose last bits depend on it
        assert _close(got, expected), f"not even within float32 rounding on this CPU ({cpu_kind()})"


def test_the_loose_comparison_still_sees_a_real_change():
    assert _close({"a": ["0.5", 2.0]}, {"a": ["0.50000001", 2.0]})
    assert not _close({"a": ["0.5", 2.0]}, {"a": ["0.5001", 2.0]})
    assert not _close({"a": [1.0]}, {"a": [1.0, 2.0]}) and not _close({"a": "x"}, {"b": "x"})
