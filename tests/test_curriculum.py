"""The course's presets (conf/experiment/) and their findings, run small.

Each CPU preset is run at a reduced size with the seeds its own sweep names (at
least two), and its finding must hold. A sweep preset runs in-process here: the
preset's ``hydra.sweeper.params`` are expanded as Hydra's basic sweeper does, each
job is trained by ``train()`` into its own dir with the ``.hydra/overrides.yaml``
Hydra would write, and the finding is measured from those files.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
from conftest import FAST, cli_in_process, compose_cfg, read_json
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from dlexp.cli.preflight import check_run_config
from dlexp.course import findings
from dlexp.config.files import CONFIG_DIR
from dlexp.train import validate
from dlexp.errors import ConfigError

# the course's lesson presets; lenet_digits is an example and the mt_* translation presets are tested with their task
PRESETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")
                 if p.stem != "lenet_digits" and not p.stem.startswith("mt_"))
D2L = [p for p in PRESETS if p.startswith("d2l_")]


def sweep_params(preset: str) -> dict[str, str]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={preset}"], return_hydra_config=True)
    return {str(k): str(v) for k, v in cfg.hydra.sweeper.params.items()}


def sweep_jobs(preset: str) -> list[list[str]]:
    """The preset's sweep as override lists, in Hydra's order (the cartesian product of its params)."""
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in sweep_params(preset).items()])
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
    return [list(combo) for combo in itertools.product(*axes)]


def run_sweep(tmp_path: Path, preset: str, *shrink: str) -> findings.Finding:
    """Every job of the preset's sweep, in-process, then the preset's finding measured from the job dirs."""
    from dlexp.train import train

    sweep_dir = tmp_path / preset
    for i, job in enumerate(sweep_jobs(preset)):
        job_dir = sweep_dir / str(i)
        overrides = [f"experiment={preset}", *job, *shrink]
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        cfg = compose_cfg(*FAST, "trainer.checkpoints=false", *overrides)
        (job_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        train(cfg, job_dir)
    return findings.measure(compose_cfg(f"experiment={preset}").finding, sweep_dir)


@pytest.fixture
def no_plots(monkeypatch):
    """Skip each run's PNGs: not what these tests measure, and a good part of a small run's time."""
    import dlexp.train

    monkeypatch.setattr(dlexp.train, "plots_after_training", lambda run_dir: None)


def assert_holds(result: findings.Finding) -> None:
    assert result.holds, result.text()
    assert result.measured and "not measured" not in result.line


# --------------------------------------------------------------------------
# Every preset composes, validates and names a registered finding


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_validates_and_names_its_finding(preset):
    cfg = validate(compose_cfg(f"experiment={preset}"))
    assert cfg.finding in findings.FINDINGS
    check = findings.FINDINGS.get(cfg.finding)
    if check.scope == "sweep":  # the comparison the finding reads is the preset's own sweep, seeds included
        params = sweep_params(preset)
        assert set(check.axis.split(",")) <= set(params) and "seed" in params
    if check.scope == "searches":  # a sweep of searches: each search at every seed of its grid
        assert "seed" in sweep_params(preset)


@pytest.mark.parametrize("preset", D2L)
def test_the_d2l_presets_record_the_books_accuracy_and_its_setup(preset):
    cfg = validate(compose_cfg(f"experiment={preset}"))
    assert cfg.dataset.name == "fashion_mnist" and cfg.trainer.batch_size == 256 and cfg.trainer.epochs == 10
    assert 0.7 < cfg.expected_test_acc < 0.95 and cfg.finding == "d2l_table"


def test_an_unknown_finding_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match="unknown finding 'vanishing_gradient'. Did you mean 'vanishing_gradients'"):
        check_run_config(compose_cfg("finding=vanishing_gradient"))


# --------------------------------------------------------------------------
# Findings from files: the verdict can fail, and missing data says why


def _fake_job(sweep: Path, i: int, activation: str, first: float, last: float) -> None:
    job = sweep / str(i)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.activation={activation}", f"seed={i}"]))
    (job / "summary.json").write_text(json.dumps({"status": "completed"}))
    (job / "grad_norms.csv").write_text(
        "epoch,depth,layer,type,grad_norm,weight_norm,grad_to_weight\n"
        f"1,1,1,Linear,{first},1,1\n1,2,3,Linear,{last},1,1\n"
    )


def test_a_finding_is_measured_from_the_files_and_can_fail(tmp_path):
    _fake_job(tmp_path / "a", 0, "sigmoid", 1e-6, 1.0)
    _fake_job(tmp_path / "a", 1, "relu", 0.5, 1.0)
    result = findings.measure("vanishing_gradients", tmp_path / "a")
    assert result.holds and result.measured == {"ratio/sigmoid": 1e-6, "ratio/relu": 0.5}
    _fake_job(tmp_path / "b", 0, "sigmoid", 0.1, 1.0)  # only 5x below relu: not vanishing
    _fake_job(tmp_path / "b", 1, "relu", 0.5, 1.0)
    assert not findings.measure("vanishing_gradients", tmp_path / "b").holds


def test_a_finding_without_its_comparison_says_what_is_missing(tmp_path):
    _fake_job(tmp_path, 0, "sigmoid", 1e-6, 1.0)
    result = findings.measure("vanishing_gradients", tmp_path)
    assert not result.holds and "needs completed jobs for at least two values of model.activation" in result.line


def test_a_sweep_preset_run_once_says_how_to_run_the_comparison(tmp_path, capfd, no_plots):
    proc = cli_in_process("dlexp", [*FAST, "experiment=vanishing_gradients", "trainer.epochs=1",
                                    "trainer.limit_train_batches=2", f"hydra.run.dir={tmp_path / 'run'}"], capfd)
    out = proc.stdout
    assert "finding: deep sigmoid nets have vanishing gradients: compares the settings of model.activation" in out
    assert "python -m dlexp -m experiment=vanishing_gradients" in out


# --------------------------------------------------------------------------
# The real command line: the sweep, its finding line, finding.json, curves.png, and the report again


def test_a_sweep_preset_prints_its_finding_and_the_report_shows_it_again(tmp_path, in_process):
    args = ["-m", "experiment=vanishing_gradients", *FAST, "trainer.epochs=1", "trainer.limit_train_batches=3",
            "seed=0", "hydra.sweep.dir=sweep"]  # one seed: sigmoid vs relu, 2 jobs
    proc = in_process(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    saved = read_json(tmp_path / "sweep" / "finding.json")
    assert saved["holds"] is True and saved["text"] in proc.stdout
    # the saved numbers are those of the jobs' own grad_norms.csv
    redone = findings.measure("vanishing_gradients", tmp_path / "sweep")
    assert redone.measured == saved["measured"]
    assert (tmp_path / "sweep" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "sweep" / "finding.json").unlink()
    again = in_process("sweep", "--no-run-plots", cwd=tmp_path, module="dlexp.report")
    assert again.returncode == 0, again.stderr
    assert saved["text"] in again.stdout and read_json(tmp_path / "sweep" / "finding.json") == saved


def test_seed_bands_average_the_runs_that_reached_each_epoch():
    from dlexp.results.plots import seed_band

    runs = [[{"epoch": 1.0, "val/acc": 0.5}, {"epoch": 2.0, "val/acc": 0.7}], [{"epoch": 1.0, "val/acc": 0.7}]]
    epochs, means, stds = seed_band(runs, "val/acc")
    assert epochs == [1.0, 2.0] and means == pytest.approx([0.6, 0.7])
    assert stds[0] == pytest.approx(0.1414213, rel=1e-5) and stds[1] != stds[1]  # NaN: one run reached epoch 2


# --------------------------------------------------------------------------
# Each CPU preset, small, over its seeds


def test_symmetry_constant_init_keeps_units_identical_and_random_init_does_not(tmp_path, capfd, no_plots):
    for init in ("constant", "default"):
        for seed in (0, 1):
            run_dir = tmp_path / f"{init}{seed}"
            cli_in_process("dlexp", [*FAST, "experiment=symmetry", f"model.init={init}", f"seed={seed}", "trainer.epochs=2",
                                     f"hydra.run.dir={run_dir}"], capfd)
            saved = read_json(run_dir / "finding.json")
            assert saved["holds"] is True, saved["text"]
            assert (saved["measured"]["spread"] < 1e-5) == (init == "constant")


# (preset, overrides that shrink it): each sweep runs every job of the preset's own sweep, seeds included
SMALL_SWEEPS = [
    ("vanishing_gradients", ["trainer.epochs=1", "trainer.limit_train_batches=5"]),
    ("dropout_vs_weight_decay", ["trainer.epochs=20"]),
    ("polynomial", ["trainer.epochs=50", "trainer.batch_size=1"]),
    ("weight_decay", ["trainer.epochs=40"]),
    ("optimizers", ["trainer.epochs=2"]),
    ("lr_decay", ["dataset.num_examples=400"]),
    ("activations", []),
    ("hidden_width", []),
    ("batch_size", ["trainer.epochs=1", "dataset.test_fraction=0.6"]),
    ("early_stopping", []),
    ("augmentation", ["trainer.epochs=20"]),
    ("batchnorm", ["trainer.epochs=4"]),
    ("covariate_shift", ["trainer.epochs=10"]),
    ("label_shift", ["trainer.epochs=10", "dataset.num_examples=1500"]),
]


# 82 trainings; the fast tier measures one sweep preset's finding through the command line (above)
@pytest.mark.slow
@pytest.mark.parametrize("preset,shrink", SMALL_SWEEPS, ids=[p for p, _ in SMALL_SWEEPS])
def test_each_sweep_presets_finding_holds_at_a_small_scale(tmp_path, no_plots, preset, shrink):
    assert_holds(run_sweep(tmp_path, preset, *shrink))
    assert_diagnoses_unchanged(tmp_path / preset, CORRECTED.get(preset, set()))


# Diagnoses the rules that know the prior correct, and why the old one was wrong: weight_decay's models of 200
# inputs fitted to 20 examples, whose val rmse (0.51 at lambda=3) is several times the 0.14 of predicting the
# mean: they were "fine" only because a first epoch of loss 175 made their val/train gap look small.
CORRECTED = {"weight_decay": {("fine", "overfitting")}}


def assert_diagnoses_unchanged(sweep_dir: Path, corrected: set[tuple[str, str]]) -> None:
    """The rules that see a blow-up or a run that learned nothing (they use the prior) change no course preset's
    diagnosis, except the ``corrected`` ones: each job's equals what its loss curves alone give."""
    from dlexp.runs.diagnostics import diagnose
    from dlexp.runs.record import RunDir

    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        rows = RunDir(job).metrics()
        curves_only = diagnose([r["train/loss"] for r in rows], [r["val/loss"] for r in rows])[0]
        summary = RunDir(job).summary()
        if (curves_only, summary["diagnosis"]) in corrected:
            assert "of predicting the prior" in summary["diagnosis_reason"], summary["diagnosis_reason"]
            continue
        assert summary["diagnosis"] == curves_only, (job.name, summary["diagnosis_reason"], curves_only)


def test_every_cpu_preset_has_a_small_run_here():
    from dlexp.course.curriculum import PRESETS as CPU_PRESETS

    # concept_shift and hpo_strategies run small in tests/test_concept_shift.py and tests/test_hpo_strategies.py
    tested = {p for p, _ in SMALL_SWEEPS} | {"symmetry", "kfold_house_prices", "concept_shift", "hpo_strategies"}
    assert set(CPU_PRESETS) == tested and set(CPU_PRESETS) | set(D2L) == set(PRESETS)


@pytest.mark.slow  # a course preset's finding over its seeds: 2 runs of 5 folds x 20 epochs
def test_kfold_house_prices_gives_a_stable_log_rmse_and_a_submission(tmp_path, capfd, no_plots):
    from datafiles import write_house_prices

    train_csv, test_csv = write_house_prices(tmp_path / "kaggle")
    for seed in (0, 1):
        run_dir = tmp_path / f"run{seed}"
        proc = cli_in_process("dlexp", [*FAST, "experiment=kfold_house_prices", f"dataset.train_csv={train_csv}",
                                        f"dataset.test_csv={test_csv}", "trainer.epochs=20", f"seed={seed}",
                                        f"hydra.run.dir={run_dir}"], capfd)
        assert proc.returncode == 0, proc.stderr
        saved = read_json(run_dir / "finding.json")
        assert saved["holds"] is True, saved["text"]
        assert saved["measured"]["folds"] == 5 and saved["measured"]["submission_rows"] == 30
        assert saved["measured"]["mean"] == pytest.approx(read_json(run_dir / "summary.json")["best/val/log_rmse"], rel=1e-5)


# --------------------------------------------------------------------------
# python -m dlexp.curriculum


def test_curriculum_lists_every_cpu_preset_with_its_kind_and_claim(capsys):
    from dlexp.course.curriculum import PRESETS as CPU_PRESETS
    from dlexp.course.curriculum import main

    assert main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == CPU_PRESETS
    assert "sweep (-m)" in lines[0] and "degree 1 underfits" in lines[0]
    assert "single run" in next(line for line in lines if line.startswith("symmetry "))


def test_curriculum_rejects_an_unknown_preset_in_one_line(capsys):
    from dlexp.course.curriculum import main

    assert main(["--only", "symetry"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown preset 'symetry' in --only; choices: polynomial,") and "\n" not in err


@pytest.mark.slow  # the course's command with its figures; the fast tier lists the presets and refuses a wrong one
def test_curriculum_runs_presets_and_writes_the_table_the_commands_and_the_figures(tmp_path, monkeypatch, capsys):
    from dlexp.course.curriculum import main

    monkeypatch.chdir(tmp_path)  # no data/house_prices/ here: that preset is skipped, and says why
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "curriculum.md").write_text("the full course table\n")
    assert main(["--only", "symmetry,kfold_house_prices", "--out", "out", "--docs", "docs", "--",
                 "trainer.epochs=1", "trainer.num_threads=1"]) == 0
    # no record of the other presets' rows: a partial run leaves the course page alone and writes beside its runs
    assert (tmp_path / "docs" / "curriculum.md").read_text() == "the full course table\n"
    said = capsys.readouterr().out
    assert "docs/curriculum.md is kept" in said
    doc = (tmp_path / "out" / "curriculum.md").read_text()
    saved = read_json(tmp_path / "out" / "symmetry" / "finding.json")
    row = next(line for line in doc.splitlines() if line.startswith("| `symmetry` |"))
    assert saved["claim"] in row and saved["line"] in row and "**holds**" in row
    skipped = next(line for line in doc.splitlines() if line.startswith("| `kfold_house_prices` |"))
    assert "skipped: place Kaggle's house-prices train.csv and test.csv in data/house_prices/" in skipped
    assert "python -m dlexp experiment=symmetry trainer.progress=false hydra.run.dir=out/symmetry trainer.epochs=1" in doc
    assert (tmp_path / "out" / "curriculum" / "symmetry_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert saved["text"] in said


@pytest.mark.slow  # the course's command runs a preset's sweep; the fast tier lists the presets and refuses a wrong one
def test_a_partial_curriculum_run_merges_its_rows_into_the_course_page(tmp_path, monkeypatch):
    from dlexp.course.curriculum import main

    monkeypatch.chdir(tmp_path)
    record = tmp_path / "docs" / "curriculum" / "results.json"
    record.parent.mkdir(parents=True)
    earlier = {"claim": "degree 1 underfits", "line": "degree 1: train 2.09", "holds": True}
    record.write_text(json.dumps({"polynomial": {"command": "python -m dlexp -m experiment=polynomial", "seconds": 41,
                                                 "finding": earlier, "status": "ran", "figures": [], "machine": "a CPU"}}))
    assert main(["--only", "symmetry", "--out", "out", "--docs", "docs", "--", "trainer.epochs=1"]) == 0
    doc = (tmp_path / "docs" / "curriculum.md").read_text()
    rows = [line.split(" | ")[0] for line in doc.splitlines() if line.startswith("| `")]
    assert rows == ["| `polynomial`", "| `symmetry`"]  # the earlier row kept, in the course's order, beside the new one
    assert "degree 1: train 2.09" in doc and set(json.loads(record.read_text())) == {"polynomial", "symmetry"}

def test_the_course_page_shows_a_findings_own_figures_and_its_table_inline(tmp_path):
    from dlexp.course.curriculum import Outcome, write_doc

    run = tmp_path / "out" / "hpo_strategies"
    run.mkdir(parents=True)
    (run / "best_so_far.png").write_bytes(b"\x89PNG fake")
    (run / "strategies.md").write_text("| search | best val error |\n|---|---|\n| `random` | 0.03 |\n")
    finding = {"claim": "halving is cheaper", "line": "random 80 epochs", "holds": True, "text": "finding: ..."}
    outcome = Outcome("hpo_strategies", ["python", "-m", "dlexp", "-m", "experiment=hpo_strategies"], 5.0, finding,
                      "ran", [run / "best_so_far.png", run / "strategies.md"])
    page = write_doc([outcome], tmp_path / "docs").read_text()
    assert "### `hpo_strategies`: strategies.md\n\n| search | best val error |" in page
    assert "![hpo_strategies hpo_strategies_best_so_far](curriculum/hpo_strategies_best_so_far.png)" in page
    assert sorted(p.name for p in (tmp_path / "docs" / "curriculum").iterdir()) == [
        "hpo_strategies_best_so_far.png", "results.json"]  # no .md beside the page: Sphinx would read it as a page
