"""Micro-benchmark: draining an accept queue of 1000 connections, pure vs C.

Run:  python -m pytest bench/bench_drain.py --benchmark-only -q

Each round's setup (not timed) connects 1000 loopback clients and waits until
the listener's accept queue holds all of them; the timed part drains it the
way the listener does, calling the drain with ``max_accepts = batch`` until it
reports EAGAIN. Teardown checks that all 1000 came out, then closes them.

Variants:
- ``pure``: ``drain_pure(sock._accept, n)``, the reference (blocking fds);
- ``pure+nonblock``: the same plus ``os.set_blocking(fd, False)`` per fd, which
  the listener must do on that path: the fair comparison with ...
- ``native``: ``NativeDrainer().drain(fd, n)``, one C call per batch, accept4() with
  SOCK_NONBLOCK | SOCK_CLOEXEC.

Clients bind to 127.0.0.2..127.0.0.17 and are closed with RST (SO_LINGER
{1, 0}): no TIME_WAIT is left behind, so rounds cannot run out of ports.
"""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from reactor import kernel, native
from reactor._net.accept import NativeDrainer, drain_pure
from reactor._net.sockopts import LINGER_RST

QUEUED = 1000
ROUNDS = 25
SOURCES = 16


class Round:
    """One round's clients and what the drain returned."""

    def __init__(self, lsock: socket.socket) -> None:
        self.lsock = lsock
        self.accepted: list[tuple[int, object]] = []
        self.clients: list[socket.socket] = []
        target = lsock.getsockname()
        for i in range(QUEUED):
            client = socket.socket()
            self.clients.append(client)
            client.bind((f"127.0.0.{2 + i % SOURCES}", 0))
            client.connect(target)
        deadline = time.monotonic() + 10
        while kernel.listen_queue(lsock)[0] < QUEUED:  # the last ACKs may still be in flight
            if time.monotonic() > deadline:
                raise RuntimeError("accept queue did not fill")
            time.sleep(0.001)

    def close(self) -> None:
        assert len(self.accepted) == QUEUED, len(self.accepted)
        for client in self.clients:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            client.close()
        for fd, _ in self.accepted:
            os.close(fd)


def drain_all_pure(r: Round, batch: int) -> None:
    accept = r.lsock._accept
    while True:
        accepted, _, err = drain_pure(accept, batch)
        r.accepted += accepted
        if err == errno.EAGAIN:
            return


def drain_all_pure_nonblock(r: Round, batch: int) -> None:
    accept = r.lsock._accept
    set_blocking = os.set_blocking
    while True:
        accepted, _, err = drain_pure(accept, batch)
        for fd, _ in accepted:
            set_blocking(fd, False)
        r.accepted += accepted
        if err == errno.EAGAIN:
            return


def drain_all_native(r: Round, batch: int) -> None:
    fd = r.lsock.fileno()
    drain = NativeDrainer().drain
    while True:
        accepted, _, err = drain(fd, batch)
        r.accepted += accepted
        if err == errno.EAGAIN:
            return


needs_native = pytest.mark.skipif(not native.native_available(), reason=f"no C accelerator: {native.native_error()}")
VARIANTS = [
    pytest.param(drain_all_pure, id="pure"),
    pytest.param(drain_all_pure_nonblock, id="pure+nonblock"),
    pytest.param(drain_all_native, id="native", marks=needs_native),
]


@pytest.fixture(scope="module")
def lsock():
    kernel.raise_fd_limit(4 * QUEUED + 256)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(min(4096, kernel.somaxconn()))
    sock.setblocking(False)
    if kernel.listen_queue(sock) is None or kernel.listen_queue(sock)[1] < QUEUED:
        sock.close()
        pytest.skip(f"the accept queue cannot hold {QUEUED} connections here (somaxconn {kernel.somaxconn()})")
    yield sock
    sock.close()


@pytest.mark.parametrize("batch", [64, 1024])
@pytest.mark.parametrize("drain_all", VARIANTS)
def test_drain_1000(benchmark, lsock: socket.socket, drain_all, batch: int) -> None:
    benchmark.group = f"drain 1000 queued, max_accepts={batch}"
    benchmark.extra_info["connections"] = QUEUED
    benchmark.pedantic(
        drain_all,
        setup=lambda: ((Round(lsock), batch), {}),
        teardown=lambda r, _batch: r.close(),
        rounds=ROUNDS,
        warmup_rounds=1,
    )
