"""Memory per idle accepted connection, as tracemalloc counts it.

    python bench/idle_memory.py [--connections N] [--backend epoll] [--native on,off] [--after-echo]
                                [--api reactor|aio]

A child process opens N connections to a reactor listener in this process
(``--api aio``: an asyncio server on reactor.aio, ``loop.create_server``)
and keeps them open, silent; this process accepts them with a protocol that
does nothing (the connection stays registered for reading) and reports the
Python heap the N connections took, per connection, with the lines that
allocated most. With ``--after-echo`` each connection first sends 64 bytes
and reads them back, once all are connected: an idle keep-alive connection
that has served a request. The kernel's own
socket memory is not counted (it is the same for every server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

from reactor import Protocol, Reactor

#: bound on accepting every connection
ACCEPT_DEADLINE = 60.0

CLIENT = """
import socket, sys
conns = [socket.create_connection(("127.0.0.1", {port})) for _ in range({n})]
if {echo}:
    for conn in conns:
        conn.sendall(b"x" * 64)
    for conn in conns:
        got = b""
        while len(got) < 64:
            got += conn.recv(64 - len(got))
print("connected", flush=True)
sys.stdin.read()  # hold them until the parent closes our stdin
"""


class Idle(Protocol):
    """Accepts and waits: nothing per connection beyond what reactor keeps."""

    accepted = 0
    echoed = 0

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        Idle.accepted += 1
        self.transport = transport

    def data_received(self, data):  # type: ignore[no-untyped-def]
        self.transport.write(data)
        Idle.echoed += 1


def _reactor_server(backend: str, native: bool) -> tuple[int, Callable[[], None], Callable[[], None]]:
    """A reactor listener of ``Idle``: its port, one loop iteration, the close."""
    reactor = Reactor(backend, native=native)
    listener = reactor.listen(Idle, "127.0.0.1", 0, backlog=4096)
    return listener.socket.getsockname()[1], reactor._run_once, reactor.close


def _aio_server(backend: str, native: bool) -> tuple[int, Callable[[], None], Callable[[], None]]:
    """The same on reactor.aio: an asyncio server whose protocol does what
    ``Idle`` does (the accept drain follows REACTOR_NATIVE there)."""
    import asyncio

    import reactor.aio

    class AioIdle(asyncio.Protocol):
        # Idle's own methods: they use only the transport, which asyncio's
        # protocols get the same way
        connection_made = Idle.connection_made
        data_received = Idle.data_received

    loop = reactor.aio.new_event_loop(backend=backend)
    server = loop.run_until_complete(loop.create_server(AioIdle, "127.0.0.1", 0, backlog=4096))

    def close() -> None:
        server.close()
        loop.close()

    return server.sockets[0].getsockname()[1], loop._run_once, close  # type: ignore[attr-defined]


def measure(api: str, backend: str, native: bool, n: int, top: int, after_echo: bool) -> None:
    Idle.accepted = Idle.echoed = 0
    port, run_once, close = (_aio_server if api == "aio" else _reactor_server)(backend, native)
    client = subprocess.Popen([sys.executable, "-c", CLIENT.format(port=port, n=n, echo=after_echo)],
                              stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        deadline = time.monotonic() + ACCEPT_DEADLINE
        while (Idle.echoed if after_echo else Idle.accepted) < n and time.monotonic() < deadline:
            run_once()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        if (Idle.echoed if after_echo else Idle.accepted) < n:
            raise SystemExit(f"only {Idle.accepted} of {n} connections accepted, {Idle.echoed} echoed, "
                             f"in {ACCEPT_DEADLINE:g} s")
        stats = after.compare_to(before, "lineno")
        total = sum(s.size_diff for s in stats)
        print(f"{api} {backend} native={'on' if native else 'off'}: {n} idle connections"
              f"{' after one echo each' if after_echo else ''}, "
              f"{total / n:.0f} B per connection")
        for stat in stats[:top]:
            frame = stat.traceback[0]
            print(f"  {stat.size_diff / n:6.0f} B  {frame.filename}:{frame.lineno}")
    finally:
        assert client.stdin is not None
        client.stdin.close()
        client.wait(30)
        close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000, help="idle connections (default 10000)")
    parser.add_argument("--backend", default="epoll", help="select, poll or epoll (default epoll)")
    parser.add_argument("--native", default="on,off", help="on, off or on,off (default on,off)")
    parser.add_argument("--top", type=int, default=6, help="allocating lines to show (default 6)")
    parser.add_argument("--after-echo", action="store_true", help="each connection echoes 64 bytes first")
    parser.add_argument("--api", choices=("reactor", "aio"), default="reactor",
                        help="reactor's own API, or an asyncio server on reactor.aio (default reactor)")
    args = parser.parse_args()
    if not 1 <= args.connections <= 15_000:
        parser.error("--connections must be 1..15000 (both ends' fds must fit under ulimit -n)")
    for mode in args.native.split(","):
        if mode not in ("on", "off"):
            parser.error(f"--native takes on and off, not {mode!r}")
        if args.api == "aio" and mode == "off":
            os.environ["REACTOR_NATIVE"] = "0"  # the accept drain's switch (read at each loop's making)
        measure(args.api, args.backend, mode == "on", args.connections, args.top, args.after_echo)


if __name__ == "__main__":
    main()
