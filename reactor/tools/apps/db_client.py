"""The database program under test: asyncpg or redis-py, on the loop
``--loop`` names, as a client of a real server the bench started.

``--connections`` connections, each its own worker on the paced schedule of
``_paced`` (``--rate`` operations per second in all). One operation is
``SELECT $1::int + 1`` (asyncpg: a prepared statement, one round trip) or a
``SET`` then a ``GET`` of the worker's own key (redis-py: two round trips).
This process is what is measured: it pins itself to ``--cpu`` and reads its
own CPU time at the edges of its window; the server runs on the other CPU.
Prints one JSON line (``_paced.Tally``) with ``loop``: the loop's class.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from ._paced import add_pacing_arguments, new_loop, pin, print_outcome, run_paced

CONNECT_TIMEOUT = 10.0
#: an operation that takes longer than this is an error, so that a run is bounded
OP_TIMEOUT = 5.0

Op = Callable[[], Awaitable[object]]


async def asyncpg_ops(args: argparse.Namespace) -> tuple[list[Op], Callable[[], Awaitable[None]]]:
    """One connection per worker and its operation, and how to close them all."""
    import asyncpg

    connections = [await asyncpg.connect(host=args.host, port=args.port, user=args.user, database="postgres",
                                         timeout=CONNECT_TIMEOUT) for _ in range(args.connections)]

    def op_for(k: int, connection: Any) -> Op:
        async def op() -> None:
            if await connection.fetchval("SELECT $1::int + 1", k, timeout=OP_TIMEOUT) != k + 1:
                raise RuntimeError("wrong answer")
        return op

    async def close() -> None:
        for connection in connections:
            await connection.close(timeout=CONNECT_TIMEOUT)

    return [op_for(k, c) for k, c in enumerate(connections)], close


async def redis_ops(args: argparse.Namespace) -> tuple[list[Op], Callable[[], Awaitable[None]]]:
    """One single-connection client per worker and its operation, and how to close them."""
    import redis.asyncio

    clients = [redis.asyncio.Redis(host=args.host, port=args.port, single_connection_client=True,
                                   socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=OP_TIMEOUT)
               for _ in range(args.connections)]
    for client in clients:
        await client.ping()

    def op_for(k: int, client: Any) -> Op:
        key, value = f"bench:{k}", b"x" * 16

        async def op() -> None:
            await client.set(key, value)
            if await client.get(key) != value:
                raise RuntimeError("wrong answer")
        return op

    async def close() -> None:
        for client in clients:
            await client.aclose()

    return [op_for(k, c) for k, c in enumerate(clients)], close


async def main(args: argparse.Namespace) -> dict[str, object]:
    ops, close = await (asyncpg_ops if args.client == "asyncpg" else redis_ops)(args)
    try:
        tally = await run_paced(ops, args.rate, args.warmup, args.duration, os.getpid())
    finally:
        await close()
    return {**tally.as_dict(), "loop": type(asyncio.get_running_loop()).__name__}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=["asyncpg", "redis"], required=True)
    parser.add_argument("--loop", choices=["reactor.aio", "uvloop", "asyncio"], required=True)
    parser.add_argument("--user", default="bench", help="the PostgreSQL role (asyncpg)")
    add_pacing_arguments(parser)
    args = parser.parse_args()
    pin(args.cpu)
    print_outcome(new_loop(args.loop), main(args))


if __name__ == "__main__":
    run()
