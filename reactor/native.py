"""Loading the optional C accelerator, or saying why it is not there.

This module only finds and checks the extension and turns the ``native=``
argument and ``REACTOR_NATIVE`` into a decision; the code that calls into C
sits beside its pure-Python twin (the accept drain: ``reactor._net.accept``).

The accelerator is the cffi extension ``reactor._accel``, built by setup.py from
``_native/`` when a C compiler is present. Everything works without it: the
pure-Python accept drain has the same semantics and the same tests.

``REACTOR_NATIVE`` (environment):
  unset / ``auto``  use the accelerator when it loads (``Reactor(native="auto")``)
  ``0``             never use it, even when ``Reactor(native=True)`` is asked
                    (that raises, so a forced-pure run cannot silently differ)
  ``1``             require it: a ``native="auto"`` reactor raises
                    ``NativeUnavailableError`` when it cannot be loaded

The switch is read on every call (``resolve``, ``native_available``,
``native_error``, ``load``), so each new ``Reactor`` sees the environment as
it is then; only the import of the extension is cached (``extension``),
because importing it again would give the same module.

A build left over from an older source tree is refused, not called: the C side
reports an ABI version and it must equal :data:`ABI_VERSION`.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from .errors import NativeUnavailableError

__all__ = [
    "ABI_VERSION",
    "native_available",
    "native_error",
    "load",
    "extension",
    "extension_error",
    "resolve",
    "env_setting",
    "NATIVE_ENV",
]

#: The ABI version of ``_native/accel.c`` this module was written against
#: (``reactor_accel_abi_version()``); a build reporting another is stale.
ABI_VERSION = 2

#: The environment variable that switches the accelerator (see above).
NATIVE_ENV = "REACTOR_NATIVE"
#: Why the accelerator is not used when the switch says 0.
_DISABLED = f"disabled by {NATIVE_ENV}=0"

# The cached import (extension()): the module, or why there is none.
_ext: ModuleType | None = None
_ext_error: str | None = None
_ext_loaded = False


def env_setting() -> str:
    """The ``REACTOR_NATIVE`` switch as it is now: ``"auto"``, ``"0"`` or
    ``"1"``."""
    value = os.environ.get(NATIVE_ENV, "auto").strip().lower() or "auto"
    if value in ("0", "off", "false", "no"):
        return "0"
    if value in ("1", "on", "true", "yes"):
        return "1"
    return "auto"


def extension() -> ModuleType | None:
    """The compiled module (``ffi`` and ``lib``) if it is built and of the
    right ABI, whatever ``REACTOR_NATIVE`` says; cached. For tools that are
    not the library's accept path (the benchmark load generator), which the
    switch is not about."""
    global _ext, _ext_error, _ext_loaded
    if not _ext_loaded:
        _ext_loaded = True
        try:
            module = importlib.import_module("reactor._accel")
        except ImportError as exc:
            _ext_error = f"the C accelerator is not built ({exc})"
        else:
            try:
                found: Any = module.lib.reactor_accel_abi_version()
            except AttributeError:  # older than the version function itself
                found = "unknown"
            if found == ABI_VERSION:
                _ext = module
            else:
                _ext_error = (
                    f"the C accelerator is a stale build (ABI {found}, this reactor needs {ABI_VERSION}): "
                    f"rebuild it with `pip install -e .` (module {module.__file__})"
                )
    return _ext


def extension_error() -> str | None:
    """Why :func:`extension` gives None (not built, stale), or None."""
    extension()
    return _ext_error


def load() -> ModuleType | None:
    """The compiled module (with ``ffi`` and ``lib``), or None when it is not
    built, stale, or disabled by ``REACTOR_NATIVE=0`` (read now)."""
    if env_setting() == "0":
        return None
    return extension()


def native_available() -> bool:
    """True if the C accelerator is built and allowed (REACTOR_NATIVE != 0,
    read now)."""
    return load() is not None


def native_error() -> str | None:
    """Why the accelerator cannot be used now, or None when it can."""
    if env_setting() == "0":
        return _DISABLED
    return extension_error()


def resolve(native: Any) -> bool:
    """Turn a ``Reactor(native=...)`` argument into whether to use C."""
    if native == "auto" and isinstance(native, str):
        if env_setting() == "1" and not native_available():
            raise NativeUnavailableError(f"{NATIVE_ENV}=1 requires the accelerator: {native_error()}")
        return native_available()
    if native is True:
        if not native_available():
            raise NativeUnavailableError(f"native=True but {native_error()}")
        return True
    if native is False:
        return False
    raise ValueError(f"native must be 'auto', True or False, not {native!r}")
