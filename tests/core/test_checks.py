"""The argument checks' vocabulary (reactor/_core/checks.py): one wording and
one rule per kind of argument, and no second copy of a rule elsewhere."""

from __future__ import annotations

import math
import pathlib
import re
from fractions import Fraction

import pytest

import reactor
from reactor._core.checks import (
    check_duration,
    check_flag,
    check_int,
    check_optional_duration,
    check_optional_int,
)

PACKAGE = pathlib.Path(reactor.__file__).parent


@pytest.mark.parametrize("value, error", [
    (True, TypeError), ("1", TypeError), (1.0, TypeError), (None, TypeError), (0, ValueError), (-3, ValueError),
])
def test_a_count_is_an_int_of_at_least_one(value, error):
    with pytest.raises(error, match="^max_accepts must be "):
        check_int(value, "max_accepts", minimum=1)


def test_int_ranges_and_none():
    assert check_int(7, "n", minimum=1) == 7
    assert check_optional_int(None, "backlog", minimum=0) is None
    assert check_optional_int(0, "backlog", minimum=0) == 0
    with pytest.raises(TypeError, match="backlog must be an int or None, not str"):
        check_optional_int("x", "backlog", minimum=0)
    with pytest.raises(ValueError, match=r"port must be in 0\.\.65535, not 65536"):
        check_int(65536, "port", minimum=0, maximum=65535)
    with pytest.raises(ValueError, match="n must be <= 3, not 4"):
        check_int(4, "n", maximum=3)


@pytest.mark.parametrize("value, error", [
    (True, TypeError), ("5", TypeError), (None, TypeError),
    (0, ValueError), (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
])
def test_a_time_limit_is_a_finite_number_of_seconds_above_zero(value, error):
    with pytest.raises(error, match="^proxy_timeout must be "):
        check_duration(value, "proxy_timeout")


def test_durations_zero_infinite_and_none():
    assert check_duration(Fraction(1, 4), "t") == 0.25 and isinstance(check_duration(1, "t"), float)
    assert check_duration(math.inf, "timeout", infinite=True) == math.inf
    assert check_duration(0, "delay", zero=True) == 0.0
    with pytest.raises(ValueError, match=r"delay must be a number of seconds >= 0, not -0\.1"):
        check_duration(-0.1, "delay", zero=True, infinite=True)
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0"):
        check_duration(math.nan, "timeout", infinite=True)
    assert check_optional_duration(None, "idle_timeout") is None
    with pytest.raises(ValueError, match="idle_timeout must be a finite number of seconds > 0 or None, not 0"):
        check_optional_duration(0, "idle_timeout")


def test_a_flag_is_a_bool():
    assert check_flag(False, "proxy_protocol") is False
    with pytest.raises(TypeError, match="proxy_protocol must be True or False, not int"):
        check_flag(1, "proxy_protocol")


def test_user_timeout_past_a_c_int_of_milliseconds_is_refused_at_once():
    # It used to be taken, then fail setsockopt() on every connection
    # (OverflowError: each one rejected), or overflow int() for inf.
    from reactor._net.sockopts import MAX_USER_TIMEOUT, check_user_timeout

    assert check_user_timeout(MAX_USER_TIMEOUT) == 2**31 - 1
    for bad in (MAX_USER_TIMEOUT * 2, math.inf):
        with pytest.raises(ValueError, match="user_timeout"):
            check_user_timeout(bad)


#: a type-and-range check written out by hand: ``isinstance(x, bool) or not
#: isinstance(x, int)`` and its number-of-seconds twin
_HAND_CHECK = re.compile(r"isinstance\((\w+), bool\) or not isinstance\(\1, (int|Real|float|\(int, float\))\)")


def test_no_module_writes_its_own_copy_of_a_check():
    """A copy is how "max_accepts must be an int" and "max_connections must
    be an integer" drift apart: every such check goes through _core/checks.py."""
    copies = [f"{path.relative_to(PACKAGE.parent)}:{text[:match.start()].count(chr(10)) + 1}"
              for path in sorted(PACKAGE.rglob("*.py")) if path.name != "checks.py"
              for text in [path.read_text()] for match in _HAND_CHECK.finditer(text)]
    assert copies == [], "use reactor/_core/checks.py's vocabulary instead"
