"""The commands in README.md and the pages of docs/ stay true: each command that invokes dlexp runs
here with a tiny budget (one epoch of at most two batches, batches of at most 16, a sweep cut to two
jobs), or its line ends in a comment saying what it needs that a CPU-only machine without extra files
lacks, e.g. ``# needs: a GPU`` or ``# the GPU recipe; needs: a GPU and the CIFAR-10 files``.

Code blocks say what they hold: ```bash lines are commands, a ```console block is a session in
which only the ``$ `` lines are commands (the rest is their output), and ```text, ```python and
```yaml blocks are never run. A page's ```{literalinclude} of a transcript under docs/_generated/
with ``:language: console`` is a console block too: its ``$ `` lines run like the page's own.
docs/curriculum.md is left out: ``python -m dlexp.curriculum`` writes it, commands included.

Commands run in this process, which saves the ~7 s of imports that every new process pays: a plain
``python -m dlexp`` run as compose + ``train()``, the rest (sweeps, flags, mistakes) through the
console entry point ``dlexp.train.cli`` with ``sys.argv`` set, and the other modules (summary, report,
translate, curriculum) through the ``main(argv)`` that their ``python -m`` calls. Sweeps with a
process launcher (joblib) run as subprocesses. A command that reads a run an earlier command of
its page wrote (report, translate, resume=) runs that command first, into ``produced/``.

A few representative commands (``FAST``) run in the fast tier; the others are marked ``slow``.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest
import yaml

from conftest import assert_one_line_error, cli_in_process, compose_cfg, run_cli
from datafiles import write_png_bytes, write_table, write_table_with_a_typo
from dlexp.cli.help import STARTING
from dlexp.config.files import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
# The pages whose commands run: the README, then docs/ (the course's generated page aside).
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "curriculum.md")]
COMMAND_FENCES = {"bash", "console"}
FENCES = COMMAND_FENCES | {"text", "python", "yaml"}
DIRECTIVES = {"{literalinclude}", "{toctree}"}  # MyST: a transcript included from docs/_generated/, the page tree
PROJECT_STAND_IN = "/path/to/project"  # how a transcript shows the folder its commands ran in (docs/generate_outputs.py)
# The commands that run in the fast tier: the headline run, a sweep, --help, --cfg job and one mistake.
FAST = {
    "python -m dlexp", "python -m dlexp --help", "python -m dlexp --cfg job", "python -m dlexp model=lenett",
    "python -m dlexp -m regularizer.weight_decay=0,1e-3 regularizer.dropout=0,0.5 seed=0,1 trainer.num_threads=1 "
    "sweep.name=wd_dropout",
}
NEEDS = re.compile(r"\bneeds: (?P<what>\S.*)$")
# A run or sweep dir that an earlier command of the page wrote: outputs/<date>/<run>, outputs/multirun/<date>/<time>,
# or a dated example such as outputs/2026-11-24/10-00-00-000000 (its sub-paths, e.g. checkpoints/best.pt, stay).
WRITTEN_DIR = re.compile(r"outputs/(?P<multirun>multirun/)?(<date>|\d{4}-\d\d-\d\d)/(<\w+>|[\d-]+)")
# The tiny budget: every key exists in conf/trainer/default.yaml.
TINY = {
    "trainer.epochs": "1", "trainer.limit_train_batches": "2", "trainer.limit_eval_batches": "2",
    "trainer.limit_test_batches": "2", "trainer.num_threads": "1", "trainer.progress": "false",
}
BATCH_CAP = {"trainer.batch_size": 16, "trainer.eval_batch_size": 16}  # conv nets at 96x96 or 224x224 stay cheap
OPTUNA_TRIALS = "2"
# Files a command expects in its working dir, written by the test: (the comment that says so, the setup).
SETUP = {
    "results is a file": lambda cwd: (cwd / "results").write_text("not a dir\n"),
    "example 3 holds 3 NaNs": lambda cwd: write_nans(cwd / "my_data.npz", example=3, count=3),
    "trees.csv": lambda cwd: write_table(cwd / "trees.csv"),
    "typo.csv": lambda cwd: write_table_with_a_typo(cwd / "typo.csv"),
    "photo.csv": lambda cwd: write_png_bytes(cwd / "photo.csv"),
}

# What each module (and flag) prints when it works; commands of a module not listed here are not runnable.
PRINTS = {
    ("dlexp", "--version"): re.compile(r"\d+\.\d+"),
    ("dlexp", "--help"): re.compile(r"model="),
    ("dlexp", "--cfg"): re.compile(r"^trainer:", re.M),
    ("dlexp", "-sc"): re.compile(r"hydra_bash_completion"),
    ("dlexp.summary", None): re.compile(r"total params: [\d,]+"),
    ("dlexp.report", None): re.compile(r"Sweep summary: \d+ jobs"),
    ("dlexp.translate", None): re.compile(r"^.+ => .*$", re.M),
    ("dlexp.curriculum", "--list"): re.compile(r"polynomial"),
    ("dlexp.curriculum", "--only"): re.compile(r"curriculum\.md"),
}


def printed(module: str, flag: Optional[str]) -> Optional[re.Pattern]:
    """What ``module`` prints when it works: per flag where the flag picks what it does."""
    return PRINTS.get((module, flag), PRINTS.get((module, None)))


def write_nans(path: Path, example: int, count: int) -> None:
    """An arrays file (x: (90, 5) float32, y: 3 classes) whose ``example`` has ``count`` NaN inputs."""
    import numpy as np

    from datafiles import write_arrays

    data = dict(np.load(write_arrays(path)))
    data["x"][example, :count] = np.nan
    np.savez(path, **data)


@dataclass(frozen=True)
class Command:
    source: str  # the file it is written in, relative to the repository (a page, or a transcript a page includes)
    line: int  # the line of that file where it starts
    code: str  # the shell text, '\' continuations joined, the comment removed
    comment: str
    output: tuple[str, ...] = ()  # what a console block shows after it

    @property
    def need(self) -> Optional[str]:
        found = NEEDS.search(self.comment)
        return found["what"] if found else None

    @property
    def shown(self) -> list[str]:
        """Its output as shown, without '...' lines and the first line every run prints on stdout."""
        return [line for line in self.output if line.strip() != "..." and line != STARTING]

    @property
    def error(self) -> Optional[str]:
        """The ``error: ...`` line shown for it, skipping '...' lines; None when it succeeds."""
        return self.shown[0] if self.shown and self.shown[0].startswith("error: ") else None

    @property
    def words(self) -> list[str]:
        return shlex.split(self.code)

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.code}"


def split_comment(line: str) -> tuple[str, str]:
    """('code', 'comment'): a '#' that starts a word outside quotes begins the comment, as in bash."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def code_blocks(text: str) -> Iterator[tuple[int, str, list[tuple[int, str]]]]:
    """(line of the opening fence, its language tag, [(line number, line)] of its body)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            start, tag, body = i + 1, lines[i][3:].strip(), []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append((i + 1, lines[i]))
                i += 1
            yield start, tag, body
        i += 1


def block_commands(tag: str, body: list[tuple[int, str]], source: str = "<text>") -> Iterator[Command]:
    """A bash block: every line; a console block: the '$ ' lines, each with the output after it."""
    i = 0
    while i < len(body):
        number, line = body[i]
        i += 1
        if tag == "console" and not line.startswith("$ "):
            continue
        code, comment = split_comment(line[2:] if tag == "console" else line)
        while code.endswith("\\") and i < len(body):  # a continuation line: the comment is on the last one
            more, comment = split_comment(body[i][1])
            code, i = code[:-1].rstrip() + " " + more.strip(), i + 1
        output = []
        while tag == "console" and i < len(body) and not body[i][1].startswith("$ "):
            output.append(body[i][1])
            i += 1
        if code.strip():
            yield Command(source, number, code.strip(), comment, tuple(output))


def invocation(words: list[str]) -> Optional[tuple[str, list[str]]]:
    """(module, its arguments) when the words run dlexp: python -m dlexp[.x], dlexp, torchrun -m dlexp, eval "$(dlexp ...)"."""
    if words[0] == "eval" and len(words) == 2 and words[1].startswith("$(") and words[1].endswith(")"):
        return invocation(shlex.split(words[1][2:-1]))
    if words[0] == "dlexp":
        return "dlexp", words[1:]
    if words[0] in ("python", "python3") and words[1:2] == ["-m"] and re.fullmatch(r"dlexp(\.\w+)?", words[2]):
        return words[2], words[3:]
    if words[0] == "torchrun" and "-m" in words and words[words.index("-m") + 1] == "dlexp":
        return "dlexp", words[words.index("-m") + 2:]
    return None


def directive_options(body: list[tuple[int, str]]) -> dict[str, str]:
    """A MyST directive's ``:key: value`` lines."""
    return {found[1]: found[2].strip() for _, line in body if (found := re.match(r":(\w+):(.*)$", line))}


def page_blocks(page: Path, root: Path = ROOT) -> Iterator[tuple[str, int, str, list[tuple[int, str]]]]:
    """(file, line of the opening fence, tag, body) of a page's code blocks; an included console transcript
    comes as a console block of its own file."""
    for line, tag, body in code_blocks(page.read_text()):
        if tag.startswith("{literalinclude}") and directive_options(body).get("language") == "console":
            included = (page.parent / tag.split(None, 1)[1]).resolve()
            yield str(included.relative_to(root)), 0, "console", list(enumerate(included.read_text().splitlines(), 1))
        else:
            yield str(page.relative_to(root)), line, tag, body


def page_commands(page: Path) -> list[Command]:
    return [cmd for source, _, tag, body in page_blocks(page) if tag in COMMAND_FENCES
            for cmd in block_commands(tag, body, source) if invocation(cmd.words)]


def doc_commands() -> list[Command]:
    """Every dlexp command of every page, page by page."""
    return [cmd for page in PAGES for cmd in page_commands(page)]


# ---- the tiny budget ----------------------------------------------------------------------------------------------

def sweep_values(value: str) -> Optional[list[str]]:
    """The values of a sweep list 'a,b,c' (commas inside [] or () do not count); None when it is one value."""
    parts, depth, current = [], 0, ""
    for char in value:
        depth += (char in "[(") - (char in "])")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current] if parts else None


def cut(values: list[str], first_axis: bool) -> str:
    """The first sweep axis keeps two values and every other axis one, so a sweep runs two jobs."""
    return ",".join(values[: 2 if first_axis else 1])


def shrink(args: list[str], *, sweep: bool, resume: bool, as_written: bool = False) -> list[str]:
    """``args`` with the tiny budget: the command's own budget keys replaced (not given twice), the rest
    appended. ``as_written`` (a command shown failing) keeps every value it gives, the mistake included."""
    out, seen, axes = [], set(), 0
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or arg.startswith("-") or as_written:
            out.append(arg)
            seen.add(key.lstrip("+~"))
            continue
        bare = key.lstrip("+~")
        seen.add(bare)
        values = sweep_values(value) if sweep else None
        if bare == "trainer.epochs" and resume:
            value = "2"  # longer than the one epoch of the run it continues
        elif bare in TINY:
            value = TINY[bare]
        elif bare in BATCH_CAP:
            value = str(min(int(value), BATCH_CAP[bare]))
        elif bare == "hparams_search.n_trials":
            value = OPTUNA_TRIALS
        elif values:
            value, axes = cut(values, axes == 0), axes + 1
        out.append(f"{key}={value}")
    budget = {**TINY, **{key: str(cap) for key, cap in BATCH_CAP.items()}}
    if resume:
        budget.pop("trainer.epochs")  # the resumed run's own epochs, or the command's
    out += [f"{key}={value}" for key, value in budget.items() if key not in seen]
    if sweep and "hparams_search" in seen and "hparams_search.n_trials" not in seen:
        out.append(f"hparams_search.n_trials={OPTUNA_TRIALS}")
    return out + (preset_sweeps(out, seen, first_axis=axes == 0) if sweep else [])


def preset_sweeps(args: list[str], seen: set[str], first_axis: bool) -> list[str]:
    """A preset's own ``hydra.sweeper.params`` lists, cut like the command line's and given on the
    command line, where they win over the preset's."""
    chosen = [arg.split("=", 1)[1] for arg in args if arg.split("=", 1)[0].lstrip("+") == "experiment"]
    extra = []
    for name in chosen[0].split(",") if chosen else []:
        preset = yaml.safe_load((Path(CONFIG_DIR) / "experiment" / f"{name}.yaml").read_text()) or {}
        params = ((preset.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
        for key, value in params.items():
            values = sweep_values(str(value))
            if key not in seen and values:
                seen.add(key)
                extra.append(f"{key}={cut(values, first_axis)}")
                first_axis = False
    return extra


# ---- what each command needs, and how it runs ---------------------------------------------------------------------

@dataclass
class Plan:
    commands: list[Command]  # the commands (of any page) that come to this one run under the tiny budget
    module: str
    args: list[str]  # tiny budget applied; a written dir (WRITTEN_DIR) is where `producer` wrote
    producer: Optional["Plan"] = None
    own_args: list[str] = field(default_factory=list)  # a producer's args before they name its output dir

    @property
    def first(self) -> Command:
        return self.commands[0]

    @property
    def flag(self) -> Optional[str]:
        return next((arg for arg in self.args if arg.startswith("-") and arg != "-m"), None)

    @property
    def sweep(self) -> bool:
        return self.module == "dlexp" and "-m" in self.args

    @property
    def in_process(self) -> bool:
        """A plain single run goes through compose + train() in this process, saving a process start."""
        return (self.module == "dlexp" and self.flag is None and not self.sweep and self.first.error is None
                and not any(arg.startswith("resume=") for arg in self.args) and not self.setups)

    @property
    def setups(self) -> list:
        return [setup for text, setup in SETUP.items() if text in self.first.comment]

    @property
    def id(self) -> str:
        commands = [*(self.producer.commands if self.producer else []), *self.commands]
        lines = "+".join(f"{Path(cmd.source).stem}-L{cmd.line}" for cmd in commands)
        return f"{lines}-{self.module}-" + "_".join(invocation(self.first.words)[1][:2])[:50]


def plan(cmd: Command, earlier: list[Command]) -> tuple[Optional[Plan], str]:
    """How ``cmd`` runs with a tiny budget, or (None, why it cannot)."""
    module, args = invocation(cmd.words)
    if cmd.words[0] == "torchrun":
        return None, "the test starts no torchrun processes"
    if any(arg == "..." or re.search(r"<\w+>", WRITTEN_DIR.sub("", arg)) for arg in args):
        return None, "it holds a placeholder ('...' or <...>)"
    flag = next((arg for arg in args if arg.startswith("-") and arg != "-m"), None)
    if (module, flag) != ("dlexp", None) and printed(module, flag) is None:
        return None, f"the test has no check of what {module} {flag or ''} prints (add one to PRINTS)"
    if module == "dlexp.curriculum" and flag == "--only":  # the overrides after '--' go to every preset
        head, rest = (args[: args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
        args = [*head, "--", *shrink(rest, sweep=False, resume=False)]
    elif module == "dlexp" and flag is None:
        args = shrink(args, sweep="-m" in args, resume=any(arg.startswith("resume=") for arg in args),
                      as_written=cmd.error is not None)
    written = [WRITTEN_DIR.search(arg) for arg in args if WRITTEN_DIR.search(arg)]
    producer = None
    if written:
        multirun = bool(written[0]["multirun"])
        producer = producing(earlier, multirun)
        if producer is None:
            return None, "no earlier runnable command of its page writes the run it reads"
    return Plan([cmd], module, args, producer), ""


def producing(earlier: list[Command], multirun: bool) -> Optional[Plan]:
    """The nearest earlier command (of the same page) that runs and writes a run (or, for ``multirun``, a sweep) dir."""
    for cmd in reversed(earlier):
        made, _ = plan(cmd, []) if cmd.need is None and cmd.error is None else (None, "")
        if made and made.module == "dlexp" and made.flag is None and made.sweep == multirun and made.producer is None:
            key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            made.own_args = made.args
            made.args = [arg for arg in made.args if not arg.startswith(f"{key}=")] + [f"{key}=produced"]
            return made
    return None


def same_run(args: list[str]) -> tuple[str, ...]:
    """What makes two commands the same run: their arguments in any order, wherever the output dir is."""
    return tuple(sorted(arg for arg in args if not arg.startswith(("hydra.run.dir=", "hydra.sweep.dir="))))


def fast(plan_: Plan) -> bool:
    """Whether the plan runs a command of the fast tier (one that is not shown failing, or the mistake in FAST)."""
    return any(cmd.code in FAST for cmd in plan_.commands)


def doc_plans() -> tuple[list[Plan], list[tuple[Command, str]]]:
    """The runnable plans (one per distinct tiny command) and the unmarked commands that cannot run."""
    plans: dict[tuple, Plan] = {}
    unrunnable = []
    for cmd, earlier in ((cmd, commands[:i]) for commands in map(page_commands, PAGES) for i, cmd in enumerate(commands)):
        if cmd.need is not None:
            continue
        made, why = plan(cmd, earlier)
        if made is None:
            unrunnable.append((cmd, why))
            continue
        key = (made.module, same_run(made.args), made.producer and same_run(made.producer.own_args), cmd.error)
        if key in plans:
            plans[key].commands.append(cmd)
        else:
            plans[key] = made
    # A producer runs inside the test of the command that reads its output, not a second time on its own
    # (unless it is one of the fast tier's commands, which run in that tier on their own).
    produced = {(p.producer.module, same_run(p.producer.own_args)) for p in plans.values() if p.producer}
    return [p for key, p in plans.items() if key[2:] != (None, None) or key[:2] not in produced or fast(p)], unrunnable


# ---- running a plan ------------------------------------------------------------------------------------------------

def execute(plan_: Plan, cwd: Path, capfd) -> Optional[subprocess.CompletedProcess]:
    """Run the plan in ``cwd`` (its producer first, into cwd/produced); None for a compose + train() run."""
    if plan_.producer is not None:
        proc = execute(plan_.producer, cwd, capfd)
        assert proc is None or proc.returncode == 0, f"{plan_.producer.first} failed:\n{proc.stderr[-3000:]}"
    args = [WRITTEN_DIR.sub(str(cwd / "produced"), arg) for arg in plan_.args]
    for setup in plan_.setups:
        setup(cwd)
    if plan_.in_process:
        from dlexp.train import train

        run_dir = cwd / next((arg.split("=", 1)[1] for arg in args if arg.startswith("hydra.run.dir=")), "run")
        result = train(compose_cfg(*[arg for arg in args if not arg.startswith("hydra.")]), run_dir, overrides=args)
        assert result.summary["status"] == "completed", result.summary
        return None
    if any(arg.startswith("hydra/launcher=") for arg in args):  # its worker pool would outlive the test and its cwd
        return run_cli(*args, cwd=cwd, module=plan_.module, timeout=240)
    return cli_in_process(plan_.module, args, capfd)


def check_run_files(cwd: Path) -> None:
    """Every run the command made (a sweep's jobs included) completed."""
    summaries = [json.loads(path.read_text()) for path in cwd.rglob("summary.json")]
    assert summaries, f"no summary.json under {cwd}"
    assert {summary["status"] for summary in summaries} == {"completed"}, summaries


def check_error(plan_: Plan, proc: subprocess.CompletedProcess, cwd: Path) -> None:
    """The ``error: ...`` line shown, word for word (the transcripts' stand-in for their folder stands for cwd)."""
    shown = plan_.first.error
    stderr = proc.stderr.replace(str(cwd), PROJECT_STAND_IN)
    budget = " ".join(arg for arg in plan_.args if arg not in plan_.first.code.split())
    if budget:  # a hint that repeats the command repeats the test's budget too: not on the page
        stderr = stderr.replace(f" {budget}", "")
    shown_lines = [line for line in plan_.first.output if line != STARTING]
    if shown_lines[0] == shown and all(line == "..." for line in shown_lines[1:]):  # the only output: that line
        assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr), "")
        assert stderr.strip() == shown, f"{plan_.first}\nshown: {shown}\ngot:   {stderr.strip()}"
    else:  # a sweep: the failed job's line among the others, and a failing exit
        assert proc.returncode != 0 and shown in stderr.splitlines(), f"{plan_.first}\n{stderr[-3000:]}"


def check_curriculum(plan_: Plan, proc: subprocess.CompletedProcess, cwd: Path) -> None:
    """Each chosen preset ran and had its finding judged, and the page it wrote holds its row (docs/curriculum.md,
    or, in a folder without the record of every preset's row, the page beside its runs). On a tiny budget a
    finding may not hold, and the command then exits 1 saying so: that is the only failure allowed."""
    names = plan_.args[plan_.args.index("--only") + 1].split(",")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0 or (proc.returncode == 1 and "their finding does not hold" in proc.stderr), proc.stderr
    judged = re.findall(r"^finding: .*: (holds|does not hold)$", proc.stdout, re.M)
    assert len(judged) == len(names), proc.stdout[-3000:]
    written = re.search(r"^wrote (\S*curriculum\.md) ", proc.stdout, re.M)
    assert written, proc.stdout[-3000:]
    document = (cwd / written.group(1)).read_text()
    assert all(f"experiment={name}" in document for name in names), document


PLANS, UNRUNNABLE = doc_plans()
# Subprocess and two-step runs first: the longest tests start early and do not leave one worker waiting at the end.
PLANS.sort(key=lambda p: (p.module == "dlexp" and p.producer is None, p.first.source, p.first.line))


def tiered(plan_: Plan):
    """The plan as a test parameter: in the fast tier when one of its commands is in FAST, else marked slow."""
    return pytest.param(plan_, id=plan_.id, marks=() if fast(plan_) else pytest.mark.slow)


@pytest.mark.parametrize("plan_", [tiered(p) for p in PLANS])
def test_doc_command(plan_: Plan, tmp_path, monkeypatch, capfd):
    """The command does what its page says, with a tiny budget: runs, prints, or fails with its error line."""
    if plan_.first.error and "trainer.device=cuda" in plan_.first.code:
        import torch

        if torch.cuda.is_available():
            pytest.skip("shows the error of a machine without CUDA")
    monkeypatch.chdir(tmp_path)  # in-process runs: relative paths land here too
    monkeypatch.delenv("DLEXP_TRACEBACK", raising=False)
    proc = execute(plan_, tmp_path, capfd)
    if plan_.first.error is not None:
        return check_error(plan_, proc, tmp_path)
    if proc is not None and plan_.module != "dlexp.curriculum":
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, f"{plan_.first}\n{proc.stderr[-3000:]}"
    expected = printed(plan_.module, plan_.flag) if (plan_.module, plan_.flag) != ("dlexp", None) else None
    if expected is not None:
        assert expected.search(proc.stdout), f"{plan_.first}: expected {expected.pattern!r} in\n{proc.stdout[-3000:]}"
    if plan_.module == "dlexp.translate":  # one translation per sentence
        sentences = [arg for arg in plan_.args[1:] if not arg.startswith("-") and not arg.isdigit()]
        assert len(expected.findall(proc.stdout)) == len(sentences), proc.stdout
    if plan_.module == "dlexp" and plan_.flag is None:
        check_run_files(tmp_path)
    if plan_.module == "dlexp.curriculum" and plan_.flag == "--only":
        check_curriculum(plan_, proc, tmp_path)


# ---- the pages' own conventions -----------------------------------------------------------------------------------

def test_every_code_block_says_what_it_holds():
    """Untagged blocks would leave output lines such as 'dlexp model=mlp dataset=digits ...' looking like commands;
    an included transcript says which of the same languages it is."""
    untagged = [f"{source}:{line}: ```{tag}" for page in PAGES for source, line, tag, body in page_blocks(page)
                if tag not in FENCES and tag.split(None, 1)[0] not in DIRECTIVES]
    assert not untagged, f"tag each code block with one of {sorted(FENCES)}: {untagged}"
    includes = [(page.name, tag, directive_options(body).get("language")) for page in PAGES
                for _, tag, body in code_blocks(page.read_text()) if tag.startswith("{literalinclude}")]
    assert includes and all(language in FENCES for _, _, language in includes), includes


def test_extraction_takes_commands_not_their_output():
    text = "\n".join([
        "```console", "$ python -m dlexp model=lenett   # a typo", "error: unknown model 'lenett'",
        "dlexp model=mlp dataset=digits optim=adam", "```",
        "```text", "dlexp model=mlp dataset=digits optim=adam params=19,210", "```",
        "```bash", "python -m dlexp -m optim.lr=1e-3,1e-2 \\", "    seed=0,1   # a sweep; needs: a cluster",
        "python -m dlexp.translate run \"a # b\"", "make test", "```",
    ])
    found = [cmd for _, tag, body in code_blocks(text) if tag in COMMAND_FENCES for cmd in block_commands(tag, body)]
    assert [(cmd.line, cmd.code, cmd.need, cmd.error) for cmd in found] == [
        (2, "python -m dlexp model=lenett", None, "error: unknown model 'lenett'"),
        (10, "python -m dlexp -m optim.lr=1e-3,1e-2 seed=0,1", "a cluster", None),
        (12, 'python -m dlexp.translate run "a # b"', None, None),
        (13, "make test", None, None),
    ]
    assert [invocation(cmd.words) is not None for cmd in found] == [True, True, True, False]


def test_tiny_budget_replaces_the_commands_own_keys_and_cuts_sweeps():
    args = shrink(["-m", "optim.lr=1e-3,1e-2,1e-1", "seed=0,1,2", "trainer.epochs=40", "model.hidden=[512,512]",
                   "trainer.batch_size=512"], sweep=True, resume=False)
    assert args[:6] == ["-m", "optim.lr=1e-3,1e-2", "seed=0", "trainer.epochs=1", "model.hidden=[512,512]",
                        "trainer.batch_size=16"]
    keys = [arg.split("=")[0] for arg in args if "=" in arg]
    assert len(keys) == len(set(keys)) and set(TINY) <= set(keys)


def test_an_included_transcript_is_read_as_a_console_session(tmp_path):
    (tmp_path / "_generated").mkdir()
    (tmp_path / "_generated" / "t.txt").write_text(
        f"# recorded on a machine\n$ python -m dlexp model=lenett\n{STARTING}\nerror: unknown model 'lenett'\n")
    page = tmp_path / "page.md"
    page.write_text("```{literalinclude} _generated/t.txt\n:language: console\n```\n")
    blocks = [(tag, body) for _, _, tag, body in page_blocks(page, root=tmp_path)]
    assert [tag for tag, _ in blocks] == ["console"]
    (cmd,) = block_commands(*blocks[0], source="t.txt")
    assert (cmd.line, cmd.code, cmd.error) == (2, "python -m dlexp model=lenett", "error: unknown model 'lenett'")


def test_the_fast_tier_runs_a_few_representative_commands():
    chosen = [p for p in PLANS if fast(p)]
    assert {cmd.code for p in chosen for cmd in p.commands} >= FAST and len(chosen) <= 6, [p.id for p in chosen]


def test_every_command_runs_here_or_says_what_it_needs():
    """A new command fails this until the tests can run it or its line ends in '# needs: ...'."""
    assert doc_commands(), "no dlexp command found in the docs"
    assert {cmd.source for cmd in doc_commands()} >= {"README.md", "docs/getting-started.md"}
    assert not UNRUNNABLE, "commands that neither run here nor say '# needs: ...':\n" + "\n".join(
        f"{cmd}  ({why})" for cmd, why in UNRUNNABLE)


@pytest.mark.parametrize("cmd", doc_commands(), ids=lambda cmd: f"{Path(cmd.source).stem}-L{cmd.line}")
def test_bash_reads_the_command_as_written(cmd: Command):
    """Unquoted ${...}, globs or redirections would make bash run something else than the page shows."""
    if "<TAB>" in cmd.code or "$(" in cmd.code:  # a keystroke, or a command substitution that bash would run
        return
    code = WRITTEN_DIR.sub("outputs/run", cmd.code)
    words = subprocess.run(["bash", "-c", f"set -f; set -- {code}; printf '%s\\0' \"$@\""], capture_output=True,
                           text=True, check=True).stdout.split("\0")[:-1]
    assert words == shlex.split(code), f"{cmd}: bash reads {words}; quote the argument"


MARKED = [cmd for cmd in doc_commands() if cmd.need is not None and "<" not in cmd.code
          and invocation(cmd.words)[0] == "dlexp" and not any(a.startswith("--") for a in invocation(cmd.words)[1])]


@pytest.mark.parametrize("cmd", MARKED, ids=lambda cmd: f"{Path(cmd.source).stem}-L{cmd.line}")
def test_a_command_that_cannot_run_here_still_composes(cmd: Command):
    """Its keys and values are checked as a run would check them before it looks for data or devices."""
    from dlexp.train import validate

    overrides = []
    for arg in invocation(cmd.words)[1]:
        key, eq, value = arg.partition("=")
        if eq and not key.startswith("hydra"):  # hydra.* and hydra/launcher name the cluster, not the run
            overrides.append(f"{key}={(sweep_values(value) or [value])[0]}")  # a sweep's first job
    validate(compose_cfg(*overrides))
