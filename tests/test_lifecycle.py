"""The life of a run dir and a sweep: a refused command changes no byte, a resume follows the run's own
record, a signal at any moment stops in one line, and an interrupted sweep continues where it stopped.

Signals and kills hit real processes (armed through tests/support/faults.py); every other command, the
reruns and resumes after them included, runs in this process. The fast tier signals or kills at one
point before a run and one inside it; the other points are marked slow."""
from __future__ import annotations

import csv
import json
import os
import shlex
import signal
from pathlib import Path

import pytest
import torch

from conftest import FAST, assert_one_line_error, cli_in_process, copied, read_json, run_cli, run_in, tiered
from datafiles import write_arrays
from dlexp.results.report import find_job_dirs
from dlexp.runs.sweep import job_dir_name, read_manifest

SMOKE = ["trainer=smoke", "trainer.progress=false"]
TABLE_COLUMNS_NOT_COMPARED = {"wall_seconds"}  # a rerun's time is its own; every number it computed is compared


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden ones included, with its bytes; folders as None."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        out[path.relative_to(root).as_posix()] = path.read_bytes() if path.is_file() else None
    return out


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A finished 2-epoch run of softmax on an .npz file, whose dir later commands must leave alone."""
    root = tmp_path_factory.mktemp("earlier")
    write_arrays(root / "d.npz", n=120, seed=3, task="classification")
    proc = run_in(root, *SMOKE, "model=softmax", "dataset=arrays", "dataset.path=d.npz", "hydra.run.dir=runs/a")
    assert proc.returncode == 0, proc.stderr
    return root


REFUSED = {  # a command that must be refused in one line, and a words of its error
    "used dir": (["model=softmax", "hydra.run.dir=runs/a"], "already holds a run"),
    "incompatible resume": (["resume=runs/a", "optim.lr=0.5"], "cannot resume with optim.lr=0.5"),
    "another group": (["resume=runs/a", "model=mlp"], "cannot resume with model=mlp: the checkpoint was trained with model=softmax"),
    "bad override": (["resume=runs/a", "trainer.epochs=abc"], "bad value for 'trainer.epochs'"),
    "bad data file": (["resume=runs/a", "trainer.epochs=3"], "cannot read"),
    "a sweep key in a run": (["resume=runs/a", "sweep.name=x"], "sweep.name=x applies to -m sweeps"),
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_a_refused_command_changes_no_byte_of_the_earlier_run(earlier_run, tmp_path, in_process, kind):
    root = copied(earlier_run, tmp_path / "copy")
    if kind == "bad data file":
        (root / "d.npz").write_bytes(b"not an npz file")  # the run's data is damaged since
    before = tree(root / "runs")
    args, words = REFUSED[kind]
    proc = in_process(*FAST, *args, cwd=root)
    assert_one_line_error(proc, words)
    assert tree(root / "runs") == before  # hidden files (.hydra/) included, and nothing new


def test_a_refused_new_run_leaves_no_dir(tmp_path, in_process):
    proc = in_process(*SMOKE, "optim.lr=-1", "hydra.run.dir=new/run", cwd=tmp_path)
    assert_one_line_error(proc, "optim.lr must be > 0")
    assert not (tmp_path / "new").exists()
    proc = in_process(*SMOKE, "optim.lr=-1", cwd=tmp_path)  # the default outputs/<date>/<time> too
    assert proc.returncode == 2 and not any((tmp_path / "outputs").rglob("*"))


def test_the_value_hydra_uses_is_the_value_checked(tmp_path, in_process):
    """A key given twice: Hydra takes the last one, and so does every check before it."""
    proc = in_process(*SMOKE, "hydra.run.dir=a", "hydra.run.dir=/proc/dlexp_x", cwd=tmp_path)
    assert_one_line_error(proc, "cannot create output dir /proc/dlexp_x")
    proc = in_process(*SMOKE, "hydra.run.dir=/proc/dlexp_x", f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / "summary.json").is_file() and not (tmp_path / "a").exists()
    proc = in_process("resume=b", "resume=does/not/exist", cwd=tmp_path)
    assert_one_line_error(proc, "resume=does/not/exist: no such run dir or checkpoint")


# (group, option, overrides that keep its run small): a run of each group's non-default option
GROUP_RUNS = [
    ("model", "softmax", []),
    ("optim", "sgd_momentum", []),
    ("regularizer", "dropout", []),
    ("scheduler", "step", []),
    ("augment", "noise", []),
    ("shift", "covariate", []),
    ("split", "holdout", ["split.val_fraction=0.25"]),
    ("dataset", "wedge", []),
    ("trainer", "smoke", []),
    ("experiment", "lenet_digits", ["trainer.limit_train_batches=2", "trainer.limit_eval_batches=2"]),
]


# the fast tier: a group with a builder (model) and a fixed group (split)
@pytest.mark.parametrize("group,option,extra", tiered(GROUP_RUNS, fast={"model", "split"}, ids=[g for g, _, _ in GROUP_RUNS]))
def test_a_resume_follows_the_runs_own_record_for_every_group(tmp_path, capfd, group, option, extra):
    run_dir = tmp_path / "run"
    first = cli_in_process("dlexp", [*SMOKE, "trainer.epochs=1", f"{group}={option}", *extra,
                                     f"hydra.run.dir={run_dir}"], capfd)
    assert first.returncode == 0, first.stderr
    recorded = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["config"]
    banner = next(line for line in first.stdout.splitlines() if line.startswith("dlexp model="))
    resumed = cli_in_process("dlexp", [f"resume={run_dir}", "trainer.epochs=2"], capfd)  # nothing else said today
    assert resumed.returncode == 0, resumed.stderr
    again = next(line for line in resumed.stdout.splitlines() if line.startswith("dlexp model="))
    assert again.split(" device=")[0] == banner.split(" device=")[0]  # model=, dataset=, optim=, params
    config = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["config"]
    assert {**config, "trainer": {**config["trainer"], "epochs": 1}, "resume": None} == {**recorded, "resume": None}
    summary = read_json(run_dir / "summary.json")
    assert summary["epochs_run"] == 2
    first_choices = {k: v for k, v in zip(("model", "dataset", "optim"), banner.split(" params=")[0].split()[1:])}
    assert {k: summary[k] for k in first_choices} == {k: v.split("=")[1] for k, v in first_choices.items()}


# ------------------------------------------------------------------------------------------------
# Signals at fixed points: one line, 130 or 143, status interrupted wherever a run dir exists

BEFORE_THE_RUN = ["startup", "imports", "compose", "data", "model"]  # decided, not yet accepted: nothing written
IN_THE_RUN = ["accepted", "train_step", "val", "end_epoch", "test", "plots"]


@pytest.mark.parametrize("point", tiered(BEFORE_THE_RUN + IN_THE_RUN, fast={"compose", "train_step"}))
def test_a_signal_at_any_moment_stops_in_one_line(tmp_path, in_process, point):
    sig = "SIGTERM" if point in ("imports", "val", "plots") else "SIGINT"
    proc = run_cli(*SMOKE, "hydra.run.dir=run", cwd=tmp_path, env={"DLEXP_SIGNAL_AT": f"{point}:{sig}"})
    assert proc.returncode == 128 + signal.Signals[sig], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    said = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(said) == 1 and said[0].startswith(f"interrupted by {sig}"), proc.stderr
    run_dir = tmp_path / "run"
    if point in BEFORE_THE_RUN:
        assert not run_dir.exists() and "nothing was written" in said[0]
        return
    assert read_json(run_dir / "summary.json")["status"] == "interrupted"
    assert said[0].endswith(f"continue with: python -m dlexp resume={run_dir}")
    resumed = in_process(f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["epochs_run"] == 2 and "test/acc" in summary
    assert (run_dir / "curves.png").is_file()


# ------------------------------------------------------------------------------------------------
# Sweeps that continue

GRID = ["optim.lr=0.003,0.01", "seed=0,1"]


def _table(sweep_dir: Path) -> list[dict[str, str]]:
    """summary.csv and jobs.csv rows, without the columns a rerun may change (its wall time)."""
    rows = []
    for name in ("summary.csv", "jobs.csv"):
        with open(sweep_dir / name, newline="") as handle:
            rows += [{k: v for k, v in row.items() if k not in TABLE_COLUMNS_NOT_COMPARED} for row in csv.DictReader(handle)]
    return rows


@pytest.fixture(scope="module")
def whole_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("whole")
    proc = run_in(root, "-m", *SMOKE, *GRID, "sweep.name=grid")
    assert proc.returncode == 0, proc.stderr
    return root / "outputs" / "multirun" / "grid"


def test_a_named_sweep_has_one_dir_and_jobs_named_by_their_overrides(whole_sweep):
    jobs = find_job_dirs(whole_sweep)
    assert len(jobs) == 4
    for job in jobs:
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        lr, seed = (next(line.split("=")[1] for line in overrides.splitlines() if key in line) for key in ("optim.lr", "seed="))
        assert job.name.startswith(f"lr={lr},seed={seed},") and job.name == job_dir_name(
            [o.removeprefix("- ") for o in overrides.splitlines()])
    manifest = read_manifest(whole_sweep)
    assert [m["status"] for m in manifest.values()] == ["completed"] * 4
    assert list(manifest) == [j.name for j in jobs]  # the grid's order, kept by the report


# kill points: a job's epoch end, mid-epoch (4 step points an epoch, 8 a job), after a summary before its
# plots, and between two jobs. The sweep killed at the first is killed once (``killed_sweep``), for the fast tier's
# continuation and for the report of a sweep in progress.
KILL_POINTS = ["end_epoch@3", "train_step@11", "plots@2", "job_end@3"]


def _kill_sweep(cwd: Path, kill_at: str) -> None:
    """The grid sweep (sweep.name=grid) run in ``cwd`` and killed (kill -9) at ``kill_at``."""
    proc = run_cli("-m", *SMOKE, *GRID, "sweep.name=grid", cwd=cwd, env={"DLEXP_KILL_AT": kill_at})
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory) -> Path:
    """A folder holding the grid sweep killed at its 2nd job's first epoch end (KILL_POINTS[0]), once."""
    root = tmp_path_factory.mktemp("killed")
    _kill_sweep(root, KILL_POINTS[0])
    return root


@pytest.mark.parametrize("kill_at", tiered(KILL_POINTS, fast={KILL_POINTS[0]}))
def test_a_sweep_killed_at_any_point_continues_to_the_same_table(tmp_path, in_process, whole_sweep, request, kill_at):
    root = tmp_path / "copy"
    if kill_at == KILL_POINTS[0]:
        copied(request.getfixturevalue("killed_sweep"), root)
    else:
        root.mkdir()
        _kill_sweep(root, kill_at)
    sweep_dir = root / "outputs" / "multirun" / "grid"
    again = in_process("-m", *SMOKE, *GRID, "sweep.name=grid", cwd=root)
    assert again.returncode == 0, again.stderr
    assert "completed earlier, skipped" in again.stdout
    assert _table(sweep_dir) == _table(whole_sweep)
    assert [m["status"] for m in read_manifest(sweep_dir).values()] == ["completed"] * 4


def test_a_rerun_skips_completed_jobs_retries_failed_ones_and_runs_new_points(tmp_path, in_process):
    data = write_arrays(tmp_path / "d.npz", n=120, seed=3, task="classification")
    args = ["-m", *SMOKE, "dataset=arrays", "sweep.name=s"]
    first = in_process(*args, f"dataset.path={data}", "optim.lr=-1,0.01", cwd=tmp_path)  # lr=-1 fails
    assert first.returncode == 1 and "error: optim.lr must be > 0" in first.stderr
    sweep_dir = tmp_path / "outputs" / "multirun" / "s"
    statuses = {m["overrides"][-1]: m["status"] for m in read_manifest(sweep_dir).values()}
    assert statuses == {"optim.lr=-1": "failed", "optim.lr=0.01": "completed"}
    kept = in_process(*args, f"dataset.path={data}", "optim.lr=-1,0.01", "sweep.retry_failed=false", cwd=tmp_path)
    assert kept.returncode == 1 and kept.stdout.count("earlier, skipped") == 2
    again = in_process(*args, f"dataset.path={data}", "optim.lr=0.1,0.01,0.003", cwd=tmp_path)  # -1 replaced, 0.003 added
    assert again.returncode == 1  # the old failed job is still one of the sweep's, and still failed
    lines = [line for line in again.stdout.splitlines() if "skipped" in line]
    assert len(lines) == 1 and "lr=0.01," in lines[0]
    rows = {r["optim.lr"]: r for r in csv.DictReader(open(sweep_dir / "summary.csv", newline=""))}
    assert {k: (r["completed"], r["failed"]) for k, r in rows.items()} == {
        "-1": ("0", "1"), "0.01": ("1", "0"), "0.1": ("1", "0"), "0.003": ("1", "0")}


def test_a_failed_job_can_stop_the_sweep(tmp_path, in_process):
    proc = in_process("-m", *SMOKE, "optim.lr=-1,0.01", "sweep.name=f", "sweep.fail_fast=true", cwd=tmp_path)
    assert proc.returncode == 1 and "stops at its first failed job" in proc.stderr
    manifest = read_manifest(tmp_path / "outputs" / "multirun" / "f")
    assert [m["status"] for m in manifest.values()] == ["failed", "pending"]


@pytest.mark.slow  # the fast tier signals a single run and kills a sweep
def test_a_signal_between_sweep_jobs_stops_the_sweep_and_a_rerun_finishes_it(tmp_path, in_process):
    args = ["-m", *SMOKE, *GRID, "sweep.name=g"]
    proc = run_cli(*args, cwd=tmp_path, env={"DLEXP_SIGNAL_AT": "job_end@2:SIGTERM"})
    assert proc.returncode == 143 and "Traceback" not in proc.stderr
    said = next(line for line in proc.stderr.splitlines() if line.startswith("interrupted by SIGTERM between sweep jobs"))
    assert "the sweep stopped early" in proc.stderr  # and what ran is summarized
    manifest = read_manifest(tmp_path / "outputs" / "multirun" / "g")
    assert [m["status"] for m in manifest.values()] == ["completed", "completed", "pending", "pending"]
    hint = said.split("continue the sweep with: ", 1)[1]
    assert hint == "python -m dlexp " + " ".join(args)  # a named sweep: its own command finds it again
    again = in_process(*shlex.split(hint)[3:], cwd=tmp_path)  # the hint, followed literally
    assert again.returncode == 0 and again.stdout.count("completed earlier, skipped") == 2


def test_a_sweep_in_progress_shows_its_state_in_the_report(tmp_path, killed_sweep):
    from dlexp.results.report import build_report

    report = build_report(copied(killed_sweep, tmp_path / "copy") / "outputs" / "multirun" / "grid")
    assert [j.status for j in report.jobs] == ["completed", "running", "pending", "pending"]


def test_resume_is_refused_inside_a_sweep_and_sweep_keys_outside_one(tmp_path, in_process):
    proc = in_process(*SMOKE, "sweep.name=x", cwd=tmp_path)
    assert_one_line_error(proc, "sweep.name=x applies to -m sweeps")
    proc = in_process("-m", *SMOKE, "resume=whatever", "optim.lr=0.1,0.2", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_the_manifest_is_valid_json_after_every_update(tmp_path):
    from dlexp.runs.sweep import mark, update_manifest

    update_manifest(tmp_path, {"a": {"status": "pending"}, "b": {"status": "pending"}})
    mark(tmp_path, tmp_path / "b", "running", ["x=1"])
    update_manifest(tmp_path, {"a": {"status": "completed"}}, only_new=True)  # known jobs are not changed
    jobs = json.loads((tmp_path / "jobs.json").read_text())["jobs"]
    assert jobs["a"] == {"status": "pending"} and jobs["b"]["status"] == "running" and jobs["b"]["overrides"] == ["x=1"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
