"""The floors hold: each module imports only from its own floor or the ones
below, the library never imports ``reactor.tools``, and no runtime import
cycle is left (DESIGN.md section 1).

The graph is read from the source with ``ast``, so it sees imports inside
functions too (a lazy import is still a dependency); imports under ``if
TYPE_CHECKING:`` are left out, since they never run.

To see the graph: ``python -m tests.test_layers`` (from the project root).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "reactor"

#: floor of each module, by the longest matching prefix; higher may import lower
FLOORS = {
    "reactor.errors": 0,
    "reactor.version": 0,
    "reactor._core": 1,
    "reactor.kernel": 2,
    "reactor.native": 2,
    "reactor.protocols": 2,
    "reactor._net": 2,
    "reactor": 3,  # the package: re-exports the library's public names
    "reactor.aio": 4,
    "reactor.tools": 5,
    "reactor.__main__": 5,
}
FLOOR_NAMES = {0: "base", 1: "core", 2: "net", 3: "package", 4: "aio", 5: "tools"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> int:
    best = max((prefix for prefix in FLOORS if module == prefix or module.startswith(prefix + ".")), key=len)
    return FLOORS[best]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the reactor modules it imports at run time."""
    modules = {module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name.split(".")[0] == "reactor")
                continue
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "reactor":
                continue
            for alias in node.names:
                # ``from X import Y``: Y is a module of X, or a name defined in X.
                candidate = f"{base}.{alias.name}"
                targets.add(candidate if candidate in modules else base)
        targets.discard(name)
        graph[name] = {t for t in targets if t in modules}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_sees_the_known_floors():
    # A reader that found nothing would pass every rule below.
    graph = import_graph()
    assert "reactor._core.loop" in graph and "reactor._net.reactor" in graph and "reactor.tools.cli" in graph
    assert "reactor._core.loop" in graph["reactor._net.reactor"]
    assert "reactor._net.reactor" in graph["reactor"]


def test_no_module_imports_from_a_higher_floor():
    graph = import_graph()
    upward = [
        f"{module} ({FLOOR_NAMES[floor_of(module)]}) imports {target} ({FLOOR_NAMES[floor_of(target)]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if floor_of(target) > floor_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_library_never_imports_the_tools():
    graph = import_graph()
    offenders = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if floor_of(module) < FLOORS["reactor.tools"]
        for target in targets
        if floor_of(target) == FLOORS["reactor.tools"]
    ]
    assert not offenders, offenders


def test_the_kernel_knows_nothing_about_sockets():
    for path in (PACKAGE_DIR / "_core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {alias.name for node in _runtime_imports(tree) for alias in node.names}
        modules = {node.module for node in _runtime_imports(tree) if isinstance(node, ast.ImportFrom)}
        assert not ({"_net", "listener", "transport", "connector"} & (names | modules)), path
        assert "_net" not in path.read_text().replace("reactor._net", ""), f"{path} names the net floor"


def test_no_runtime_import_cycle():
    assert _cycles(import_graph()) == []


def test_a_planted_cycle_and_an_upward_import_are_caught():
    # The checks above are only as good as their detectors.
    graph = {"reactor._core.a": {"reactor._core.b"}, "reactor._core.b": {"reactor._core.a"}}
    assert _cycles(graph) == [["reactor._core.a", "reactor._core.b"]]
    assert floor_of("reactor.tools.cli") > floor_of("reactor._net.listener") > floor_of("reactor._core.loop")


def main() -> int:
    graph = import_graph()
    for floor in sorted(FLOOR_NAMES):
        members = sorted(m for m in graph if floor_of(m) == floor)
        if not members:
            continue
        print(f"{FLOOR_NAMES[floor]}:")
        for module in members:
            targets = ", ".join(sorted(graph[module])) or "-"
            print(f"  {module} -> {targets}")
    cycles = _cycles(graph)
    print(f"runtime import cycles: {cycles or 'none'}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
