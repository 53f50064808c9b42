"""Non-blocking connect (reactor/_net/connector.py) on real sockets.

Loopback for what loopback can show: success, refusal (RST), a black hole
(a listener whose accept queue is full: Linux drops the SYN, so the client
waits for its deadline), Unix sockets, happy eyeballs with a scripted
resolver. Network namespaces the tests create themselves for what needs a
real path: ICMP unreachable from a router, a link lost under a connection.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import resource
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import reactor
from reactor import kernel
from reactor._core.states import TransitionError, check_table
from reactor._net.connector import (
    _TRANSITIONS,
    CONNECT_ERRORS,
    ConnectAttempt,
    Event,
    State,
    _combine,
    _interleave,
    connect_error,
)
from reactor._net.transport import Transport
from reactor.errors import ReactorStateError
from reactor.protocols import Protocol
from reactor.tools.stock import EchoProtocol

from .. import netns
from ..support import open_fds, record_moves, run_for, run_until


def _can_bind(host: str) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family) as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


HAS_IPV6 = socket.has_ipv6 and _can_bind("::1")
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback (::1) here")


# ------------------------------------------------------------------ helpers

class Client(Protocol):
    """Records what happens to it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.made = 0
        self.received = b""
        self.lost: list[Any] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.made += 1

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: Any) -> None:
        self.lost.append(exc)


class Outcome:
    """Done callbacks of one attempt, with when they ran."""

    def __init__(self, attempt: ConnectAttempt) -> None:
        self.attempt = attempt
        self.started = time.monotonic()
        self.calls: list[tuple[ConnectAttempt, float, bool]] = []
        attempt.add_done_callback(self)

    def __call__(self, attempt: ConnectAttempt) -> None:
        self.calls.append((attempt, time.monotonic() - self.started, attempt.cancelled()))

    @property
    def elapsed(self) -> float:
        return self.calls[0][1]

    def __bool__(self) -> bool:
        return bool(self.calls)


def closed_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def black_hole(host: str = "127.0.0.1") -> Iterator[tuple]:
    """The address of a listener whose accept queue is full and never drained.

    Linux answers a SYN to such a listener with nothing at all (it counts a
    ListenOverflow and drops it, SYN cookies or not), so a client sees what a
    firewall that drops would show: no answer until its deadline. Filled
    with blocking connects, each waited for with TCP_INFO until the kernel
    has queued it, until the queue holds more than its maximum (the kernel's
    "full" is ``current > max``): no timing guesses.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family)
    fill: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        while True:
            queue = kernel.listen_queue(listener)
            if queue is None:
                pytest.skip("TCP_INFO cannot report the accept queue here")
            current, maximum = queue
            if current > maximum:
                break
            client = socket.socket(family)
            fill.append(client)
            client.settimeout(2.0)
            client.connect(listener.getsockname())
            deadline = time.monotonic() + 2.0
            while kernel.listen_queue(listener)[0] <= current:  # type: ignore[index]
                assert time.monotonic() < deadline, "the kernel did not queue the connection"
                time.sleep(0.001)
        yield listener.getsockname()
    finally:
        for client in fill:
            client.close()
        listener.close()


def scripted(*sockaddrs: tuple, calls: list | None = None,
             gate: threading.Event | None = None) -> Callable[..., list]:
    """A resolver (getaddrinfo's signature) that answers ``sockaddrs`` in
    this order; records its calls; waits for ``gate`` if given."""

    def resolver(host: str, port: int, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> list:
        if calls is not None:
            calls.append((host, port, threading.get_ident()))
        if gate is not None:
            gate.wait(10)
        return [(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                 "", addr) for addr in sockaddrs]

    return resolver


def v6(port: int) -> tuple:
    return ("::1", port, 0, 0)


def leaked_fds(before: set[int]) -> set[int]:
    """The fds open now that were not in ``before``. No waiting: every fd
    of an attempt is closed on the loop, by the time its outcome is known,
    and nothing in these tests holds one on another thread."""
    return open_fds() - before


# ------------------------------------------------------------------ success

def test_connect_round_trip(loop: reactor.Reactor) -> None:
    before = open_fds()
    server_side: list[Transport] = []

    class Server(EchoProtocol):
        def connection_made(self, transport: Transport) -> None:
            server_side.append(transport)
            super().connection_made(transport)

    listener = loop.listen(Server)
    port = listener.address[1]
    made_in_factory = []

    def factory() -> Client:
        made_in_factory.append(time.monotonic())
        return Client()

    attempt = loop.connect(factory, "127.0.0.1", port)
    outcome = Outcome(attempt)
    assert not attempt.done() and not made_in_factory  # nothing happens inside connect()
    run_until(loop, lambda: bool(outcome))
    transport, protocol = attempt.result()
    assert attempt.exception() is None and not attempt.cancelled()
    assert protocol.made == 1 and protocol.transport is transport
    assert type(transport) is Transport and type(transport) is type(server_side[0])
    assert transport.get_extra_info("peername") == ("127.0.0.1", port)
    assert attempt.tried == (f"127.0.0.1:{port}",)
    assert "connected" in repr(attempt)

    transport.write(b"ping " * 1000)
    run_until(loop, lambda: len(protocol.received) == 5000)
    assert protocol.received == b"ping " * 1000
    transport.close()
    run_until(loop, lambda: protocol.lost == [None] and listener.stats.active == 0)
    listener.close()
    run_for(loop, 0.01)
    assert leaked_fds(before) == set()


def test_connect_unix_round_trip(loop: reactor.Reactor) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "echo.sock")
        listener = loop.listen_unix(EchoProtocol, path)
        before = open_fds()
        attempt = loop.connect_unix(Client, path)
        # A Unix connect() completes inside the syscall, but the attempt
        # reports it on the loop, never inside connect_unix().
        assert not attempt.done()
        outcome = Outcome(attempt)
        run_until(loop, lambda: bool(outcome))
        transport, protocol = attempt.result()
        assert transport.get_extra_info("peername") == path
        transport.write(b"hello")
        run_until(loop, lambda: protocol.received == b"hello")
        transport.close()
        run_until(loop, lambda: protocol.lost == [None])
        run_for(loop, 0.01)
        assert leaked_fds(before) == set()
        listener.close()


def test_done_callbacks_run_on_the_loop_in_order(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol)
    attempt = loop.connect(Client, "127.0.0.1", listener.address[1])
    order: list[str] = []
    attempt.add_done_callback(lambda a: order.append("first"))
    attempt.add_done_callback(lambda a: order.append("second"))
    run_until(loop, lambda: len(order) == 2)
    assert order == ["first", "second"]
    # Added after completion: scheduled with call_soon, not called inline.
    attempt.add_done_callback(lambda a: order.append("late"))
    assert order == ["first", "second"]
    run_until(loop, lambda: len(order) == 3)
    with pytest.raises(TypeError, match="fn"):
        attempt.add_done_callback(None)  # type: ignore[arg-type]
    attempt.result()[0].close()
    run_for(loop, 0.01)
    listener.close()


def test_a_failing_done_callback_fails_alone(loop: reactor.Reactor, errors: Any) -> None:
    listener = loop.listen(EchoProtocol)
    attempt = loop.connect(Client, "127.0.0.1", listener.address[1])
    seen = []

    def bad(a: ConnectAttempt) -> None:
        raise RuntimeError("callback bug")

    attempt.add_done_callback(bad)
    attempt.add_done_callback(seen.append)
    run_until(loop, lambda: bool(seen))
    (context,) = errors.take()
    assert isinstance(context["exception"], RuntimeError)
    attempt.result()[0].close()
    run_for(loop, 0.01)
    listener.close()


def test_result_and_exception_states(loop: reactor.Reactor) -> None:
    with black_hole() as address:
        attempt = loop.connect(Client, *address, timeout=5)
        with pytest.raises(reactor.InvalidStateError):
            attempt.result()
        with pytest.raises(reactor.InvalidStateError):
            attempt.exception()
        assert not attempt.done() and "pending" in repr(attempt)
        assert attempt.cancel() is True
        assert attempt.done() and attempt.cancelled()
        with pytest.raises(reactor.CancelledError):
            attempt.result()
        with pytest.raises(reactor.CancelledError):
            attempt.exception()
        assert attempt.cancel() is False
        run_for(loop, 0.01)


# ------------------------------------------------------------ the lifecycle

def test_the_table_is_whole_and_the_done_states_are_final() -> None:
    check_table(_TRANSITIONS, State, Event)
    assert {str(s) for s, row in _TRANSITIONS.items() if not row} == {"connected", "failed", "cancelled"}
    assert all(row[Event.CANCEL] is State.CANCELLED and row[Event.FAIL] is State.FAILED
               for row in _TRANSITIONS.values() if row)


def test_the_moves_of_a_connect_a_refusal_and_a_cancel(loop: reactor.Reactor,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    moves = record_moves(monkeypatch, ConnectAttempt)
    lst = loop.listen(EchoProtocol)
    attempt = loop.connect(Client, *lst.address)
    assert "pending (resolving)" in repr(attempt)
    run_until(loop, attempt.done)
    assert moves == [("resolving", "resolved", "connecting"), ("connecting", "succeed", "connected")]
    attempt.result()[0].close()
    moves.clear()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: refused
        refused = loop.connect(Client, *unused.getsockname())
        run_until(loop, refused.done)
    assert moves == [("resolving", "resolved", "connecting"), ("connecting", "fail", "failed")]
    moves.clear()
    cancelled = loop.connect(Client, "localhost", 9, resolver=lambda *args: [])  # never resolved in time
    cancelled.cancel()
    assert moves == [("resolving", "cancel", "cancelled")]
    run_for(loop, 0.01)  # the scheduled start finds it done, and does nothing
    assert moves == [("resolving", "cancel", "cancelled")] and cancelled.cancelled()


def test_an_illegal_move_raises_at_once(loop: reactor.Reactor) -> None:
    attempt = loop.connect(Client, "127.0.0.1", 9)
    with pytest.raises(TransitionError, match="no move from state resolving on handshake"):
        attempt._move(Event.HANDSHAKE)
    assert not attempt.done()
    attempt.cancel()
    with pytest.raises(TransitionError, match="no move from state cancelled on succeed"):
        attempt._move(Event.SUCCEED)
    assert attempt.cancel() is False and attempt.cancelled()  # cancel() is a no-op once done
    run_for(loop, 0.01)


def test_local_addr_binds_before_connecting(loop: reactor.Reactor) -> None:
    peers: list[Any] = []

    class Server(EchoProtocol):
        def connection_made(self, transport: Transport) -> None:
            peers.append(transport.get_extra_info("peername"))
            super().connection_made(transport)

    listener = loop.listen(Server)
    local_port = closed_port()
    attempt = loop.connect(Client, "127.0.0.1", listener.address[1], local_addr=("127.0.0.1", local_port))
    run_until(loop, lambda: attempt.done() and bool(peers))
    transport, _ = attempt.result()
    assert transport.get_extra_info("sockname") == ("127.0.0.1", local_port)
    assert peers == [("127.0.0.1", local_port)]
    transport.close()
    run_for(loop, 0.01)
    listener.close()


def test_local_addr_of_another_family_fails(loop: reactor.Reactor) -> None:
    attempt = loop.connect(Client, "127.0.0.1", 80, local_addr=("::1", 0))
    run_until(loop, attempt.done)
    exc = attempt.exception()
    assert isinstance(exc, OSError) and exc.errno == errno.EAFNOSUPPORT
    assert "127.0.0.1:80" in str(exc) and "local_addr" in str(exc)


def test_local_addr_that_cannot_be_bound_fails_naming_it(loop: reactor.Reactor) -> None:
    # 192.0.2.0/24 is TEST-NET-1: not an address of this host, so bind()
    # fails with EADDRNOTAVAIL and nothing is ever sent.
    attempt = loop.connect(Client, "127.0.0.1", 80, local_addr=("192.0.2.77", 0))
    run_until(loop, attempt.done)
    exc = attempt.exception()
    assert isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL
    assert "192.0.2.77" in str(exc) and "127.0.0.1:80" in str(exc)


def test_keepalive_and_user_timeout_are_set(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol)
    attempt = loop.connect(Client, "127.0.0.1", listener.address[1], keepalive=(7, 3, 4), user_timeout=1.5)
    run_until(loop, attempt.done)
    transport, _ = attempt.result()
    sock = transport.get_extra_info("socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1500
    transport.close()
    run_for(loop, 0.01)
    listener.close()


# ------------------------------------------------------------------ failures

def test_refused_is_fast(loop: reactor.Reactor) -> None:
    port = closed_port()
    calls = []
    attempt = loop.connect(lambda: calls.append(1), "127.0.0.1", port)
    outcome = Outcome(attempt)
    run_until(loop, lambda: bool(outcome))
    exc = attempt.exception()
    assert type(exc) is ConnectionRefusedError and exc.errno == errno.ECONNREFUSED
    assert f"127.0.0.1:{port}" in str(exc) and exc.address == f"127.0.0.1:{port}"  # type: ignore[union-attr]
    assert outcome.elapsed < 0.1
    assert calls == []  # the factory is only called on success
    with pytest.raises(ConnectionRefusedError):
        attempt.result()


def test_full_accept_queue_times_out_at_the_deadline(loop: reactor.Reactor) -> None:
    with black_hole() as address:
        before = open_fds()
        attempt = loop.connect(Client, *address, timeout=0.5)
        outcome = Outcome(attempt)
        run_until(loop, lambda: bool(outcome), timeout=5)
        exc = attempt.exception()
        assert isinstance(exc, reactor.ConnectTimeout) and isinstance(exc, TimeoutError)
        assert exc.errno == errno.ETIMEDOUT and f"{address[0]}:{address[1]}" in str(exc)
        assert 0.5 - 0.005 <= outcome.elapsed <= 0.8, outcome.elapsed
        run_for(loop, 0.05)
        assert leaked_fds(before) == set()
        assert len(outcome.calls) == 1


def test_cancel_before_completion(loop: reactor.Reactor) -> None:
    with black_hole() as address:
        before = open_fds()
        made = []
        attempt = loop.connect(lambda: made.append(1), *address, timeout=5)
        outcome = Outcome(attempt)
        run_until(loop, lambda: bool(attempt.tried))  # the SYN is out
        assert not attempt.done()
        assert len(open_fds() - before) == 1  # the SYN_SENT socket
        assert attempt.cancel() is True
        # Closed by cancel() itself, not on a later iteration.
        assert open_fds() - before == set()
        run_until(loop, lambda: bool(outcome))
        assert outcome.calls[0][2] is True  # the callback saw the cancellation
        run_for(loop, 0.3)
        assert len(outcome.calls) == 1 and made == []  # nothing later


def test_cancel_before_the_loop_runs(loop: reactor.Reactor) -> None:
    before = open_fds()
    attempt = loop.connect(Client, "127.0.0.1", 9)
    outcome = Outcome(attempt)
    assert attempt.cancel() is True
    assert not outcome  # done callbacks run on the loop
    run_until(loop, lambda: bool(outcome))
    run_for(loop, 0.05)  # and nothing after them: no start, no second call
    assert len(outcome.calls) == 1 and attempt.tried == ()
    assert open_fds() - before == set()


def test_reactor_close_ends_a_pending_attempt() -> None:
    before = open_fds()
    with black_hole() as address:
        loop = reactor.Reactor()
        attempt = loop.connect(Client, *address, timeout=5)
        seen = []
        attempt.add_done_callback(lambda a: seen.append(a.cancelled()))
        loop.call_later(0.05, loop.stop)
        loop.run()
        assert attempt.tried and not attempt.done()
        loop.close()
        assert seen == [True] and attempt.cancelled()
    assert leaked_fds(before) == set()


def test_failing_factory_goes_to_the_handler_and_fails_the_attempt(loop: reactor.Reactor, errors: Any) -> None:
    listener = loop.listen(EchoProtocol)
    before = open_fds()

    def factory() -> Protocol:
        raise RuntimeError("factory bug")

    attempt = loop.connect(factory, "127.0.0.1", listener.address[1])
    run_until(loop, attempt.done)
    assert isinstance(attempt.exception(), RuntimeError)
    (context,) = errors.take()
    assert context["exception"] is attempt.exception() and context["attempt"] is attempt
    run_until(loop, lambda: listener.stats.active == 0)
    assert leaked_fds(before) == set()
    # the loop carries on
    again = loop.connect(Client, "127.0.0.1", listener.address[1])
    run_until(loop, again.done)
    again.result()[0].close()
    run_for(loop, 0.01)
    listener.close()


def test_memory_error_setting_up_the_transport_fails_the_attempt(loop: reactor.Reactor, errors: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import reactor._net.connector as connector_mod

    listener = loop.listen(EchoProtocol)
    before = open_fds()
    made: list[Client] = []

    def no_memory(*args: Any, **kwargs: Any) -> Transport:
        raise MemoryError("Transport")

    monkeypatch.setattr(connector_mod, "Transport", no_memory)
    attempt = loop.connect(lambda: made.append(Client()) or made[-1], "127.0.0.1", listener.address[1])
    run_until(loop, attempt.done)
    assert isinstance(attempt.exception(), MemoryError)
    (context,) = errors.take()
    assert context["exception"] is attempt.exception() and "set up" in context["message"]
    assert made and made[0].made == 0 and made[0].lost == []  # never told connection_made: nor connection_lost
    run_until(loop, lambda: listener.stats.accepted == 1 and listener.stats.active == 0)
    assert leaked_fds(before) == set()  # the connected socket was closed, not left to the GC
    listener.close()


def test_failing_connection_made_fails_the_attempt(loop: reactor.Reactor, errors: Any) -> None:
    listener = loop.listen(EchoProtocol)
    before = open_fds()

    class Bad(Client):
        def connection_made(self, transport: Any) -> None:
            raise ValueError("connection_made bug")

    attempt = loop.connect(Bad, "127.0.0.1", listener.address[1])
    run_until(loop, attempt.done)
    assert isinstance(attempt.exception(), ValueError)
    (context,) = errors.take()
    assert context["exception"] is attempt.exception()
    assert loop.get_exception_handler() is errors  # the handler is ours again
    run_until(loop, lambda: listener.stats.active == 0)
    assert leaked_fds(before) == set()
    listener.close()


def test_connection_made_that_closes_is_still_a_success(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol)

    class Closer(Client):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.close()

    attempt = loop.connect(Closer, "127.0.0.1", listener.address[1])
    run_until(loop, attempt.done)
    transport, protocol = attempt.result()
    assert transport.is_closing()
    run_until(loop, lambda: protocol.lost == [None])
    listener.close()


def test_connect_unix_missing_path(loop: reactor.Reactor) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "nobody")
        attempt = loop.connect_unix(Client, path)
        run_until(loop, attempt.done)
        exc = attempt.exception()
        # What Linux says for a path that does not exist: ENOENT.
        assert isinstance(exc, FileNotFoundError) and exc.errno == errno.ENOENT
        assert path in str(exc)


def test_connect_unix_stale_socket_file(loop: reactor.Reactor) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stale.sock")
        with socket.socket(socket.AF_UNIX) as dead:
            dead.bind(path)  # the file stays after close: nobody listens on it
        attempt = loop.connect_unix(Client, path)
        run_until(loop, attempt.done)
        exc = attempt.exception()
        assert type(exc) is ConnectionRefusedError and exc.errno == errno.ECONNREFUSED and path in str(exc)


@contextlib.contextmanager
def full_unix_backlog(path: str) -> Iterator[socket.socket]:
    """A Unix listener (plain socket) whose backlog is full: the next
    non-blocking connect() gets EAGAIN."""
    listener = socket.socket(socket.AF_UNIX)
    fill: list[socket.socket] = []
    try:
        listener.bind(path)
        listener.listen(0)
        while True:
            client = socket.socket(socket.AF_UNIX)
            client.setblocking(False)
            if client.connect_ex(path) == errno.EAGAIN:
                client.close()
                break
            fill.append(client)
            assert len(fill) < 100
        yield listener
    finally:
        for client in fill:
            client.close()
        listener.close()


def test_connect_unix_full_backlog_waits_then_connects(loop: reactor.Reactor) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "busy.sock")
        with full_unix_backlog(path) as listener:
            accepted: list[socket.socket] = []
            attempt = loop.connect_unix(Client, path, timeout=5)
            outcome = Outcome(attempt)
            run_for(loop, 0.1)
            assert not attempt.done()  # EAGAIN: retrying, not failed, not "connected"
            accepted.append(listener.accept()[0])  # room for one more
            run_until(loop, lambda: bool(outcome))
            transport, protocol = attempt.result()
            assert 0.1 <= outcome.elapsed < 0.5
            transport.close()
            run_until(loop, lambda: protocol.lost == [None])
            for sock in accepted:
                sock.close()


def test_connect_unix_full_backlog_times_out(loop: reactor.Reactor) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "busy.sock")
        with full_unix_backlog(path):
            before = open_fds()
            attempt = loop.connect_unix(Client, path, timeout=0.3)
            outcome = Outcome(attempt)
            run_until(loop, lambda: bool(outcome))
            assert isinstance(attempt.exception(), reactor.ConnectTimeout)
            assert 0.3 - 0.005 <= outcome.elapsed < 0.6
            assert leaked_fds(before) == set()


# ------------------------------------------------------- resolution, eyeballs

def test_localhost_connects_well_under_the_eyeballs_delay(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol, "127.0.0.1")
    attempt = loop.connect(Client, "localhost", listener.address[1], happy_eyeballs_delay=0.25)
    outcome = Outcome(attempt)
    run_until(loop, lambda: bool(outcome))
    transport, _ = attempt.result()
    assert transport.get_extra_info("peername")[0] == "127.0.0.1"
    # Whether or not this host's "localhost" includes ::1, nothing waited
    # for the happy-eyeballs timer: ::1 (if tried) refused at once.
    assert outcome.elapsed < 0.2
    transport.close()
    run_for(loop, 0.01)
    listener.close()


@needs_ipv6
def test_first_address_refusing_starts_the_next_at_once(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol, "127.0.0.1")
    refused = v6(closed_port("::1"))
    resolver = scripted(refused, ("127.0.0.1", listener.address[1]))
    attempt = loop.connect(Client, "scripted.test", 1, happy_eyeballs_delay=1.0, resolver=resolver)
    outcome = Outcome(attempt)
    run_until(loop, lambda: bool(outcome))
    transport, _ = attempt.result()
    assert attempt.tried == (f"[::1]:{refused[1]}", f"127.0.0.1:{listener.address[1]}")
    assert transport.get_extra_info("peername") == ("127.0.0.1", listener.address[1])
    assert outcome.elapsed < 0.2  # well under the 1 s delay
    transport.close()
    run_for(loop, 0.01)
    listener.close()


def test_black_holed_first_address_starts_the_next_after_the_delay(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol, "127.0.0.1")
    with black_hole("127.0.0.1") as hole:
        before = open_fds()
        resolver = scripted(hole, ("127.0.0.1", listener.address[1]))
        attempt = loop.connect(Client, "scripted.test", 1, happy_eyeballs_delay=0.3, resolver=resolver)
        outcome = Outcome(attempt)
        run_until(loop, lambda: bool(outcome))
        transport, _ = attempt.result()
        assert attempt.tried == (f"127.0.0.1:{hole[1]}", f"127.0.0.1:{listener.address[1]}")
        assert transport.get_extra_info("peername") == ("127.0.0.1", listener.address[1])
        assert 0.3 - 0.005 <= outcome.elapsed < 0.55, outcome.elapsed
        transport.close()
        run_until(loop, lambda: listener.stats.active == 0)
        # the loser (still in SYN_SENT) was closed at once
        assert leaked_fds(before) == set()
    listener.close()


def test_without_eyeballs_delay_addresses_are_tried_one_at_a_time(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol, "127.0.0.1")
    with black_hole("127.0.0.1") as hole:
        resolver = scripted(hole, ("127.0.0.1", listener.address[1]))
        attempt = loop.connect(Client, "scripted.test", 1, timeout=0.4, happy_eyeballs_delay=None,
                               resolver=resolver)
        run_until(loop, attempt.done)
        # the first never answers, so the second is never tried
        assert attempt.tried == (f"127.0.0.1:{hole[1]}",)
        assert isinstance(attempt.exception(), reactor.ConnectTimeout)
    listener.close()


@needs_ipv6
def test_families_interleave_and_all_refused_is_still_refused(loop: reactor.Reactor) -> None:
    a6, b6 = v6(closed_port("::1")), v6(closed_port("::1"))
    a4, b4 = ("127.0.0.1", closed_port()), ("127.0.0.1", closed_port())
    resolver = scripted(a6, b6, a4, b4)
    attempt = loop.connect(Client, "scripted.test", 1, resolver=resolver)
    outcome = Outcome(attempt)
    run_until(loop, lambda: bool(outcome))
    expected = (f"[::1]:{a6[1]}", f"127.0.0.1:{a4[1]}", f"[::1]:{b6[1]}", f"127.0.0.1:{b4[1]}")
    assert attempt.tried == expected
    exc = attempt.exception()
    assert type(exc) is ConnectionRefusedError and exc.errno == errno.ECONNREFUSED
    assert [e.address for e in exc.exceptions] == list(expected)  # type: ignore[union-attr]
    assert all(type(e) is ConnectionRefusedError for e in exc.exceptions)  # type: ignore[union-attr]
    for address in expected:
        assert address in str(exc)
    assert outcome.elapsed < 0.2  # each refusal started the next at once


def test_deadline_with_several_addresses_lists_each(loop: reactor.Reactor) -> None:
    with black_hole("127.0.0.1") as hole:
        refused = ("127.0.0.1", closed_port())
        resolver = scripted(refused, hole)
        attempt = loop.connect(Client, "scripted.test", 1, timeout=0.4, resolver=resolver)
        run_until(loop, attempt.done)
        exc = attempt.exception()
        assert isinstance(exc, reactor.ConnectTimeout) and exc.errno == errno.ETIMEDOUT
        kinds = [type(e) for e in exc.exceptions]  # type: ignore[union-attr]
        assert kinds == [ConnectionRefusedError, reactor.ConnectTimeout]
        assert f"127.0.0.1:{refused[1]}" in str(exc) and f"127.0.0.1:{hole[1]}" in str(exc)


def test_resolver_runs_off_the_loop_and_numeric_hosts_skip_it(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol, "127.0.0.1")
    calls: list = []
    resolver = scripted(("127.0.0.1", listener.address[1]), calls=calls)
    attempt = loop.connect(Client, "named.test", 7, resolver=resolver)
    run_until(loop, attempt.done)
    assert calls == [("named.test", 7, calls[0][2])] and calls[0][2] != threading.get_ident()
    attempt.result()[0].close()

    def never(*args: Any) -> list:
        raise AssertionError("numeric addresses must not be resolved")

    numeric = loop.connect(Client, "127.0.0.1", listener.address[1], resolver=never)
    run_until(loop, numeric.done)
    numeric.result()[0].close()
    run_for(loop, 0.01)
    listener.close()


def test_resolution_failure_is_gaierror_naming_the_host(loop: reactor.Reactor) -> None:
    def failing(*args: Any) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    attempt = loop.connect(Client, "nowhere.test", 80, resolver=failing)
    run_until(loop, attempt.done)
    exc = attempt.exception()
    assert isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_NONAME
    assert "nowhere.test:80" in str(exc)

    empty = loop.connect(Client, "empty.test", 80, resolver=scripted())
    run_until(loop, empty.done)
    assert isinstance(empty.exception(), socket.gaierror)


LONG_LABEL = "a" * 64 + ".example"  # a label over 63 characters: the idna codec refuses it


@pytest.mark.parametrize("where", ["host", "local_addr", "resolver-raises-unicode-error"])
def test_a_name_that_cannot_be_idna_encoded_is_gaierror(loop: reactor.Reactor, where: str) -> None:
    calls: list = []

    def resolver(host: str, *args: Any) -> list:
        calls.append(host)
        if where == "resolver-raises-unicode-error":
            raise UnicodeError("the user's resolver encodes its own way")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))]

    if where == "host":
        attempt = loop.connect(Client, LONG_LABEL, 80, resolver=resolver)
    elif where == "local_addr":
        attempt = loop.connect(Client, "127.0.0.1", 80, local_addr=(LONG_LABEL, 0), resolver=resolver)
    else:
        attempt = loop.connect(Client, "fine.test", 80, resolver=resolver)
    assert not attempt.done()  # an error of the attempt, on the loop, not of connect()
    run_until(loop, attempt.done)
    exc = attempt.exception()
    assert type(exc) is socket.gaierror and exc.errno == socket.EAI_NONAME, repr(exc)
    if where == "resolver-raises-unicode-error":
        assert "fine.test:80" in str(exc) and calls == ["fine.test"]
    else:
        assert LONG_LABEL in str(exc) and "IDNA" in str(exc)
        assert calls == []  # no resolver ever sees a name that cannot be encoded


def test_an_idna_name_that_encodes_reaches_the_resolver(loop: reactor.Reactor) -> None:
    listener = loop.listen(EchoProtocol)
    calls: list = []
    attempt = loop.connect(Client, "bücher.test", 80,
                           resolver=scripted(("127.0.0.1", listener.address[1]), calls=calls))
    run_until(loop, attempt.done)
    assert calls[0][0] == "bücher.test"
    attempt.result()[0].close()
    run_for(loop, 0.01)
    listener.close()


def test_resolver_returning_garbage_fails_the_attempt(loop: reactor.Reactor) -> None:
    attempt = loop.connect(Client, "garbage.test", 80, resolver=lambda *args: [("not", "an", "addrinfo")])
    run_until(loop, attempt.done)
    assert attempt.exception() is not None


def test_cancel_during_resolution_drops_the_result(loop: reactor.Reactor, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = loop.listen(EchoProtocol, "127.0.0.1")
    gate = threading.Event()
    calls: list = []
    made = []
    # The lookup's result comes back through call_soon_threadsafe: record
    # when it does, so the test waits for the result itself, not a guess.
    delivered: list = []
    real_threadsafe = loop.call_soon_threadsafe

    def recording_threadsafe(callback: Callable[..., Any], *args: Any) -> Any:
        delivered.append(callback)
        return real_threadsafe(callback, *args)

    monkeypatch.setattr(loop, "call_soon_threadsafe", recording_threadsafe)
    resolver = scripted(("127.0.0.1", listener.address[1]), calls=calls, gate=gate)
    attempt = loop.connect(lambda: made.append(Client()), "slow.test", 1, resolver=resolver)
    outcome = Outcome(attempt)
    run_until(loop, lambda: bool(calls))  # the lookup is under way in a thread
    assert attempt.cancel()
    gate.set()
    run_until(loop, lambda: bool(delivered))  # the result is back on the loop ...
    loop.call_soon(loop.stop)
    loop.run()  # ... and its callback ran (it was queued before our stop)
    run_for(loop, 0.05)  # nothing follows from it
    assert len(outcome.calls) == 1 and outcome.calls[0][2] is True
    assert attempt.tried == () and made == [] and listener.stats.accepted == 0
    listener.close()


def test_deadline_during_resolution(loop: reactor.Reactor) -> None:
    gate = threading.Event()
    try:
        attempt = loop.connect(Client, "slow.test", 1, timeout=0.2, resolver=scripted(("127.0.0.1", 9), gate=gate))
        outcome = Outcome(attempt)
        run_until(loop, lambda: bool(outcome))
        exc = attempt.exception()
        assert isinstance(exc, reactor.ConnectTimeout) and "resolving" in str(exc)
        assert 0.2 - 0.005 <= outcome.elapsed < 0.5
    finally:
        gate.set()


def test_resolver_threads_stop_when_the_reactor_closes() -> None:
    loop = reactor.Reactor()
    try:
        gate = threading.Event()
        calls: list = []
        attempt = loop.connect(Client, "slow.test", 1, resolver=scripted(("127.0.0.1", 9), calls=calls, gate=gate))
        run_until(loop, lambda: bool(calls))  # a resolver thread is in the lookup
        assert any(t.name.startswith("reactor-resolver") for t in threading.enumerate())
    finally:
        loop.close()
        gate.set()
    assert attempt.cancelled()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("reactor-resolver") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "resolver threads still running after close()"
        time.sleep(0.01)


# ---------------------------------------------------------------- many at once

def test_a_thousand_concurrent_connects(loop: reactor.Reactor) -> None:
    if loop.max_fd is not None:
        pytest.skip(f"{loop.backend} cannot watch 2000 fds (FD_SETSIZE)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    try:
        before = open_fds()
        listener = loop.listen(EchoProtocol, backlog=2048)
        port = listener.address[1]
        attempts = [loop.connect(Client, "127.0.0.1", port, timeout=30) for _ in range(1000)]
        run_until(loop, lambda: all(a.done() for a in attempts), timeout=60)
        failures = [a.exception() for a in attempts if a.exception() is not None]
        assert failures == []
        run_until(loop, lambda: listener.stats.accepted == 1000, timeout=30)
        for attempt in attempts:
            attempt.result()[0].close()
        run_until(loop, lambda: listener.stats.active == 0 and all(a.result()[1].lost for a in attempts),
                  timeout=30)
        listener.close()
        run_for(loop, 0.01)
        assert leaked_fds(before) == set()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_select_backend_fd_limit_fails_the_attempt_cleanly(errors: Any) -> None:
    if "select" not in reactor.available_backends():
        pytest.skip("no select backend")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        pytest.skip("needs more than 1100 fds")
    with reactor.Reactor(backend="select") as loop:
        loop.set_exception_handler(errors)
        listener = loop.listen(EchoProtocol)
        before = open_fds()
        # Occupy every fd below FD_SETSIZE, so the attempt's socket lands above.
        fillers = []
        try:
            while not fillers or fillers[-1] < reactor.FD_SETSIZE - 1:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            attempt = loop.connect(Client, "127.0.0.1", listener.address[1])
            run_until(loop, attempt.done)
            assert isinstance(attempt.exception(), reactor.BackendLimitError)
        finally:
            for fd in fillers:
                os.close(fd)
        assert leaked_fds(before) == set()
        listener.close()
    assert errors.take() == []


def test_connect_unix_abstract_namespace(loop: reactor.Reactor) -> None:
    name = f"\0reactor-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(name)
        server.listen(1)
        attempt = loop.connect_unix(Client, name)
        assert attempt.address == f"@reactor-test-{os.getpid()}"
        run_until(loop, attempt.done)
        transport, protocol = attempt.result()
        peer, _ = server.accept()
        with peer:
            peer.sendall(b"abstract")
            run_until(loop, lambda: protocol.received == b"abstract")
        transport.close()
        run_until(loop, lambda: bool(protocol.lost))


# ------------------------------------------------------------------ arguments

BAD_CONNECT_ARGS = [
    ((None, "127.0.0.1", 80), {}, TypeError, "protocol_factory"),
    ((Client, 127, 80), {}, TypeError, "host"),
    ((Client, b"127.0.0.1", 80), {}, TypeError, "host"),
    ((Client, "", 80), {}, ValueError, "host"),
    ((Client, "127.0.0.1", "80"), {}, TypeError, "port"),
    ((Client, "127.0.0.1", True), {}, TypeError, "port"),
    ((Client, "127.0.0.1", 0), {}, ValueError, "port"),
    ((Client, "127.0.0.1", 65536), {}, ValueError, "port"),
    ((Client, "127.0.0.1", 80), {"timeout": 0}, ValueError, "timeout"),
    ((Client, "127.0.0.1", 80), {"timeout": -1}, ValueError, "timeout"),
    ((Client, "127.0.0.1", 80), {"timeout": math.nan}, ValueError, "timeout"),
    ((Client, "127.0.0.1", 80), {"timeout": "1"}, TypeError, "timeout"),
    ((Client, "127.0.0.1", 80), {"timeout": None}, TypeError, "timeout"),
    ((Client, "127.0.0.1", 80), {"happy_eyeballs_delay": -0.1}, ValueError, "happy_eyeballs_delay"),
    ((Client, "127.0.0.1", 80), {"happy_eyeballs_delay": math.nan}, ValueError, "happy_eyeballs_delay"),
    ((Client, "127.0.0.1", 80), {"happy_eyeballs_delay": "0.25"}, TypeError, "happy_eyeballs_delay"),
    ((Client, "127.0.0.1", 80), {"local_addr": "127.0.0.1"}, TypeError, "local_addr"),
    ((Client, "127.0.0.1", 80), {"local_addr": ("127.0.0.1", 70000)}, ValueError, "local_addr port"),
    ((Client, "127.0.0.1", 80), {"local_addr": (None, 0)}, TypeError, "local_addr host"),
    ((Client, "127.0.0.1", 80), {"keepalive": "yes"}, TypeError, "keepalive"),
    ((Client, "127.0.0.1", 80), {"keepalive": (0, 1, 1)}, ValueError, "keepalive"),
    ((Client, "127.0.0.1", 80), {"user_timeout": 0}, ValueError, "user_timeout"),
    ((Client, "127.0.0.1", 80), {"user_timeout": "1"}, TypeError, "user_timeout"),
    ((Client, "127.0.0.1", 80), {"resolver": 5}, TypeError, "resolver"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "name"), BAD_CONNECT_ARGS)
def test_bad_connect_arguments(args: tuple, kwargs: dict, error: type, name: str) -> None:
    with reactor.Reactor() as loop:
        before = set(loop._resources)
        with pytest.raises(error, match=name):
            loop.connect(*args, **kwargs)
        assert set(loop._resources) == before and not loop._timers and not loop._ready


@pytest.mark.parametrize(("args", "kwargs", "error", "name"), [
    ((None, "/tmp/x"), {}, TypeError, "protocol_factory"),
    ((Client, 5), {}, TypeError, "path"),
    ((Client, ""), {}, ValueError, "path"),
    ((Client, "/tmp/x"), {"timeout": 0}, ValueError, "timeout"),
    ((Client, "/tmp/x"), {"timeout": math.nan}, ValueError, "timeout"),
])
def test_bad_connect_unix_arguments(args: tuple, kwargs: dict, error: type, name: str) -> None:
    with reactor.Reactor() as loop:
        with pytest.raises(error, match=name):
            loop.connect_unix(*args, **kwargs)


def test_connect_on_a_closed_reactor() -> None:
    loop = reactor.Reactor()
    loop.close()
    with pytest.raises(ReactorStateError):
        loop.connect(Client, "127.0.0.1", 80)
    with pytest.raises(ReactorStateError):
        loop.connect_unix(Client, "/tmp/x")


def test_infinite_timeout_means_no_deadline(loop: reactor.Reactor) -> None:
    attempt = loop.connect(Client, "127.0.0.1", closed_port(), timeout=math.inf, happy_eyeballs_delay=math.inf)
    run_until(loop, attempt.done)
    assert isinstance(attempt.exception(), ConnectionRefusedError)


# ------------------------------------------------------------- the error table

def test_errno_table() -> None:
    assert CONNECT_ERRORS[errno.ECONNREFUSED] is ConnectionRefusedError
    assert CONNECT_ERRORS[errno.ETIMEDOUT] is reactor.ConnectTimeout
    assert CONNECT_ERRORS[errno.EHOSTUNREACH] is reactor.UnreachableError
    assert CONNECT_ERRORS[errno.ENETUNREACH] is reactor.UnreachableError
    for err, cls in CONNECT_ERRORS.items():
        exc = connect_error(err, "192.0.2.1:80")
        assert type(exc) is cls and exc.errno == err and "192.0.2.1:80" in str(exc)
    other = connect_error(errno.EADDRNOTAVAIL, "[::1]:80")
    assert type(other) is OSError and other.errno == errno.EADDRNOTAVAIL


def test_combined_errors_take_the_most_specific_shared_class() -> None:
    refused = connect_error(errno.ECONNREFUSED, "[::1]:80")
    unreachable = connect_error(errno.EHOSTUNREACH, "127.0.0.1:80")
    timeout = connect_error(errno.ETIMEDOUT, "10.0.0.1:80")
    both_refused = _combine("x:80", [refused, connect_error(errno.ECONNREFUSED, "127.0.0.1:80")])
    assert type(both_refused) is ConnectionRefusedError and both_refused.errno == errno.ECONNREFUSED
    mixed = _combine("x:80", [refused, unreachable])
    assert type(mixed) is ConnectionError and mixed.errno is None
    assert mixed.exceptions == (refused, unreachable)  # type: ignore[attr-defined]
    assert "[::1]:80" in str(mixed) and "127.0.0.1:80" in str(mixed)
    unrelated = _combine("x:80", [refused, timeout])
    assert type(unrelated) is OSError
    assert _combine("x:80", [refused]) is refused


def test_interleave_follows_rfc_8305() -> None:
    def info(family: int, n: int) -> tuple:
        return (family, socket.SOCK_STREAM, 6, "", n)

    a, b, c = (info(socket.AF_INET6, n) for n in (1, 2, 3))
    x, y = (info(socket.AF_INET, n) for n in (4, 5))
    assert _interleave([a, b, c, x, y]) == [a, x, b, y, c]
    assert _interleave([x, a, b]) == [x, a, b]
    assert _interleave([x, y]) == [x, y]


# ------------------------------------------------------- network namespaces

CONNECT_CHILD = r"""
import json, sys, time
import reactor

with reactor.Reactor() as loop:
    for target in sys.argv[1:]:
        host, _, port = target.rpartition(":")
        start = time.monotonic()
        attempt = loop.connect(reactor.Protocol, host, int(port), timeout=8)
        attempt.add_done_callback(lambda a: loop.stop())
        loop.run()
        exc = attempt.exception()
        if exc is None:
            attempt.result()[0].abort()
        print(json.dumps({
            "target": target, "elapsed": time.monotonic() - start,
            "type": type(exc).__name__ if exc else None, "errno": getattr(exc, "errno", None),
            "message": str(exc) if exc else None, "unreachable": isinstance(exc, reactor.UnreachableError),
        }), flush=True)
"""

LOST_LINK_CLIENT = r"""
import json, sys, time
import reactor

def emit(**fields):
    print(json.dumps(fields), flush=True)

class Client(reactor.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        emit(event="connected")
        self.tick()

    def tick(self):
        if not self.transport.is_closing():
            self.transport.write(b"x" * 1000)
            loop.call_later(0.1, self.tick)

    def connection_lost(self, exc):
        emit(event="lost", type=type(exc).__name__ if exc else None, errno=getattr(exc, "errno", None),
             message=str(exc), at=time.monotonic())
        loop.stop()

def done(attempt):
    if attempt.exception() is not None:
        emit(event="failed", message=str(attempt.exception()))
        loop.stop()

with reactor.Reactor() as loop:
    attempt = loop.connect(Client, sys.argv[1], int(sys.argv[2]), timeout=5, user_timeout=1.0)
    attempt.add_done_callback(done)
    loop.run()
"""

SINK_SERVER = r"""
import json, socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(1)
print(json.dumps({"event": "listening"}), flush=True)
conn, _ = server.accept()
received = 0
try:
    while True:
        data = conn.recv(65536)
        if not data:
            break
        if received < 3000 <= received + len(data):
            print(json.dumps({"event": "received"}), flush=True)  # data flows: the link works
        received += len(data)
except OSError:
    pass
"""


@netns.mark
def test_unreachable_and_unrouted_in_a_namespace() -> None:
    with netns.Namespaces() as ns:
        name = ns.add()
        # Inside the namespace only: an "unreachable" route makes connect()
        # fail at once with EHOSTUNREACH; with no route at all (only lo is
        # there) it is ENETUNREACH. Not one packet leaves the namespace.
        ns.ip(name, "route", "add", "unreachable", "10.99.0.0/24")
        results = ns.run_python(name, CONNECT_CHILD, "10.99.0.5:80", "10.98.0.5:80")
    by_target = {r["target"]: r for r in results}
    host_unreachable, no_route = by_target["10.99.0.5:80"], by_target["10.98.0.5:80"]
    assert host_unreachable["unreachable"] and host_unreachable["errno"] == errno.EHOSTUNREACH
    assert "10.99.0.5:80" in host_unreachable["message"]
    assert no_route["unreachable"] and no_route["errno"] == errno.ENETUNREACH
    assert host_unreachable["elapsed"] < 1 and no_route["elapsed"] < 1


@netns.mark
def test_icmp_unreachable_from_a_router_arrives_through_so_error() -> None:
    with netns.Namespaces() as ns:
        client, router = ns.add(), ns.add()
        ns.veth(client, "10.202.0.2/24", router, "10.202.0.1/24")
        ns.ip(client, "route", "add", "10.99.0.0/24", "via", "10.202.0.1")
        # The router forwards, and has an "unreachable" route for the
        # target: it answers our SYN with ICMP host unreachable, which the
        # client's kernel turns into SO_ERROR = EHOSTUNREACH.
        ns.sysctl(router, "net/ipv4/ip_forward", "1")
        ns.ip(router, "route", "add", "unreachable", "10.99.0.0/24")
        (result,) = ns.run_python(client, CONNECT_CHILD, "10.99.0.7:80")
    assert result["unreachable"] and result["errno"] == errno.EHOSTUNREACH, result
    assert "10.99.0.7:80" in result["message"]
    assert result["elapsed"] < 5


@netns.mark
def test_lost_link_surfaces_as_timeout_with_user_timeout() -> None:
    import json

    with netns.Namespaces() as ns:
        client, server = ns.add(), ns.add()
        client_end, server_end = ns.veth(client, "10.201.0.1/24", server, "10.201.0.2/24")
        # A permanent neighbour entry: with the link down, ARP would fail
        # and the kernel would record EHOSTUNREACH as a soft error, which
        # TCP then reports instead of ETIMEDOUT. We want the silent case.
        mac = json.loads(ns.ip(server, "-j", "link", "show", server_end))[0]["address"]
        ns.ip(client, "neigh", "replace", "10.201.0.2", "lladdr", mac, "dev", client_end, "nud", "permanent")
        sink = netns.ChildLines(ns.popen_python(server, SINK_SERVER, "10.201.0.2", "9000"))
        assert sink.next(timeout=10) == {"event": "listening"}
        events = netns.ChildLines(ns.popen_python(client, LOST_LINK_CLIENT, "10.201.0.2", "9000"))
        assert events.next(timeout=10) == {"event": "connected"}
        assert sink.next(timeout=10) == {"event": "received"}  # data flows over the link
        ns.ip(server, "link", "set", server_end, "down")
        cut = time.monotonic()
        lost = events.next(timeout=10)
        assert lost["event"] == "lost", lost
        assert lost["type"] == "TimeoutError" and lost["errno"] == errno.ETIMEDOUT, lost
        # TCP_USER_TIMEOUT is 1 s: the connection died soon after the cut.
        assert lost["at"] - cut < 10
