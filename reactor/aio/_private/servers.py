"""How ``asyncio.base_events.Server`` counts the connections it serves.

A server's ``wait_closed()`` waits for its connections, so each transport
tells it when it starts and when it ends. The calls changed in 3.13:

- 3.11, 3.12: ``server._attach()`` / ``server._detach()``, a counter;
- 3.13 and later: ``server._attach(transport)`` / ``server._detach(transport)``,
  a weak set of the transports, which ``close_clients()`` and
  ``abort_clients()`` (new in 3.13) close or abort.

``attach`` and ``detach`` take the transport on every version. A server
that was closed has no sockets (``_sockets`` is None: ``is_serving()``
says False before it starts serving too): its new connections are served
but not waited for (``is_open``).

From 3.15 a server keeps the context it was made in, and asyncio passes
each connection a copy of it (``loop._start_serving(..., context=)``, then
``_make_socket_transport(..., context=)``; ``create_connection`` passes the
caller's): that connection's protocol callbacks run in it.
``CONNECTION_CONTEXTS`` says whether this interpreter does.

From 3.13 ``create_unix_server(cleanup_socket=True)`` removes the socket
file when the server closes, if it is still the file it bound (same inode);
before, the file stayed. ``UNIX_CLEANUP_DEFAULT`` is the version's default.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["attach", "detach", "is_open", "TRACKS_TRANSPORTS", "CONNECTION_CONTEXTS", "UNIX_CLEANUP_DEFAULT"]

#: True where asyncio gives each connection a context to run its protocol in (3.15+)
CONNECTION_CONTEXTS = sys.version_info >= (3, 15)
#: create_unix_server's cleanup_socket default: True from 3.13 (the keyword is new there)
UNIX_CLEANUP_DEFAULT = sys.version_info >= (3, 13)

#: True where the server keeps its transports (3.13+), False where it counts them
TRACKS_TRANSPORTS = sys.version_info >= (3, 13)

if TRACKS_TRANSPORTS:
    def attach(server: Any, transport: Any) -> None:
        """Tell ``server`` that ``transport`` is one of its connections."""
        server._attach(transport)

    def detach(server: Any, transport: Any) -> None:
        """Tell ``server`` that ``transport`` has ended."""
        server._detach(transport)
else:
    def attach(server: Any, transport: Any) -> None:
        """Tell ``server`` that ``transport`` is one of its connections."""
        server._attach()

    def detach(server: Any, transport: Any) -> None:
        """Tell ``server`` that ``transport`` has ended."""
        server._detach()


def is_open(server: Any) -> bool:
    """False once ``server`` was closed (its connections are no longer
    waited for by ``wait_closed()``), True before, serving yet or not."""
    return server._sockets is not None
