"""The close/echo server on Tornado (``TCPServer.handle_stream``)."""

from __future__ import annotations

import asyncio
import signal

from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.tcpserver import TCPServer

try:
    from ._common import BACKLOG, announce, announce_idle, parse_args
except ImportError:  # run by path: python reactor/tools/peers/tornado_server.py
    from _common import BACKLOG, announce, announce_idle, parse_args  # type: ignore[no-redef]


class Server(TCPServer):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    async def handle_stream(self, stream, address):
        if self.mode == "idle":
            await stream.read_until_close()
            return
        if self.mode == "close":
            stream.close()
            return
        try:
            while True:
                data = await stream.read_bytes(65536, partial=True)
                await stream.write(data)
        except StreamClosedError:
            pass


async def main(args) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sockets = bind_sockets(args.port, args.host, backlog=BACKLOG)
    server = Server(args.mode)
    server.add_sockets(sockets)
    announce(args.host, sockets[0].getsockname()[1])
    if args.idle_listener:
        idle_sockets = bind_sockets(0, args.host, backlog=BACKLOG)
        Server("idle").add_sockets(idle_sockets)
        announce_idle(args.host, idle_sockets[0].getsockname()[1])
    await stop.wait()
    server.stop()


if __name__ == "__main__":
    asyncio.run(main(parse_args(__doc__)))
