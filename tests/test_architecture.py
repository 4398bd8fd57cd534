"""The package's shape: no import cycles (function-level imports included), short functions,
leaf registries, and a task layer that a new task joins with one file."""
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


def _imports(name: str, path: Path) -> set[str]:
    """The dlexp modules that ``name`` imports anywhere (module level, in functions, under TYPE_CHECKING
    excluded: those never run). ``from pkg import x`` counts as importing ``pkg.x`` when that is a module."""
    tree = ast.parse(path.read_text())
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
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


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_registries_are_leaf_modules():
    """The registries import only leaves (modules that import nothing of dlexp but errors and registry),
    so every entry's module can import its registry without importing the package that lists it."""
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    basics = {"dlexp.errors", "dlexp.registry", "dlexp.constraints"}
    assert graph["dlexp.registry"] <= {"dlexp.errors", "dlexp.constraints"}
    leaves = {name for name, deps in graph.items() if deps <= basics}
    for base in ("dlexp.data.base", "dlexp.models.base", "dlexp.tasks.base", "dlexp.metrics"):
        assert graph[base] - basics <= leaves | {"dlexp.metrics"}, graph[base]


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
