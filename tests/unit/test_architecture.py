"""The shape of the code, checked: no import cycle anywhere, and the HTTP routes only call
features (docs/architecture.md; the layers themselves are import-linter's contracts in
pyproject.toml, run by `make lint`)."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from pathlib import Path

import grimp

SRC = Path(__file__).resolve().parents[2] / "src"
ROUTES = SRC / "compute_ctl" / "http" / "routes"


def strongly_connected(
    modules: Iterable[str], imports: Callable[[str], set[str]]
) -> list[set[str]]:
    """Tarjan's algorithm over the module import graph: every set of modules that import each
    other, directly or not (TYPE_CHECKING imports included: they tie the code together too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0

    def visit(root: str) -> None:
        nonlocal counter
        work = [(root, iter(sorted(imports(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(imports(target)))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle() -> None:
    graph = grimp.build_graph("compute_ctl", "compute_dev", include_external_packages=False)
    found = strongly_connected(graph.modules, graph.find_modules_directly_imported_by)
    cycles = [sorted(c) for c in found if len(c) > 1]
    cycles += [[m] for m in graph.modules if m in graph.find_modules_directly_imported_by(m)]
    assert cycles == []


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-module cycle is found."""
    edges = {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}
    found = strongly_connected(edges, edges.__getitem__)
    assert [sorted(c) for c in found if len(c) > 1] == [["pkg.a", "pkg.b"]]


FORBIDDEN_IN_ROUTES = {"psycopg", "subprocess", "socket", "http.client", "asyncio.subprocess"}


def test_routes_only_call_features() -> None:
    """No SQL driver, subprocess or socket code under http/routes/: a route parses the
    request, calls a feature's function and answers."""
    offenders = []
    for path in sorted(ROUTES.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Attribute) and node.attr == "create_subprocess_exec":
                names = ["asyncio.subprocess"]
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name in FORBIDDEN_IN_ROUTES or name.split(".")[0] in FORBIDDEN_IN_ROUTES
            ]
    assert offenders == []
