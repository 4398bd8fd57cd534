"""Shared helpers: compose the real config with Hydra's compose API, and run the real CLI."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dlexp.config.files import CONFIG_DIR
from dlexp.training.throughput import is_timing

# tests/support on the path of this process and of every process the tests start: its sitecustomize.py arms
# dlexp's point hook in a child started with a fault to inject (support/faults.py says how)
SUPPORT = str(Path(__file__).resolve().parent / "support")
sys.path.insert(0, SUPPORT)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SUPPORT, os.environ.get("PYTHONPATH")) if p)

# What torch gives a new process (trainer.num_threads=null keeps it): what a run in this process starts from.
DEFAULT_THREADS = torch.get_num_threads()
# Small, fast runs: one thread, no progress bar, no checkpoints unless a test asks.
FAST = ["trainer.num_threads=1", "trainer.progress=false"]
# Every conv net of the model zoo, cheap on the CPU: narrow widths, and the digits
# resized just past the largest minimum input size (NiN needs 67x67).
TINY_CONV = ["dataset.resize=68", "model.width_div=8"]


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.fixture
def run_train(tmp_path):
    """Call ``train`` in-process on a composed config; returns (result, run_dir)."""
    from dlexp.train import train

    def _run(*overrides: str, run_dir: Path | None = None):
        run_dir = run_dir or tmp_path / "run"
        cfg = compose_cfg(*FAST, *overrides)
        return train(cfg, run_dir), run_dir

    return _run


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory):
    """Tiny files in every real dataset format, and the overrides that point each dataset option at them."""
    from datafiles import TinyDatasets

    return TinyDatasets(tmp_path_factory.mktemp("tiny_datasets"))


def run_cli(
    *args: str, cwd: Path, env: dict | None = None, timeout: int = 300, module: str = "dlexp"
) -> subprocess.CompletedProcess:
    """``python -m dlexp ARGS`` (or another ``module``) in a subprocess, as a user would run it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("DLEXP_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def tiered(cases, fast, ids=None) -> list:
    """``parametrize`` values for a cross product cut to representatives in the fast tier: every case runs
    (``make test-all``), and those whose id (``ids``), or value where no ids are given, is not in ``fast``
    are marked slow. A case that is a tuple gives the values of several arguments, as in ``parametrize``."""
    ids = list(ids) if ids is not None else [None] * len(cases)
    return [pytest.param(*(case if isinstance(case, tuple) else (case,)), id=id_,
                         marks=() if (case if id_ is None else id_) in fast else pytest.mark.slow)
            for case, id_ in zip(cases, ids)]


def untimed_rows(path: Path) -> list[dict[str, str]]:
    """metrics.csv rows as written (strings: the last digit counts), without the timing columns
    (``epoch_seconds``, ``*_per_s``): what two runs of one config must agree on. ``path``: the file or its run dir."""
    path = Path(path)
    path = path / "metrics.csv" if path.is_dir() else path
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if not is_timing(k)} for row in csv.DictReader(handle)]


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def assert_one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    """A user mistake: non-zero exit, no traceback, exactly one ``error: ...`` line naming the problem."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def cli_in_process(module: str, args: list[str], capfd=None) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` through the function its ``__main__`` calls (``dlexp.cli.entry.cli``, or the
    module's ``main(argv)``) in this process, which saves the ~7 s of imports that each new process pays.
    Output is read through ``capfd``; without it (a fixture wider than one test) through ``sys.stdout`` and
    ``sys.stderr``. The run starts from a new process's torch threads; they and Hydra's global state are
    reset afterwards, and dlexp's exit hooks run then, as at the end of the command's process."""
    if capfd is None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _call_main(module, args)
        return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())
    capfd.readouterr()
    code = _call_main(module, args)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess([module, *args], code, out, err)


def _call_main(module: str, args: list[str]) -> int:
    import atexit
    import importlib

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from dlexp.cli.entry import cli

    saved, sys.argv = sys.argv, [module, *args]
    threads = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_THREADS)  # trainer.num_threads=null: a new process's count, not a former test's
    at_exit, register = [], atexit.register
    atexit.register = lambda hook, *a, **kw: at_exit.append((hook, a, kw)) or hook
    code = 0
    try:
        code = cli()[1] or 0 if module == "dlexp" else importlib.import_module(module).main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = saved
        atexit.register = register
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # a later in-process train() must not think it is in this sweep
    # dlexp's exit hooks (a sweep that stopped early is summarized) run where the command's process would
    # end, into the captured output; the libraries' at the end of this process
    for hook, a, kw in reversed(at_exit):
        if (getattr(hook, "__module__", None) or "").startswith("dlexp."):
            hook(*a, **kw)
        else:
            register(hook, *a, **kw)
    return code


@pytest.fixture
def in_process(tmp_path, monkeypatch, capfd):
    """``run_cli`` for tests of what a command does rather than of its process: the same arguments through
    ``cli_in_process``, in ``cwd`` (the test's tmp_path unless given; it stays the working dir afterwards),
    with ``env`` added for the call."""
    def _run(*args: str, cwd: Path | None = None, env: dict | None = None, module: str = "dlexp"):
        monkeypatch.chdir(cwd or tmp_path)
        monkeypatch.delenv("DLEXP_TRACEBACK", raising=False)  # as run_cli: one line, never a traceback
        with monkeypatch.context() as scoped:
            for key, value in (env or {}).items():
                scoped.setenv(key, value)
            return cli_in_process(module, list(args), capfd)

    return _run


def run_in(cwd: Path, *args: str, module: str = "dlexp") -> subprocess.CompletedProcess:
    """``in_process`` for a fixture wider than one test, which has no capfd: ``python -m MODULE ARGS`` in
    this process, in ``cwd``. A module fixture trains a run or a sweep once this way; tests that change
    what it wrote work on a ``copied`` folder."""
    with contextlib.chdir(cwd), pytest.MonkeyPatch.context() as scoped:
        scoped.delenv("DLEXP_TRACEBACK", raising=False)
        return cli_in_process(module, list(args))


def copied(source: Path, target: Path) -> Path:
    """A copy of a module fixture's folder that a test may change: ``target``, which must not exist yet."""
    shutil.copytree(source, target, symlinks=True)
    return target


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL 15 server for this test session (``tests/services.py``)."""
    from services import postgres_server

    yield from postgres_server()


@pytest.fixture(scope="session")
def mlflow_server():
    """A real MLflow tracking server (SQLite store) on a free 127.0.0.1 port for this test session
    (``tests/services.py``); its ``url`` is what ``logger.tracking_uri`` takes."""
    from services import mlflow_server

    yield from mlflow_server()


@pytest.fixture(scope="session")
def slurm_env():
    """A single-node SLURM cluster on localhost for this test session (``tests/services.py``)."""
    from services import slurm_cluster

    yield from slurm_cluster()
