"""The shape of the package, checked: no import cycles, imports at the top, short functions."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "ktransfer"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(tree: ast.Module, known: set[str]) -> list[tuple[str, bool]]:
    """(imported ktransfer module, at module level?) for every import in `tree`."""
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found += [(n, id(node) in top) for n in names if n in known]
    return found


def test_no_import_cycle_and_no_function_local_imports_of_the_package():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    local = []
    for name, path in modules.items():
        imports = _imports(ast.parse(path.read_text()), set(modules))
        graph[name] = {m for m, at_top in imports if at_top and m != name}
        local += [f"{name} -> {m}" for m, at_top in imports if not at_top]
    assert local == []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_config_depends_on_errors_only():
    imports = _imports(ast.parse((PACKAGE / "config.py").read_text()), set(_modules()))
    assert {m for m, _ in imports} == {"ktransfer.errors"}


def test_no_library_function_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length})")
    assert long == []
