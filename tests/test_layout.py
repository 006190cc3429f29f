"""The package's layout: dependencies point one way (runtime <- models <- export <- benchmarks) and no module
imports itself back, directly or through others. Imports inside functions count (a lazy import that dodges a
cycle is still one); imports under ``if TYPE_CHECKING:`` do not (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "export", "runtime", "benchmarks")


def _module_name(path: Path) -> str:
    """``nin_edge.*`` name of the .py file ``path`` (a package's ``__init__.py`` is the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("nin_edge", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (type-only imports run nowhere)."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def _imports(path: Path, modules: frozenset[str] = frozenset()) -> set[str]:
    """Every module the file ``path`` imports anywhere in it, functions included (absolute, and relative
    made absolute); ``from X import name`` counts as ``X.name`` where that is one of ``modules``, else ``X``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            names = {f"{source}.{alias.name}" for alias in node.names}
            found.update(names & modules or {source})
    return found


def _imports_of(folder: str) -> set[str]:
    """Every module that the .py files under ``folder`` import."""
    return set().union(*(_imports(path) for path in (ROOT / folder).rglob("*.py")))


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, over every .py file of :data:`PACKAGES`."""
    paths = [path for folder in PACKAGES for path in (ROOT / folder).rglob("*.py")]
    modules = frozenset(_module_name(path) for path in paths)
    return {_module_name(path): (_imports(path, modules) & modules) - {_module_name(path)} for path in paths}


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``[]`` where there is none (depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        on_path = [start]
        while stack:
            node, todo = stack[-1]
            if not todo:
                stack.pop()
                on_path.pop()
                done.add(node)
                continue
            nxt = todo.pop(0)
            if nxt in on_path:
                return [*on_path[on_path.index(nxt) :], nxt]
            if nxt not in done:
                stack.append((nxt, sorted(graph[nxt])))
                on_path.append(nxt)
    return []


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("runtime", ("nin_edge.models", "nin_edge.export", "nin_edge.benchmarks", "torch", "onnx.", "onnxsim")),
        ("runtime/core", ("nin_edge.runtime.classifier", "nin_edge.runtime.session", "onnxruntime", "click")),
        ("models", ("nin_edge.export", "nin_edge.benchmarks")),
        ("export", ("nin_edge.benchmarks",)),
    ],
)
def test_dependencies_point_one_way(folder, forbidden):
    imports = _imports_of(folder)
    wrong = sorted(m for m in imports for f in forbidden if m == f.rstrip(".") or m.startswith(f.rstrip(".") + "."))
    assert wrong == [], f"{folder} imports {wrong}"


def test_no_import_cycles():
    cycle = _find_cycle(_import_graph())
    assert cycle == [], "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
