"""asyncio's test for a coroutine function, as asyncio's own loop makes it
(``add_signal_handler`` refuses one).

- 3.11 to 3.13: ``asyncio.iscoroutinefunction``: ``inspect``'s test, or the
  marker of the old ``@asyncio.coroutine`` functions (mocks still set it).
- 3.14 and later: that public function is deprecated (removal in 3.16) and
  warns; asyncio's loop calls the same test, private, as
  ``coroutines._iscoroutinefunction``.
"""

from __future__ import annotations

from asyncio import coroutines
from collections.abc import Callable
from typing import Any

__all__ = ["iscoroutinefunction", "PRIVATE_TEST"]

#: True where asyncio's own loop uses the private test (3.14+)
PRIVATE_TEST = hasattr(coroutines, "_iscoroutinefunction")

iscoroutinefunction: Callable[[Any], bool] = (
    coroutines._iscoroutinefunction if PRIVATE_TEST  # type: ignore[attr-defined]
    else coroutines.iscoroutinefunction)
