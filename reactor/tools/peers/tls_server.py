"""The TLS handshake server of ``python -m reactor bench tls``, in asyncio code.

Each connection is a TLS handshake and then a close (close_notify): the
server's work per connection is the handshake. The same code runs on the
loop chosen by ``--loop`` -- ``asyncio`` (stock), ``uvloop`` or ``reactor``
(``reactor.aio``) -- with the certificate ``--cert``/``--key``; reactor's own
API is ``python -m reactor serve --protocol close --tls-cert ... --tls-key ...``.
Prints ``listening on HOST:PORT`` and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import ssl

try:
    from ._common import BACKLOG, announce
except ImportError:  # run by path
    from _common import BACKLOG, announce  # type: ignore[no-redef]


class CloseAfterHandshake(asyncio.Protocol):
    """connection_made comes after the handshake under TLS: close at once."""

    def connection_made(self, transport):
        transport.close()


async def main(args) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = await loop.create_server(CloseAfterHandshake, args.host, args.port, backlog=BACKLOG, ssl=context)
    announce(args.host, server.sockets[0].getsockname()[1])
    await stop.wait()
    server.close()


def parse_args():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "reactor"], default="asyncio")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    elif args.loop == "reactor":
        import reactor.aio

        reactor.aio.run(main(args))
    else:
        asyncio.run(main(args))
