"""The shape of the house, read from the code's own imports: the money core is a leaf, and no two
packages import each other, directly or round a loop."""
from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from tests.kit import ROOT

PACKAGE = ROOT / "heyon_site"
# What billing, the money core, never imports: the web framework and everything above it.
NOT_FOR_BILLING = ("flask", "flask_", "werkzeug", "heyon_site.providers", "heyon_site.payments", "heyon_site.customer",
                   "heyon_site.staff", "heyon_site.web", "heyon_site.extensions", "heyon_site.sandbox")


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, anywhere in it (a function's own imports too), absolute."""
    here = module_of(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]) if node.level else node.module
            base = (base or "").strip(".")
            yield base
            # `from heyon_site import sitetime` imports the module heyon_site.sitetime.
            for alias in node.names:
                if (ROOT / Path(*f"{base}.{alias.name}".split("."))).with_suffix(".py").exists() or \
                        (ROOT / Path(*f"{base}.{alias.name}".split(".")) / "__init__.py").exists():
                    yield f"{base}.{alias.name}"


def modules() -> dict[str, Path]:
    return {module_of(p): p for p in PACKAGE.rglob("*.py")}


def test_billing_imports_nothing_above_it() -> None:
    billing = {name: path for name, path in modules().items() if name.startswith("heyon_site.billing")}
    assert len(billing) >= 6  # money, ledger, recharge, promos, receipts, events (and the package)
    found = {name: sorted(i for i in imports(path) if i.startswith(NOT_FOR_BILLING)) for name, path in billing.items()}
    assert {name: bad for name, bad in found.items() if bad} == {}


def room(module: str) -> str:
    """The package (``heyon_site.staff``) or top-level module (``heyon_site.models``) of a module."""
    return ".".join(module.split(".")[:2])


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        if name == "heyon_site":
            continue  # the factory: it imports every package to wire it, and nothing imports it
        for target in imports(path):
            if target.startswith("heyon_site.") and room(target) != room(name):
                graph[room(name)].add(room(target))
    return graph


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every loop a depth-first walk of ``graph`` closes, each as the path round it."""
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for start in sorted(graph):
        if start not in seen:
            visit(start, [start])
    return found


def test_no_two_packages_import_each_other_even_round_a_loop() -> None:
    graph = package_graph()
    assert "heyon_site.billing" in graph["heyon_site.customer"]  # the graph is the real one
    assert loops(graph) == []


def test_the_readers_find_what_the_checks_rely_on() -> None:
    """A check that cannot fail is no check: relative and absolute imports are both read, a
    module is put in its package, and a loop of three is found."""
    assert "heyon_site.models" in set(imports(PACKAGE / "billing" / "ledger.py"))
    customer = set(imports(PACKAGE / "customer" / "recharge.py"))
    assert "heyon_site.billing.promos" in customer and "heyon_site.web.fragments" in customer
    assert room("heyon_site.staff.auth") == "heyon_site.staff" and room("heyon_site.models") == "heyon_site.models"
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert loops({"a": {"b"}, "b": {"c"}, "d": {"a"}}) == []
