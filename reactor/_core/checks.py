"""Argument checks shared by the public API: one wording for one mistake,
always naming the argument (``TypeError`` for the wrong kind of value,
``ValueError`` for the wrong value)."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__ = ["check_callable", "check_seconds", "check_host_port"]


def check_callable(value: Any, name: str) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")


def check_seconds(value: Any, name: str) -> float:
    """A real number of seconds (bools and NaN refused), as a float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def check_host_port(host: Any, port: Any, *, what: str = "", port_min: int = 0, allow_empty: bool = False) -> None:
    """A str host and an int port in ``port_min``..65535; ``what`` prefixes
    the argument names (``"local_addr "``)."""
    if not isinstance(host, str):
        raise TypeError(f"{what}host must be a str, not {type(host).__name__}")
    if not host and not allow_empty:
        raise ValueError(f"{what}host must not be empty")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what}port must be an int, not {type(port).__name__}")
    if not port_min <= port <= 65535:
        raise ValueError(f"{what}port must be in {port_min}..65535, not {port}")
