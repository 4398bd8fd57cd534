"""Your own components without editing dlexp: plugins named by the run, registered with the public decorators,
used by name like the built-in ones, in every launcher; the starter project; one line for each mistake."""
from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from conftest import FAST, cli_in_process, read_json, run_cli

PLUGIN = '''
import torch
from torch import nn
from dlexp import Source, register_dataset, register_model


@register_model("ring_net")
def ring_net(input_shape, num_classes, *, width: int = 16, dropout: float = 0.0):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(width, num_classes))


@register_dataset("rings")
def rings(*, n: int = 400, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    angle = torch.rand(n, generator=g) * 6.283
    radius = y.float() + 1 + 0.1 * torch.randn(n, generator=g)
    x = torch.stack([radius * angle.cos(), radius * angle.sin()], 1)
    return Source(train=(x[80:], y[80:]), test=(x[:80], y[:80]), task="classification", num_classes=3)
'''


def make_project(root: Path, plugin: str = PLUGIN) -> Path:
    """root/conf/{model,dataset}/ and root/my_plugin.py: a user's own model and dataset."""
    (root / "conf" / "model").mkdir(parents=True)
    (root / "conf" / "dataset").mkdir(parents=True)
    (root / "my_plugin.py").write_text(textwrap.dedent(plugin))
    (root / "conf" / "model" / "ring_net.yaml").write_text("name: ring_net\nwidth: 16\ndropout: 0.0\n")
    (root / "conf" / "dataset" / "rings.yaml").write_text("name: rings\nn: 400\nseed: 0\n")
    return root


def own(root: Path) -> list[str]:
    return ["--config-dir", str(root / "conf"), "plugins=[my_plugin.py]", "model=ring_net", "dataset=rings"]


def tree(root: Path) -> dict[str, object]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))
            if "__pycache__" not in p.parts}


def test_a_plugin_model_and_dataset_train_by_name_and_the_run_records_the_plugin(tmp_path, monkeypatch, capfd):
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    proc = cli_in_process("dlexp", [*own(root), *FAST, "trainer.epochs=3", "hydra.run.dir=run"], capfd)
    assert proc.returncode == 0, proc.stderr
    assert "dlexp model=ring_net dataset=rings" in proc.stdout
    summary = read_json(root / "run" / "summary.json")
    digest = hashlib.sha256((root / "my_plugin.py").read_bytes()).hexdigest()[:12]
    assert summary["plugins"] == {"my_plugin.py": f"{root / 'my_plugin.py'} (sha256:{digest})"}
    assert summary["model"] == "ring_net" and summary["status"] == "completed" and "test/acc" in summary


def test_a_plugins_keys_are_checked_like_a_built_in_ones(tmp_path, monkeypatch, capfd):
    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    wrong = cli_in_process("dlexp", [*own(root), *FAST, "model.widht=8"], capfd)
    assert wrong.returncode == 2 and "model.widht" in wrong.stderr and "Did you mean 'model.width'" in wrong.stderr
    typed = cli_in_process("dlexp", [*own(root), *FAST, "model.width=wide"], capfd)
    assert typed.returncode == 2 and "model.width" in typed.stderr
    assert not (root / "outputs").exists()


def test_resume_imports_the_same_plugin_from_anywhere_and_says_when_it_changed(tmp_path, monkeypatch, capfd):
    root = make_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    first = cli_in_process("dlexp", [*own(root), *FAST, "trainer.epochs=2", "hydra.run.dir=run"], capfd)
    assert first.returncode == 0, first.stderr
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no --config-dir, no plugins=: the run's own record names them
    again = cli_in_process("dlexp", [f"resume={root / 'run'}", "trainer.epochs=3"], capfd)
    assert again.returncode == 0 and "resuming from epoch 3" in again.stdout, again.stderr
    (root / "my_plugin.py").write_text((root / "my_plugin.py").read_text() + "\n# a comment\n")
    changed = cli_in_process("dlexp", [f"resume={root / 'run'}", "trainer.epochs=4"], capfd)
    assert changed.returncode == 0, changed.stderr
    assert "warning: the run's plugin changed since it started (my_plugin.py:" in changed.stdout
    (root / "my_plugin.py").unlink()
    gone = cli_in_process("dlexp", [f"resume={root / 'run'}", "trainer.epochs=5"], capfd)
    assert gone.returncode == 2 and "plugin file 'my_plugin.py' not found" in gone.stderr


BAD = {
    "missing module": ("plugins=[no_such_plugin]", None, "plugin 'no_such_plugin' not found"),
    "missing file": ("plugins=[gone.py]", None, "plugin file 'gone.py' not found"),
    "raises on import": ("plugins=[bad.py]", "import torch\nraise RuntimeError('half written')\n",
                         "plugin 'bad.py' failed as it was imported (RuntimeError: half written) at bad.py:2"),
    "no input_shape": ("plugins=[bad.py]", "from dlexp import register_model\n\n@register_model('flat')\n"
                       "def flat(*, width: int = 3):\n    pass\n", "model 'flat' (the function flat of plugin bad.py) must take "
                       "(input_shape, num_classes, *, width); it takes (width)"),
    "duplicate name": ("plugins=[bad.py]", "from dlexp import register_model\n\n@register_model('mlp')\n"
                       "def mine(input_shape, num_classes):\n    pass\n", "model 'mlp' is already registered (by "
                       "dlexp.models.mlp); register yours under another name"),
    "no dropout": ("regularizer.dropout=0.3", None, "model 'ring_net' takes no 'dropout' keyword"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_plugin_mistake_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capfd, case):
    plugin = PLUGIN.replace(", dropout: float = 0.0", "").replace("nn.Dropout(dropout), ", "") if case == "no dropout" else PLUGIN
    root = make_project(tmp_path, plugin)
    if case == "no dropout":
        (root / "conf" / "model" / "ring_net.yaml").write_text("name: ring_net\nwidth: 16\n")
    override, source, says = BAD[case]
    if source:
        (root / "bad.py").write_text(source)
    monkeypatch.chdir(root)
    before = tree(root)
    args = [*own(root), *FAST] if case == "no dropout" else ["--config-dir", str(root / "conf"), *FAST]
    proc = cli_in_process("dlexp", [*args, override], capfd)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], proc.stderr
    assert tree(root) == before


def test_a_search_over_dropout_of_a_model_without_it_is_refused_before_its_first_trial(tmp_path, monkeypatch):
    root = make_project(tmp_path, PLUGIN.replace(", dropout: float = 0.0", "").replace("nn.Dropout(dropout), ", ""))
    (root / "conf" / "model" / "ring_net.yaml").write_text("name: ring_net\nwidth: 16\n")
    proc = run_cli("-m", *own(root), "hparams_search=optuna", "hparams_search.n_trials=2", *FAST, cwd=root)
    assert proc.returncode == 2 and "the search samples regularizer.dropout" in proc.stderr, proc.stderr
    assert "takes no 'dropout' keyword" in proc.stderr and not (root / "outputs" / "search").exists()


@pytest.mark.slow
def test_a_plugin_runs_in_a_sweep_on_slots_and_in_a_search_and_a_killed_trial_resumes(tmp_path):
    root = make_project(tmp_path)
    swept = run_cli("-m", *own(root), *FAST, "trainer.epochs=2", "hydra/launcher=slots", "hydra.launcher.slots=2",
                    "model.width=8,16", "sweep.name=s", cwd=root)
    assert swept.returncode == 0, swept.stderr
    jobs = sorted((root / "outputs" / "multirun" / "s").glob("*/summary.json"))
    assert len(jobs) == 2 and all(read_json(j)["model"] == "ring_net" for j in jobs)
    search = ["-m", *own(root), *FAST, "trainer.epochs=3", "hparams_search=optuna", "hparams_search.n_trials=3",
              "hparams_search.slots=1", "sweep.name=t"]
    killed = run_cli(*search, cwd=root, env={"DLEXP_KILL_PARENT_AT": "end_epoch@5"})  # the search, in its second trial
    assert killed.returncode != 0
    finished = run_cli(*search, cwd=root)
    assert finished.returncode == 0, finished.stderr
    trials = sorted((root / "outputs" / "multirun" / "t").glob("trial_*/summary.json"))
    assert len(trials) == 3 and all(read_json(t)["status"] == "completed" for t in trials)
    assert all(read_json(t)["plugins"]["my_plugin.py"].startswith(str(root / "my_plugin.py")) for t in trials)


@pytest.mark.services  # a SLURM cluster
def test_a_plugin_runs_in_a_slurm_job(tmp_path, slurm_env):
    root = make_project(tmp_path)
    env = {**slurm_env, "PYTHONUNBUFFERED": "1"}
    proc = run_cli("-m", *own(root), *FAST, "trainer.epochs=2", "hydra/launcher=slurm", "seed=0,1", "sweep.name=q",
                   "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",  # a CPU node
                   cwd=root, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    jobs = sorted((root / "outputs" / "multirun" / "q").glob("*/summary.json"))
    assert len(jobs) == 2 and all(read_json(j)["dataset"] == "rings" for j in jobs)


def test_an_installed_package_is_a_plugin_by_its_entry_point_name(tmp_path, monkeypatch):
    from importlib import metadata

    import dlexp.config.plugins as plugins

    package = tmp_path / "ringpkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN).replace('"ring_net"', '"ring_net_ep"').replace('"rings"', '"rings_ep"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    point = metadata.EntryPoint(name="rings", value="ringpkg", group=plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [point] if group == plugins.ENTRY_POINT_GROUP else [])
    (loaded,) = plugins.load(["rings"])
    from dlexp.models import MODELS

    assert loaded.module == "ringpkg" and "ring_net_ep" in MODELS and MODELS.origin("ring_net_ep") == "ringpkg"
    assert plugins.load(["rings"]) == [loaded]  # once per process


def test_an_edited_plugin_file_is_imported_again_with_its_new_builders(tmp_path):
    import dlexp.train as train
    from dlexp.models import MODELS

    path = tmp_path / "edit_me.py"
    path.write_text(PLUGIN.replace('"ring_net"', '"edit_net"').replace('"rings"', '"edit_rings"'))
    train.load_plugins([str(path)])
    first = MODELS.get("edit_net")
    path.write_text(path.read_text() + "\n# edited\n")
    train.load_plugins([str(path)])  # a notebook's second call after an edit: no "already registered"
    assert MODELS.get("edit_net") is not first


def test_the_starter_project_trains_sweeps_and_searches_as_generated(tmp_path):
    from dlexp.cli.new import main

    assert main([str(tmp_path / "proj")]) == 0
    assert main([str(tmp_path / "proj")]) == 2  # not over an existing project
    root = tmp_path / "proj"
    readme = (root / "README.md").read_text()
    commands = [line.split("#")[0].split() for line in readme.splitlines() if line.startswith("python -m dlexp ")]
    assert len(commands) == 4
    proc = run_cli(*commands[0][3:], "trainer.epochs=3", *FAST, cwd=root)  # as the README says, a shorter budget
    assert proc.returncode == 0, proc.stderr
    summary = read_json(next((root / "outputs").glob("*/*/summary.json")))
    assert summary["model"] == "small_mlp" and summary["dataset"] == "blobs_2d" and summary["test/acc"] > 0.8
    assert json.loads(json.dumps(summary["plugins"]))["components.py"].startswith(str(root / "components.py"))


def test_the_docs_task_example_trains_with_its_own_loss_metric_and_dataset(tmp_path, monkeypatch, capfd):
    example = Path(__file__).resolve().parents[1] / "docs" / "examples" / "quantile.py"
    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "skewed_line.yaml").write_text("name: skewed_line\nn: 1000\nslope: 2.0\nseed: 0\n")
    monkeypatch.chdir(tmp_path)
    proc = cli_in_process("dlexp", ["--config-dir", str(tmp_path / "conf"), f"plugins=[{example}]", "dataset=skewed_line",
                                    *FAST, "trainer.epochs=4", "hydra.run.dir=run"], capfd)
    assert proc.returncode == 0, proc.stderr
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["monitor"] == "val/mae" and summary["mode"] == "min" and 0 < summary["test/mae"] < 2
    assert summary["diagnosis"] != "unstable"  # its prior (the targets' median) is what a constant scores


DATA_MISTAKES = '''
import torch
from torch import nn
from dlexp import Source, register_dataset, register_model


def _pool(y):
    x = torch.randn(len(y), 4)
    return Source(train=(x[10:], y[10:]), test=(x[:10], y[:10]), task="classification", num_classes=4)


@register_dataset("labels_too_big")
def labels_too_big(*, n: int = 60):
    return _pool(torch.arange(n) % 6)  # classes 4 and 5 for num_classes=4


@register_dataset("float_labels")
def float_labels(*, n: int = 60):
    return _pool((torch.arange(n) % 4).float())


@register_dataset("good4")
def good4(*, n: int = 60):
    return _pool(torch.arange(n) % 4)


@register_model("seven_outputs")
def seven_outputs(input_shape, num_classes, *, dropout: float = 0.0):
    return nn.Linear(input_shape[0], 7)


@register_model("wrong_inputs")
def wrong_inputs(input_shape, num_classes, *, dropout: float = 0.0):
    return nn.Linear(9, num_classes)


@register_model("breaks_in_training")
def breaks_in_training(input_shape, num_classes, *, dropout: float = 0.0):
    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(input_shape[0], num_classes)

        def forward(self, x):
            if self.training and torch.is_grad_enabled():
                raise RuntimeError("my layer is not finished")
            return self.layer(x)

    return Breaks()
'''

FIT_MISTAKES = [
    ("labels_too_big", "ring_net", 2, "the train targets of dataset 'labels_too_big' hold class 5, outside 0 .. 3"),
    ("float_labels", "ring_net", 2, "are torch.float32, but a classification task takes class indices"),
    ("good4", "seven_outputs", 2, "model=seven_outputs gives 7 outputs per example, but dataset=good4 has 4"),
    ("good4", "wrong_inputs", 2, "model=wrong_inputs fails on two examples of dataset=good4 (RuntimeError: mat1 and mat2"),
    ("good4", "breaks_in_training", 2, "your plugin failed at data_mistakes.py:"),
]


@pytest.mark.parametrize("dataset, model, code, says", FIT_MISTAKES, ids=[f"{d}-{m}" for d, m, _, _ in FIT_MISTAKES])
def test_a_plugins_data_or_model_that_does_not_fit_is_one_line_not_a_bug_report(tmp_path, monkeypatch, capfd, dataset,
                                                                                  model, code, says):
    root = make_project(tmp_path)
    (root / "data_mistakes.py").write_text(DATA_MISTAKES)
    for group, name in (("dataset", dataset), ("model", model)):
        (root / "conf" / group / f"{name}.yaml").write_text(f"name: {name}\n")
    monkeypatch.chdir(root)
    before = tree(root)
    proc = cli_in_process("dlexp", ["--config-dir", str(root / "conf"), "plugins=[my_plugin.py,data_mistakes.py]",
                                    f"dataset={dataset}", f"model={model}", *FAST, "trainer.epochs=1"], capfd)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code and len(lines) == 1 and says in lines[0], proc.stderr
    assert "bug" not in lines[0]
    if model != "breaks_in_training":  # found before the run dir was accepted: nothing written
        assert tree(root) == before
    else:  # found in training: the run's own dir keeps the traceback
        (log,) = root.glob("outputs/*/*/run.log")
        assert "my layer is not finished" in log.read_text()


def test_a_sweep_whose_plugin_is_missing_is_refused_before_its_first_job(tmp_path, in_process):
    root = make_project(tmp_path)
    proc = in_process("-m", "--config-dir", str(root / "conf"), "plugins=[gone.py]", *FAST, "seed=0,1", cwd=root)
    assert proc.returncode == 2 and "plugin file 'gone.py' not found" in proc.stderr
    assert not (root / "outputs").exists()


def test_the_api_takes_a_plugin_as_a_string_and_overrides_as_a_list(tmp_path, monkeypatch):
    import dlexp
    from dlexp.errors import UserError

    root = make_project(tmp_path)
    monkeypatch.chdir(root)
    run = dlexp.run(["model=ring_net", "dataset=rings", *FAST, "trainer.epochs=1"], config_dir="conf", plugins="my_plugin.py")
    assert run.status == "completed" and run.summary["model"] == "ring_net" and run.metrics["epoch"].tolist() == [1]
    with pytest.raises(UserError, match="holds several overrides in one string; pass each as its own string"):
        dlexp.run("model=mlp trainer.epochs=1")
    assert dlexp.load(run.run_dir.relative_to(root)).run_dir == run.run_dir  # absolute, from anywhere


def test_a_key_a_users_yaml_lacks_is_added_with_plus_and_the_errors_say_so(tmp_path, monkeypatch, capfd):
    root = make_project(tmp_path)
    (root / "conf" / "model" / "ring_net.yaml").write_text("name: ring_net\n")  # width and dropout left to the builder
    monkeypatch.chdir(root)
    refused = cli_in_process("dlexp", [*own(root), *FAST, "model.width=8"], capfd)
    assert refused.returncode == 2 and "set it in" in refused.stderr and "or add it here with +model.width=..." in refused.stderr
    ran = cli_in_process("dlexp", [*own(root), *FAST, "trainer.epochs=1", "+model.width=8", "+model.dropout=0.1"], capfd)
    assert ran.returncode == 0, ran.stderr


def test_a_config_dir_that_is_missing_or_shadows_a_built_in_option_is_one_line(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    missing = cli_in_process("dlexp", ["--config-dir", "conff", *FAST], capfd)
    assert missing.returncode == 2 and "--config-dir conff: no such folder" in missing.stderr
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "mlp.yaml").write_text("name: mlp\nhidden: [8]\n")
    shadow = cli_in_process("dlexp", ["--config-dir", "mine", *FAST], capfd)
    assert shadow.returncode == 2 and "mine/model/mlp.yaml has the name of dlexp's own model=mlp" in shadow.stderr
    assert not (tmp_path / "outputs").exists()


def test_forgetting_plugins_says_to_name_them(tmp_path):
    root = make_project(tmp_path)
    proc = run_cli("--config-dir", str(root / "conf"), "model=ring_net", "dataset=rings", *FAST, cwd=root)
    assert proc.returncode == 2 and "Name the file that registers it: plugins=[your_file.py]" in proc.stderr
