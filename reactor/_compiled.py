"""Which modules of the data path run compiled, and the switch to run them pure.

The hot path -- the fd watchers' wait, the core's dispatch and the handles
it runs, the transport's read and write -- is compiled by Cython in pure-Python mode (DESIGN section 4):
the ``.py`` file is the one source, Cython turns it into an extension module
beside it when ``setup.py`` finds Cython and a C compiler, and the same file
runs as plain Python where it did not. The pure twin therefore cannot drift:
it is the same text.

Python's import system prefers an extension module to a ``.py`` file of the
same name, so a built tree runs compiled. ``REACTOR_NATIVE=0`` (the switch of
``reactor.native``) runs the ``.py`` files instead: read once, when
``reactor`` is first imported (a module cannot be swapped under objects made
from it), by a finder put in front of the path finder for just the modules of
:data:`MODULES`. ``REACTOR_NATIVE`` unset, ``auto`` or ``1`` runs whatever is
built.

This module is imported first by ``reactor/__init__.py``; it imports nothing
of reactor's.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

__all__ = ["MODULES", "compiled_modules", "is_compiled", "pure_forced"]

#: The modules setup.py compiles (when it can), as import names. Only what
#: pays: Cython's attribute access on plain Python objects is a generic
#: lookup, where CPython 3.11+ runs bytecode specialised for the object's
#: layout, so compiling a module as plain Python classes can cost
#: instructions. Measured (instructions by cachegrind: bench/echo_instructions.py
#: and bench/accept_instructions.py, 300 rounds / 500 connections; an
#: asyncio streams server accepting and closing, 600 connections), each
#: module added to the five before it, 2026-12-07: backends.py (the epoll
#: selector's bookkeeping) reactor echo 11,355 -> 9,868; aio's transports,
#: servers and host aio echo 11,372 -> 11,238, streams accept 191,488 ->
#: 186,565; loop.py (reactor's run-once) nothing (11,355 -> 11,355); the
#: listener and the accept drain's Python side cost more (accept 33,629 ->
#: 35,214), so they stay bytecode. Earlier: handles.py pays once
#: ``handles.pxd`` makes Handle an extension type (reactor's loop runs it in
#: C, ``core._run_now``), the transport's read and write most (transport.pxd
#: does recv(2)/send(2) itself), then the core's dispatch and the watchers' wait.
MODULES = (
    "reactor._core.handles",
    "reactor._core.watchers",
    "reactor._core.core",
    "reactor._core.backends",
    "reactor._net.transport",
    "reactor.aio._private.ready_queue",
    "reactor.aio.transports",
    "reactor.aio.servers",
    "reactor.aio.host",
)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _switch_says_pure() -> bool:
    # reactor.native.env_setting's reading of REACTOR_NATIVE, without importing
    # it (it imports reactor.errors, hence reactor, hence this module)
    return os.environ.get("REACTOR_NATIVE", "auto").strip().lower() in ("0", "off", "false", "no")


class _PureFinder(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` source of :data:`MODULES`, never their extension."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname not in MODULES:
            return None
        relative = fullname.split(".")[1:]
        source = os.path.join(_PACKAGE_DIR, *relative) + ".py"
        if not os.path.exists(source):
            return None
        loader = importlib.machinery.SourceFileLoader(fullname, source)
        return importlib.util.spec_from_file_location(fullname, source, loader=loader)


#: True if this process runs the pure modules because the switch said so
#: (read once, at the first import of reactor).
_PURE = _switch_says_pure()
if _PURE and not any(isinstance(finder, _PureFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _PureFinder())


def pure_forced() -> bool:
    """True if ``REACTOR_NATIVE=0`` made this process run the pure modules."""
    return _PURE


def is_compiled(module: ModuleType) -> bool:
    """True if ``module`` was loaded from an extension (compiled), not a ``.py``."""
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_modules() -> dict[str, bool]:
    """Each module of :data:`MODULES`: True if it runs compiled (imports them)."""
    return {name: is_compiled(importlib.import_module(name)) for name in MODULES}
