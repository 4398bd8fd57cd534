"""A first run without rough edges: resume at any moment, no reused run dir, chosen options on show,
one line per sweep job, a cut test set said so, failures recorded, build errors in one line. Every command
runs in this process; a finished run that tests change is trained once and copied (``quick_run``)."""
from __future__ import annotations

import functools
import io

import pytest
import torch

from conftest import FAST, assert_one_line_error, compose_cfg, copied, read_json, run_in, untimed_rows

QUICK = [*FAST, "trainer.epochs=2", "trainer.early_stopping.patience=null", "model.hidden=[32]"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """A folder holding ``run``: a finished QUICK run with its checkpoints, trained once; tests work on copies."""
    root = tmp_path_factory.mktemp("quick")
    proc = run_in(root, *QUICK, "hydra.run.dir=run")
    assert proc.returncode == 0, proc.stderr
    return root


def _rows(path):
    return untimed_rows(path)


def test_a_run_killed_before_its_first_checkpoint_starts_again_from_its_recorded_config(tmp_path, in_process, quick_run):
    ref = quick_run / "run"  # the run as it ends when nothing stops it
    copied(quick_run, tmp_path / "copy")
    # what a kill right after epoch 1's row, before its checkpoint, leaves: a row, no checkpoint, no summary
    run = tmp_path / "copy" / "run"
    rows = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(rows[:2]) + "\n")
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "summary.json"):
        (run / name).unlink()
    proc = in_process("resume=run", cwd=tmp_path / "copy")
    assert proc.returncode == 0, proc.stderr
    assert "no checkpoint in run yet: starting that run again from its recorded config" in proc.stdout
    assert _rows(run / "metrics.csv") == _rows(ref / "metrics.csv")  # the same run, not appended to
    assert read_json(run / "summary.json")["test/acc"] == read_json(ref / "summary.json")["test/acc"]


def test_a_run_without_checkpoints_is_never_restarted_over_its_results_nor_with_other_settings(tmp_path, in_process):
    assert in_process(*QUICK, "trainer.checkpoints=false", "hydra.run.dir=run", cwd=tmp_path).returncode == 0
    run = tmp_path / "run"
    before = {name: (run / name).read_bytes() for name in ("metrics.csv", "summary.json")}
    proc = in_process("resume=run", cwd=tmp_path)  # finished, nothing to continue: its results must stay
    assert_one_line_error(proc, "the run in run has finished (status completed) and kept no checkpoint to continue from")
    assert {name: (run / name).read_bytes() for name in before} == before
    (run / "summary.json").unlink()  # as a kill before the end leaves it
    proc = in_process("resume=run", "optim.lr=0.5", cwd=tmp_path)
    assert_one_line_error(proc, "cannot resume with optim.lr=0.5: the run was started with 0.003")
    proc = in_process("resume=run", "model=softmax", cwd=tmp_path)  # the run's own record says model=mlp
    assert_one_line_error(proc, "cannot resume with model=softmax: the run was started with model=mlp")
    assert (run / "metrics.csv").read_bytes() == before["metrics.csv"]


def test_a_new_run_in_a_dir_that_holds_a_run_is_refused_and_the_old_run_is_untouched(tmp_path, in_process, quick_run):
    root = copied(quick_run, tmp_path / "copy")
    files = ("metrics.csv", "summary.json", "checkpoints/last.pt", "grad_norms.csv")
    before = {name: (root / "run" / name).read_bytes() for name in files}
    events = sorted(p.name for p in (root / "run").glob("events.out.tfevents.*"))
    proc = in_process(*QUICK, "optim.lr=0.5", "hydra.run.dir=run", cwd=root)
    assert_one_line_error(proc, "already holds a run (metrics.csv, checkpoints/last.pt, summary.json); continue it with: python -m dlexp resume=")
    assert {name: (root / "run" / name).read_bytes() for name in files} == before
    assert sorted(p.name for p in (root / "run").glob("events.out.tfevents.*")) == events


def test_mid_epoch_checkpoints_every_n_steps_resume_exactly(run_train, tmp_path, monkeypatch):
    import dlexp.training.checkpointer as checkpoint
    from dlexp.train import train

    common = ["trainer.batch_size=64", "trainer.checkpoint_every_n_steps=5"]
    run_train(*common, *QUICK[2:], run_dir=tmp_path / "whole")
    saved = []
    real_save = checkpoint.save_checkpoint

    def spy(path, state):  # keep a copy of every mid-epoch checkpoint as written
        if state.get("partial") is not None:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            saved.append(buffer.getvalue())
        real_save(path, state)

    monkeypatch.setattr(checkpoint, "save_checkpoint", spy)
    run_train(*common, *QUICK[2:], run_dir=tmp_path / "spied")
    states = [torch.load(io.BytesIO(b), weights_only=True) for b in saved]
    assert [(s["epoch"], s["partial"]["batches"]) for s in states][:3] == [(0, 5), (0, 10), (0, 15)]
    mid_epoch_2 = next(s for s in states if s["epoch"] == 1)  # 5 batches into epoch 2
    monkeypatch.setattr(checkpoint, "save_checkpoint", real_save)
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    train(compose_cfg(*FAST, *common, *QUICK[2:]), resumed, checkpoint=mid_epoch_2)
    assert _rows(resumed / "metrics.csv") == _rows(tmp_path / "whole" / "metrics.csv")[1:]


def test_the_test_set_is_cut_only_by_its_own_limit_and_the_summary_says_so(run_train, tmp_path):
    _, run_dir = run_train(*QUICK, "trainer.limit_eval_batches=1", run_dir=tmp_path / "val_cut")
    summary = read_json(run_dir / "summary.json")
    assert "test_batches" not in summary
    _, run_dir = run_train(*QUICK, "trainer.limit_test_batches=1", "trainer.eval_batch_size=16", run_dir=tmp_path / "cut")
    assert read_json(run_dir / "summary.json")["test_batches"] == "1 of 23 (cut by trainer.limit_test_batches)"


def test_the_console_and_summary_show_the_chosen_options_and_keep_the_builder_names(tmp_path, in_process):
    proc = in_process(*FAST, "trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.limit_eval_batches=1",
                   "trainer.limit_test_batches=1", "optim=sgd_momentum", "model=vgg11", "model.width_div=8",
                   "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "model=vgg11 dataset=digits optim=sgd_momentum" in proc.stdout
    summary = read_json(tmp_path / "run" / "summary.json")
    assert (summary["optim"], summary["optim_builder"], summary["model"], summary["model_builder"]) == (
        "sgd_momentum", "sgd", "vgg11", "vgg")


def test_each_sweep_job_prints_one_line_and_a_failed_job_is_recorded(tmp_path, in_process):
    from dlexp.runs.sweep import job_dir_name

    proc = in_process("-m", *QUICK, "model.hidden=[16],[0]", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert "Run summary" not in proc.stdout
    # a job's overrides: the command line's, with the swept key's value of that job (one per key)
    good, bad = (job_dir_name({o.split("=")[0]: o for o in [*QUICK, f"model.hidden={h}"]}.values()) for h in ("[16]", "[0]"))
    job_lines = [line for line in proc.stdout.splitlines() if line.startswith(f"sweep/{good}: ")]
    assert len(job_lines) == 1 and "completed, best val/acc" in job_lines[0]
    failed = read_json(tmp_path / "sweep" / bad / "summary.json")
    assert failed["status"] == "failed" and "model.hidden[0] must be >= 1" in failed["error"]
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")][0].startswith(
        "error: model.hidden[0] must be >= 1")  # said when the job failed, before the sweep's summary


def test_a_config_error_found_while_building_leaves_no_run_dir(tmp_path, in_process):
    proc = in_process(*FAST, "model=lenet", "dataset.resize=null", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "dataset.resize" in proc.stderr
    assert not (tmp_path / "run").exists()  # decided before the run dir was accepted: nothing written


def test_an_error_while_building_from_the_config_is_one_line_naming_the_group(run_train, monkeypatch):
    from dlexp.errors import ConfigError
    from dlexp.models import MODELS

    real = MODELS.get("mlp")

    @functools.wraps(real)  # the same signature, so the same config schema
    def broken(*args, **kwargs):
        raise RuntimeError("shapes do not fit\nsecond line")

    monkeypatch.setitem(MODELS._builders, "mlp", broken)
    with pytest.raises(ConfigError, match=r"^building model=mlp failed \(RuntimeError: shapes do not fit\); check the model\.\* settings$"):
        run_train(*QUICK[:2])
