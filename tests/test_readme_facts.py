"""Facts the README states about the configs match the configs."""
from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from dlexp.config.files import CONFIG_DIR, default_choices, group_options

README = Path(__file__).parents[1] / "README.md"


def _group_table() -> dict[str, str]:
    """group -> its options cell, from the README's table of config groups."""
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and re.fullmatch(r"`\w+`", cells[0]) and "(default)" in cells[1]:
            rows[cells[0].strip("`")] = cells[1] + " | " + cells[2]
    return rows


def test_the_group_table_names_each_groups_real_default():
    table, defaults = _group_table(), default_choices([CONFIG_DIR])
    assert {"model", "optim", "scheduler", "regularizer"} <= set(table)
    for group, cell in table.items():
        options = cell.split(" | ")[0]
        assert re.findall(r"`(\w+)` \(default\)", options) == [defaults[group]], (group, options)
        assert set(re.findall(r"`(\w+)`", options)) <= set(group_options([CONFIG_DIR], group)), group


def test_what_the_readme_says_of_plateaus_keys_is_in_its_file():
    plateau = OmegaConf.load(Path(CONFIG_DIR) / "scheduler" / "plateau.yaml")
    assert plateau.interval == "epoch" and plateau.warmup_steps == 0
    row = _group_table()["scheduler"]
    assert "`interval: epoch` and `warmup_steps: 0`, and any other value is an error" in row


def test_the_group_table_lists_every_recipe():
    row = next(line for line in README.read_text().splitlines() if line.startswith("| `recipe` |"))
    listed = set(re.findall(r"`(\w+_\w+)`", row.split(" | ")[1]))
    assert listed == set(group_options([CONFIG_DIR], "recipe"))
