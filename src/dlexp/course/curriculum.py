"""``python -m dlexp.curriculum``: run the course's CPU presets and write docs/curriculum.md.

Each preset (conf/experiment/<name>.yaml) runs through the real command line in a
subprocess, as a user would type it: ``python -m dlexp -m experiment=NAME`` for a
preset that compares settings (a sweep), ``python -m dlexp experiment=NAME`` for
one run. Its ``finding.json`` gives the table row; its figures are copied next to
the document. Extra overrides after ``--`` go to every preset (e.g. ``-- trainer.epochs=2``).

    python -m dlexp.curriculum --list
    python -m dlexp.curriculum --only polynomial,weight_decay
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import yaml

from dlexp.config.files import CONFIG_DIR
from dlexp.course.findings import FINDINGS
from dlexp.runs.files import COMPARISON_PLOT, CURVES_PLOT, FINDING_FILE, GRAD_NORMS_PLOT, HEATMAP_PLOT

# The CPU presets in the course's order (the d2l_* Fashion-MNIST table needs its files and a GPU).
PRESETS = [
    "polynomial", "weight_decay", "dropout_vs_weight_decay", "vanishing_gradients", "symmetry", "activations",
    "hidden_width", "batch_size", "optimizers", "lr_decay", "batchnorm", "early_stopping", "augmentation",
    "kfold_house_prices", "covariate_shift", "label_shift",
]
# Presets whose data is placed by hand: the file they need, and where it comes from.
NEEDS_FILES = {"kfold_house_prices": ("data/house_prices/train.csv", "Kaggle's house-prices train.csv and test.csv")}
FIGURES = (CURVES_PLOT, COMPARISON_PLOT, HEATMAP_PLOT, GRAD_NORMS_PLOT)


@dataclass
class Outcome:
    name: str
    command: list[str]
    seconds: float
    finding: Optional[dict[str, Any]]  # finding.json, or None
    status: str  # "ran", "failed (exit N)", "skipped: ..."
    figures: list[Path]


def preset_scope(name: str) -> str:
    """"sweep" or "run": the scope of the preset's finding (its conf/experiment YAML names it)."""
    finding = yaml.safe_load((Path(CONFIG_DIR) / "experiment" / f"{name}.yaml").read_text()).get("finding")
    return FINDINGS.get(finding).scope


def command(name: str, out_dir: Path, extra: list[str]) -> list[str]:
    sweep = preset_scope(name) == "sweep"
    where = f"hydra.sweep.dir={out_dir / name}" if sweep else f"hydra.run.dir={out_dir / name}"
    return ["python", "-m", "dlexp", *(["-m"] if sweep else []), f"experiment={name}", "trainer.progress=false", where, *extra]


def run_preset(name: str, out_dir: Path, extra: list[str]) -> Outcome:
    cmd = command(name, out_dir, extra)
    needed = NEEDS_FILES.get(name)
    if needed and not Path(needed[0]).is_file():
        return Outcome(name, cmd, 0.0, None, f"skipped: place {needed[1]} in {Path(needed[0]).parent}/", [])
    target = out_dir / name
    if target.exists():
        shutil.rmtree(target)  # a fresh run: old job dirs would mix into the new sweep's findings
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *cmd[1:]], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (out_dir / f"{name}.log").write_text(proc.stdout + proc.stderr)
    path = target / FINDING_FILE
    finding = json.loads(path.read_text()) if path.is_file() else None
    status = "ran" if proc.returncode == 0 else f"failed (exit {proc.returncode}; see {out_dir / name}.log)"
    if finding is not None:
        print(finding["text"], flush=True)
    return Outcome(name, cmd, seconds, finding, status, [target / f for f in FIGURES if (target / f).is_file()])


# --------------------------------------------------------------------------
# The document


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


RESULTS_FILE = "results.json"  # docs/curriculum/results.json: each preset's last measured row, for the page


def write_doc(outcomes: list[Outcome], docs: Path) -> Path:
    """docs/curriculum.md (table, commands, figures) and the figures in docs/curriculum/. The page shows every
    preset: those run now replace their rows in ``results.json``, the others keep the rows an earlier run
    measured, so a run of some presets (``--only``) never drops the others from the course page."""
    figures_dir = docs / "curriculum"
    figures_dir.mkdir(parents=True, exist_ok=True)
    rows = _read_rows(figures_dir / RESULTS_FILE)
    for o in outcomes:
        figures = []
        for fig in o.figures:
            copy = figures_dir / f"{o.name}_{fig.name}"
            shutil.copyfile(fig, copy)
            figures.append(copy.name)
        rows[o.name] = {"command": " ".join(o.command), "seconds": round(o.seconds),
                        "finding": o.finding, "status": o.status, "figures": figures, "machine": machine()}
    shown = [name for name in PRESETS if name in rows]
    (figures_dir / RESULTS_FILE).write_text(json.dumps({name: rows[name] for name in shown}, indent=1) + "\n")
    path = docs / "curriculum.md"
    path.write_text(_page(shown, rows))
    return path


def _page(names: list[str], rows: dict[str, dict[str, Any]]) -> str:
    lines = ["# The course's experiments, measured", "",
             "Written by `python -m dlexp.curriculum` on the CPU (the machine of each preset's run is listed under "
             "Commands). Each finding is computed from the files its run or sweep wrote (`finding.json` beside the "
             "summary).", "",
             "| preset | claim | measured | verdict | seconds |", "|---|---|---|---|---|"]
    for name in names:
        row, finding = rows[name], rows[name]["finding"]
        claim = finding["claim"] if finding else FINDINGS.get(_finding_name(name)).claim
        measured = finding["line"] if finding else "-"
        verdict = row["status"] if finding is None else "**holds**" if finding["holds"] else "does not hold"
        lines.append(f"| `{name}` | {_cell(claim)} | {_cell(measured)} | {verdict} | {row['seconds']:.0f} |")
    lines += ["", "## Commands", "", "```"]
    lines += [f"{rows[name]['command']}    # {rows[name]['machine']}" for name in names]
    lines += ["```", "", "## Figures", ""]
    for name in names:
        for figure in rows[name]["figures"]:
            lines.append(f"### `{name}`: {figure.removeprefix(name + '_')}\n\n![{name} {Path(figure).stem}](curriculum/{figure})\n")
    return "\n".join(lines).rstrip() + "\n"


def _read_rows(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}  # a damaged record: the page is rewritten from this run's rows


def machine() -> str:
    """Where a preset ran: the CPU, its cores, torch, the date."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    return f"{cpu or 'CPU'}, {os.cpu_count()} cores, torch {metadata.version('torch')}, {time.strftime('%Y-%m-%d')}"


def _finding_name(preset: str) -> str:
    return yaml.safe_load((Path(CONFIG_DIR) / "experiment" / f"{preset}.yaml").read_text())["finding"]


# --------------------------------------------------------------------------
# The command


def _selected(only: Optional[str]) -> list[str]:
    if only is None:
        return list(PRESETS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in PRESETS]
    if unknown:
        raise SystemExit(f"error: unknown preset '{unknown[0]}' in --only; choices: {', '.join(PRESETS)}")
    return names


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="python -m dlexp.curriculum", description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the presets and their claims, run nothing")
    parser.add_argument("--only", help="comma-separated presets to run, e.g. polynomial,weight_decay")
    parser.add_argument("--out", type=Path, default=Path("outputs/curriculum"), help="where the runs go")
    parser.add_argument("--docs", type=Path, default=Path("docs"), help="where curriculum.md and its figures go")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    try:
        names = _selected(args.only)
    except SystemExit as err:
        print(err, file=sys.stderr)
        return 2
    if args.list:
        for name in PRESETS:
            kind = "sweep (-m)" if preset_scope(name) == "sweep" else "single run"
            print(f"{name:<26} {kind:<11} {FINDINGS.get(_finding_name(name)).claim}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    partial = names != PRESETS and not (args.docs / "curriculum" / RESULTS_FILE).is_file()
    outcomes = [run_preset(name, args.out, extra) for name in names]
    path = write_doc(outcomes, args.out if partial else args.docs)
    print(f"wrote {path} ({sum(o.seconds for o in outcomes):.0f} s of runs)")
    if partial:  # the course page's rows of the other presets are not on record: the page is left as it is
        print(f"{args.docs / 'curriculum.md'} is kept: it has no record of each preset's row to merge this run's into; "
              "run all presets once (without --only) to rewrite it", flush=True)
    bad = [o.name for o in outcomes if o.finding is None and not o.status.startswith("skipped")]
    bad += [o.name for o in outcomes if o.finding is not None and not o.finding["holds"]]
    if bad:
        print(f"error: {len(bad)} preset(s) failed or their finding does not hold: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
