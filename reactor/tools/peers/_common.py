"""What every peer server shares: its arguments and its first line.

Each peer is the same two servers -- ``close`` (accept, close at once) and
``echo`` (send back what arrives) -- written with that framework's usual
public API, so that ``python -m reactor bench --peers ...`` compares engines,
not servers. Each prints ``listening on HOST:PORT`` once it listens and serves
until SIGTERM or SIGINT. With ``--idle-listener`` each also listens on a second,
ephemeral port whose connections it only holds open (``idle listener on
HOST:PORT``): the benchmark's idle connections, watched by the same loop.
"""

from __future__ import annotations

import argparse

BACKLOG = 4096


def make_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every peer takes; a peer may add its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=["close", "echo"], default="close")
    parser.add_argument("--idle-listener", action="store_true",
                        help="also listen on an ephemeral port whose connections are only held open")
    return parser


def parse_args(description: str) -> argparse.Namespace:
    return make_parser(description).parse_args()


def announce(host: str, port: int, extra: str = "") -> None:
    print(f"listening on {host}:{port}" + (f" {extra}" if extra else ""), flush=True)


def announce_idle(host: str, port: int) -> None:
    print(f"idle listener on {host}:{port}", flush=True)
