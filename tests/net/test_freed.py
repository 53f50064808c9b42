"""Connections, attempts and their errors are freed by reference counting
alone: a reset storm must not leave thousands of dead transports (and their
sockets and buffers) waiting for the cyclic garbage collector.

The trap: an exception caught here has a traceback whose frames keep their
locals (``self`` among them) and, once finished, their callers' frames too.
An object that keeps such an exception -- a transport until its protocol is
told, a connect attempt for ``exception()`` -- sits in a cycle with it. Each
test runs with the cyclic GC off and checks weak references.
"""

from __future__ import annotations

import socket
import weakref

import pytest

import reactor

from ..support import LINGER_RST, CyclicGcOff, run_for, run_until

# ----------------------------------------------------------------- transports

@pytest.mark.parametrize("kind", ["told", "not-told", "keeps-the-error"])
def test_a_reset_connection_is_freed_at_once(loop, kind):
    """A peer's RST ends the connection with an exception raised in our own
    read; a transport that kept it (exception -> traceback -> frame -> the
    transport) would live in a cycle until the cyclic GC ran. With the GC
    off, every transport must be gone once connection_lost was delivered --
    also when the protocol keeps the error and the user keeps the protocol."""
    n = 20
    refs = []
    lost = []
    kept = []

    class NotTold(reactor.Protocol):  # connection_lost is the base no-op (EchoProtocol's case)
        def connection_made(self, transport):
            refs.append((weakref.ref(transport), weakref.ref(self)))

    class Told(NotTold):
        def connection_lost(self, exc):
            lost.append(type(exc))

    class KeepsTheError(Told):
        def connection_made(self, transport):
            super().connection_made(transport)
            kept.append(self)

        def connection_lost(self, exc):
            super().connection_lost(exc)
            self.error = exc

    cls = {"told": Told, "not-told": NotTold, "keeps-the-error": KeepsTheError}[kind]
    with CyclicGcOff():
        lst = loop.listen(cls)
        for _ in range(n):
            sock = socket.create_connection(lst.address, timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            sock.close()
        run_until(loop, lambda: lst.stats.accepted == n and lst.stats.active == 0
                  and (cls is NotTold or len(lost) == n))
        run_for(loop, 0.01)  # nothing deferred is left
        assert len(refs) == n
        assert [t for t, _ in refs if t() is not None] == []
        if kind == "keeps-the-error":
            assert all(isinstance(p.error, ConnectionResetError) for p in kept)
        else:
            assert lost == [ConnectionResetError] * len(lost)
            assert [p for _, p in refs if p() is not None] == []
        lst.close()


def test_a_connection_reset_found_by_writing_is_freed_at_once(loop, clients):
    """The same from write(): its frame holds the caller's buffer too."""
    refs = []

    class Quiet(reactor.Protocol):
        def connection_made(self, transport):
            refs.append(weakref.ref(transport))
            transport.pause_reading()  # the reset is found by the write below

        def connection_lost(self, exc):
            self.error = exc
            kept.append(self)

    kept = []
    with CyclicGcOff():
        lst = loop.listen(Quiet)
        client = clients.connect(lst.address)
        run_until(loop, lambda: refs)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        client.close()
        transport = refs[0]()
        run_until(loop, _reset_arrived(transport.get_extra_info("socket")))
        transport.write(b"x" * 100_000)  # EPIPE or ECONNRESET from send()
        del transport
        run_until(loop, lambda: kept)
        run_for(loop, 0.01)
        assert isinstance(kept[0].error, (BrokenPipeError, ConnectionResetError))
        assert refs[0]() is None
        lst.close()


TCP_CLOSE = 7  # tcp_info.tcpi_state once a reset arrived


def _reset_arrived(sock):
    return lambda: sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_CLOSE


# -------------------------------------------------------------- connect attempts

class Bad(reactor.Protocol):
    def connection_made(self, transport):
        made.append(weakref.ref(transport))
        raise ValueError("connection_made bug")


made: list = []


def _factory_bug():
    raise RuntimeError("factory bug")


@pytest.mark.parametrize("case", ["refused", "factory-raises", "connection_made-raises", "resolver-garbage",
                                  "resolver-fails"])
def test_a_failed_connect_attempt_is_freed_at_once(loop, errors, case):
    """A failed attempt keeps its error for exception(); that error must not
    hold the attempt (nor a transport) in a cycle. Where it was raised stays
    readable, as a note."""
    listener = loop.listen(reactor.Protocol)
    port = listener.address[1]
    made.clear()

    def gaierror(*args):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    start = {
        "refused": lambda: loop.connect(reactor.Protocol, "127.0.0.1", _closed_port()),
        "factory-raises": lambda: loop.connect(_factory_bug, "127.0.0.1", port),
        "connection_made-raises": lambda: loop.connect(Bad, "127.0.0.1", port),
        "resolver-garbage": lambda: loop.connect(reactor.Protocol, "x.test", 80, resolver=lambda *a: [("no",)]),
        "resolver-fails": lambda: loop.connect(reactor.Protocol, "x.test", 80, resolver=gaierror),
    }[case]
    with CyclicGcOff():
        attempt = start()
        # not run_until(loop, attempt.done): run_until's closure is itself a
        # cycle, and would keep what the predicate holds alive
        box = [attempt]
        run_until(loop, lambda: box[0].done())
        box.clear()
        exc = attempt.exception()
        assert exc is not None and exc.__traceback__ is None
        if case in ("factory-raises", "connection_made-raises", "resolver-garbage"):
            # raised inside our code: where is kept as text
            assert any("where it was raised" in note for note in exc.__notes__)
        ref = weakref.ref(attempt)
        del attempt, exc
        run_until(loop, lambda: listener.stats.active == 0)
        run_for(loop, 0.01)
        errors.take()  # the handler's contexts hold the attempt or transport: drop them
        assert ref() is None
        assert all(r() is None for r in made)  # the transport of connection_made-raises too
    listener.close()


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
