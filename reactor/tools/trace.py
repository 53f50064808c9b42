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
  the fd was open: our FIN, the peer's FIN, or the accept.

``--trace-wire`` adds the segments themselves (:class:`WireTrace`): a
packet tap on the served port (the lab's, ``lab/wire.py``: CAP_NET_RAW, a
kernel filter on the port, loopback's second copy dropped), read on the
loop like any other fd. Each connection keeps its last ``WIRE_RING``
segments in a ring, keyed by its four-tuple from its SYN on; when the
connection ends -- a RST either way, or a close -- the ring is printed as
``wire`` events, each at the kernel's time for its segment, once
``WIRE_TAIL`` has let the last segments of the close arrive. Rings of
connections never accepted (a SYN flood, a port scan) are bounded too: at
most ``WIRE_CONNECTIONS``, the oldest dropped first.

What it costs:

- Off, nothing: ``serve`` hands the listener the stock protocol class
  itself, so the accept path and the data path run exactly the code they
  run without this module (it is not even imported).
- On, per connection: a wrapper protocol and a transport proxy (so that
  the protocol's own close/abort/write_eof calls are seen), three TCP_INFO
  reads (3.5 us to parse each), one SIOCINQ at close, five formatted lines
  (3 us each) written in batches, and the deferred ``connection_lost`` the
  plain echo protocol does without. Per read and write, one extra Python
  call. Measured (``python -m reactor.tools.trace --measure``: server CPU
  from schedstat, 5000 sequential echo connections, tracing off and on
  interleaved, median of 5-7 runs; 2-CPU VM under other load, Linux 6.18,
  CPython 3.11, epoll, native accept): off 100-125 us, on 195-210 us per
  connection -- tracing adds 70-110 us, roughly doubling the cost of a
  short echo connection. It is a tool for looking, not for production load.
- ``--trace-wire`` on top: each segment is read from the tap, parsed,
  numbered and kept (about 10 per echo connection), and printed at the end:
  ``--measure 3000 5 --wire`` (same machine, load average 4-6): off 100,
  --trace 172, --trace --trace-wire 355 us per connection -- about 18 us
  per segment. Memory: at most ``WIRE_RING`` segments (~100 B each) for
  each of at most ``WIRE_CONNECTIONS`` connections.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import IO, Any, cast

from .. import kernel
from .._net.addresses import format_address
from ..protocols import Protocol

__all__ = ["Tracer", "TracedProtocol", "TracedTransport", "WireTrace", "format_event"]

#: how long an event may wait before it is written: a write per line was
#: five writes per connection -- each a syscall when stdout is unbuffered
#: (PYTHONUNBUFFERED, -u), 10 us each -- most of the tracing cost; people do
#: not see 50 ms
FLUSH_DELAY = 0.05
#: segments kept per connection by --trace-wire: the last ones, which say how it ended
WIRE_RING = 32
#: connections whose segments --trace-wire keeps at once (open ones, and SYNs never accepted)
WIRE_CONNECTIONS = 10_000
#: how long after connection_lost the ring is printed: the peer's last ACK or FIN is a round trip away
WIRE_TAIL = 0.2
#: packets read from the tap per wake-up, so a burst cannot hold the loop
WIRE_BATCH = 1000


class Tracer:
    """Numbers connections, stamps events and writes them: as text lines to
    ``text`` and/or as JSON lines to ``jsonl``. With ``call_later`` (the
    reactor's), lines are flushed ``FLUSH_DELAY`` after the first unflushed
    one; without it, at once. ``flush()`` before the streams close."""

    def __init__(self, text: IO[str] | None = None, jsonl: IO[str] | None = None,
                 clock: Callable[[], float] = time.time,
                 call_later: Callable[[float, Callable[[], None]], object] | None = None) -> None:
        self._text = text
        self._jsonl = jsonl
        self._clock = clock
        self._call_later = call_later
        self._flush_pending = False
        # our own buffers, so that the cost does not depend on the stream's buffering
        self._text_lines: list[str] = []
        self._json_lines: list[str] = []
        self._next_id = 0
        #: every event written, by kind (the summary line)
        self.counts: dict[str, int] = {}
        #: the wire view (--trace-wire), once ``tap`` opened it
        self.wire: WireTrace | None = None

    def tap(self, loop: Any, address: Any) -> None:
        """--trace-wire: tap the served port's segments (raises
        CaptureUnavailable, an OSError, where no tap can be opened)."""
        self.wire = WireTrace(self, loop, address[1])

    def finish(self) -> None:
        """At exit: print the rings still waiting for their tail, close the tap, flush."""
        if self.wire is not None:
            self.wire.close()
            self.wire = None
        self.flush()

    def flush(self) -> None:
        """Write what is waiting, one write per stream."""
        self._flush_pending = False
        for stream, lines in ((self._text, self._text_lines), (self._jsonl, self._json_lines)):
            if stream is not None and lines and not stream.closed:
                stream.write("".join(lines))
                stream.flush()
            lines.clear()

    def wrap(self, factory: Callable[[], Protocol]) -> Callable[[], Protocol]:
        """A protocol factory whose protocols are ``factory()``'s, traced."""

        def traced() -> Protocol:
            return TracedProtocol(factory(), self)

        return traced

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def emit(self, conn: int, peer: str, event: str, fields: dict[str, Any], at: float | None = None) -> None:
        """Write one event, stamped now or ``at`` (a wall-clock time)."""
        now = self._clock() if at is None else at
        self.counts[event] = self.counts.get(event, 0) + 1
        if self._text is not None:
            self._text_lines.append(format_event(now, conn, peer, event, fields) + "\n")
        if self._jsonl is not None:
            record = {"t": round(now, 6), "conn": conn, "peer": peer, "event": event, **fields}
            self._json_lines.append(json.dumps(record) + "\n")
        if self._call_later is None:
            self.flush()
        elif not self._flush_pending:
            self._flush_pending = True
            self._call_later(FLUSH_DELAY, self.flush)


#: (second, "HH:MM:SS") of the last line: strftime once a second, not once a line
_clock_text: list[Any] = [None, ""]


def format_event(now: float, conn: int, peer: str, event: str, fields: dict[str, Any]) -> str:
    """``trace 12:00:01.234 #3 127.0.0.1:40000 accepted queue_wait_ms=0 state=ESTABLISHED ...``"""
    second = int(now)
    if _clock_text[0] != second:
        _clock_text[:] = [second, time.strftime("%H:%M:%S", time.localtime(second))]
    parts = [f"trace {_clock_text[1]}.{int(now * 1000) % 1000:03d} #{conn} {peer} {event}"]
    # in the order the event gave them (each event names its fields in a fixed order)
    parts += [f"{key}={'n/a' if value is None else value}" for key, value in fields.items()]
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
        #: (local, peer) as (ip, port) pairs: its segments' key for --trace-wire
        self._tuple: tuple[tuple[str, int], tuple[str, int]] | None = None
        self.transport: TracedTransport | None = None

    def __getattr__(self, name: str) -> Any:
        # What the wrapped protocol offers beyond the callbacks passes
        # through: serve's drain asks a connection's protocol for drain(), and
        # a traced connection must drain as an untraced one does.
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

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
        self._sock = sock if isinstance(sock, socket.socket) else None
        info = self._info()
        if info is None:
            self._sock = None  # not TCP (a Unix socket): no TCP_INFO, no queue wait
        elif self._tracer.wire is not None:
            local = transport.get_extra_info("sockname")
            self._tuple = ((local[0], local[1]), (peer[0], peer[1])) if local and peer else None
        self.emit("accepted", queue_wait_ms=info.last_data_sent if info else None,
                  state=info.state if info else None, rtt_ms=info.rtt / 1000 if info else None)
        self.transport = TracedTransport(transport, self)
        # a stand-in with the Transport's interface (its own methods, the rest passed on)
        self._inner.connection_made(cast(Any, self.transport))

    def data_received(self, data: bytes) -> None:
        if not self._in:
            self.emit("first-byte", after_ms=_ms(time.monotonic() - self._start), bytes=len(data))
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
        if self._tuple is not None and self._tracer.wire is not None:
            self._tracer.wire.ended(self._tuple, self._id, self._peer)
        self._sock = None
        proxy, self.transport = self.transport, None
        try:
            self._inner.connection_lost(exc)
        finally:
            # The inner protocol keeps its transport (the proxy), the proxy us,
            # we the inner protocol: a cycle that only the cyclic GC would free,
            # and the real transport with it. Cut it here: a connection is
            # freed at once, traced or not (DESIGN section 3).
            if proxy is not None:
                proxy._traced = _DETACHED

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
            self.emit("rst-out", via=via, state=info.state if info else None, unread=unread)
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


class _Ring:
    """One connection's last segments, numbered from its ISNs."""

    __slots__ = ("segments", "numbering", "earlier")

    def __init__(self, numbering: Any) -> None:
        #: (wall time, dir, flags, seq, ack, window, length, retransmission)
        self.segments: deque[tuple[float, str, str, int, int | None, int, int, bool]] = deque(maxlen=WIRE_RING)
        self.numbering = numbering
        #: segments that fell out of the ring
        self.earlier = 0


class WireTrace:
    """--trace-wire: the served port's segments, a ring per connection,
    printed through the tracer when the connection ends."""

    def __init__(self, tracer: Tracer, loop: Any, port: int) -> None:
        from .lab.wire import Capture, Numbering

        self._numbering = Numbering
        self._tracer = tracer
        self._loop = loop
        self._port = port
        self._capture = Capture([port])  # every interface of this namespace, both families
        self._rings: OrderedDict[tuple[tuple[str, int], tuple[str, int]], _Ring] = OrderedDict()
        #: rings of ended connections, waiting for their tail: (key, conn id, peer)
        self._ending: list[tuple[tuple[tuple[str, int], tuple[str, int]], int, str]] = []
        loop.add_reader(self._capture, self.read)

    def read(self) -> None:
        """Take what the tap has (at most WIRE_BATCH), into the rings."""
        offset = self._capture.offset
        for packet in self._capture.read(WIRE_BATCH):
            if packet.dst[1] == self._port:
                key, way, direction = (packet.dst, packet.src), 1, "in"
            else:
                key, way, direction = (packet.src, packet.dst), 0, "out"
            ring = self._rings.get(key)
            if ring is None:
                if len(self._rings) >= WIRE_CONNECTIONS:
                    self._rings.popitem(last=False)  # the oldest: most likely never accepted
                ring = self._rings[key] = _Ring(self._numbering())
            seq, ack, window, again = ring.numbering.number(packet, way)
            if len(ring.segments) == WIRE_RING:
                ring.earlier += 1
            ring.segments.append((packet.time + offset, direction, packet.flag_text, seq, ack, window,
                                  packet.length, again))

    def ended(self, key: tuple[tuple[str, int], tuple[str, int]], conn: int, peer: str) -> None:
        """A connection ended: print its ring once its last segments are in."""
        if not self._ending:
            self._loop.call_later(WIRE_TAIL, self._print_ended)
        self._ending.append((key, conn, peer))

    def _print_ended(self) -> None:
        self.read()
        ending, self._ending = self._ending, []
        for key, conn, peer in ending:
            self._print(key, conn, peer)

    def _print(self, key: tuple[tuple[str, int], tuple[str, int]], conn: int, peer: str) -> None:
        ring = self._rings.pop(key, None)
        if ring is None:
            self._tracer.emit(conn, peer, "wire-lost", {"why": f"more than {WIRE_CONNECTIONS} connections"})
            return
        if ring.earlier:
            first = ring.segments[0][0] if ring.segments else None
            self._tracer.emit(conn, peer, "wire-earlier", {"segments": ring.earlier}, at=first)
        for at, direction, flags, seq, ack, window, length, again in ring.segments:
            fields: dict[str, Any] = {"dir": direction, "flags": flags, "seq": seq, "ack": ack, "win": window,
                                      "len": length}
            if again:
                fields["again"] = 1
            self._tracer.emit(conn, peer, "wire", fields, at=at)

    def close(self) -> None:
        """Print what waits for its tail, stop reading, close the tap."""
        self._print_ended()
        self._loop.remove_reader(self._capture)
        self._capture.close()
        self._rings.clear()


class _Detached:
    """What a transport proxy reports to once its connection is over: nothing."""

    def wrote(self, count: int) -> None:
        pass

    def will_close(self, via: str) -> None:
        pass

    def will_abort(self) -> None:
        pass

    def will_write_eof(self) -> None:
        pass


_DETACHED = _Detached()


class TracedTransport:
    """What the traced protocol sees as its transport: the real one, with
    the calls that end the connection (and the byte count) seen first."""

    __slots__ = ("_transport", "_traced")

    def __init__(self, transport: Any, traced: TracedProtocol) -> None:
        self._transport = transport
        self._traced: TracedProtocol | _Detached = traced

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


# ------------------------------------------------------------ its cost

#: connections per measured run, sequential: enough for ~100 clock ticks of server CPU
MEASURE_CONNECTIONS = 5000
MEASURE_REPEAT = 3


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process's threads: ``/proc/PID/task/*/schedstat`` (the
    scheduler's own nanoseconds on CPU), else utime + stime, which are
    sampled at the clock tick (10 ms) and too coarse on a busy machine."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: serve's tracing flags per measured mode
_MODES = {"off": [], "on": ["--trace"], "wire": ["--trace", "--trace-wire"]}


def _one_run(flags: list[str], connections: int, backend: str) -> float:
    """Server CPU per connection (s) for ``connections`` sequential echo
    connections (connect, send 16 B, half-close, read to EOF, close)."""
    args = [sys.executable, "-m", "reactor", "serve", "--port", "0", "--protocol", "echo", "--backend", backend]
    proc = subprocess.Popen(args + flags, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        host, _, port = first.split()[2].rpartition(":")
        drain = threading.Thread(target=lambda: proc.stdout and proc.stdout.read(), daemon=True)
        drain.start()  # the trace lines go somewhere, as they would to a terminal or a file
        before = _cpu_seconds(proc.pid)
        for _ in range(connections):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(b"0123456789abcdef")
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
        time.sleep(0.2)  # the last connection_lost and its trace line
        return (_cpu_seconds(proc.pid) - before) / connections
    finally:
        proc.send_signal(signal.SIGTERM)  # our own child, by its pid
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def measure(connections: int = MEASURE_CONNECTIONS, repeat: int = MEASURE_REPEAT, backend: str = "epoll",
            out: IO[str] = sys.stdout, wire: bool = False) -> dict[str, float]:
    """Median server CPU per connection, tracing off and on (and with
    --trace-wire if ``wire``) (µs), printed."""
    modes = ["off", "on", "wire"] if wire else ["off", "on"]
    runs: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(repeat):
        for mode in modes:  # interleaved, so drift hits all alike
            runs[mode].append(_one_run(_MODES[mode], connections, backend) * 1e6)
    result = {mode: statistics.median(values) for mode, values in runs.items()}
    print(f"serve --protocol echo --backend {backend}: server CPU per connection, median of {repeat} x "
          f"{connections} sequential connections", file=out)
    for mode in modes:
        label = "--trace --trace-wire" if mode == "wire" else f"--trace {mode}"
        print(f"  {label:20}: {result[mode]:6.1f} us  (runs: {', '.join(f'{v:.1f}' for v in runs[mode])})",
              file=out)
    for mode in modes[1:]:
        print(f"  {'tracing' if mode == 'on' else 'tracing with the wire'} adds {result[mode] - result['off']:.1f} "
              f"us per connection ({(result[mode] / result['off'] - 1) * 100:.0f}%)", file=out)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m reactor.tools.trace --measure [CONNECTIONS [REPEAT]] [--wire]``."""
    args = sys.argv[1:] if argv is None else argv
    wire = "--wire" in args
    args = [a for a in args if a != "--wire"]
    if not args or args[0] != "--measure":
        print("usage: python -m reactor.tools.trace --measure [CONNECTIONS [REPEAT]] [--wire]", file=sys.stderr)
        return 2
    numbers = [int(a) for a in args[1:3]]
    measure(numbers[0] if numbers else MEASURE_CONNECTIONS, numbers[1] if len(numbers) > 1 else MEASURE_REPEAT,
            wire=wire)
    return 0


if __name__ == "__main__":
    sys.exit(main())
