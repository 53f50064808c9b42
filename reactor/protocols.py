"""Protocols: the user's side of a connection, and the stock ones the CLI serves.

A protocol gets events from its transport; the method names are asyncio's, so
code written for ``asyncio.Protocol`` reads the same here. Every method is
called on the reactor's thread, and an exception from one goes to the
reactor's exception handler, never into the loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Protocol", "EchoProtocol", "DiscardProtocol", "CloseProtocol", "stock_protocol"]


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


class EchoProtocol(Protocol):
    """Sends back what it receives. While the transport's write buffer is
    over its high-water mark it stops reading, so a peer that sends but does
    not read cannot make the server buffer without limit: the kernel's
    buffers fill and TCP flow control slows the sender."""

    def connection_made(self, transport: Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        # Finish echoing what is queued, then close (FIN after the flush).
        self.transport.close()
        return True

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


class DiscardProtocol(Protocol):
    """Reads and drops everything (RFC 863); closes when the peer does."""

    def connection_made(self, transport: Transport) -> None:
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)


class CloseProtocol(Protocol):
    """Closes every connection as soon as it is accepted: the accept
    benchmark's server, where all the cost is accepting."""

    def connection_made(self, transport: Transport) -> None:
        transport.close()


STOCK_PROTOCOLS = {
    "echo": EchoProtocol,
    "discard": DiscardProtocol,
    "close": CloseProtocol,
}


def stock_protocol(name: str) -> type[Protocol]:
    """The stock protocol class by name: echo, discard, close or http."""
    if name == "http":
        from ._http import HttpProtocol

        return HttpProtocol
    try:
        return STOCK_PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose from echo, discard, close, http") from None
