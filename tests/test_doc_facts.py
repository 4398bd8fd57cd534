"""Facts the docs state about the configs match the configs."""
from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from dlexp.config.files import CONFIG_DIR, default_choices, group_options

CONFIG_GROUPS = Path(__file__).parents[1] / "docs" / "config-groups.md"


def _group_table() -> dict[str, str]:
    """group -> its options cell | what it sets, from the docs' table of config groups."""
    rows = {}
    for line in CONFIG_GROUPS.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and re.fullmatch(r"`[\w/]+`", cells[0]) and "(default)" in cells[1]:
            rows[cells[0].strip("`")] = cells[1] + " | " + cells[2]
    return rows


def _hydra_launchers() -> tuple[list[str], str]:
    """The options of hydra/launcher that Hydra finds (dlexp's conf/ and the installed plugins), and its default."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        options = GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")
        cfg = compose(config_name="train", return_hydra_config=True)
    return options, cfg.hydra.runtime.choices["hydra/launcher"]


def test_the_group_table_names_each_groups_real_default():
    table, defaults = _group_table(), default_choices([CONFIG_DIR])
    assert {"model", "optim", "scheduler", "regularizer", "hydra/launcher"} <= set(table)
    for group, cell in table.items():
        if group in ("hydra/launcher", "hydra/sweeper"):
            continue  # Hydra's own groups: below
        options = cell.split(" | ")[0]
        assert re.findall(r"`(\w+)` \(default\)", options) == [defaults[group]], (group, options)
        assert set(re.findall(r"`(\w+)`", options)) <= set(group_options([CONFIG_DIR], group)), group


def test_the_group_table_lists_every_option_of_the_groups_that_pick_one():
    table = _group_table()
    for group in ("model", "dataset", "split", "augment", "shift", "optim", "regularizer", "scheduler"):
        listed = set(re.findall(r"`(\w+)`", table[group].split(" | ")[0]))
        assert listed == set(group_options([CONFIG_DIR], group)), group


def test_the_launcher_row_lists_every_launcher_hydra_finds_and_its_default():
    options, default = _hydra_launchers()
    cell = _group_table()["hydra/launcher"].split(" | ")[0]
    assert set(re.findall(r"`(\w+)`", cell)) == set(options)
    assert {"serial", "basic", "joblib", "slots", "slurm", "submitit_slurm"} <= set(options)
    assert re.findall(r"`(\w+)` \(default\)", cell) == [default] == ["serial"]


def test_the_sweeper_row_lists_dlexps_sweepers_and_the_default_is_dlexps_grid():
    from hydra import compose, initialize_config_dir

    cell = _group_table()["hydra/sweeper"].split(" | ")[0]
    assert set(re.findall(r"`(\w+)`", cell)) == {"basic", *group_options([CONFIG_DIR], "hydra/sweeper")}
    assert re.findall(r"`(\w+)` \(default\)", cell) == ["basic"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        chosen = {ov: compose("train", overrides=[ov] if ov else [], return_hydra_config=True).hydra.sweeper._target_
                  for ov in ("", "hparams_search=optuna")}
    assert chosen[""].endswith("GridSweeper") and chosen["hparams_search=optuna"].endswith("DlexpSearchSweeper")


def test_what_the_docs_say_of_plateaus_keys_is_in_its_file():
    plateau = OmegaConf.load(Path(CONFIG_DIR) / "scheduler" / "plateau.yaml")
    assert plateau.interval == "epoch" and plateau.warmup_steps == 0
    row = _group_table()["scheduler"]
    assert "`interval: epoch` and `warmup_steps: 0`, and any other value is an error" in row


def test_the_group_table_lists_every_recipe():
    row = next(line for line in CONFIG_GROUPS.read_text().splitlines() if line.startswith("| `recipe` |"))
    listed = set(re.findall(r"`(\w+_\w+)`", row.split(" | ")[1]))
    assert listed == set(group_options([CONFIG_DIR], "recipe"))
