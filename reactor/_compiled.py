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
#: pays (bench/echo_instructions.py, 300 rounds, instructions per echo round
#: trip, reactor / reactor.aio; five modules compiled as plain Python classes:
#: 18,768 / 23,193, then each left out in turn): the transport's read and
#: write (+461 / +455 when pure), the core's dispatch (+358 / +732), the
#: watchers' wait (+160 / +100); handles.py (+22 / -39) and loop.py's run-once
#: (+3 / -31) did not pay that way. With ``handles.pxd`` (Handle an extension
#: type) and the core's ``_run_now`` reading its fields, handles.py pays on
#: reactor's loop: 18,765 -> 18,014 (reactor.aio queues asyncio's handles).
MODULES = (
    "reactor._core.handles",
    "reactor._core.watchers",
    "reactor._core.core",
    "reactor._net.transport",
    "reactor.aio._private.ready_queue",
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
