"""UDP for ``loop.create_datagram_endpoint``: an ``asyncio.DatagramTransport``
on the loop's fd watchers.

Facts about UDP sockets on Linux, and what follows:

- Each ``recvfrom`` returns exactly one datagram (truncated to the buffer:
  the rest of it is lost, so the buffer is the largest UDP payload, 64 KiB).
  One datagram per readiness event keeps the loop fair to other fds.
- ``sendto`` either sends the whole datagram or fails: EAGAIN when the socket's
  send buffer is full (then the datagram is queued and sent when writable), or
  an error about this one datagram -- EMSGSIZE, or, on a *connected* UDP
  socket, ECONNREFUSED reported for an earlier datagram after the peer's ICMP
  port-unreachable. Those are the peer's news, not the socket's end: they go
  to ``protocol.error_received(exc)`` and the transport carries on.
- Reads can fail the same way (ECONNREFUSED from an ICMP error on a connected
  socket): ``error_received`` again.
- The queue of datagrams waiting for writability is bounded by the protocol's
  flow control (``pause_writing`` above the high-water mark), counted in bytes.
"""

from __future__ import annotations

import collections
import socket
import warnings
from asyncio import constants, futures, transports
from typing import TYPE_CHECKING, Any

from ._private.futures import set_result_unless_cancelled

if TYPE_CHECKING:
    from .loop import ReactorEventLoop

__all__ = ["DatagramTransport"]

#: the largest UDP payload: a datagram longer than the buffer is truncated
MAX_DATAGRAM = 256 * 1024
#: default flow-control marks, in queued bytes (asyncio's)
DEFAULT_HIGH_WATER = 64 * 1024


class DatagramTransport(transports.Transport, transports.DatagramTransport):
    """A UDP socket between the loop and a ``DatagramProtocol`` (also an
    ``asyncio.Transport``, as asyncio's own datagram transport is)."""

    def __init__(self, loop: ReactorEventLoop, sock: socket.socket, protocol: Any, address: Any = None,
                 waiter: futures.Future[Any] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._extra: dict[str, Any]  # asyncio's BaseTransport slot, filled by __init__
        self._loop = loop
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._address = address  # set for a connected socket (remote_addr)
        self._extra.setdefault("socket", sock)
        for name, getter in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            if name not in self._extra:
                try:
                    self._extra[name] = getter()
                except OSError:
                    self._extra[name] = None
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._queued = 0
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._writing_paused = False
        self._closing = False
        # closed for good (connection_lost is scheduled); the socket itself is
        # closed only after connection_lost, and until then an unconnected
        # transport still sends (asyncio's order)
        self._ended = False
        self._lost = 0  # sends attempted after the end, for the warning
        loop._transports[self._fd] = self
        # connection_made first, then reading, then the waiter (asyncio's order)
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(loop._add_reader, self._fd, self._read_ready)
        if waiter is not None:
            loop.call_soon(set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        state = "closed" if self._ended else "closing" if self._closing else "open"
        return f"<DatagramTransport fd={self._fd} {state}>"

    # --------------------------------------------------------------- reading

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data, address = sock.recvfrom(MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._call_protocol("error_received", exc)
            return
        self._call_protocol("datagram_received", data, address)

    # --------------------------------------------------------------- writing

    def sendto(self, data: Any, addr: Any = None) -> None:
        """Send one datagram to ``addr`` (or the connected peer)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if not data:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        # Once closed, nothing is sent; while closing, only a connected
        # transport drops what it is given (asyncio's rule: an unconnected
        # one still tries, and a failure still reaches error_received).
        if self._sock is None or (self._closing and self._address):
            if self._lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                self._loop.call_exception_handler({"message": "sendto() on a closed datagram transport",
                                                   "transport": self})
            self._lost += 1
            return
        if not self._queue:
            try:
                self._send(self._sock, data, addr)
                return
            except (BlockingIOError, InterruptedError):
                if self._ended:
                    return  # nothing is watched any more: dropped, as a full socket would
                self._loop._add_writer(self._fd, self._write_ready)
            except OSError as exc:
                self._call_protocol("error_received", exc)
                return
        # A copy: the caller may reuse a bytearray after we return.
        self._queue.append((bytes(data), addr))
        self._queued += len(data)
        if not self._writing_paused and self._queued > self._high:
            self._writing_paused = True
            self._call_protocol("pause_writing")

    def _send(self, sock: socket.socket, data: Any, addr: Any) -> None:
        if self._extra["peername"]:
            sock.send(data)
        else:
            sock.sendto(data, addr)

    def _write_ready(self) -> None:
        sock = self._sock
        while self._queue and sock is not None:
            data, addr = self._queue[0]
            try:
                self._send(sock, data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._call_protocol("error_received", exc)
            self._queue.popleft()
            self._queued -= len(data)
        if self._writing_paused and self._queued <= self._low:
            self._writing_paused = False
            self._call_protocol("resume_writing")
        if not self._queue:
            self._loop._remove_writer(self._fd)
            if self._closing:
                self._finish(None)

    def get_write_buffer_size(self) -> int:
        return self._queued

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    # --------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        return self._closing or self._ended

    def close(self) -> None:
        """Stop reading; send what is queued, then close."""
        if self._closing or self._ended:
            return
        self._closing = True
        self._loop._remove_reader(self._fd)
        if not self._queue:
            self._finish(None)

    def abort(self) -> None:
        """Drop what is queued and close now."""
        self._queue.clear()
        self._queued = 0
        self._closing = True
        self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        if self._ended or self._sock is None:
            return
        self._ended = self._closing = True
        self._loop._remove_reader(self._fd)
        self._loop._remove_writer(self._fd)
        self._loop._transports.pop(self._fd, None)
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()
            self._protocol = None

    def _call_protocol(self, method: str, *args: Any) -> None:
        try:
            getattr(self._protocol, method)(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"exception in {type(self._protocol).__name__}.{method}()",
                "exception": exc, "transport": self, "protocol": self._protocol,
            })

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def __del__(self) -> None:
        if getattr(self, "_sock", None) is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()  # type: ignore[union-attr]
