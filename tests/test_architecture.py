"""The package's shape: folders in layers that import only downwards, no import cycles (function-level
imports included), one slow-import boundary, short functions and modules, leaf registries, and a task
layer that a new task joins with one file."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dlexp

PACKAGE_DIR = Path(dlexp.__file__).parent
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py")) if "conf" not in p.parts}


def _imports(name: str, path: Path, *, type_only_too: bool = False) -> set[str]:
    """The dlexp modules that ``name`` imports anywhere (module level, in functions; under TYPE_CHECKING only
    with ``type_only_too``: those never run). ``from pkg import x`` counts as importing ``pkg.x`` when that is a module."""
    tree = ast.parse(path.read_text())
    type_only = set() if type_only_too else {
        id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules, or [] (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_import_graph_has_no_cycle():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert sum(len(v) for v in graph.values()) > 50  # the walk really sees the imports
    assert _cycle(graph) == []


def test_no_circle_inside_a_folder_even_for_annotations():
    """Within a folder, imports for annotations only (TYPE_CHECKING) form no circle either: the module the
    others share (``data/base.py``) holds what they share and imports none of them."""
    graph = {name: _imports(name, path, type_only_too=True) for name, path in MODULES.items()}
    same_folder = {name: {d for d in deps if d.rpartition(".")[0] == name.rpartition(".")[0]} for name, deps in graph.items()}
    assert _cycle(same_folder) == []
    assert {d for d in graph["dlexp.data.base"] if d.startswith("dlexp.data")} == set()


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_registries_are_leaf_modules():
    """The registries import only the config language and errors, so every entry's module can import its
    registry without importing the package that lists it."""
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    basics = {"dlexp.errors", "dlexp.config.registry", "dlexp.config.constraints", "dlexp.config.plugins"}
    # the plugin loader is a leaf too: the registry asks it which plugin file a module came from
    assert graph["dlexp.config.plugins"] <= {"dlexp.errors"}
    assert graph["dlexp.config.registry"] <= {"dlexp.errors", "dlexp.config.constraints", "dlexp.config.plugins"}
    leaves = {name for name, deps in graph.items() if deps <= basics}
    for base in ("dlexp.data.base", "dlexp.models.base", "dlexp.tasks.base", "dlexp.tasks.metrics"):
        assert graph[base] - basics <= leaves | {"dlexp.tasks.metrics", "dlexp.data.base"}, graph[base]


# The folders from the top down: a module imports only from its own folder and the folders below it.
LAYERS = [
    ("api", ("dlexp.api",)),  # the Python API: dlexp.run, dlexp.sweep, dlexp.load, the register_* decorators
    ("cli", ("dlexp.cli", "dlexp.__main__", "dlexp.summary", "dlexp.report", "dlexp.translate", "dlexp.curriculum", "dlexp.new",
             )),  # the command line, and the public module paths that lead into it
    ("course", ("dlexp.course",)),
    ("search", ("dlexp.search",)),
    ("train", ("dlexp.train",)),
    ("results", ("dlexp.results",)),
    ("training", ("dlexp.training",)),
    ("tasks", ("dlexp.tasks",)),
    ("data", ("dlexp.data",)),
    ("models", ("dlexp.models",)),
    ("runs", ("dlexp.runs",)),
    ("config", ("dlexp.config",)),
    ("base", ("dlexp", "dlexp.errors")),
]


def _layer(module: str) -> int:
    """The index in LAYERS of the most specific prefix of ``module``."""
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} belongs to no layer: add its folder to LAYERS"
    return best[1]


def _upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
                  for m, deps in graph.items() for d in deps if _layer(d) < _layer(m))


def test_every_module_belongs_to_a_layer_and_imports_only_downwards():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert _upward_imports(graph) == []
    folders = {p.name for p in PACKAGE_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == {name.removeprefix("dlexp.") for _, prefixes in LAYERS for name in prefixes
                       if name.count(".") == 1 and (PACKAGE_DIR / name.removeprefix("dlexp.")).is_dir()}


def test_the_layer_check_sees_an_upward_import():
    assert _upward_imports({"dlexp.models.mlp": {"dlexp.tasks.base"}, "dlexp.tasks.base": {"dlexp.models"}}) == [
        "dlexp.models.mlp (models) imports dlexp.tasks.base (tasks)"]
    assert _layer("dlexp.cli.sweep") == 1 and _layer("dlexp.errors") == len(LAYERS) - 1


def _deferred_imports() -> list[tuple[str, int, str, bool]]:
    """(module, line, imported dlexp module, has a comment) for every dlexp import inside a function."""
    found = []
    for name, path in MODULES.items():
        source = path.read_text().splitlines()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("dlexp") or \
                        isinstance(inner, ast.Import) and any(a.name.startswith("dlexp") for a in inner.names):
                    line = source[inner.lineno - 1]
                    commented = "#" in line or source[inner.lineno - 2].strip().startswith("#")
                    found.append((name, inner.lineno, ast.unparse(inner), commented))
    return found


def test_only_the_command_line_defers_imports_of_dlexp_and_says_why():
    """One slow-import boundary: the command line (and the Python API beside it) imports the run's modules
    (torch) when a run needs them."""
    deferred = _deferred_imports()
    assert deferred, "the command line defers at least dlexp.train"
    assert [d for d in deferred if LAYERS[_layer(d[0])][0] not in ("api", "cli")] == []
    assert [d for d in deferred if not d[3]] == []


def test_no_module_is_longer_than_400_lines():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def test_each_folder_says_what_lives_there_and_what_it_may_import():
    for init in PACKAGE_DIR.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.splitlines()) >= 2 and "import" in doc, f"{init} needs a docstring: its contents, its imports"


def _long_functions() -> list[str]:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    return long


def test_no_function_is_longer_than_60_lines():
    assert _long_functions() == []


@pytest.mark.parametrize("name", ["classification", "regression", "binary"])
def test_each_task_lives_in_its_own_file(name):
    from dlexp.tasks import TASKS

    task = TASKS.get(name)
    assert Path(__import__(task.__module__, fromlist=["_"]).__file__).name == f"{name}.py"


# dlexp's own frames on the stack at an optimizer step of a run started from the command line:
# entry, cli, HydraApp.__call__, train, Trainer.fit, Trainer.train_epoch, run_epoch, training_step
MAX_RUN_DEPTH = 8
DEPTH_PROBE = """
import os, sys, traceback
from torch.optim.optimizer import register_optimizer_step_pre_hook
import dlexp
package = os.path.dirname(dlexp.__file__)
def first_step(optimizer, args, kwargs):
    if not os.environ.get("DEPTH_SEEN"):
        os.environ["DEPTH_SEEN"] = "1"
        frames = [f"{f.name}" for f in traceback.extract_stack() if f.filename.startswith(package)]
        print("DEPTH", len(frames), " ".join(frames), flush=True)
register_optimizer_step_pre_hook(first_step)
from dlexp.cli.entry import entry
sys.argv = ["dlexp", *sys.argv[1:]]
entry()
"""


def test_a_training_step_is_few_calls_below_the_command_line(tmp_path):
    """From the console script to ``optimizer.step()``: each of dlexp's frames a named step of the run."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", DEPTH_PROBE, "trainer.epochs=1", "trainer.limit_train_batches=1",
                           "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("DEPTH"))
    depth, frames = int(line.split()[1]), line.split()[2:]
    assert frames[0] == "entry" and frames[-1] == "training_step", frames
    assert depth <= MAX_RUN_DEPTH, frames
