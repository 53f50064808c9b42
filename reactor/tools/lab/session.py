"""The workbench a scenario runs on: it makes the sockets (in a namespace
when asked), makes each call, and after every call records the world: each
socket's TCP state and what select, poll and epoll report for it.

Rules it keeps:

- Every socket is non-blocking: a scenario must never wait on the kernel
  except through ``wait()``, which is bounded in time and polls.
- Every socket, child process and namespace it made is released at the end
  (``cleanup()``), whatever the scenario did; sockets still open then are
  aborted (SO_LINGER {1, 0}: gone at once, no TIME_WAIT, no orphan keeping a
  namespace alive).
- A socket whose fd we closed is still looked for: sock_diag (what ``ss``
  reads) lists it by its addresses in FIN_WAIT2, LAST_ACK or TIME_WAIT, with
  the timer it waits on.
- The wire is tapped (``open_wire``: on ``lo``, or on every interface of a
  namespace) before the scenario's first connect, and every connect adds
  its port to the tap's kernel filter before the SYN leaves. A segment is
  the scenario's when its four-tuple is one of the connections it made
  (the socket that called connect, and the address it called); the rest,
  another program's traffic on a port number we also use, is counted and
  left out. The tap is read once, at the end (``finish_wire``), before the
  lab aborts what is left: the RSTs of the clean-up are not part of it.
"""

from __future__ import annotations

import errno as errno_module
import select
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ... import kernel
from ..._net.sockopts import LINGER_RST
from .netns import Namespaces
from .probe import Readiness
from .timeline import INFO_FIELDS, TO_CLIENT, TO_SERVER, Segment, SockView, Step
from .wire import STAMPING_WAIT, Capture, CaptureUnavailable, Numbering, options_text, stamping_on

__all__ = ["Lab", "ScenarioSkipped", "errno_name"]

#: the class, under a name the method ``Lab.socket`` does not hide in annotations
Socket = socket.socket
_AF_INET = socket.AF_INET
#: how often wait() looks again: fine enough to time a retransmission to a few ms
WAIT_POLL = 0.002


class ScenarioSkipped(Exception):
    """Raised by a scenario that cannot run here; the message says why."""


def errno_name(code: int) -> str:
    return errno_module.errorcode.get(code, str(code))


def outcome_name(value: object) -> str:
    """The errno name of a call that raised (an OSError), or "ok"."""
    if isinstance(value, OSError) and value.errno is not None:
        return errno_name(value.errno)
    return "ok"


def code_name(code: int) -> str:
    """An errno value by name (SO_ERROR, connect_ex), "0" for none."""
    return errno_name(code) if code else "0"


def _addr(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else address[0]
        return f"{host}:{address[1]}"
    return str(address)


def show(value: Any) -> str:
    """A call's return value as the timeline prints it."""
    if value is None:
        return "ok"
    if isinstance(value, bytes):
        return "b'' (EOF)" if not value else f"{len(value)} bytes {value[:24]!r}"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], socket.socket):
        return f"fd {value[0].fileno()} from {_addr(value[1])}"
    return str(value)


@dataclass
class _Tracked:
    sock: socket.socket | None  # None once closed
    ns: str | None
    local: tuple[Any, ...] | None = None
    remote: tuple[Any, ...] | None = None
    listening: bool = False
    #: the address it called connect() with: the other end of a client socket
    target: tuple[str, int] | None = None


@dataclass
class WireCapture:
    """What the tap gave: the scenario's segments, where it was, and why
    there are none where it could not be opened."""

    where: str
    segments: list[Segment]
    #: why there is no capture ("" if there is)
    unavailable: str = ""
    #: packets the kernel dropped because the tap's queue was full
    drops: int = 0
    #: captured segments of no connection of ours (port numbers shared with another program)
    foreign: int = 0
    #: packets the kernel gave no time (their order against the calls is unknown)
    unstamped: int = 0


class Lab:
    """One scenario's sockets, calls and timeline."""

    def __init__(self, backends: list[str], namespaces: Namespaces | None = None) -> None:
        self.backends = backends
        self.ns = namespaces
        self.readiness = Readiness(backends)
        self.steps: list[Step] = []
        self.facts: dict[str, Any] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._t0 = time.monotonic()
        #: the tap on the wire, once open_wire() opened it
        self._capture: Capture | None = None
        self._wire_where = ""
        self._wire_unavailable = "the scenario opened no capture"
        #: every socket that called connect(), in order, kept after it is closed or dropped
        self._clients: list[tuple[str, _Tracked]] = []
        #: every socket the lab tracked, ever (the server end of a connection is named from here)
        self._everyone: list[tuple[str, _Tracked]] = []

    # ------------------------------------------------------------- sockets

    def socket(self, name: str, *, ns: str | None = None, family: int = _AF_INET) -> Socket:
        """A new non-blocking TCP socket named ``name`` (in namespace ``ns``)."""
        assert name not in self._tracked or self._tracked[name].sock is None, name
        with self._inside(ns):
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        self._track(name, _Tracked(sock, ns))
        return sock

    def _track(self, name: str, tracked: _Tracked) -> None:
        self._tracked[name] = tracked
        self._everyone.append((name, tracked))
        assert tracked.sock is not None
        self.readiness.watch(tracked.sock.fileno())

    def adopt(self, name: str, sock: Socket, *, ns: str | None = None) -> Socket:
        """Track a socket the scenario got from the kernel (accept)."""
        sock.setblocking(False)
        self._track(name, _Tracked(sock, ns))
        self._remember(self._tracked[name])
        return sock

    def sock(self, name: str) -> Socket:
        sock = self._tracked[name].sock
        assert sock is not None, f"{name} is closed"
        return sock

    def listener(self, name: str, host: str, backlog: int, *, ns: str | None = None, port: int = 0,
                 defer_accept: int = 0, note: str = "") -> Socket:
        """socket + bind + listen as one server step."""
        began = self._now()
        sock = self.socket(name, ns=ns)
        if defer_accept:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer_accept)
        sock.bind((host, port))
        sock.listen(backlog)
        self._tracked[name].listening = True
        extra = f" TCP_DEFER_ACCEPT={defer_accept}" if defer_accept else ""
        self.record("server", f"{name}: socket() bind({_addr(sock.getsockname())}){extra} listen({backlog})", "ok",
                    note=note, began=began, returned=self._now())
        return sock

    def close(self, name: str, side: str, *, linger_rst: bool = False, note: str = "",
              settle: Callable[[], bool] | None = None) -> None:
        """``close()`` as a step (with SO_LINGER {1, 0} first if asked)."""
        tracked = self._tracked[name]
        sock = tracked.sock
        assert sock is not None, f"{name} is closed already"
        self._remember(tracked)
        call = f"{name}: close()"
        if linger_rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            call = f"{name}: setsockopt(SO_LINGER, {{1, 0}}); close()"
        self.readiness.forget(sock.fileno())
        began = self._now()
        sock.close()
        tracked.sock = None
        returned = self._now()
        if settle is not None:
            self.wait(settle)
        self.record(side, call, "ok", note=note, began=began, returned=returned)

    def forget(self, name: str) -> None:
        """Stop tracking a socket whose fd left us another way (handed to a child)."""
        tracked = self._tracked[name]
        if tracked.sock is not None:
            self._remember(tracked)
            self.readiness.forget(tracked.sock.fileno())
            tracked.sock.close()
            tracked.sock = None

    def _remember(self, tracked: _Tracked) -> None:
        sock = tracked.sock
        if sock is None:
            return
        try:
            tracked.local = sock.getsockname()
        except OSError:
            pass
        try:
            tracked.remote = sock.getpeername()
        except OSError:
            pass

    # --------------------------------------------------------------- calls

    def do(self, side: str, call: str, fn: Callable[[], Any], *, note: str = "",
           settle: Callable[[], Any] | None = None, fmt: Callable[[Any], str] = show,
           code: Callable[[Any], int] | None = None) -> Any:
        """Make one call; record it with its result (or errno) and the world
        after it. ``settle``: wait (bounded) for that to hold before looking,
        for what the kernel does a moment after the call returns. ``code``:
        the call returns an errno number rather than raising (connect_ex,
        SO_ERROR). Returns the call's value, or the OSError it raised."""
        err: str | None = None
        began = self._now()
        try:
            value = fn()
            returned = self._now()
            result = fmt(value)
            if code is not None and code(value):
                err = errno_name(code(value))
                result = err
        except OSError as exc:
            returned = self._now()
            value = exc
            err = errno_name(exc.errno) if exc.errno is not None else type(exc).__name__
            result = f"{err} ({type(exc).__name__})"
        if settle is not None:
            self.wait(settle)
        self.record(side, call, result, errno=err, note=note, began=began, returned=returned)
        return value

    def connect(self, name: str, address: tuple[str, int], *, side: str = "client", note: str = "",
                settle: Callable[[], Any] | None = None) -> int:
        """Non-blocking ``connect()``: 0, EINPROGRESS or an errno at once."""
        result: int = self.do(side, f"{name}: connect({_addr(address)})", lambda: self.dial(name, address),
                              note=note, settle=settle, fmt=lambda v: errno_name(v) if v else "0 (connected)",
                              code=lambda v: v)
        return result

    def dial(self, name: str, address: tuple[str, int]) -> int:
        """``connect_ex`` without a step of its own: the tap is told the
        port first, and the socket is known as a connection's client end."""
        tracked = self._tracked[name]
        sock = self.sock(name)
        if self._capture is not None:
            self._capture.add_ports(address[1])
        tracked.target = (address[0], address[1])
        result = sock.connect_ex(address)
        self._remember(tracked)
        self._clients.append((name, tracked))
        return result

    def so_error(self, name: str, *, side: str = "client", note: str = "") -> int:
        sock = self.sock(name)
        result: int = self.do(side, f"{name}: getsockopt(SO_ERROR)",
                              lambda: sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), note=note,
                              fmt=lambda v: errno_name(v) if v else "0", code=lambda v: v)
        return result

    def accept(self, listener: str, name: str, *, note: str = "") -> Socket | None:
        """``accept()`` on ``listener``; the new socket is tracked as ``name``
        before the step is recorded, so the step shows it."""
        tracked = self._tracked[listener]
        sock = self.sock(listener)
        began = self._now()
        try:
            conn, peer = sock.accept()
        except OSError as exc:
            returned = self._now()
            err = errno_name(exc.errno) if exc.errno is not None else type(exc).__name__
            self.record("server", f"{listener}: accept()", f"{err} ({type(exc).__name__})", errno=err, note=note,
                        began=began, returned=returned)
            return None
        returned = self._now()
        self.adopt(name, conn, ns=tracked.ns)
        self.record("server", f"{listener}: accept()", f"fd {conn.fileno()} = {name}, peer {_addr(peer)}", note=note,
                    began=began, returned=returned)
        return conn

    def send(self, name: str, data: bytes, *, side: str, nosignal: bool = True, note: str = "",
             settle: Callable[[], bool] | None = None) -> Any:
        sock = self.sock(name)
        flags = socket.MSG_NOSIGNAL if nosignal else 0
        call = f"{name}: send({data!r}{', MSG_NOSIGNAL' if nosignal else ''})"
        return self.do(side, call, lambda: sock.send(data, flags), note=note, settle=settle,
                       fmt=lambda n: f"{n} (the kernel took them)")

    def recv(self, name: str, *, side: str, size: int = 4096, note: str = "",
             settle: Callable[[], bool] | None = None) -> Any:
        sock = self.sock(name)
        return self.do(side, f"{name}: recv({size})", lambda: sock.recv(size), note=note, settle=settle)

    def shutdown(self, name: str, *, side: str, note: str = "", settle: Callable[[], bool] | None = None) -> Any:
        sock = self.sock(name)
        return self.do(side, f"{name}: shutdown(SHUT_WR)", lambda: sock.shutdown(socket.SHUT_WR), note=note,
                       settle=settle)

    def setsockopt(self, name: str, level: int, option: int, value: int, *, side: str, label: str,
                   note: str = "") -> None:
        sock = self.sock(name)
        self.do(side, f"{name}: setsockopt({label}, {value})", lambda: sock.setsockopt(level, option, value),
                note=note)

    def drop(self, *names: str) -> None:
        """Abort sockets the rest of the timeline does not need, without a
        step: they leave the socket lines."""
        for name in names:
            tracked = self._tracked.pop(name)
            sock = tracked.sock
            if sock is not None:
                self._remember(tracked)
                self.readiness.forget(sock.fileno())
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                except OSError:
                    pass
                sock.close()

    def record(self, side: str, call: str, result: str, *, errno: str | None = None, note: str = "",
               began: float | None = None, returned: float | None = None) -> Step:
        """Append a step: ``call`` -> ``result``, and every socket as it is
        now; ``began``/``returned``: when the call ran (``_now()``), if it
        was a call."""
        step = Step(t=self._now(), side=side, call=call, result=result, errno=errno, sockets=self._views(),
                    note=note, began=began, returned=returned)
        self.steps.append(step)
        return step

    def _now(self) -> float:
        """Seconds since the scenario began (the timeline's clock)."""
        return time.monotonic() - self._t0

    def abort(self, *names: str, note: str = "") -> None:
        """Abort sockets the rest of the timeline does not need (SO_LINGER
        {1, 0}, close), as one lab step: their RST is on the wire."""
        began = self._now()
        for name in names:
            self._remember(self._tracked[name])
        self.drop(*names)
        self.record("lab", f"{', '.join(names)}: setsockopt(SO_LINGER, {{1, 0}}); close()", "ok", note=note,
                    began=began, returned=self._now())

    def observe(self, call: str, result: str, *, note: str = "") -> Step:
        """A kernel-side step: what the kernel reports (a counter, a list)."""
        return self.record("kernel", call, result, note=note)

    def wait(self, predicate: Callable[[], bool], timeout: float = 2.0) -> float | None:
        """Poll ``predicate`` until it holds (seconds it took) or ``timeout``
        passes (None). Bounded: never waits longer."""
        start = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - start
            if time.monotonic() - start >= timeout:
                return None
            time.sleep(WAIT_POLL)

    def wait_ready(self, name: str, timeout: float = 2.0) -> float | None:
        """Wait (bounded) in poll(2) until socket ``name`` reports anything
        but nothing: for an event that must not find the socket locked by a
        call of ours (``wait()``'s predicates take the socket lock: an ICMP
        error arriving then is kept only as a soft error)."""
        poller = select.poll()
        poller.register(self.sock(name).fileno(), select.POLLIN | select.POLLOUT)
        start = time.monotonic()
        return time.monotonic() - start if poller.poll(int(timeout * 1000)) else None

    def hung_up(self, name: str) -> bool:
        """poll(2) says HUP for socket ``name`` (closed, or both ways shut):
        asked without holding the socket, unlike TCP_INFO, which takes its
        lock (an ICMP error that finds it held is kept only as a soft one)."""
        poller = select.poll()
        poller.register(self.sock(name).fileno(), select.POLLIN)
        return any(events & select.POLLHUP for _, events in poller.poll(0))

    def fact(self, key: str, value: Any) -> None:
        self.facts[key] = value

    # ------------------------------------------------------- kernel views

    def addresses(self, name: str) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
        """(local, remote) of socket ``name`` as last seen (also once closed)."""
        tracked = self._tracked[name]
        self._remember(tracked)
        local = (tracked.local[0], tracked.local[1]) if tracked.local else None
        remote = (tracked.remote[0], tracked.remote[1]) if tracked.remote else None
        return local, remote

    def info(self, name: str) -> kernel.TcpInfo | None:
        sock = self._tracked[name].sock
        return kernel.tcp_info(sock) if sock is not None else None

    def state(self, name: str) -> str:
        """The TCP state of socket ``name`` as the kernel has it now."""
        return self._view(name, self._tracked[name], {}).state

    def diag(self, port: int, *, ns: str | None = None, states: set[str] | None = None) -> list[kernel.DiagSocket]:
        """sock_diag's list for ``port`` in namespace ``ns``."""
        with self._inside(ns):
            found = kernel.tcp_sockets(port, states, family=socket.AF_INET)  # the lab is IPv4 only
        return found or []

    def entry(self, name: str) -> kernel.DiagSocket | None:
        """sock_diag's entry for socket ``name``'s own four-tuple (also once
        its fd is closed: TIME_WAIT, FIN_WAIT2, LAST_ACK), or None."""
        local, remote = self.addresses(name)
        if local is None or remote is None:
            return None
        with self._inside(self._tracked[name].ns):
            return kernel.tcp_socket(local, remote)

    def count(self, address: tuple[str, int], state: str, *, ns: str | None = None) -> int:
        """Sockets in ``state`` with ``address`` (ip, port) at either end.
        The full address, not the port: a busy host has thousands of other
        connections, some with the same port number on another address.
        Safe only while one of our sockets holds that address (once it is
        free, another process's connection may take it as its own port):
        for one connection, ask ``entry()``."""
        return len(self.matching(address, state, ns=ns))

    def matching(self, address: tuple[str, int], state: str, *, ns: str | None = None) -> list[kernel.DiagSocket]:
        return [entry for entry in self.diag(address[1], ns=ns, states={state})
                if address in (entry.local, entry.remote)]

    def overflows(self, *, ns: str | None = None) -> dict[str, int]:
        """TcpExt ListenOverflows/ListenDrops of a namespace (this thread's)."""
        with self._inside(ns):
            found = kernel.listen_overflows("/proc/thread-self/net/netstat")
        return found or {"ListenOverflows": 0, "ListenDrops": 0}

    def _inside(self, ns: str | None):
        if ns is None or self.ns is None:
            assert ns is None, "a namespace was named but this scenario has none"
            return _nowhere()
        return self.ns.inside(ns)

    def _views(self) -> list[SockView]:
        ready = self.readiness.now()
        return [self._view(name, tracked, ready) for name, tracked in self._tracked.items()]

    def _view(self, name: str, tracked: _Tracked, ready: dict[int, dict[str, tuple[str, ...]]]) -> SockView:
        sock = tracked.sock
        if sock is None:
            return self._ghost(name, tracked)
        self._remember(tracked)
        info = kernel.tcp_info(sock)
        if info is None:
            return SockView(name, "?", True, ready=ready.get(sock.fileno(), {}))
        return SockView(name, info.state, True, detail=_detail(info), ready=ready.get(sock.fileno(), {}),
                        info={key: getattr(info, key) for key in INFO_FIELDS})

    def _ghost(self, name: str, tracked: _Tracked) -> SockView:
        """A socket we closed, as sock_diag still lists it (or "closed")."""
        if tracked.listening or tracked.local is None or tracked.remote is None:
            return SockView(name, "closed", False)
        with self._inside(tracked.ns):
            entry = kernel.tcp_socket(tracked.local[:2], tracked.remote[:2])
        if entry is None:
            return SockView(name, "closed", False)
        return SockView(name, entry.state, False, detail=_timer(entry))

    # ------------------------------------------------------------ the wire

    def open_wire(self, ns: str | None = None) -> None:
        """Tap the wire: on ``lo`` (host), keeping the ports the scenario
        connects to; in namespace ``ns``, every interface and port (the
        namespace has nothing but the scenario), ICMP errors too. Where no
        tap can be opened the reason is kept and the scenario runs as it
        would without one."""
        assert self._capture is None, "one tap per scenario"
        self._wire_where = f"every interface of namespace {ns}" if ns else "lo"
        try:
            # the socket that keeps time-stamping on is made here, in the host's namespace, not in ns
            if not stamping_on():
                raise CaptureUnavailable(0, f"the kernel did not switch packet time-stamping on within "
                                            f"{STAMPING_WAIT:g} s")
            with self._inside(ns):
                if ns is None:
                    self._capture = Capture(set(), interface="lo")
                else:
                    self._capture = Capture(None, icmp=True)
        except CaptureUnavailable as exc:
            self._wire_unavailable = exc.strerror or str(exc)
            return
        except OSError as exc:
            self._wire_unavailable = f"cannot open a packet capture: {exc}"
            return
        self._wire_unavailable = ""
        if not self.steps:
            self._t0 = time.monotonic()  # the timeline starts once the tap is ready (it may wait for time stamps)

    def finish_wire(self) -> WireCapture:
        """Close the tap and give the scenario's segments, each named by
        its connection (the client socket's name) and numbered from each
        side's ISN, in the kernel's time order."""
        if self._capture is None:
            return WireCapture(self._wire_where, [], self._wire_unavailable)
        packets = self._capture.read()  # a scenario's few dozen segments: the 4 MiB queue holds them all
        drops = self._capture.stats()[1]
        unstamped = self._capture.unstamped
        self._capture.close()
        self._capture = None
        conns: dict[tuple[Any, Any], tuple[str, str, Numbering]] = {}
        for name, tracked in self._clients:
            if tracked.local is not None and tracked.target is not None:
                local = (tracked.local[0], tracked.local[1])
                numbering = Numbering()
                conns[(local, tracked.target)] = (name, TO_SERVER, numbering)
                conns[(tracked.target, local)] = (name, TO_CLIENT, numbering)
        segments: list[Segment] = []
        foreign = 0
        for packet in sorted(packets, key=lambda p: p.time):
            found = conns.get((packet.src, packet.dst))
            if found is None:
                foreign += 1
                continue
            name, way, numbering = found
            seq, ack, window, again = numbering.number(packet, 0 if way == TO_SERVER else 1)
            src, dst = _addr(packet.src), _addr(packet.dst)
            if packet.icmp:
                # a router's error about the segment it quotes: it travels back to that segment's sender
                way = TO_CLIENT if way == TO_SERVER else TO_SERVER
                src, dst = packet.icmp_from or "?", src
            segments.append(Segment(
                t=packet.time - self._t0, conn=name, way=way, flags=packet.flag_text, seq=seq, ack=ack, win=window,
                length=packet.length, options=options_text(packet.options) if packet.flags & 0x02 else "",
                retransmission=again, src=src, dst=dst))
        return WireCapture(self._wire_where, segments, drops=drops, foreign=foreign, unstamped=unstamped)

    def sides(self) -> dict[str, str]:
        """Every socket the lab made or took, by name: "client" if it
        called connect(), else "server"."""
        clients = {name for name, _ in self._clients}
        return {name: "client" if name in clients else "server" for name, _ in self._everyone}

    # ------------------------------------------------------------ the rest

    def spawn(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """A child process this lab kills (by its pid) at the end."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(args, **kwargs)
        self._procs.append(proc)
        return proc

    def cleanup(self) -> None:
        """Abort every socket still open, end every child, delete every namespace."""
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        for tracked in self._tracked.values():
            sock = tracked.sock
            if sock is None:
                continue
            self.readiness.forget(sock.fileno())
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            except OSError:
                pass
            sock.close()
            tracked.sock = None
        self.readiness.close()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        self._procs.clear()
        if self.ns is not None:
            self.ns.close()


class _nowhere:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _detail(info: kernel.TcpInfo) -> str:
    if info.state == "LISTEN":
        return f"accept q {info.unacked}/{info.sacked}"
    if info.retransmits or info.backoff:
        return f"retrans {info.retransmits} rto {info.rto // 1000}ms"
    return ""


def _timer(entry: kernel.DiagSocket) -> str:
    if entry.timer is None:
        return ""
    text = f"timer {entry.timer} {entry.expires_ms / 1000:.1f}s"
    return text + (f" x{entry.retrans}" if entry.retrans else "")
