"""Imports point one way: no module of django_atw imports, even indirectly, a module that imports it.

And the lower layers never reach up: store and the plain values know nothing of the engine,
the realtime package, the add path or the web surfaces. Imports inside ``if TYPE_CHECKING:``
are annotations only and do not count; imports inside functions do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import django_atw

PACKAGE = Path(django_atw.__file__).parent
# Modules that must import nothing above them (prefixes of dotted module names).
LOWER = ("django_atw.store", "django_atw.values", "django_atw.models", "django_atw.status")
UPPER = (
    "django_atw.engine",
    "django_atw.adding",
    "django_atw.shortcuts",
    "django_atw.realtime",
    "django_atw.admin",
    "django_atw.api",
    "django_atw.asgi",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def known_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py") if "migrations" not in path.parts}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = known_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_no_module_takes_part_in_an_import_cycle():
    graph = import_graph()
    # A package's __init__ that re-exports its own submodules is not a cycle of concerns.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not (t.startswith(name + ".") or name.startswith(t + "."))}
    assert cycles(graph) == []


# The socket-facing part of realtime sits above the engine (it cancels tasks); the rest of
# the package (group names, payloads, publisher, relay) sits below it, as the layering
# puts "consumers" beside the API and admin.
REALTIME_WEB = (
    "django_atw.realtime.consumers",
    "django_atw.realtime.dashboard",
    "django_atw.realtime.routing",
    "django_atw.realtime.protocol",
)


def layer_of(module: str) -> str:
    """The unit a module belongs to: a top-level module or package of django_atw."""
    if module.startswith(REALTIME_WEB):
        return "django_atw.realtime (sockets)"
    return ".".join(module.split(".")[:2])


def test_no_package_takes_part_in_an_import_cycle():
    layers: dict[str, set[str]] = {}
    for name, targets in import_graph().items():
        here = layer_of(name)
        layers.setdefault(here, set()).update(layer_of(t) for t in targets if layer_of(t) != here)
    # The package's own __init__ only re-exports lazily; modules import submodules through it.
    for targets in layers.values():
        targets.discard("django_atw")
    layers["django_atw"] = set()
    assert cycles(layers) == []


def test_the_store_and_plain_values_import_nothing_above_them():
    offending = {
        name: sorted(t for t in targets if t.startswith(UPPER))
        for name, targets in import_graph().items()
        if name.startswith(LOWER)
    }
    assert {name: targets for name, targets in offending.items() if targets} == {}


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
