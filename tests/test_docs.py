"""The documentation site builds without a warning, holds no placeholder, and shows only generated output.

``make docs`` is ``sphinx-build -W --keep-going -n``: the same build here, into a temporary folder,
fails on a broken link, a reference to a heading that does not exist, or a missing include. The
transcripts the pages include are the files ``docs/generate_outputs.py`` writes, and README.md's
copies of them must match those files.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = DOCS / "_generated"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
# A name in capitals with underscores, as a placeholder is written (BENCH_OUTPUT), and the usual markers.
CAPS_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
MARKER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b")


def generator():
    spec = importlib.util.spec_from_file_location("generate_outputs", DOCS / "generate_outputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (tmp_path / "html" / "index.html").is_file() and (tmp_path / "html" / "curriculum.html").is_file()


def names_in_code() -> set[str]:
    """Every capitalized name the project's code uses (environment variables, constants): not placeholders."""
    names: set[str] = set()
    for folder in ("src", "tests", "benchmarks", "docs", "conf"):
        for path in (ROOT / folder).rglob("*.py" if folder != "conf" else "*.yaml"):
            if "_build" not in path.parts and path != Path(__file__).resolve():  # this file names placeholders
                names.update(CAPS_NAME.findall(path.read_text()))
    names.update(CAPS_NAME.findall((ROOT / "Makefile").read_text()))
    return names


def placeholders(text: str, known: set[str]) -> list[tuple[int, str]]:
    """(line number, line) of each line that is only a capitalized name, or that holds, outside code spans, a
    TODO-like marker or a capitalized name with underscores that the code does not know."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        prose = re.sub(r"`[^`]*`|\$\{?\w+", "", line)  # code spans and shell variables ($SLURM_JOB_ID) are code
        if (re.fullmatch(r"\s*[A-Z][A-Z0-9_]{2,}\s*", line) or MARKER.search(prose)
                or set(CAPS_NAME.findall(prose)) - known):
            found.append((number, line))
    return found


def test_no_placeholder_is_left_in_the_readme_or_the_docs():
    known = names_in_code()
    left = [f"{path.relative_to(ROOT)}:{number}: {line}" for path in [*PAGES, *sorted(GENERATED.glob("*.txt"))]
            for number, line in placeholders(path.read_text(), known)]
    assert not left, "fill in or remove:\n" + "\n".join(left)


def test_the_placeholder_check_finds_placeholders():
    assert not {"BENCH_SEARCH_OUTPUT", "KILL_SEARCH_RESULT"} & names_in_code()
    text = "Real output:\n\n```text\nBENCH_SEARCH_OUTPUT\n```\n10 times: KILL_SEARCH_RESULT.\nTBD\n`DLEXP_DATA_DIR` and DLEXP_TRACEBACK=1\n"
    assert [number for number, _ in placeholders(text, {"DLEXP_TRACEBACK"})] == [4, 6, 7]


def test_every_transcript_is_generated_included_and_says_where_it_ran():
    names = {transcript.name for transcript in generator().TRANSCRIPTS}
    files = {path.stem for path in GENERATED.glob("*.txt")}
    assert files == names, "run make docs-outputs (a transcript with no file) or remove the stale file"
    included = set()
    for page in PAGES:
        included.update(re.findall(r"^```\{literalinclude\} _generated/([\w-]+)\.txt$", page.read_text(), re.M))
        included.update(re.findall(r"^<!-- generated: ([\w-]+) ", page.read_text(), re.M))
    assert included == names
    for path in GENERATED.glob("*.txt"):
        head = path.read_text().splitlines()[:2]
        assert head[0].startswith("# recorded by docs/generate_outputs.py on ") and "dlexp commit" in head[0], path
        assert head[1].startswith("# machine: ") and "CPU cores" in head[1] and "torch" in head[1], path


def test_no_transcript_leaks_a_path_of_the_machine_it_ran_on():
    leaks = [f"{path.name}: {line}" for path in GENERATED.glob("*.txt") for line in path.read_text().splitlines()
             if re.search(r"/tmp/|/home/\w|/root/|dlexp-docs-", line)]
    assert not leaks, leaks


def test_the_readme_holds_the_generated_transcripts_as_they_are():
    blocks = generator().readme_blocks((ROOT / "README.md").read_text())
    assert set(blocks) == {"headline", "sweep"}
    for name, body in blocks.items():
        assert body == (GENERATED / f"{name}.txt").read_text(), f"README.md's {name} block: run make docs-outputs"


# Lines only a run prints: its banner, epochs, tables, the sweep summary, where it wrote.
OUTPUT_LINE = re.compile(r"^(dlexp model=|epoch +\d+ \||[│┃┏└]|.*Sweep summary:|results in |sweep summary in |trial \d+ )")


def fenced_blocks(text: str):
    """(tag, body lines, the line before the opening fence) of each fenced block, fences paired in order."""
    lines, i = text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            yield lines[start][3:].strip(), body, lines[start - 1] if start else ""
        i += 1


def test_no_page_pastes_a_transcript():
    """Output is shown from docs/_generated/ only: a ```console block written in a page holds commands and at
    most the one error line each shows, and no other block holds lines that only a run prints."""
    pasted = []
    for page in PAGES:
        for tag, lines, before in fenced_blocks(page.read_text()):
            if before.startswith("<!-- generated: "):  # README.md's copy of a generated transcript
                continue
            if tag == "console":
                output = [line for line in lines if not line.startswith(("$ ", "error: "))]
            else:  # bash blocks hold commands; python and yaml blocks code; directives their options
                output = [line for line in lines if OUTPUT_LINE.match(line)] if tag in ("text", "") else []
            if output:
                pasted.append(f"{page.name}: {output[:2]}")
    assert not pasted, pasted


@pytest.mark.parametrize("line, keep, shown", [
    (["a", "epoch   1 | x", "epoch   5 | x", "epoch   9 | x", "b"], "some_epochs",
     ["a", "epoch   1 | x", "...", "epoch   9 | x", "b"]),
    (["x", "dlexp model=mlp", "r1", "epoch   1 | y", "r2"], "sweep_results", ["x", "...", "r1", "r2"]),
])
def test_the_generator_cuts_by_its_rules(line, keep, shown):
    module = generator()
    each_cut = keep != "sweep_results"
    assert module.cut(line, getattr(module, keep), each_cut) == shown


def test_the_generator_hides_the_folder_it_ran_in_and_the_home_folder(tmp_path):
    module = generator()
    text = f"error: {tmp_path}/results is not a directory; see {Path.home()}/.cache/dlexp\n"
    assert module.scrub(text, tmp_path) == "error: /path/to/project/results is not a directory; see ~/.cache/dlexp\n"
