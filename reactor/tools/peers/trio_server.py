"""The close/echo server on trio (``trio.serve_tcp``)."""

from __future__ import annotations

import signal

import trio

try:
    from ._common import BACKLOG, announce, announce_idle, parse_args
except ImportError:  # run by path: python reactor/tools/peers/trio_server.py
    from _common import BACKLOG, announce, announce_idle, parse_args  # type: ignore[no-redef]


async def close_handler(stream):
    await stream.aclose()


async def echo_handler(stream):
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass


async def idle_handler(stream):
    async for _ in stream:
        pass


async def main(args) -> None:
    handler = close_handler if args.mode == "close" else echo_handler
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: trio.serve_tcp(handler, args.port, host=args.host, backlog=BACKLOG,
                                               task_status=task_status)
        )
        announce(args.host, listeners[0].socket.getsockname()[1])
        if args.idle_listener:
            idle = await nursery.start(
                lambda task_status: trio.serve_tcp(idle_handler, 0, host=args.host, backlog=BACKLOG,
                                                   task_status=task_status)
            )
            announce_idle(args.host, idle[0].socket.getsockname()[1])
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    trio.run(main, parse_args(__doc__))
