"""The HTTP program under test: uvicorn with a plain ASGI app, or an aiohttp
web server, on the loop ``--loop`` names.

Both answer ``GET /`` (any path) with ``200``, ``text/plain`` and the 13
bytes of ``BODY``, keep-alive, with no access log (a log line per request
would be most of the cost measured). uvicorn runs its h11 protocol on every
loop: its httptools parser is an optional C extension, and one parser for
every row keeps the rows comparable; uvicorn picks the loop from its own
``loop`` setting (``reactor.aio:new_event_loop`` for reactor.aio, as in
``uvicorn --loop``). The listening socket is made here, so that the first
line, ``listening on HOST:PORT loop=NAME``, names a port already listening;
SIGTERM ends either server.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from ._paced import new_loop

BODY = b"hello, world\n"
#: uvicorn's loop setting for each loop name
UVICORN_LOOPS = {"reactor.aio": "reactor.aio:new_event_loop", "uvloop": "uvloop", "asyncio": "asyncio"}
BACKLOG = 1024


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app: the same 13 bytes for every request."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


def listening_socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, as getaddrinfo gives loop.create_server: stock asyncio sets
    # TCP_NODELAY on accepted sockets only when their proto says TCP, and
    # without it a response written in two sends (uvicorn's head, then body)
    # waits 40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def serve_uvicorn(sock: socket.socket, loop_name: str) -> None:
    import uvicorn

    config = uvicorn.Config(asgi_app, loop=UVICORN_LOOPS[loop_name], http="h11", lifespan="off",
                            access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


def serve_aiohttp(sock: socket.socket, loop_name: str) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    loop = new_loop(loop_name)
    try:
        web.run_app(app, sock=sock, loop=loop, print=None, access_log=None)
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=["uvicorn", "aiohttp"], required=True)
    parser.add_argument("--loop", choices=list(UVICORN_LOOPS), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = listening_socket(args.host, args.port)
    print(f"listening on {args.host}:{sock.getsockname()[1]} loop={args.loop}", flush=True)
    (serve_uvicorn if args.server == "uvicorn" else serve_aiohttp)(sock, args.loop)


if __name__ == "__main__":
    main()
