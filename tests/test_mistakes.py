"""Natural command-line mistakes get dlexp's one line (exit 2) naming the fix, not Hydra's report, and
``--cfg job`` refuses what a run refuses."""
from __future__ import annotations

import pytest

from conftest import assert_one_line_error, cli_in_process
from dlexp.cli.preflight import preflight
from dlexp.errors import ConfigError

MISTAKES = [
    (["optimizer=sgd"], "unknown config key 'optimizer'. Did you mean 'optim=sgd'?"),
    (["weight_decay=1e-3"], "Did you mean 'regularizer.weight_decay=1e-3'?"),
    (["lr=0.1"], "Did you mean 'optim.lr=0.1'?"),
    (["epochs=3"], "Did you mean 'trainer.epochs=3'?"),
    (["network=lenet"], "Did you mean 'model=lenet'?"),
    (["optimizer.lr=0.1"], "Did you mean 'optim.lr=0.1'?"),
    (["early_stopping.patience=3"], "Did you mean 'trainer.early_stopping.patience=3'?"),
    (["experiment=weight_decay", "lr=0.1"], "Did you mean 'optim.lr=0.1'?"),
    (["optim.lr=0.1,0.01"], "'optim.lr=0.1,0.01' is a sweep (one run per value): add -m"),
    (["model=lenet,mlp"], "add -m to run it"),
    (["-m", "optim.lr=0.1", "0.01"], "a space splits one override in two; write the list without spaces: optim.lr=0.1,0.01"),
    (["-m", "optim.lr=0.1,", "0.01"], "without spaces: optim.lr=0.1,0.01"),
    (["model.hidden=[64,", "32]"], "without spaces: model.hidden=[64,32]"),
]


@pytest.mark.parametrize("argv, message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_natural_mistakes_get_one_line_with_the_fix(argv, message):
    with pytest.raises(ConfigError) as err:
        preflight(argv)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("argv", [["-m", "optim.lr=0.1,0.01"], ["+weight_decay=1"], ["seed=3"], ["hydra.verbose=true"]])
def test_what_is_no_mistake_passes_the_checks(argv):
    preflight(argv)


CLI_MISTAKES = [
    (["optimizer=sgd"], "Did you mean 'optim=sgd'?"),
    (["model.hidden=256"], "'model.hidden' takes a list, got 256; write model.hidden=[256]"),
    (["--cfg", "job", "decode.beam_size=4"], "a classification task does not decode sequences"),
    (["--cfg", "job", "model=seq2seq"], "model seq2seq translates between vocabularies"),
    (["--cfg", "job", "scheduler=plateau", "scheduler.warmup_steps=3"], "has no warmup"),
]


@pytest.mark.parametrize("argv, message", CLI_MISTAKES, ids=[" ".join(a) for a, _ in CLI_MISTAKES])
def test_the_command_refuses_with_exit_2_and_writes_nothing(tmp_path, monkeypatch, capfd, argv, message):
    monkeypatch.chdir(tmp_path)
    shown = cli_in_process("dlexp", argv, capfd)
    assert shown.returncode == 2
    assert_one_line_error(shown, message)
    assert list(tmp_path.iterdir()) == []


def test_cfg_job_still_prints_a_config_a_run_accepts(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    shown = cli_in_process("dlexp", ["--cfg", "job", "model=lenet"], capfd)
    assert shown.returncode == 0 and "name: lenet" in shown.stdout
