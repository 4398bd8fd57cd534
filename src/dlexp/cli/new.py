"""``python -m dlexp.new DIR``: a starter project, ready to train, sweep and search.

    DIR/components.py                  a small model and a small dataset, registered with dlexp
    DIR/conf/model/small_mlp.yaml      their options (the keys their builders take)
    DIR/conf/dataset/blobs_2d.yaml
    DIR/conf/experiment/<name>.yaml    the project's preset: its plugin, model and dataset
    DIR/README.md                      the commands
    DIR/.gitignore                     outputs/

The components file is copied from ``dlexp/cli/starter/``, where it is tested like the rest of dlexp.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import Optional

STARTER = Path(__file__).parent / "starter"

MODEL_YAML = """# This project's model (components.py: small_mlp): each key is a keyword of its builder.
name: small_mlp
width: 64      # hidden units per layer
depth: 2       # hidden layers
dropout: 0.0   # also set by regularizer.dropout and a search over it
"""
DATASET_YAML = """# This project's data (components.py: blobs_2d): Gaussian blobs in the plane.
name: blobs_2d
n: 1200
classes: 4
spread: 0.6          # the blobs' standard deviation: larger is harder
test_fraction: 0.2   # held out as the test set
seed: 0              # the data's own seed (the run's seed= draws the split and the weights)
"""
EXPERIMENT_YAML = """# @package _global_
# The {name} project: its components (components.py, beside conf/) and its defaults.
# python -m dlexp --config-dir conf experiment={name}
defaults:
  - override /model: small_mlp
  - override /dataset: blobs_2d

plugins: [components.py]   # found beside the config dir; a path works too
trainer:
  epochs: 20
"""
README = """# {name}

A dlexp project: your own model and dataset in `components.py`, their options in `conf/`, and a
preset (`conf/experiment/{name}.yaml`) that names them.

```bash
cd {folder}
python -m dlexp --config-dir conf experiment={name}                                   # train once
python -m dlexp -m --config-dir conf experiment={name} model.width=16,64 seed=0,1     # a sweep, with its table
python -m dlexp -m --config-dir conf experiment={name} hparams_search=optuna hparams_search.n_trials=8   # a search
python -m dlexp --config-dir conf experiment={name} model=mlp                         # dlexp's own MLP on your data
```

`export DLEXP_CONFIG_DIR=$PWD/conf` makes every `dlexp` command (and its tab completion) know your options
without `--config-dir`. Results go to `outputs/`; `python -m dlexp.report outputs/multirun/<date>/<time>`
rebuilds a sweep's tables.

To add a component: write its builder in `components.py` with a `register_*` decorator (its keyword-only
parameters are its config keys), then its YAML in `conf/<group>/` with `name:` set to the registered name.
A model builder takes `(input_shape, num_classes, *, <keys>)`; a dataset builder `(*, <keys>)` and returns
a `dlexp.Source`.
"""
GITIGNORE = "outputs/\n__pycache__/\n"


def files(name: str, folder: Path) -> dict[str, str]:
    """The starter project's files: path inside ``folder`` -> text."""
    return {
        "components.py": (STARTER / "components.py").read_text(),
        "conf/model/small_mlp.yaml": MODEL_YAML,
        "conf/dataset/blobs_2d.yaml": DATASET_YAML,
        f"conf/experiment/{name}.yaml": EXPERIMENT_YAML.format(name=name),
        "README.md": README.format(name=name, folder=shlex.quote(str(folder))),
        ".gitignore": GITIGNORE,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlexp.new", description="Make a starter project: a model and a "
                                     "dataset of your own, their configs and a preset, ready to train and sweep.")
    parser.add_argument("folder", type=Path, help="the project's folder (new, or empty)")
    parser.add_argument("--name", help="the project's preset name (default: the folder's name)")
    args = parser.parse_args(argv)
    name = re.sub(r"[^A-Za-z0-9_]+", "_", args.name or args.folder.resolve().name).strip("_") or "project"
    if args.folder.exists() and (not args.folder.is_dir() or any(args.folder.iterdir())):
        print(f"error: {args.folder} exists and is not an empty folder; choose a new folder for the project",
              file=sys.stderr)
        return 2
    for path, text in files(name, args.folder).items():
        target = args.folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"made {args.folder}: components.py, conf/ and README.md\n"
          f"  cd {shlex.quote(str(args.folder))} && python -m dlexp --config-dir conf experiment={name}")
    return 0
