"""Argument checks shared by the public API: one wording for one mistake,
always naming the argument (``TypeError`` for the wrong kind of value,
``ValueError`` for the wrong value).

The vocabulary, and every place that needs it uses it (a check written out
again somewhere else is how the wordings, and the rules, drift apart):

- ``check_callable``: a callback or factory.
- ``check_flag``: True or False (not 1, not "yes").
- ``check_int`` / ``check_optional_int``: an int (bools refused) in a range:
  a count (``minimum=1``: ``max_accepts``, ``max_connections``), a size
  (``minimum=0``: ``backlog``, water marks), a port, a signal number.
- ``check_seconds``: any real number of seconds, as a float (a timer's delay
  may be negative or infinite; NaN never is a time).
- ``check_duration`` / ``check_optional_duration``: a time limit: a number
  of seconds > 0 (``zero=True``: >= 0), finite unless ``infinite=True``
  (``connect(timeout=math.inf)`` means no deadline).
- ``check_host_port``: a str host and an int port.

The ``optional`` forms take None (the feature off, or the default) and say
"or None" in their messages.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

__all__ = [
    "check_callable",
    "check_flag",
    "check_int",
    "check_optional_int",
    "check_seconds",
    "check_duration",
    "check_optional_duration",
    "check_host_port",
]


def check_callable(value: Any, name: str) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")


def check_flag(value: Any, name: str) -> bool:
    """True or False, nothing else that happens to be truthy."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def _int(value: Any, name: str, minimum: int | None, maximum: int | None, or_none: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int{or_none}, not {type(value).__name__}")
    if maximum is not None and minimum is not None:
        if not minimum <= value <= maximum:
            raise ValueError(f"{name} must be in {minimum}..{maximum}, not {value}")
    elif minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    elif maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, not {value}")
    return value


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (not a bool) in ``minimum``..``maximum`` (either end open when None)."""
    return _int(value, name, minimum, maximum, "")


def check_optional_int(value: Any, name: str, *, minimum: int | None = None,
                       maximum: int | None = None) -> int | None:
    """None, or what ``check_int`` takes."""
    return None if value is None else _int(value, name, minimum, maximum, " or None")


def check_seconds(value: Any, name: str) -> float:
    """A real number of seconds (bools and NaN refused), as a float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return value


def _duration(value: Any, name: str, zero: bool, infinite: bool, or_none: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number of seconds{or_none}, not {type(value).__name__}")
    seconds = float(value)
    # NaN fails every comparison, so it is refused here too.
    low_ok = seconds >= 0 if zero else seconds > 0
    if not (low_ok and (infinite or seconds < math.inf)):
        rule = f"{'' if infinite else 'finite '}number of seconds {'>= 0' if zero else '> 0'}"
        raise ValueError(f"{name} must be a {rule}{or_none}, not {value!r}")
    return seconds


def check_duration(value: Any, name: str, *, zero: bool = False, infinite: bool = False) -> float:
    """A time limit in seconds, as a float: > 0 (>= 0 with ``zero``), finite
    unless ``infinite``; bools and NaN refused."""
    return _duration(value, name, zero, infinite, "")


def check_optional_duration(value: Any, name: str, *, zero: bool = False,
                            infinite: bool = False) -> float | None:
    """None (no limit), or what ``check_duration`` takes."""
    return None if value is None else _duration(value, name, zero, infinite, " or None")


def check_host_port(host: Any, port: Any, *, what: str = "", port_min: int = 0, allow_empty: bool = False) -> None:
    """A str host and an int port in ``port_min``..65535; ``what`` prefixes
    the argument names (``"local_addr "``)."""
    if not isinstance(host, str):
        raise TypeError(f"{what}host must be a str, not {type(host).__name__}")
    if not host and not allow_empty:
        raise ValueError(f"{what}host must not be empty")
    check_int(port, f"{what}port", minimum=port_min, maximum=65535)
