"""Run every command whose output the docs show, and write that output where the docs read it.

    python docs/generate_outputs.py            # all transcripts (make docs-outputs), a few minutes on 2 cores
    python docs/generate_outputs.py --only headline,sweep
    python docs/generate_outputs.py --list

Each transcript runs in a fresh temporary folder, as a user would type its commands there, and is
written to ``docs/_generated/<name>.txt`` as a console session: ``$ command`` lines, each followed
by what it printed (stdout and stderr in the order they came). The file begins with the machine it
ran on (CPU model and cores, the load, torch and Python versions), the dlexp commit and the date.
Long outputs are cut by a fixed rule per transcript (e.g. a sweep keeps each job's result line and
its table), and each cut is shown as ``...``. The temporary folder's path is written as
``/path/to/project`` and the home folder as ``~``, so no path of this machine leaks into the docs.

The pages include these files (MyST ``literalinclude``); README.md holds copies of some of them
between ``<!-- generated: NAME ... -->`` markers, which this script rewrites. Nothing in the docs
is pasted by hand: change a command here, run this script, and commit what it wrote.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "_generated"
README = ROOT / "README.md"
PROJECT_STAND_IN = "/path/to/project"  # the temporary working folder, as the docs show it

Keep = Callable[[str], bool]
# Where a run's output names its run dir: when it ends, or when it stops with the command to continue it.
LAST_RUN = re.compile(r"(?:^results in |continue with: python -m dlexp resume=)(\S+)")


def everything(line: str) -> bool:
    return True


def epoch_number(line: str) -> Optional[int]:
    found = re.match(r"epoch +(\d+) \|", line)
    return int(found[1]) if found else None


def some_epochs(line: str) -> bool:
    """A single run: epochs 1, 2 and every tenth; every other line (the last epoch is kept apart)."""
    epoch = epoch_number(line)
    return epoch is None or epoch <= 2 or epoch % 10 == 0


# What a sweep prints for each job before its result line: Hydra's launch lines, the banner, epochs.
JOB_DETAIL = re.compile(r"^(\[[\d :,-]+\]\[HYDRA\]|dlexp model=|epoch +\d+ \||estimated time:|early stopping:)")


def sweep_results(line: str) -> bool:
    """A sweep: each job's result line and the summary, not each job's epochs."""
    return not JOB_DETAIL.match(line)


SUMMARY_ROW = re.compile(r"│ (?P<key>\S+) +│")
STATUS_ROWS = {"status", "stop_reason", "signal", "epochs_run", "best_epoch", "best/val/acc", "test/acc", "tested"}


def status_rows(line: str) -> bool:
    """A run that stops and goes on: its epochs as ``some_epochs`` keeps them, and of each summary table the rows
    that say how the run ended and where it stands."""
    row = SUMMARY_ROW.match(line)
    return some_epochs(line) if row is None else row["key"] in STATUS_ROWS


def diagnosis_lines(line: str) -> bool:
    """A run's epochs every tenth, and the generalization gap and diagnosis rows of its summary."""
    epoch = epoch_number(line)
    return epoch is not None and epoch % 10 == 0 or bool(re.match(r"│ (gap/|diagnosis)", line))


def errors_only(line: str) -> bool:
    return line.startswith("error: ")


SCORE_ROWS = {"status", "best/val/acc", "test/acc", "best/val/rmse", "test/rmse", "diagnosis"}


def inferred_and_scores(line: str) -> bool:
    """A run on a table: what dataset=csv inferred, the run's banner, and the rows of its summary that score it."""
    row = SUMMARY_ROW.match(line)
    return line.startswith(("dataset=csv: ", "dlexp model=")) if row is None else row["key"] in SCORE_ROWS


@dataclass
class Step:
    command: str  # as shown, after '$ '; 'python' runs this interpreter; a leading NAME=value sets the environment;
    # {last_run} stands for the run dir that the transcript's output named last (LAST_RUN), relative to its folder
    exit_code: int = 0  # what the command must exit with: a transcript of a failing command shows its failure
    keep: Keep = everything  # which output lines to show; the last line of a run's epochs is always kept
    setup: Optional[Callable[[Path], None]] = None  # files the command expects in its folder
    each_cut: bool = True  # mark each cut with '...'; False: only the first (a sweep's per-job lines, left out alike)

    def argv(self) -> tuple[dict[str, str], list[str]]:
        words = shlex.split(self.command, comments=True)
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words[0] == "python":
            words[0] = sys.executable
        return env, words


@dataclass
class Transcript:
    name: str
    what: str  # one line: what it shows, for --list
    steps: list[Step] = field(default_factory=list)


def results_file(folder: Path) -> None:
    (folder / "results").write_text("not a dir\n")


def arrays_with_nans(folder: Path) -> None:
    """my_data.npz: 90 examples of 5 features in 3 classes; example 3 holds 3 NaNs."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 0] > 1).astype(np.int64)
    x[3, :3] = np.nan
    np.savez(folder / "my_data.npz", x=x, y=y)


def test_files(folder: Path, *names: str) -> None:
    """Files of tests/datafiles.py, the ones the tests read: trees.csv (a made-up table of trees), typo.csv
    (the same with a word among the sizes), photo.csv (a PNG image, whatever its name says)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import datafiles

    writers = {"trees.csv": datafiles.write_table, "typo.csv": datafiles.write_table_with_a_typo,
               "photo.csv": datafiles.write_png_bytes}
    for name in names:
        writers[name](folder / name)


TABLE = "python -m dlexp dataset=csv dataset.path=trees.csv"
TABLE_MISTAKES = [
    f"{TABLE} dataset.target=specie                            # trees.csv as above",
    "python -m dlexp dataset=csv dataset.path=typo.csv dataset.target=species   # typo.csv: a word among the sizes",
    f"{TABLE} dataset.target=species dataset.categorical=[color]   # trees.csv as above",
    f"{TABLE} dataset.target=species dataset.task=binary       # trees.csv as above",
    "python -m dlexp dataset=csv dataset.path=photo.csv dataset.target=species  # photo.csv: a PNG image renamed",
]

MISTAKES = [
    "python -m dlexp model=lenett",
    "python -m dlexp trainer.epoch=3",
    "python -m dlexp model.activation=ReLU",
    "python -m dlexp optim.betas=[0.9]",
    "python -m dlexp -m model=vgg11,alexnet model.width_div=4",
    "python -m dlexp trainer.epochs=abc",
    "python -m dlexp optim.lr=1e-2,",
    "python -m dlexp --cfg job seed=-1",
    "python -m dlexp optimizer=sgd",
    "python -m dlexp weight_decay=1e-3",
    "python -m dlexp optim.lr=0.1,0.01",
    "python -m dlexp model.hidden=256",
    "python -m dlexp -m optim.lr=0.1 0.01",
    "python -m dlexp --cfg job decode.beam_size=4",
    "python -m dlexp model=lenet dataset.resize=null",
    "python -m dlexp trainer.device=cuda",
]
SWEEP = ("python -m dlexp -m regularizer.weight_decay=0,1e-3 regularizer.dropout=0,0.5 seed=0,1 trainer.num_threads=1 "
         "sweep.name=wd_dropout")
SEARCH = "python -m dlexp -m hparams_search=optuna hparams_search.n_trials=10"

TRANSCRIPTS = [
    Transcript("headline", "the default experiment, as `make run` runs it", [Step("python -m dlexp", keep=some_epochs)]),
    Transcript("sweep", "a 2 x 2 grid over two seeds and its table", [Step(SWEEP, keep=sweep_results, each_cut=False)]),
    Transcript("summary", "the layer table of LeNet", [Step("python -m dlexp.summary model=lenet dataset.resize=28")]),
    Transcript("mistakes", "typos and impossible values: one line each, before any training",
               [Step(command, exit_code=2) for command in MISTAKES] + [
                   Step("python -m dlexp 'hydra.run.dir=results/${now:%H-%M}'    # results is a file", exit_code=2,
                        setup=results_file),
                   Step("python -m dlexp dataset=arrays dataset.path=my_data.npz   # example 3 holds 3 NaNs",
                        exit_code=2, setup=arrays_with_nans)]),
    Transcript("overfitting", "a wide MLP trained without early stopping, and its diagnosis",
               [Step("python -m dlexp optim.lr=0.01 model.hidden=[512,512] trainer.epochs=40 "
                     "trainer.early_stopping.patience=null scheduler=none model.dropout=0", keep=diagnosis_lines)]),
    Transcript("kfold", "5-fold cross-validation with a covariate-shifted test set",
               [Step("python -m dlexp split=kfold split.k=5 shift=covariate hydra.run.dir=runs/digits_kfold",
                     keep=lambda line: epoch_number(line) is None)]),
    Transcript("failed-job", "a sweep in which one job fails", [Step("python -m dlexp -m trainer=smoke optim.lr=-1,0.001",
                                                                     exit_code=1, keep=sweep_results)]),
    Transcript("sweep-continued", "the sweep stopped by SIGINT after its third job, then run again",
               [Step(f"DLEXP_SIGNAL_AT=job_end@3 {SWEEP}", exit_code=130, keep=sweep_results, each_cut=False),
                Step(SWEEP, keep=sweep_results, each_cut=False)]),
    Transcript("search", "an Optuna search of 10 trials on the CPU's slots, then the same command again",
               [Step(SEARCH), Step(SEARCH)]),
    Transcript("slots", "a grid sweep on the slots launcher",
               [Step("python -m dlexp -m hydra/launcher=slots optim.lr=0.001,0.003,0.01 regularizer.dropout=0,0.5")]),
    Transcript("interrupted", "a run stopped by SIGTERM after its third epoch, then resumed",
               [Step("DLEXP_SIGNAL_AT=end_epoch@3:SIGTERM python -m dlexp trainer.epochs=20", exit_code=143,
                     keep=status_rows),
                Step("python -m dlexp resume={last_run}", keep=status_rows)]),
    Transcript("csv", "dataset=csv on a made-up table: classes, a regression, and the files it refuses",
               [Step("head -4 trees.csv", setup=lambda folder: test_files(folder, "trees.csv", "typo.csv", "photo.csv")),
                Step(f"{TABLE} dataset.target=species   # trees.csv as above", keep=inferred_and_scores),
                Step(f"{TABLE} dataset.target=price     # trees.csv as above", keep=inferred_and_scores)]
               + [Step(command, exit_code=2) for command in TABLE_MISTAKES]),
    Transcript("diverged", "a learning rate that makes the loss non-finite",
               [Step("python -m dlexp optim=sgd optim.lr=1e4", exit_code=3, keep=errors_only)]),
]


# ---- the machine -----------------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def machine_header() -> list[str]:
    """Two comment lines: where and when the transcript was recorded."""
    torch_version = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short=10", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "src", "conf", "benchmarks"):
        commit += " with uncommitted changes"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return [f"# recorded by docs/generate_outputs.py on {datetime.date.today().isoformat()}, dlexp commit {commit}",
            f"# machine: {cpu_model()}, {cores} CPU cores (load average {load:.1f} at the start), "
            f"torch {torch_version}, Python {platform.python_version()}"]


# ---- running and cutting ---------------------------------------------------------------------------------------

def scrub(text: str, folder: Path) -> str:
    """No path of this machine: the working folder becomes PROJECT_STAND_IN, the home folder '~'."""
    for path in {str(folder.resolve()), str(folder)}:
        text = text.replace(path, PROJECT_STAND_IN)
    home = str(Path.home())
    if len(home) > 1:
        text = re.sub(re.escape(home) + r"(?=/|\b)", "~", text)
    return text


def cut(lines: list[str], keep: Keep, each_cut: bool = True) -> list[str]:
    """The lines ``keep`` takes, and the last epoch line of a run; each run of left-out lines is one '...'
    (with ``each_cut`` false, only the first)."""
    epochs = [i for i, line in enumerate(lines) if epoch_number(line) is not None]
    last_epoch = epochs[-1] if epochs and keep in (some_epochs, status_rows) else None
    shown: list[str] = []
    for i, line in enumerate(lines):
        if keep(line) or i == last_epoch:
            shown.append(line)
        elif (not shown or shown[-1] != "...") and (each_cut or "..." not in shown):
            shown.append("...")
    return shown


def run_step(step: Step, folder: Path) -> list[str]:
    if step.setup is not None:
        step.setup(folder)
    extra, argv = step.argv()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    if any(name.startswith("DLEXP_") and name.endswith("_AT") for name in extra):  # a fault at a named moment:
        support = str(ROOT / "tests" / "support")  # the tests' hook arms it (dlexp itself reads no fault)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (support, env.get("PYTHONPATH", "")) if p)
    env.pop("DLEXP_TRACEBACK", None)
    env.pop("COLUMNS", None)  # piped output has the widths the code gives it, not this terminal's
    proc = subprocess.run(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = scrub(proc.stdout, folder)
    if proc.returncode != step.exit_code:
        raise SystemExit(f"error: '{step.command}' exited {proc.returncode}, expected {step.exit_code}:\n{output[-3000:]}")
    return cut([line.rstrip() for line in output.splitlines()], step.keep, step.each_cut)


def record(transcript: Transcript, header: list[str]) -> Path:
    lines = list(header)
    with tempfile.TemporaryDirectory(prefix="dlexp-docs-") as tmp:
        folder = Path(tmp)
        for step in transcript.steps:
            written = [found[1].removeprefix(PROJECT_STAND_IN + "/") for line in lines if (found := LAST_RUN.search(line))]
            step = replace(step, command=step.command.replace("{last_run}", written[-1] if written else "{last_run}"))
            lines.append(f"$ {step.command}")
            lines += run_step(step, folder)
    path = GENERATED / f"{transcript.name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- README.md's copies ----------------------------------------------------------------------------------------

README_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) [^\n]*-->\n```console\n)(?P<body>.*?)(^```$)", re.S | re.M)


def readme_blocks(text: str) -> dict[str, str]:
    """name -> the transcript README.md holds between its markers."""
    return {found["name"]: found["body"] for found in README_BLOCK.finditer(text)}


def update_readme() -> list[str]:
    """Rewrite README.md's generated blocks from docs/_generated/; returns the names rewritten."""
    text = README.read_text()
    names = []

    def fill(found: re.Match) -> str:
        names.append(found["name"])
        return found[1] + (GENERATED / f"{found['name']}.txt").read_text() + found[4]

    README.write_text(README_BLOCK.sub(fill, text))
    return names


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated transcript names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the transcripts, run nothing")
    parser.add_argument("--readme", action="store_true", help="only copy the transcripts into README.md, run nothing")
    args = parser.parse_args(argv)
    if args.readme:
        print(f"README.md: rewrote {', '.join(update_readme()) or 'no'} generated block(s)")
        return 0
    if args.list:
        for transcript in TRANSCRIPTS:
            print(f"{transcript.name:<16} {transcript.what}")
        return 0
    names = args.only.split(",") if args.only else [t.name for t in TRANSCRIPTS]
    unknown = sorted(set(names) - {t.name for t in TRANSCRIPTS})
    if unknown:
        print(f"error: unknown transcript {unknown[0]}; --list shows them", file=sys.stderr)
        return 2
    GENERATED.mkdir(parents=True, exist_ok=True)
    header = machine_header()
    started = time.perf_counter()
    for transcript in TRANSCRIPTS:
        if transcript.name in names:
            began = time.perf_counter()
            path = record(transcript, header)
            print(f"wrote {path.relative_to(ROOT)} ({time.perf_counter() - began:.0f} s)", flush=True)
    print(f"README.md: rewrote {', '.join(update_readme()) or 'no'} generated block(s); "
          f"{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
