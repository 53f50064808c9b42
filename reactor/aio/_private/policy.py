"""asyncio's event loop policies, which reactor.aio's ``EventLoopPolicy``
extends, and which 3.14 deprecated (to be removed in 3.16).

- 3.11 to 3.13: ``asyncio.DefaultEventLoopPolicy`` (on Unix,
  ``unix_events._UnixDefaultEventLoopPolicy``, with its child watcher
  until 3.14), and ``asyncio.get/set_event_loop_policy``;
- 3.14, 3.15: the same class under the same private name, but the public
  names ``asyncio.DefaultEventLoopPolicy``, ``get_event_loop_policy`` and
  ``set_event_loop_policy`` warn (``DeprecationWarning``); asyncio itself
  uses ``events._get_event_loop_policy`` / ``_set_event_loop_policy``,
  which do not.

``DefaultPolicy`` is the class without the warning; ``get_policy`` and
``set_policy`` are asyncio's own unwarned accessors where they exist.
``DEPRECATED`` says whether ``reactor.aio.EventLoopPolicy`` should warn as
``asyncio.DefaultEventLoopPolicy`` does.
"""

from __future__ import annotations

import sys
from asyncio import events, unix_events
from typing import Any

__all__ = ["DefaultPolicy", "get_policy", "set_policy", "DEPRECATED"]

#: True where asyncio deprecates its policy system (3.14+)
DEPRECATED = sys.version_info >= (3, 14)

#: the default event loop policy's class, named without the deprecation warning
DefaultPolicy: Any = unix_events._UnixDefaultEventLoopPolicy

if DEPRECATED:
    get_policy: Any = events._get_event_loop_policy  # type: ignore[attr-defined]
    set_policy: Any = events._set_event_loop_policy  # type: ignore[attr-defined]
else:
    get_policy = events.get_event_loop_policy
    set_policy = events.set_event_loop_policy
