"""Natural command-line mistakes get dlexp's one line (exit 2) naming the fix, not Hydra's report, and
``--cfg job`` refuses what a run refuses."""
from __future__ import annotations

import pytest

from conftest import assert_one_line_error, cli_in_process, read_json
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


# -- one key per setting -----------------------------------------------------------------------

def test_two_dropout_keys_that_disagree_are_refused(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    for argv in (["model.dropout=0.1", "regularizer=dropout"], ["--cfg", "job", "model.dropout=0.1", "regularizer=dropout"],
                 ["experiment=optimizers", "regularizer=dropout"]):
        shown = cli_in_process("dlexp", argv, capfd)
        assert shown.returncode == 2
        assert_one_line_error(shown, "both set the model's dropout; keep one")
    assert list(tmp_path.iterdir()) == []


def test_the_dropout_that_took_effect_is_recorded(tmp_path, monkeypatch, capfd):
    """regularizer=dropout overrides the model's own 0.3: summary.json, the checkpoint's config (and so
    TensorBoard's hparams, from the same config) say 0.5, and the model's Dropout layers are 0.5."""
    import torch

    monkeypatch.chdir(tmp_path)
    shown = cli_in_process("dlexp", ["regularizer=dropout", "trainer=smoke", "trainer.epochs=1", "trainer.progress=false",
                                     "hydra.run.dir=run"], capfd)
    assert shown.returncode == 0, shown.stderr
    assert read_json(tmp_path / "run" / "summary.json")["dropout"] == 0.5
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert saved["config"]["model"]["dropout"] == 0.5 and saved["config"]["regularizer"]["dropout"] == 0.5
    shown = cli_in_process("dlexp", ["model.dropout=0.1", "trainer=smoke", "trainer.epochs=1", "trainer.progress=false",
                                     "hydra.run.dir=run2"], capfd)
    assert read_json(tmp_path / "run2" / "summary.json")["dropout"] == 0.1
