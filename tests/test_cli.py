"""End to end through the real CLI: files on disk, sweeps, and errors for user mistakes. A command runs in a
subprocess where the process is what is checked (start-up output, imports, the exit after a run, the console
script), else in this process (``in_process``)."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error, read_json, run_cli

SMOKE = ["trainer=smoke", "trainer.progress=false"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_smoke_run_writes_metrics_summary_and_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*SMOKE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "dlexp: composing config..."  # printed before the slow imports
    assert [p.name for p in run_dir.glob("*.log")] == ["run.log"]  # no empty dlexp.log of Hydra's: the run's own lines
    assert (run_dir / "run.log").read_text().splitlines()[0] == proc.stdout.splitlines()[1]  # the banner, as printed

    rows = _rows(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0]) == ["epoch", "lr", "train/loss", "train/acc", "val/loss", "val/acc", "train_examples_per_s",
                            "val_examples_per_s", "epoch_seconds"]
    # the default cosine schedule over smoke's 2 epochs: Adam's lr 3e-3, then halfway down
    assert [float(r["lr"]) for r in rows] == pytest.approx([3e-3, 1.5e-3])
    for row in rows:
        assert 0.0 <= float(row["val/acc"]) <= 1.0
        assert float(row["train/loss"]) > 0
    assert float(rows[1]["train/loss"]) < float(rows[0]["train/loss"])  # it learns

    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed"
    assert summary["epochs_run"] == 2
    assert summary["best_epoch"] in (1, 2)
    assert summary["best/val/acc"] == max(float(r["val/acc"]) for r in rows)
    assert 0.0 < summary["test/acc"] <= 1.0 and summary["test/loss"] > 0
    assert summary["num_params"] == 64 * 256 + 256 + 256 * 10 + 10
    assert summary["device"] == "cpu"
    assert summary["wall_seconds"] > 0

    assert (run_dir / ".hydra" / "config.yaml").is_file()
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert last["epoch"] == 2 and best["epoch"] == summary["best_epoch"]
    assert last["config"]["model"]["name"] == "mlp"
    assert set(last["model"]) == {"1.weight", "1.bias", "4.weight", "4.bias"}  # Flatten, Linear, ReLU, Dropout, Linear
    assert "epoch   2 |" in proc.stdout and "Run summary" in proc.stdout


@pytest.mark.slow  # the installed console script, a process of its own (packaging: tests/test_packaging.py)
def test_console_script_runs_the_same_app(tmp_path):
    exe = Path(sys.executable).with_name("dlexp")
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    import subprocess

    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [str(exe), *SMOKE, "model=softmax", "optim=adam", "optim.lr=0.01", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_json(run_dir / "summary.json")["model"] == "softmax"


def test_default_run_dirs_do_not_collide(tmp_path, in_process):
    procs = [in_process(*SMOKE, "trainer.epochs=1", "trainer.checkpoints=false", cwd=tmp_path) for _ in range(2)]
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs]
    run_dirs = [p.parent for p in (tmp_path / "outputs").glob("*/*/summary.json")]
    assert len(run_dirs) == 2


@pytest.mark.slow  # the fast tier's grid sweep (test_sweeps.py) writes 8 run dirs of 4 configs
def test_multirun_2x2_yields_4_run_dirs(tmp_path, in_process):
    sweep_dir = tmp_path / "sweep"
    proc = in_process(
        "-m", *SMOKE, "trainer.epochs=1", "regularizer.weight_decay=0,1e-3", "regularizer.dropout=0,0.5",
        f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summaries = sorted(sweep_dir.glob("*/summary.json"))
    assert len(summaries) == 4
    seen = set()
    for path in summaries:
        assert read_json(path)["status"] == "completed"
        cfg = (path.parent / ".hydra" / "config.yaml").read_text()
        seen.add(cfg)
    assert len(seen) == 4  # four different configs


def test_cfg_job_prints_the_composed_config(tmp_path, in_process):
    proc = in_process("--cfg", "job", "model=softmax", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "name: softmax" in proc.stdout and "trainer:" in proc.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=lenett"], "unknown model 'lenett'"),
        (["model.hiden=3"], "unknown key 'model.hiden'"),
        (["+model.hiden=3"], "unknown config key 'model.hiden'"),
        (["trainer.epochs=abc"], "bad value for 'trainer.epochs'"),
        (["trainer.device=cuda"], "CUDA is not available"),
        (["optim.lr=-0.1"], "optim.lr must be > 0"),
        (["optim.lr=0"], "optim.lr must be > 0"),
        (["trainer.batch_size=0"], "trainer.batch_size must be >= 1"),
        (["regularizer.dropout=1.5"], "regularizer.dropout must be in [0, 1)"),
        (["split.val_fraction=1.5"], "split.val_fraction must be in (0, 1)"),
    ],
)
def test_user_mistakes_give_one_line_and_nonzero_exit(tmp_path, in_process, args, message):
    if "CUDA" in message and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = in_process(*SMOKE, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(proc, message)


def _imported_modules(*args: str, cwd: Path) -> tuple[str, set[str]]:
    """stdout and the modules a fresh ``python -X importtime -m dlexp ARGS`` imported."""
    import subprocess

    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dlexp", *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return proc.stdout, set(lines)


def test_help_and_version_answer_without_hydra_or_torch(tmp_path):
    from dlexp import __version__

    out, modules = _imported_modules("--help", cwd=tmp_path)
    assert "torch" not in modules and "sklearn" not in modules
    groups = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines() if line.startswith("  ")}
    assert groups["model"].startswith("mlp, alexnet,") and "vgg11" in groups["model"]  # the default first
    assert groups["dataset"].startswith("digits, ") and "hydra" not in groups
    assert "composing config" not in out
    for args in (["--version"], ["model=lenet", "--version"]):
        proc = run_cli(*args, cwd=tmp_path)
        assert (proc.returncode, proc.stdout) == (0, f"dlexp {__version__}\n"), proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_shell_completion_queries_get_only_hydra_answers(tmp_path):
    proc = run_cli("-sc", "query=bash", cwd=tmp_path, env={"COMP_LINE": "dlexp model=le"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["model=lenet", "model=lenet_bn"]  # no start-up line mixed into the answer


def test_building_the_registries_does_not_import_scikit_learn():
    """sklearn costs about a second; only drawing a split or loading the digits needs it."""
    import subprocess

    code = "import sys, dlexp.train; print('sklearn' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr


def test_traceback_on_request(tmp_path, in_process):
    proc = in_process(*SMOKE, "optim.lr=-1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env={})
    assert "Traceback" not in proc.stderr
    # on request the interpreter prints the traceback as the process ends: a real process
    env = {**os.environ, "DLEXP_TRACEBACK": "1", "HYDRA_FULL_ERROR": "1"}
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "dlexp", *SMOKE, "optim.lr=-1", f"hydra.run.dir={tmp_path / 'run2'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unusable_output_dir_is_refused_before_anything_is_written(tmp_path, in_process):
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    proc = in_process(*SMOKE, f"hydra.run.dir={blocker / 'run'}", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "cannot create output dir" in proc.stderr and "hydra.run.dir=" in proc.stderr
    assert blocker.read_text() == "keep me"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_dir_on_a_file_system_that_refuses_folders_is_one_line_even_for_root(tmp_path, in_process):
    """/proc passes permission checks for root, but mkdir there fails: the probe makes a real folder."""
    for args in ([f"hydra.run.dir=/proc/dlexp_run_{os.getpid()}"], ["-m", f"hydra.sweep.dir=/proc/dlexp_sweep_{os.getpid()}"]):
        proc = in_process(*SMOKE, *args, cwd=tmp_path)
        assert_one_line_error(proc, "cannot create output dir /proc/dlexp_")
        assert "/proc is not writable; set hydra." in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_output_dir(tmp_path, in_process):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = in_process(*SMOKE, f"hydra.run.dir={locked / 'run'}", cwd=tmp_path)
    finally:
        locked.chmod(0o700)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "not writable" in proc.stderr


def test_failing_job_does_not_stop_the_sweep(tmp_path, in_process):
    sweep_dir = tmp_path / "sweep"
    proc = in_process("-m", *SMOKE, "trainer.epochs=1", "optim.lr=-1,0.001", f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    statuses = sorted(read_json(p)["status"] for p in sweep_dir.glob("*/summary.json"))
    assert statuses == ["completed", "failed"], proc.stderr


def test_a_finished_single_run_leaves_without_the_interpreter_teardown(monkeypatch):
    """entry(): after a single run, os._exit with the run's code (the teardown of torch._dynamo's modules
    costs about a second); sweeps and runs that never finished leave through SystemExit as usual."""
    import dlexp.cli.entry as entry_module

    left = []
    monkeypatch.setattr(entry_module.os, "_exit", left.append)

    def single_run(code):
        def fake_cli():
            return True, code  # a single run finished, its files written and closed, with this exit code
        return fake_cli

    for code in (0, 3):
        monkeypatch.setattr(entry_module, "cli", single_run(code))
        entry_module.entry()
        assert left[-1] == code
    monkeypatch.setattr(entry_module, "cli", lambda: sys.exit(2))  # e.g. a config error before any run
    with pytest.raises(SystemExit) as stop:
        entry_module.entry()
    assert stop.value.code == 2 and len(left) == 2


def test_the_app_reports_a_finished_single_run_with_its_exit_code():
    """A SystemExit out of Hydra's main: a run that finished (its files closed) is reported with its code, a
    diverged one too; a run refused before it finished leaves through the SystemExit."""
    from dlexp.cli.app import HydraApp

    app = HydraApp()
    app.finished_single_run = True
    assert app.ended(SystemExit(3)) == (True, 3)
    assert app.ended(SystemExit(0)) == (True, 0)
    app.finished_single_run = False
    with pytest.raises(SystemExit) as stop:
        app.ended(SystemExit(2))
    assert stop.value.code == 2


def test_a_run_prints_and_writes_everything_before_it_leaves(tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "w") as handle:  # a file, not a terminal: stdout is block-buffered and must be flushed
        proc = subprocess.run([sys.executable, "-m", "dlexp", *SMOKE, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                              stdout=handle, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().rstrip().splitlines()[-1].startswith("results in run")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "run").glob("events.out.tfevents.*"))))
    events.Reload()
    assert len(events.Scalars("train/loss")) == read_json(tmp_path / "run" / "summary.json")["epochs_run"]
