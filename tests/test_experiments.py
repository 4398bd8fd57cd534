"""Experiment presets (``experiment=NAME``): ``# @package _global_`` files that switch several groups."""
from __future__ import annotations

from conftest import FAST, assert_one_line_error, read_json

TINY = [*FAST, "trainer.epochs=1", "trainer.limit_train_batches=2", "trainer.checkpoints=false"]


def test_a_preset_switches_groups_and_a_key_of_the_switched_model_is_accepted(tmp_path, in_process):
    # model.width_div is a LeNet key that the default model (mlp) lacks: the preset's model must be the one checked
    proc = in_process("experiment=lenet_digits", "model.width_div=4", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert (summary["model"], summary["optim"], summary["optim_builder"]) == ("lenet_bn", "sgd_momentum", "sgd")
    config = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    assert "width_div: 4" in config and "resize: 28" in config and "momentum: 0.9" in config


def test_the_command_line_wins_over_the_preset(tmp_path, in_process):
    proc = in_process("experiment=lenet_digits", "model=mlp", "model.width_div=4", *TINY, cwd=tmp_path)
    assert_one_line_error(proc, "unknown key 'model.width_div' for model=mlp")


def test_a_preset_from_config_dir_is_found_and_its_groups_are_known(tmp_path, in_process):
    extra = tmp_path / "myconf" / "experiment"
    extra.mkdir(parents=True)
    (extra / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: lenet\ndataset:\n  resize: 28\n")
    proc = in_process("--config-dir", str(tmp_path / "myconf"), "experiment=mine", "model.width_div=4", *TINY,
                   "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert read_json(tmp_path / "run" / "summary.json")["model"] == "lenet"


def test_an_unknown_preset_is_one_line(tmp_path, in_process):
    proc = in_process("experiment=lenet_digit", cwd=tmp_path)
    assert_one_line_error(proc, "unknown experiment 'lenet_digit'. Did you mean 'lenet_digits'?")
