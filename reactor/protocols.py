"""The protocol: the user's side of a connection. (The stock protocols that
``serve`` offers live in ``reactor.tools.stock``.)

A protocol gets events from its transport; the method names are asyncio's, so
code written for ``asyncio.Protocol`` reads the same here. Every method is
called on the reactor's thread, and an exception from one goes to the
reactor's exception handler, never into the loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._net.transport import Transport

__all__ = ["Protocol"]


class Protocol:
    """Base class with a no-op for every event; override what you need."""

    def connection_made(self, transport: Transport) -> None:
        """The connection is up; keep ``transport`` to write to it."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived from the peer (any split of the stream)."""

    def eof_received(self) -> bool | None:
        """The peer half-closed (sent FIN). Return True to keep our side open
        for writing; otherwise the transport closes."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is closed: ``exc`` is None for a clean close, else
        why (``ConnectionResetError``, ``BrokenPipeError``, ``TimeoutError``).
        Called exactly once."""

    def pause_writing(self) -> None:
        """The transport's write buffer went over its high-water mark."""

    def resume_writing(self) -> None:
        """The write buffer drained below its low-water mark."""
