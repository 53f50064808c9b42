"""Limits for a server facing clients: ``idle_timeout`` (reactor/_net/idle.py)
and ``max_connections`` (reactor/_net/listener.py), on real loopback sockets.

What each test catches: a silent connection never closed (the fd pinned for
ever), or one closed early while it still talks; a stuck peer's connection
never freed because close() waits for a flush that cannot happen; a listener
that accepts past its limit, or never resumes below it; bad arguments.
"""

from __future__ import annotations

import math
import socket
import time
from typing import Any

import pytest

from ..support import Factory, Recorder, run_for, run_until


class EchoOnce(Recorder):
    """Answers the first bytes, then closes."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.transport.write(data)
        self.transport.close()


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset); never blocks."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


# ------------------------------------------------------------ idle_timeout

def test_a_silent_connection_is_closed_after_idle_timeout_and_a_busy_one_is_not(loop, clients):
    factory = Factory()
    lst = loop.listen(factory, idle_timeout=0.3)
    assert lst.idle_timeout == 0.3
    silent = clients.connect(lst.address)
    busy = clients.connect(lst.address)
    run_until(loop, lambda: factory.made == 2)
    start = time.monotonic()

    def talk() -> None:
        if not busy._closed:
            busy.send(b".")
            loop.call_later(0.05, talk)

    loop.call_soon(talk)
    run_until(loop, lambda: closed_by_peer(silent), timeout=3)
    elapsed = time.monotonic() - start
    # never before the limit; at most one sweep interval (a quarter) after it, plus slack
    assert 0.3 <= elapsed < 0.3 + 0.3 / 4 + 0.5, elapsed
    run_for(loop, 0.5)  # the busy one outlives the limit
    assert not closed_by_peer(busy) and lst.stats.idle_closed == 1
    assert lst.stats.active == 1
    busy.close()


def test_bytes_we_send_count_as_activity(loop, clients):
    class Ticker(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.tick()

        def tick(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(b".")
                loop.call_later(0.05, self.tick)

    lst = loop.listen(Factory(Ticker), idle_timeout=0.2)
    reader = clients.connect(lst.address)
    run_for(loop, 0.6)
    assert lst.stats.idle_closed == 0
    assert reader.recv(1000)  # the ticks arrived
    reader.close()


def test_a_stuck_peer_is_aborted_not_waited_for(loop, clients):
    # The client never reads: our queue cannot flush, so a graceful close
    # would wait for ever. The idle limit resets it instead.
    class Flood(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.write(b"x" * (8 << 20))

    factory = Factory(Flood)
    lst = loop.listen(factory, idle_timeout=0.2)
    stuck = socket.socket()
    clients.adopt(stuck)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(lst.address)
    run_until(loop, lambda: factory.made == 1 and factory.protocols[0].lost, timeout=5)
    assert lst.stats.idle_closed == 1 and lst.stats.active == 0
    stuck.setblocking(False)
    with pytest.raises(ConnectionResetError):  # RST: the queued bytes were dropped
        while stuck.recv(1 << 20):
            pass


def test_connect_idle_timeout_closes_the_client_side(loop):
    lst = loop.listen(Factory())  # a server that never speaks
    attempt = loop.connect(Recorder, "127.0.0.1", lst.address[1], idle_timeout=0.2)
    run_until(loop, attempt.done)
    client = attempt.result()[1]
    run_until(loop, lambda: bool(client.lost), timeout=3)
    assert client.lost == [None]
    run_until(loop, lambda: lst.stats.active == 0)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (math.inf, ValueError),
                                          (math.nan, ValueError), ("5", TypeError), (True, TypeError)])
def test_idle_timeout_arguments(loop, value, error):
    with pytest.raises(error, match="idle_timeout"):
        loop.listen(Recorder, idle_timeout=value)
    with pytest.raises(error, match="idle_timeout"):
        loop.connect(Recorder, "127.0.0.1", 9, idle_timeout=value)


# --------------------------------------------------------- max_connections

def test_max_connections_is_never_passed_and_everyone_is_served_in_turn(loop, clients):
    limit, count = 3, 12
    most = 0

    class Counted(EchoOnce):
        def connection_made(self, transport: Any) -> None:
            nonlocal most
            super().connection_made(transport)
            most = max(most, len(lst.connections()))

    factory = Factory(Counted)
    lst = loop.listen(factory, max_connections=limit, backlog=64)
    socks = [clients.connect(lst.address) for _ in range(count)]  # the kernel queue holds the rest
    for sock in socks:
        sock.sendall(b"hi")
    run_until(loop, lambda: factory.made == count and lst.stats.active == 0, timeout=10)
    assert most == limit
    assert lst.stats.limited >= 1 and lst.stats.accepted == count
    for sock in socks:
        sock.settimeout(5)
        assert sock.recv(2) == b"hi"


def test_the_limit_pauses_the_listener_and_one_close_resumes_it(loop, clients):
    factory = Factory()
    lst = loop.listen(factory, max_connections=2)
    first, _second, _third = (clients.connect(lst.address) for _ in range(3))
    run_until(loop, lambda: factory.made == 2 and lst.state == "limited")
    run_for(loop, 0.1)
    assert factory.made == 2 and lst.is_serving()  # the third waits in the kernel's queue
    lst.pause()
    assert lst.state == "paused"
    lst.resume()
    assert lst.state == "limited"  # still at the limit: not watching
    first.close()
    run_until(loop, lambda: factory.made == 3)
    assert lst.stats.active == 2


@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError), ("3", TypeError),
                                          (True, TypeError), (2.5, TypeError)])
def test_max_connections_arguments(loop, value, error):
    with pytest.raises(error, match="max_connections"):
        loop.listen(Recorder, max_connections=value)
