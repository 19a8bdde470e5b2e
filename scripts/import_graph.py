"""The package's import graph: modules, imports between them, cycles and levels.

    python scripts/import_graph.py            # the summary
    python scripts/import_graph.py --edges    # every import, one a line

Every ``import`` and ``from ... import`` of a livematte module counts, those inside functions
too (a lazy import is still a dependency). A module's level is 1 when it imports no other
livematte module, else one more than the highest level it imports; modules in a cycle share
one level. Read from the source text with ``ast``: nothing is imported or run.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "livematte"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The livematte modules ``path`` imports (a package's ``__init__`` when only the package is named)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            # ``from pkg import sub`` imports the module pkg.sub where there is one, else names of pkg.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components, each a list of modules."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every import")
    args = parser.parse_args(argv)
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): imports_of(p, modules) for p in paths}
    components = strongly_connected(graph)  # in reverse topological order: dependencies first
    component_of = {m: i for i, c in enumerate(components) for m in c}
    level: dict[int, int] = {}
    for i, component in enumerate(components):
        below = [level[component_of[t]] for m in component for t in graph[m] if component_of[t] != i]
        level[i] = 1 + max(below, default=0)
    cycles = [c for c in components if len(c) > 1]
    by_level = defaultdict(list)
    for m in modules:
        by_level[level[component_of[m]]].append(m)
    if args.edges:
        for m in sorted(graph):
            for t in sorted(graph[m]):
                print(f"{m} -> {t}")
    print(f"{len(modules)} modules, {sum(map(len, graph.values()))} imports between them, "
          f"{max(level.values())} levels, {len(cycles)} cycles")
    for cycle in cycles:
        print("cycle:", " <-> ".join(cycle))
    for n in sorted(by_level, reverse=True):
        print(f"level {n:2}: {' '.join(sorted(by_level[n]))}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
