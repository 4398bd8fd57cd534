"""Sweeps at the speed of their training: each job's config composed from a cached base equals Hydra's own
composition of it, and a sweep's jobs all end with the files a user relies on."""
from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

import dlexp.cli.app  # noqa: F401  (the resolvers conf/train.yaml names)
from dlexp.config.files import CONFIG_DIR, PRIMARY_CONFIG
from dlexp.search.compose import SweepComposer

# (the sweep's command line, the jobs' overrides): structural (groups, +, ~) and plain values mixed
SWEEPS = [
    (["seed=0,1"], [["seed=0"], ["seed=1"]]),
    (["optim.lr=0.1,0.01", "trainer=smoke"], [["optim.lr=0.1", "trainer=smoke"], ["optim.lr=0.01", "trainer=smoke"]]),
    (["model=mlp,softmax", "optim.lr=0.1"], [["model=mlp", "optim.lr=0.1"], ["model=softmax", "optim.lr=0.1"]]),
    (["model=lenet", "model.activation=relu,sigmoid"], [["model=lenet", "model.activation=relu"],
                                                        ["model=lenet", "model.activation=sigmoid"]]),
    (["+tag=a,b", "seed=3"], [["+tag=a", "seed=3"], ["+tag=b", "seed=3"]]),
    (["experiment=weight_decay", "regularizer.weight_decay=0,3"], [["experiment=weight_decay", "regularizer.weight_decay=0"],
                                                                   ["experiment=weight_decay", "regularizer.weight_decay=3"]]),
    (["model.hidden=[64],[32,16]"], [["model.hidden=[64]"], ["model.hidden=[32,16]"]]),
    (["optim=sgd,adam", "optim.lr=0.5"], [["optim=sgd", "optim.lr=0.5"], ["optim=adam", "optim.lr=0.5"]]),
]


@pytest.mark.parametrize("command, jobs", SWEEPS, ids=[" ".join(c) for c, _ in SWEEPS])
def test_a_job_composed_from_the_cached_base_equals_hydras_own_composition(command, jobs):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(PRIMARY_CONFIG, command, RunMode.MULTIRUN)
        composer = SweepComposer(loader, master)
        for overrides in jobs:
            fast, hydras = composer(overrides), loader.load_sweep_config(master, overrides)
            assert OmegaConf.to_container(fast, resolve=False) == OmegaConf.to_container(hydras, resolve=False)
            assert OmegaConf.is_struct(fast) and not OmegaConf.is_readonly(fast.hydra)
            assert str(fast.hydra.sweep.subdir) == str(hydras.hydra.sweep.subdir)  # the job's dir, by its overrides
    GlobalHydra.instance().clear()


def test_a_value_for_a_key_the_config_lacks_is_refused_as_hydra_refuses_it():
    from hydra.errors import ConfigCompositionException

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(PRIMARY_CONFIG, ["seed=0,1"], RunMode.MULTIRUN)
        with pytest.raises(ConfigCompositionException, match="Could not override 'optim.lrr'"):
            SweepComposer(loader, master)(["optim.lrr=1"])
    GlobalHydra.instance().clear()


@pytest.mark.slow  # 16 jobs; the fast tier's grid sweep (test_sweeps.py) checks the files of 8 jobs
def test_every_job_of_a_16_job_sweep_ends_with_the_files_a_user_relies_on(tmp_path, monkeypatch, capfd):
    """Whatever moved for speed, each job's dir holds its record, metrics, summary, checkpoints, TensorBoard
    events and run log, and the sweep its tables; a job's curves are drawn on demand by dlexp.report."""
    import json

    from conftest import FAST, cli_in_process

    monkeypatch.chdir(tmp_path)
    seeds = ",".join(map(str, range(16)))
    proc = cli_in_process("dlexp", ["-m", f"seed={seeds}", "trainer=smoke", *FAST, "sweep.name=s"], capfd)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "outputs" / "multirun" / "s"
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(jobs) == 16
    for job in jobs:
        assert {".hydra", "metrics.csv", "summary.json", "run.log", "grad_norms.csv"} <= {p.name for p in job.iterdir()}
        assert (job / "checkpoints" / "last.pt").is_file() and (job / "checkpoints" / "best.pt").is_file()
        assert list(job.glob("events.out.tfevents.*"))
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["epochs_run"] == len((job / "metrics.csv").read_text().splitlines()) - 1
    assert {"summary.csv", "jobs.csv", "summary.md"} <= {p.name for p in sweep.iterdir()}
    drawn = cli_in_process("dlexp.report", [str(sweep)], capfd)  # a job's curves, on demand
    assert drawn.returncode == 0 and all((job / "curves.png").is_file() for job in jobs)
