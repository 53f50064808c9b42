"""Micro-benchmarks of the loop itself (pytest-benchmark).

Run: ``python -m pytest bench --benchmark-only`` (from a checkout, after
``pip install -e '.[test]'``); save with ``--benchmark-save=NAME`` or
``--benchmark-json=bench/results/...``. These are figures, not tests: the
machine is shared, so compare rows of one run, not runs of different days.
"""

from __future__ import annotations

import socket

import pytest

import reactor
from reactor.protocols import Protocol

BACKENDS = [name for name in ("select", "poll", "epoll") if name in reactor.available_backends()]


@pytest.fixture
def idle_pairs(request):
    """``request.param`` socketpairs with nothing to read."""
    pairs = [socket.socketpair() for _ in range(request.param)]
    yield pairs
    for a, b in pairs:
        a.close()
        b.close()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("idle_pairs", [0, 100, 450], indirect=True, ids=lambda n: f"idle{n}")
def test_loop_iteration(benchmark, backend, idle_pairs):
    """One loop iteration that runs one callback, with N idle fds watched:
    select and poll pay for every watched fd on every call, epoll does not."""
    with reactor.Reactor(backend=backend) as r:
        for a, _ in idle_pairs:
            r.add_reader(a, lambda: None)
        r.stop()  # run() does one iteration and returns

        def one_iteration():
            r.call_soon(r.stop)
            r.run()

        benchmark(one_iteration)
        for a, _ in idle_pairs:
            r.remove_reader(a)


def test_timer_schedule_and_cancel(benchmark):
    """call_later + cancel, the pattern of every timeout that does not fire."""
    with reactor.Reactor() as r:
        def schedule_and_cancel():
            for i in range(1000):
                r.call_later(10 + i * 1e-3, int).cancel()

        benchmark(schedule_and_cancel)


def test_timers_firing(benchmark):
    """1000 due timers run in one iteration."""
    with reactor.Reactor() as r:
        def fire():
            for _ in range(1000):
                r.call_later(0, int)
            r.call_later(0, r.stop)
            r.run()

        benchmark(fire)


class _Sink(Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.received = 0

    def data_received(self, data):
        self.received += len(data)


@pytest.mark.parametrize("size", [64, 16384])
def test_transport_round_trip(benchmark, size):
    """write() on one transport and data_received() on the other, over a Unix socketpair."""
    from reactor._net.transport import Transport

    with reactor.Reactor() as r:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        sender, receiver = _Sink(), _Sink()
        ta = Transport(r, a, sender)
        tb = Transport(r, b, receiver)
        r._resources.update((ta, tb))
        ta._start()
        tb._start()
        payload = b"x" * size

        def round_trip():
            target = receiver.received + size
            ta.write(payload)
            while receiver.received < target:
                r.call_soon(r.stop)
                r.run()

        benchmark(round_trip)
        ta.close()
        tb.close()
        r.call_soon(r.stop)
        r.run()


class _Echo(Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("conns", [1, 16])
def test_echo_batch(benchmark, backend, conns):
    """The echo data path as the server sees it: ``conns`` TCP clients each
    send 64 bytes, one loop iteration reads and echoes them all, the
    clients read the echoes. Per round: one wait, ``conns`` reads and
    writes (issue 13 measured this shape with cachegrind, in Ir per request:
    17,685 -> 14,342 for 16 connections on epoll)."""
    with reactor.Reactor(backend=backend) as r:
        lst = r.listen(_Echo, "127.0.0.1", 0)
        clients = [socket.create_connection(lst.address) for _ in range(conns)]
        try:
            for c in clients:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while lst.stats.accepted < conns:
                r.stop()
                r.run()
            msg = b"x" * 64

            def round_trip():
                for c in clients:
                    c.send(msg)
                r.stop()
                r.run()
                for c in clients:
                    got = 0
                    while got < 64:
                        try:
                            got += len(c.recv(4096, socket.MSG_DONTWAIT))
                        except BlockingIOError:
                            r.stop()
                            r.run()

            benchmark(round_trip)
        finally:
            for c in clients:
                c.close()
