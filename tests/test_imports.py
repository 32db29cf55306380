"""The project's import graph: no circles between its modules (function-level imports count), and the library
(``tempclr/``) never imports the command-line package or the legacy ``utils/metrics.py`` facade.

The graph is read from the source (every ``import`` statement anywhere in a file, not only at the top), so an
import hidden inside a function to dodge a circle is still an edge.  An edge goes to the module that defines the
imported name: ``from tempclr.utils import cfg_get`` depends on the package ``tempclr.utils`` (its
``__init__.py``), ``from tempclr.utils.fileio import x`` on ``tempclr.utils.fileio`` only.
"""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("tempclr", "tempclr_cli")


def project_modules() -> Dict[str, str]:
    """Dotted module name -> file, for every ``.py`` under the project's packages."""
    modules = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    modules[dotted.removesuffix(".__init__")] = path
    return modules


def _resolve(name: str, modules: Dict[str, str]) -> str:
    """The project module that ``name`` (a module or ``module.attribute``) lives in, or "" outside the project."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_edges(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    """module -> the project modules it imports, from every import statement in its file."""
    edges: Dict[str, Set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = module.split(".") if is_package else module.split(".")[:-1]
                    base = ".".join(parts[: len(parts) - node.level + 1])
                    stem = f"{base}.{node.module}" if node.module else base
                else:
                    stem = node.module or ""
                # "from P import a": a is a submodule of P (edge to it) or a name defined in P (edge to P)
                targets = [f"{stem}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                found = _resolve(target, modules)
                if found and found != module:
                    edges[module].add(found)
    return edges


def find_cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


@pytest.fixture(scope="module")
def graph():
    return import_edges(project_modules())


def test_the_walker_sees_function_level_imports_and_package_names():
    """The walker itself: a circle made only by an import inside a function is found, and so is one through a
    name defined in a package's ``__init__``."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": set()}
    assert find_cycles(edges) == [["a", "b"]]
    modules = project_modules()
    edges = import_edges(modules)
    assert "tempclr.utils.load_config" in edges["tempclr.utils"]  # "from .load_config import ..." in __init__
    tree = ast.parse("def f():\n    from tempclr.utils import cfg_get\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))


def test_no_import_circle(graph):
    cycles = find_cycles(graph)
    assert not cycles, "import circles (every import statement counts, also inside functions):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_the_library_does_not_import_the_metrics_facade_or_the_cli(graph):
    """``tempclr.utils.metrics`` keeps the original TempCLR names for user code; the library imports the modules
    that define them.  ``tempclr_cli`` is argument parsing only: nothing in ``tempclr`` depends on it."""
    bad = sorted(f"{m} imports {t}" for m, ts in graph.items() if m.startswith("tempclr.") or m == "tempclr"
                 for t in ts if t == "tempclr.utils.metrics" or t.startswith("tempclr_cli"))
    assert not bad, "\n".join(bad)
