"""Loading the optional C accelerator, or saying why it is not there.

The accelerator is the cffi extension ``reactor._accel``, built by setup.py from
``_native/`` when a C compiler is present. Everything works without it: the
pure-Python accept drain has the same semantics and the same tests.

``REACTOR_NATIVE`` (environment):
  unset / ``auto``  use the accelerator when it loads (``Reactor(native="auto")``)
  ``0``             never use it, even when ``Reactor(native=True)`` is asked
                    (that raises, so a forced-pure run cannot silently differ)
  ``1``             require it: a ``native="auto"`` reactor raises
                    ``NativeUnavailableError`` when it cannot be loaded
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

from .errors import NativeUnavailableError

__all__ = ["native_available", "native_error", "load", "resolve", "env_setting"]

_module: ModuleType | None = None
_error: str | None = None
_loaded = False


def env_setting() -> str:
    """The ``REACTOR_NATIVE`` switch: ``"auto"``, ``"0"`` or ``"1"``."""
    value = os.environ.get("REACTOR_NATIVE", "auto").strip().lower() or "auto"
    if value in ("0", "off", "false", "no"):
        return "0"
    if value in ("1", "on", "true", "yes"):
        return "1"
    return "auto"


def load() -> ModuleType | None:
    """The compiled module (with ``ffi`` and ``lib``), or None; cached."""
    global _module, _error, _loaded
    if not _loaded:
        _loaded = True
        if env_setting() == "0":
            _error = "disabled by REACTOR_NATIVE=0"
        else:
            try:
                _module = importlib.import_module("reactor._accel")
            except ImportError as exc:
                _error = f"the C accelerator is not built ({exc})"
    return _module


def native_available() -> bool:
    """True if the C accelerator is built and allowed (REACTOR_NATIVE != 0)."""
    return load() is not None


def native_error() -> str | None:
    """Why the accelerator cannot be used, or None when it can."""
    load()
    return _error


def resolve(native: Any) -> bool:
    """Turn a ``Reactor(native=...)`` argument into whether to use C."""
    if native == "auto" and isinstance(native, str):
        if env_setting() == "1" and not native_available():
            raise NativeUnavailableError(f"REACTOR_NATIVE=1 requires the accelerator: {native_error()}")
        return native_available()
    if native is True:
        if not native_available():
            raise NativeUnavailableError(f"native=True but {native_error()}")
        return True
    if native is False:
        return False
    raise ValueError(f"native must be 'auto', True or False, not {native!r}")
