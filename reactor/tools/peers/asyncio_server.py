"""The close/echo server in asyncio code, run on the loop chosen by ``--loop``.

One script, so that literally the same code runs on every loop:

- ``--api protocol``: ``loop.create_server`` with an ``asyncio.Protocol``;
- ``--api streams``: ``asyncio.start_server`` with a reader/writer coroutine.

``--loop asyncio`` (the stock loop), ``uvloop``, or ``reactor`` (``reactor.aio``,
with ``--backend`` and ``--native`` as for ``python -m reactor serve``). On
``reactor`` only, the first line ends ``backend=NAME native=on|off`` and
SIGUSR1 prints the server's own counters (``server.stats``) as
``stats: accepted=N accepts/wakeup=X empty_wakeups=N``: the lines
``python -m reactor bench`` reads from ``python -m reactor serve``.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

try:
    from ._common import BACKLOG, announce, announce_idle, make_parser
except ImportError:  # run by path: python reactor/tools/peers/asyncio_server.py
    from _common import BACKLOG, announce, announce_idle, make_parser  # type: ignore[no-redef]

# ------------------------------------------------------------------ --api protocol


class Close(asyncio.Protocol):
    def connection_made(self, transport):
        transport.close()


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


# ------------------------------------------------------------------ --api streams


async def close_stream(reader, writer):
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass


async def echo_stream(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def idle_stream(reader, writer):
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    finally:
        writer.close()


# ------------------------------------------------------------------ serving


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.api == "protocol":
        server = await loop.create_server(Close if args.mode == "close" else Echo, args.host, args.port,
                                          backlog=BACKLOG)
    else:
        server = await asyncio.start_server(close_stream if args.mode == "close" else echo_stream, args.host,
                                            args.port, backlog=BACKLOG)
    extra = ""
    if args.loop == "reactor":
        loop.add_signal_handler(signal.SIGUSR1, report_stats, server)
        engine: Any = loop  # a reactor.aio loop: it has .backend and .native
        extra = f"backend={engine.backend} native={'on' if engine.native else 'off'}"  # as `reactor serve` says
    announce(args.host, server.sockets[0].getsockname()[1], extra)
    if args.idle_listener:
        if args.api == "protocol":
            idle = await loop.create_server(asyncio.Protocol, args.host, 0, backlog=BACKLOG)
        else:
            idle = await asyncio.start_server(idle_stream, args.host, 0, backlog=BACKLOG)
        announce_idle(args.host, idle.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()


def report_stats(server) -> None:
    stats = server.stats
    print(f"stats: accepted={stats.accepted} accepts/wakeup={stats.accepts_per_wakeup:.2f} "
          f"empty_wakeups={stats.empty_wakeups}", flush=True)


def parse_args():
    parser = make_parser(__doc__)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "reactor"], default="asyncio")
    parser.add_argument("--api", choices=["protocol", "streams"], default="protocol")
    parser.add_argument("--backend", default=None, help="--loop reactor: select, poll, epoll (default: auto)")
    parser.add_argument("--native", choices=["auto", "on", "off"], default="auto",
                        help="--loop reactor: the C accept drain: auto (if built), on (required), off")
    args = parser.parse_args()
    if args.loop != "reactor" and (args.backend is not None or args.native != "auto"):
        parser.error("--backend and --native apply to --loop reactor")
    return args


if __name__ == "__main__":
    args = parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    elif args.loop == "reactor":
        import reactor.aio

        natives: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
        native = natives[args.native]
        reactor.aio.run(main(args), backend=args.backend, native=native)
    else:
        asyncio.run(main(args))
