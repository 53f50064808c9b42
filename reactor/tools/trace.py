"""``serve --trace``: one line per connection event, with the kernel's view.

Facts it relies on:

- A socket just taken from the accept queue has sent no data yet, so its
  ``TCP_INFO.last_data_sent`` counts from the moment the handshake
  completed (the kernel stamps a new connection "last sent now"): at
  accept time that is how long it waited in the queue, in ms, to the
  kernel's jiffy (1-4 ms). Not with TCP_DEFER_ACCEPT, and not for Unix
  sockets (no TCP_INFO): then the wait is unknown and shown as ``n/a``.
- The peer's FIN is ``eof_received``; the socket is then in CLOSE_WAIT.
- Our FIN is ``close()`` or ``write_eof()`` -- unless bytes we never read
  are waiting: then ``close()`` sends RST instead (RFC 2525), so the event
  says ``rst-out``, as it does for ``abort()`` (SO_LINGER {1, 0}).
- A peer's RST is ``connection_lost(ConnectionResetError)``; EPIPE and
  ETIMEDOUT come the same way.
- The transport closes the fd *before* ``connection_lost``, so the last
  TCP_INFO (retransmissions, rtt) is the one read at the last event while
  the fd was open: our FIN, the peer's FIN, or the first byte.

What it costs:

- Off, nothing: ``serve`` hands the listener the stock protocol class
  itself, so the accept path and the data path run exactly the code they
  run without this module (it is not even imported).
- On, per connection: a wrapper protocol and a transport proxy (so that
  the protocol's own close/abort/write_eof calls are seen), three or four
  TCP_INFO getsockopts, a clock read per event and the line written.
  Per read and write, one extra Python call. Measured on this project's
  development machine (2 CPUs, Linux 6.18, CPython 3.11, epoll, native
  accept; ``python -m reactor.tools.trace --measure``): see the README's
  "See the lifecycle" section for the figures.
"""

from __future__ import annotations

import errno
import fcntl
import json
import socket
import struct
import sys
import termios
import time
from collections.abc import Callable
from typing import IO, Any, cast

from .. import kernel
from .._net.addresses import format_address
from ..protocols import Protocol

__all__ = ["Tracer", "TracedProtocol", "TracedTransport", "format_event"]

#: the fields of an event line, in order (whatever an event has of them)
_FIELD_ORDER = ("via", "queue_wait_ms", "after_ms", "bytes", "state", "unread", "errno", "how", "duration_ms",
                "in", "out", "retrans", "rtt_ms")


class Tracer:
    """Numbers connections, stamps events and writes them: as text lines to
    ``text`` and/or as JSON lines to ``jsonl``."""

    def __init__(self, text: IO[str] | None = None, jsonl: IO[str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._text = text
        self._jsonl = jsonl
        self._clock = clock
        self._next_id = 0
        #: every event written, by kind (the summary line)
        self.counts: dict[str, int] = {}

    def wrap(self, factory: Callable[[], Protocol]) -> Callable[[], Protocol]:
        """A protocol factory whose protocols are ``factory()``'s, traced."""

        def traced() -> Protocol:
            return TracedProtocol(factory(), self)

        return traced

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def emit(self, conn: int, peer: str, event: str, fields: dict[str, Any]) -> None:
        now = self._clock()
        self.counts[event] = self.counts.get(event, 0) + 1
        if self._text is not None:
            self._text.write(format_event(now, conn, peer, event, fields) + "\n")
            self._text.flush()
        if self._jsonl is not None:
            record = {"t": round(now, 6), "conn": conn, "peer": peer, "event": event, **fields}
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()


def format_event(now: float, conn: int, peer: str, event: str, fields: dict[str, Any]) -> str:
    """``trace 12:00:01.234 #3 127.0.0.1:40000 accepted queue_wait_ms=0 state=ESTABLISHED ...``"""
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    parts = [f"trace {stamp} #{conn} {peer} {event}"]
    for key in _FIELD_ORDER:
        if key in fields:
            value = fields[key]
            parts.append(f"{key}={'n/a' if value is None else value}")
    return " ".join(parts)


def _unread(sock: socket.socket | None) -> int:
    """SIOCINQ: bytes received and not read (0 where it cannot tell)."""
    if sock is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])
    except OSError:
        return 0


def _ms(value: float) -> float:
    return round(value * 1000, 3)


class TracedProtocol(Protocol):
    """Wraps one connection's protocol: every callback is passed on, and
    what it says about the connection is written as an event."""

    def __init__(self, inner: Protocol, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer
        self._id = tracer.new_id()
        self._peer = "?"
        self._sock: socket.socket | None = None
        self._start = 0.0
        self._in = 0
        self._out = 0
        self._ended: str | None = None  # fin / rst-out, once we sent it
        self._last: kernel.TcpInfo | None = None
        self.transport: TracedTransport | None = None

    # --------------------------------------------------------- the kernel

    def _info(self) -> kernel.TcpInfo | None:
        if self._sock is not None:
            info = kernel.tcp_info(self._sock)
            if info is not None:
                self._last = info
                return info
        return None

    def emit(self, event: str, **fields: Any) -> None:
        self._tracer.emit(self._id, self._peer, event, fields)

    # ------------------------------------------------------- the callbacks

    def connection_made(self, transport: Any) -> None:
        self._start = time.monotonic()
        peer = transport.get_extra_info("peername")
        self._peer = format_address(peer) if peer else "unix"
        sock = transport.get_extra_info("socket")
        self._sock = sock if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET,
                                                                                   socket.AF_INET6) else None
        info = self._info()
        self.emit("accepted", queue_wait_ms=info.last_data_sent if info else None,
                  state=info.state if info else None, rtt_ms=info.rtt / 1000 if info else None)
        self.transport = TracedTransport(transport, self)
        # a stand-in with the Transport's interface (its own methods, the rest passed on)
        self._inner.connection_made(cast(Any, self.transport))

    def data_received(self, data: bytes) -> None:
        if not self._in:
            info = self._info()
            self.emit("first-byte", after_ms=_ms(time.monotonic() - self._start), bytes=len(data),
                      rtt_ms=info.rtt / 1000 if info else None)
        self._in += len(data)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        info = self._info()
        self.emit("peer-fin", state=info.state if info else None, bytes=self._in)
        keep_open = self._inner.eof_received()
        if not keep_open:
            self.will_close("eof")  # the transport closes itself next
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        how = self._ended or "closed"
        if isinstance(exc, ConnectionResetError):
            how = "rst-in"
            self.emit("rst-in")
        elif exc is not None:
            code = getattr(exc, "errno", None)
            how = "error"
            self.emit("error", errno=errno.errorcode.get(code, str(code)) if code else type(exc).__name__)
        last = self._last
        self.emit("closed", how=how, duration_ms=_ms(time.monotonic() - self._start), **{"in": self._in},
                  out=self._out, retrans=last.total_retrans if last else None,
                  rtt_ms=last.rtt / 1000 if last else None)
        self._sock = None
        self.transport = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # ------------------------------------------- told by the transport proxy

    def will_close(self, via: str) -> None:
        """Our close() (or the transport's own, after EOF) is about to send
        FIN -- or RST, if bytes are unread."""
        if self._ended is not None:
            return
        info = self._info()
        unread = _unread(self._sock)
        if unread:
            self._ended = "rst-out"
            self.emit("rst-out", via=via, unread=unread, state=info.state if info else None)
        else:
            self._ended = "fin"
            self.emit("our-fin", via=via, state=info.state if info else None)

    def will_abort(self) -> None:
        if self._ended == "rst-out":
            return
        info = self._info()
        self._ended = "rst-out"
        self.emit("rst-out", via="abort", state=info.state if info else None)

    def will_write_eof(self) -> None:
        if self._ended is None:
            info = self._info()
            self.emit("our-fin", via="write_eof", state=info.state if info else None)
            self._ended = "fin"

    def wrote(self, count: int) -> None:
        self._out += count


class TracedTransport:
    """What the traced protocol sees as its transport: the real one, with
    the calls that end the connection (and the byte count) seen first."""

    __slots__ = ("_transport", "_traced")

    def __init__(self, transport: Any, traced: TracedProtocol) -> None:
        self._transport = transport
        self._traced = traced

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._traced.wrote(len(data))
        self._transport.write(data)

    def writelines(self, buffers: Any) -> None:
        buffers = list(buffers)
        self._traced.wrote(sum(len(b) for b in buffers))
        self._transport.writelines(buffers)

    def write_eof(self) -> None:
        if not self._transport.is_closing():
            self._traced.will_write_eof()
        self._transport.write_eof()

    def close(self) -> None:
        if not self._transport.is_closing():
            self._traced.will_close("close")
        self._transport.close()

    def abort(self) -> None:
        self._traced.will_abort()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # everything else (pause_reading, get_extra_info, ...) is the real transport's
        return getattr(self._transport, name)


def open_jsonl(path: str) -> IO[str]:
    """The ``--trace-json`` file: line-buffered text, appended to (several
    workers may share it; the CLI truncates it once before they start)."""
    return open(path, "a", buffering=1)


def main() -> int:  # pragma: no cover - a measuring tool, run by hand
    from .trace_cost import measure

    return measure(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
