"""The HTTP/1.1 load: ``--connections`` keep-alive connections, one request
in flight on each (no pipelining), paced to ``--rate`` requests per second
in all (see ``_paced``), for ``--warmup`` then ``--duration`` seconds.

It is not the thing measured: it runs on its own CPU (``--cpu``) and reads
the server's CPU time (``--server-pid``) at the two edges of its window, so
that the server's CPU and the requests counted cover the same instants. It
runs on uvloop where installed (the cheapest client loop here; the same for
every row), else on stock asyncio. Prints one JSON line (``_paced.Tally``).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast

from ._paced import add_pacing_arguments, pin, print_outcome, run_paced

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: reactor-bench\r\n\r\n"
CONNECT_TIMEOUT = 10.0
#: an answer that takes longer than this is an error, so that a run is bounded
ANSWER_TIMEOUT = 5.0


class Client(asyncio.Protocol):
    """One keep-alive connection: ``get()`` sends a request and returns its status."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        status = self._complete()
        if status is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def _complete(self) -> int | None:
        """The status of a whole response at the buffer's head (removed), or None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return None
        del self.buffer[:end + 4 + length]
        return int(head.split(b" ", 2)[1])

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("the server closed the connection"))
        self.transport = None

    async def get(self) -> None:
        if self.transport is None:
            raise ConnectionResetError("the connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(REQUEST)
        try:
            status = await asyncio.wait_for(self.waiter, ANSWER_TIMEOUT)
        except TimeoutError:
            # a late answer would be taken for the next request's: drop the connection
            self.transport.close()
            self.transport = None
            raise
        if status != 200:
            raise RuntimeError(f"status {status}")


async def main(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(args.connections):
        _, client = await asyncio.wait_for(loop.create_connection(Client, args.host, args.port), CONNECT_TIMEOUT)
        clients.append(client)
    try:
        tally = await run_paced([client.get for client in clients], args.rate, args.warmup, args.duration,
                                args.server_pid)
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()
    return tally.as_dict()


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-pid", type=int, required=True)
    add_pacing_arguments(parser)
    args = parser.parse_args()
    pin(args.cpu)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    print_outcome(loop, main(args))


if __name__ == "__main__":
    run()
