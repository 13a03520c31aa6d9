"""The import graph of the packages ``sgmcmc`` and ``benchmarks``: no forbidden arrow, no cycle.

Every import is read with :mod:`ast` from the source, those inside functions included (a lazy
import is still a dependency), and resolved to the module it names (``from . import records`` in
``benchmarks`` is an arrow to ``benchmarks.records``; ``from .records import RunSpec`` one to
``benchmarks.records``). Nothing is imported to build the graph.

Forbidden arrows (checked on the transitive closure, so a chain through a third module counts, and
the message shows the chain):

* ``sgmcmc`` -> ``benchmarks`` (the samplers know nothing of the suite);
* ``benchmarks.report`` or ``benchmarks.figures`` -> executors, grid or tasks (tables and figures
  are built from records alone);
* ``benchmarks.metrics`` (module or package) -> any other ``benchmarks`` module;
* ``benchmarks.data`` -> ``benchmarks.tasks``;
* ``benchmarks.records`` -> executors, grid or tasks (executors import records, never the reverse).

Cycles: Tarjan's strongly connected components over the graph of *all* imports, those inside
functions included, so a cycle cannot be hidden by moving one of its imports into a function. An
import of a package's own ``__init__`` from one of its submodules would be such a cycle too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sgmcmc", "benchmarks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[_module_name(path)] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` (a dotted import target) lands in, or None (a third party)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of ours: line of the first such import}."""
    known = _modules()
    graph: dict[str, dict[str, int]] = {}
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # `from pkg import sub` names the submodule when there is one, else pkg itself
                targets = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix
                           for alias in node.names]
            for target in targets:
                resolved = _resolve(target, known)
                if resolved is not None and resolved != module:
                    edges.setdefault(resolved, node.lineno)
        graph[module] = edges
    return graph


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _paths_from(graph: dict[str, dict[str, int]], start: str) -> dict[str, list[str]]:
    """Every module reachable from ``start`` -> one shortest chain of imports to it."""
    chains = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for module in frontier:
            for target in sorted(graph.get(module, {})):
                if target not in chains:
                    chains[target] = chains[module] + [target]
                    nxt.append(target)
        frontier = nxt
    return chains


#: (rule, who (prefixes), may not reach (prefixes), except (prefixes))
RULES = [
    ("sgmcmc must not import benchmarks", ("sgmcmc",), ("benchmarks",), ()),
    ("report and figures are built from records alone", ("benchmarks.report", "benchmarks.figures"),
     ("benchmarks.executors", "benchmarks.grid", "benchmarks.tasks"), ()),
    ("benchmarks.metrics imports no other benchmarks module", ("benchmarks.metrics",), ("benchmarks",),
     ("benchmarks.metrics",)),
    ("benchmarks.data must not import the tasks", ("benchmarks.data",), ("benchmarks.tasks",), ()),
    ("records know nothing of executors, grids or tasks", ("benchmarks.records",),
     ("benchmarks.executors", "benchmarks.grid", "benchmarks.tasks"), ()),
]


def forbidden_arrows(graph: dict[str, dict[str, int]]) -> list[str]:
    known = _modules()
    problems = []
    for rule, sources, banned, allowed in RULES:
        for module in sorted(graph):
            if not any(_within(module, s) for s in sources):
                continue
            for target, chain in sorted(_paths_from(graph, module).items()):
                if target == module or any(_within(target, a) for a in allowed):
                    continue
                banned_here = [m for m in chain[1:] if any(_within(m, b) for b in banned)
                               and not any(_within(m, a) for a in allowed)]
                if banned_here and banned_here[0] == target:  # the first forbidden module on its chain
                    hops = " -> ".join(
                        f"{a} ({known[a].relative_to(ROOT)}:{graph[a][b]})" for a, b in zip(chain, chain[1:]))
                    problems.append(f"{rule}: {module} imports {target}: {hops} -> {target}")
    return problems


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules (~50)
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read():
    graph = import_graph()
    assert "benchmarks.records" in graph["benchmarks.executors.run"]
    assert "benchmarks.tasks" in graph["benchmarks.grid"]
    assert "sgmcmc" in graph["benchmarks.records"]
    # an import inside a function is an arrow too (executors import the dask executor lazily)
    assert "benchmarks.executors.dask" in graph["benchmarks.executors"]


def test_no_forbidden_import():
    problems = forbidden_arrows(import_graph())
    assert not problems, "forbidden import(s):\n  " + "\n  ".join(problems)


def test_no_import_cycle():
    graph = import_graph()
    cycles = strongly_connected(graph)
    lines = []
    for component in cycles:
        arrows = [f"{a} -> {b} ({b_line})" for a in component for b, b_line in sorted(graph[a].items())
                  if b in component]
        lines.append(" <-> ".join(component) + ": " + "; ".join(arrows))
    assert not cycles, "import cycle(s) (all imports, those inside functions included):\n  " + "\n  ".join(lines)


@pytest.mark.parametrize("rule", [r[0] for r in RULES])
def test_each_rule_names_existing_modules(rule):
    """A rule about a module that no longer exists (renamed) would pass for ever: each names one."""
    known = _modules()
    _, sources, _banned, _ = next(r for r in RULES if r[0] == rule)
    assert any(any(_within(m, s) for m in known) for s in sources), f"no module matches {sources}"
