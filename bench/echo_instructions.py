"""Instructions per echo round trip, counted by cachegrind: a figure the
noisy, shared machine cannot blur.

    python bench/echo_instructions.py [--loops reactor,aio,asyncio,uvloop] [--rounds 1000]
                                      [--code protocol|streams]

Each loop runs one in-process echo: 16 connections over loopback TCP, the
client and the server on the same loop, each client sending 64 bytes and
echoing back what it gets, ``--rounds`` times. The script runs itself under
``valgrind --tool=cachegrind`` twice, with N and 3N rounds, and reports
(Ir(3N) - Ir(N)) / (16 * 2N): the user-space instructions of one round trip
(a read and a write on each side), start-up and teardown cancelled out.
``--code streams`` runs the asyncio loops' echo as streams code instead
(``asyncio.start_server`` and ``open_connection``, a task per side that
awaits ``read`` and ``drain``): the path most asyncio programs take, through
StreamReader, futures and task wake-ups (reactor's own API has no streams).
Kernel work is not counted (CPU time in ``python -m reactor bench echo`` is
the figure with it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from typing import Any

CONNECTIONS = 16
MESSAGE = b"x" * 64
LOOPS = ("reactor", "aio", "asyncio", "uvloop")
#: bound on one run under valgrind (about 50x slower than native)
RUN_TIMEOUT = 600


class AsyncioEcho(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class AsyncioClient(asyncio.Protocol):
    def __init__(self, rounds: int, done: asyncio.Future[None]) -> None:
        self.left = rounds
        self.done = done

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(MESSAGE)

    def data_received(self, data: bytes) -> None:
        self.left -= 1
        if self.left:
            self.transport.write(data)
        else:
            self.done.set_result(None)


async def _stream_echo_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _stream_client(port: int, rounds: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(rounds):
        writer.write(MESSAGE)
        await writer.drain()
        got = 0
        while got < len(MESSAGE):
            got += len(await reader.read(65536))
    writer.close()
    await writer.wait_closed()


async def asyncio_streams_echo(rounds: int) -> None:
    server = await asyncio.start_server(_stream_echo_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    await asyncio.gather(*(_stream_client(port, rounds) for _ in range(CONNECTIONS)))
    server.close()


async def asyncio_echo(rounds: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(AsyncioEcho, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    done = [loop.create_future() for _ in range(CONNECTIONS)]
    for future in done:
        await loop.create_connection(lambda future=future: AsyncioClient(rounds, future), "127.0.0.1", port)
    await asyncio.gather(*done)
    server.close()


def reactor_echo(rounds: int) -> None:
    """The same echo on reactor's own API."""
    from reactor import Protocol, Reactor
    from reactor.tools.stock import EchoProtocol

    r = Reactor("epoll")
    left = [CONNECTIONS]

    class Client(Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.rounds = rounds
            transport.write(MESSAGE)

        def data_received(self, data: bytes) -> None:
            self.rounds -= 1
            if self.rounds:
                self.transport.write(data)
            else:
                left[0] -= 1
                if not left[0]:
                    r.stop()

    listener = r.listen(EchoProtocol, "127.0.0.1", 0)
    for _ in range(CONNECTIONS):
        r.connect(Client, "127.0.0.1", listener.address[1])
    r.run()
    r.close()


def run_one(loop: str, rounds: int, code: str = "protocol") -> None:
    if loop == "reactor":
        reactor_echo(rounds)
        return
    echo = asyncio_streams_echo if code == "streams" else asyncio_echo
    if loop == "aio":
        import reactor.aio
        reactor.aio.run(echo(rounds), backend="epoll")
    elif loop == "uvloop":
        import uvloop
        uvloop.run(echo(rounds))
    else:
        asyncio.run(echo(rounds))


def instructions(loop: str, rounds: int, code: str) -> int:
    """Ir of one run of ``loop`` under cachegrind."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--run", loop, "--rounds", str(rounds), "--code", code],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{loop}: the run under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", default=",".join(LOOPS), help=f"comma-separated, of {', '.join(LOOPS)}")
    parser.add_argument("--rounds", type=int, default=1000, help="round trips per connection, N (default 1000)")
    parser.add_argument("--code", choices=("protocol", "streams"), default="protocol",
                        help="the asyncio loops' echo: Protocol callbacks or streams (default protocol)")
    parser.add_argument("--run", choices=LOOPS, help=argparse.SUPPRESS)  # one measured run
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100_000:
        parser.error("--rounds must be 1..100000")
    if args.run:
        run_one(args.run, args.rounds, args.code)
        return
    loops = args.loops.split(",")
    for loop in loops:
        if loop not in LOOPS:
            parser.error(f"--loops takes {', '.join(LOOPS)}, not {loop!r}")
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (Debian: apt-get install valgrind)")
    n = args.rounds
    for loop in loops:
        if loop == "reactor" and args.code == "streams":
            print(f"{loop:8} skipped: reactor's own API has no streams")
            continue
        if loop == "uvloop":
            try:
                import uvloop  # noqa: F401
            except ImportError:
                print(f"{loop:8} skipped: not installed (pip install -e '.[peers]')")
                continue
        per_trip = (instructions(loop, 3 * n, args.code) - instructions(loop, n, args.code)) / (CONNECTIONS * 2 * n)
        print(f"{loop:8} {per_trip:8,.0f} instructions per round trip")


if __name__ == "__main__":
    main()
