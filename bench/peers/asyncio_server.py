"""The close/echo server on asyncio (``loop.create_server`` + a Protocol);
``--uvloop`` runs the same code on uvloop."""

from __future__ import annotations

import asyncio
import signal
import sys

from _common import BACKLOG, announce, announce_idle, parse_args


class Close(asyncio.Protocol):
    def connection_made(self, transport):
        transport.close()


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(Close if args.mode == "close" else Echo, args.host, args.port,
                                      backlog=BACKLOG)
    announce(args.host, server.sockets[0].getsockname()[1])
    if args.idle_listener:
        idle = await loop.create_server(asyncio.Protocol, args.host, 0, backlog=BACKLOG)
        announce_idle(args.host, idle.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()


if __name__ == "__main__":
    use_uvloop = "--uvloop" in sys.argv
    if use_uvloop:
        sys.argv.remove("--uvloop")
    args = parse_args(__doc__)
    if use_uvloop:
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
