"""The stock protocols ``serve`` offers by name: echo, discard, close and http."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocols import Protocol

if TYPE_CHECKING:
    from .._net.transport import Transport

__all__ = ["EchoProtocol", "DiscardProtocol", "CloseProtocol", "stock_protocol", "STOCK_PROTOCOLS"]


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
        from .http import HttpProtocol

        return HttpProtocol
    try:
        return STOCK_PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; choose from echo, discard, close, http") from None
