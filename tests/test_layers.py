"""The floors hold: each module imports only from its own floor or the ones
below, the library never imports ``reactor.tools``, no runtime import
cycle is left, and no floor reads another floor's private names
(DESIGN.md section 1).

The graph is read from the source with ``ast``, so it sees imports inside
functions too (a lazy import is still a dependency); imports under ``if
TYPE_CHECKING:`` are left out, since they never run.

Private names are read from the source too (``private_accesses``): every
``obj._name`` (and ``getattr(obj, "_name")``) where ``obj`` is not
``self``/``cls`` and ``_name`` is defined by a class of another module of
reactor. Modules of one floor may share their privates (a listener starts
its transports); across floors only the public interface is used -- the
host interface (``reactor/_net/host.py``) is where the net floor meets a
loop. ``ast`` knows no types, so where a name of asyncio's own objects is
spelled like one of ours, ``FOREIGN_PRIVATE`` says so, with the reason.

To see the graph and the counts: ``python -m tests.test_layers`` (from the
project root).
"""

from __future__ import annotations

import ast
import functools
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
    return module_name_in(path, PACKAGE_DIR)


def module_name_in(path: Path, package_dir: Path) -> str:
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
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


# ------------------------------------------------------------ private names

#: Accesses that cross a floor by their spelling only: ``(module, name)`` ->
#: why the object is not the reactor one the name belongs to (asyncio's own
#: internals, which reactor.aio must reach; DESIGN.md section 6).
FOREIGN_PRIVATE: dict[tuple[str, str], str] = {
    ("reactor.aio._private.servers", "_sockets"):
        "asyncio's Server._sockets (None once the server is closed), read in reactor.aio's one module for "
        "that concern and checked per version by tests/aio/test_private.py; ConnectAttempt's _sockets is "
        "another name",
    ("reactor.aio.loop", "_wait"):
        "asyncio's subprocess transport's _wait() (base_subprocess), awaited as asyncio's own loop awaits "
        "it; tests/aio/test_private.py checks it per version; EventLoop's _wait is another name",
}
#: reactor.aio's compiled call_soon and iteration are BaseEventLoop's and
#: set and run asyncio's Handle fields: every private name there is
#: asyncio's (loop state, Handle slots), checked per version by
#: tests/aio/test_private.py and held to stock asyncio's behaviour by
#: tests/aio/test_ready_queue.py; those spelled like reactor's own are
#: other names
FOREIGN_PRIVATE.update({
    ("reactor.aio._private.ready_queue", name):
        "asyncio's BaseEventLoop state and Handle fields, in reactor.aio's one module for its ready queue"
    for name in ("_args", "_callback", "_cancelled", "_closed", "_current_handle", "_loop", "_ready", "_repr",
                 "_run", "_scheduled", "_selector", "_source_traceback", "_stopping", "_timer_cancelled_count")
})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _class_names(tree: ast.AST) -> dict[str, tuple[list[str], set[str]]]:
    """class name -> (its bases' last names, the private names it defines:
    methods, class attributes and ``self._x`` assignments in its methods)."""
    found: dict[str, tuple[list[str], set[str]]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [ast.unparse(base).rpartition(".")[2] for base in node.bases]
        names: set[str] = set()
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(statement.name)
            targets = (statement.targets if isinstance(statement, ast.Assign)
                       else [statement.target] if isinstance(statement, ast.AnnAssign) else [])
            for target in targets:
                names.update(part.id for part in ast.walk(target) if isinstance(part, ast.Name))
        for inner in ast.walk(node):
            targets = (inner.targets if isinstance(inner, ast.Assign)
                       else [inner.target] if isinstance(inner, (ast.AnnAssign, ast.AugAssign)) else [])
            for target in targets:
                for part in ast.walk(target):
                    if (isinstance(part, ast.Attribute) and isinstance(part.value, ast.Name)
                            and part.value.id in ("self", "cls")):
                        names.add(part.attr)
        found[node.name] = (bases, {name for name in names if _is_private(name)})
    return found


def private_owners(trees: dict[str, ast.AST]) -> dict[str, set[str]]:
    """private name -> the modules whose classes define it. A subclass that
    overrides a name of a reactor base class in another module does not own
    it (``StreamTransport._start`` is still ``Transport``'s name)."""
    classes: dict[str, list[tuple[str, list[str], set[str]]]] = {}
    for module, tree in trees.items():
        for name, (bases, names) in _class_names(tree).items():
            classes.setdefault(name, []).append((module, bases, names))

    def inherited(bases: list[str], seen: set[str]) -> set[tuple[str, str]]:
        """(module, name) of every private name the reactor bases define."""
        found: set[tuple[str, str]] = set()
        for base in bases:
            if base in seen:
                continue
            seen.add(base)
            for module, grand_bases, names in classes.get(base, ()):
                found |= {(module, name) for name in names} | inherited(grand_bases, seen)
        return found

    owners: dict[str, set[str]] = {}
    for entries in classes.values():
        for module, bases, names in entries:
            from_bases = inherited(bases, set())
            for name in names:
                if any(name == base_name and base_module != module for base_module, base_name in from_bases):
                    continue  # an override: the base's module owns the name
                owners.setdefault(name, set()).add(module)
    return owners


def _accessed_names(tree: ast.AST) -> list[tuple[int, str, str, bool]]:
    """(line, name, the expression, whether it stores) of every private
    attribute reached on something other than the object itself: not on
    ``self``, ``cls``, ``super()``, nor on a base class named in the class
    statement around it (``Transport._start(self)`` in a subclass is a call
    to super)."""
    found: list[tuple[int, str, str, bool]] = []

    def visit(node: ast.AST, own: frozenset[str]) -> None:
        if isinstance(node, ast.ClassDef):
            own = own | {ast.unparse(base).rpartition(".")[2] for base in node.bases}
        target: ast.AST | None = None
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            target, name, stores = node.value, node.attr, isinstance(node.ctx, ast.Store)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value)):
            target, name, stores = node.args[0], node.args[1].value, node.func.id == "setattr"
        if target is not None and not (
                (isinstance(target, ast.Name) and target.id in own)
                or (isinstance(target, ast.Attribute) and ast.unparse(target).rpartition(".")[2] in own)
                or (isinstance(target, ast.Call) and isinstance(target.func, ast.Name) and target.func.id == "super")):
            found.append((node.lineno, name, ast.unparse(node), stores))
        for child in ast.iter_child_nodes(node):
            visit(child, own)

    visit(tree, frozenset({"self", "cls"}))
    return found


@functools.cache
def private_accesses(package_dir: Path = PACKAGE_DIR) -> list[tuple[str, int, str, str, set[str]]]:
    """Every read of another module's private name: ``(module, line, name,
    expression, owners)``. A library module's reads are matched against
    library owners only (it never imports the tools). A private name
    stored on another object that no class of reactor declares is state
    attached from outside (``loop._cache = ...``): listed too, owned by
    nobody, for the floors' check to refuse."""
    trees = {module_name_in(path, package_dir): ast.parse(path.read_text(), str(path))
             for path in package_dir.rglob("*.py")}
    owners = private_owners(trees)
    tools = FLOORS["reactor.tools"]
    found = []
    for module, tree in sorted(trees.items()):
        for line, name, expression, stores in _accessed_names(tree):
            candidates = owners.get(name, set())
            if module in candidates:
                continue  # its own name
            if floor_of(module) < tools:
                candidates = {owner for owner in candidates if floor_of(owner) < tools}
            if candidates or (stores and name not in owners):
                found.append((module, line, name, expression, candidates))
    return sorted(found, key=lambda access: (access[0], access[1]))


def cross_floor(accesses: list[tuple[str, int, str, str, set[str]]]) -> list[tuple[str, int, str, str, set[str]]]:
    """The accesses whose name some module of another floor owns (or no
    class owns: attached state)."""
    return [access for access in accesses
            if not access[4] or any(floor_of(owner) != floor_of(access[0]) for owner in access[4])]


def test_no_floor_reads_another_floors_private_names():
    # Modules of one floor may share their privates; across floors only
    # public names (the host interface, reactor/_net/host.py), and no state
    # attached to another module's object.
    offenders = [
        f"{module}:{line} {expression} (the name is {', '.join(sorted(owners)) or 'declared by no class'}'s)"
        for module, line, name, expression, owners in cross_floor(private_accesses())
        if (module, name) not in FOREIGN_PRIVATE
    ]
    assert not offenders, "\n".join(offenders)


def test_every_foreign_private_entry_is_still_needed():
    crossing = {(module, name) for module, _, name, _, _ in cross_floor(private_accesses())}
    assert set(FOREIGN_PRIVATE) <= crossing, set(FOREIGN_PRIVATE) - crossing


def test_a_planted_private_read_across_floors_is_caught(tmp_path):
    # The check above is only as good as its detector: a read of a lower
    # floor's private name, state attached from outside, a read by a higher
    # floor, and what must pass (the same floor; a subclass calling its
    # base; an override, which leaves the name its base's).
    package = tmp_path / "reactor"
    files = {
        "__init__.py": "",
        "_core/__init__.py": "",
        "_core/loop.py": "class Loop:\n    def __init__(self):\n        self._ready = []\n"
                         "    def _forget(self, fd):\n        pass\n",
        "_core/handles.py": "def run(loop):\n    return loop._ready\n",
        "_net/__init__.py": "",
        "_net/transport.py": "class Transport:\n    def _start(self):\n        pass\n"
                             "    def _release(self, loop):\n        loop._forget(3)\n",
        "_net/listener.py": "def accept(transport, loop):\n    transport._start()\n    loop._cache = {}\n",
        "aio/__init__.py": "",
        "aio/transports.py": "from .._net.transport import Transport\n"
                             "class Stream(Transport):\n    def _start(self):\n        Transport._start(self)\n"
                             "def begin(stream):\n    stream._start()\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    accesses = private_accesses(package)
    caught = {(module, expression) for module, _, _, expression, _ in cross_floor(accesses)}
    assert caught == {
        ("reactor._net.transport", "loop._forget"),  # reads the core's private name
        ("reactor._net.listener", "loop._cache"),  # attaches state to another floor's object
        ("reactor.aio.transports", "stream._start"),  # reads the net floor's private name
    }, caught
    # counted, but within one floor: the core's modules share
    assert ("reactor._core.handles", "loop._ready") in {(a[0], a[3]) for a in accesses}


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
    package_dir = Path(sys.argv[1]).resolve() / "reactor" if len(sys.argv) > 1 else PACKAGE_DIR
    accesses = private_accesses(package_dir)
    crossing = cross_floor(accesses)
    for module, line, name, expression, owners in crossing:
        allowed = FOREIGN_PRIVATE.get((module, name))
        print(f"  {module}:{line} {expression} (owned by {', '.join(sorted(owners)) or 'nobody: attached'})"
              f"{' -- allowed: ' + allowed if allowed else ''}")
    print(f"private names of another module's objects: {len(accesses)} reads, "
          f"{len(crossing)} of them across floors")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
