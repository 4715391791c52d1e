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
    """(imported ktransfer module, at module level?) for every import in `tree`. Imports under
    a top-level `if TYPE_CHECKING:` (for annotations) count as module-level imports: a type
    that needs an import running back up or round a circle is a dependency all the same."""
    top = set(map(id, tree.body))
    top |= {id(n) for block in tree.body if isinstance(block, ast.If)
            and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from P import m` of a submodule m needs m, not P's own names.
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [*subs, *([node.module] if not all(s in known for s in subs) else [])]
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
    modules = _modules()
    imported = set()
    for name, path in modules.items():
        if name == "ktransfer.config" or name.startswith("ktransfer.config."):
            imported |= {m for m, _ in _imports(ast.parse(path.read_text()), set(modules))}
    assert {m for m in imported if not m.startswith("ktransfer.config")} == {"ktransfer.errors"}


# The concept packages from the bottom up: a module imports only from its own layer or below
# (modalities use the shared code; shared code reaches a modality only through a registry).
LAYERS = [
    {"errors", "registry"},
    {"config"},
    {"data", "runs", "optim"},
    {"modality", "tasks"},
    {"preflight"},
    {"network"},
    {"deploy"},
    {"reporting"},
    {"domain"},
    {"training"},
    {"tuning", "probing"},
    {"image", "text"},
    {"serializables", "cli", "commands", "train", "evaluate", "predict", "export", "tune",
     "find_lr", "probe", ""},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    found = [i for i, names in enumerate(LAYERS) if top in names]
    assert found, f"{module}: place its package in LAYERS"
    return found[0]


def test_no_import_runs_back_up():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        for imported, _ in _imports(ast.parse(path.read_text()), set(modules)):
            if _layer(imported) > _layer(name):
                upward.append(f"{name} -> {imported}")
    assert upward == []


def test_no_module_is_longer_than_500_lines_and_at_most_20_sit_at_the_top():
    long = [f"{p.relative_to(REPO)} ({n})" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500]
    assert long == []
    assert len(list(PACKAGE.glob("*.py"))) <= 20


def test_no_library_function_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length})")
    assert long == []


def test_every_make_target_a_message_or_doc_names_exists():
    """Messages, docs and test skip reasons name only make targets that exist (two skip
    reasons named make text-data, which never existed, until ce06f12)."""
    import re

    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    texts = [*PACKAGE.rglob("*.py"), REPO / "README.md", *(REPO / "docs").rglob("*.md"),
             *(REPO / "configs").glob("*.cfg"), *(REPO / "tests").glob("*.py")]
    named = {(path.name, target) for path in texts
             for target in re.findall(r"`make ([a-z][a-z-]*)", path.read_text())}
    assert {(name, t) for name, t in named if t not in targets} == set()
