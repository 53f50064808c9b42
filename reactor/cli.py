"""``python -m reactor``: info, serve, bench.

Argument errors exit 2 with a usage message (argparse's convention); runtime
failures such as an address in use exit 1 with a message naming the cause.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence

from . import __version__, kernel, native
from .backends import available_backends, backend_info

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m reactor",
        description="A selectors-based reactor: serve, benchmark accept throughput, compare backends.",
    )
    parser.add_argument("--version", action="version", version=f"reactor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    info = commands.add_parser("info", help="backends, kernel limits and accelerator status of this machine")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    info.set_defaults(run=run_info)

    serve = commands.add_parser("serve", help="serve a stock protocol until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=_port, default=8888, help="TCP port; 0 picks a free one (default: 8888)")
    serve.add_argument("--unix", metavar="PATH", help="listen on a Unix stream socket instead of TCP")
    serve.add_argument("--protocol", choices=["echo", "discard", "close", "http"], default="echo")
    serve.add_argument("--backend", choices=["auto", *available_backends()], default="auto")
    serve.add_argument("--native", choices=["auto", "on", "off"], default="auto",
                       help="use the C accept drain: auto (if built), on (required), off")
    serve.add_argument("--backlog", type=_positive_int, default=None,
                       help="listen backlog (default: min(4096, somaxconn); clamped to somaxconn)")
    serve.add_argument("--max-accepts", type=_positive_int, default=None, help="accepts per readiness event")
    serve.add_argument("--on-exhausted", choices=["pause", "shed"], default="pause",
                       help="when out of fds: pause accepting with backoff, or shed the surplus connections")
    serve.add_argument("--stats-interval", type=_positive_float, default=None, metavar="S",
                       help="print a stats line every S seconds (also on SIGUSR1)")
    serve.add_argument("--grace", type=_non_negative_float, default=5.0, metavar="S",
                       help="on SIGINT/SIGTERM, abort connections not closed after S seconds (default: 5)")
    serve.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                       help="run N worker processes on one port with SO_REUSEPORT (default: 1)")
    # Set by the supervisor for its workers: bind with SO_REUSEPORT.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(run=run_serve, parser=serve)
    return parser


def _worker_args(args: argparse.Namespace) -> list[str]:
    """The serve arguments each worker process gets (not --port/--workers)."""
    worker = ["--host", args.host, "--protocol", args.protocol, "--backend", args.backend,
              "--native", args.native, "--on-exhausted", args.on_exhausted, "--grace", str(args.grace)]
    for flag, value in (("--backlog", args.backlog), ("--max-accepts", args.max_accepts),
                        ("--stats-interval", args.stats_interval)):
        if value is not None:
            worker += [flag, str(value)]
    return worker


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, not {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; exit 1 with a message if the address is unusable."""
    from .errors import NativeUnavailableError
    from .server import ServeConfig, serve

    if args.workers > 1 and args.unix:
        args.parser.error("--workers needs a TCP address, not --unix")
    config = ServeConfig(
        host=args.host, port=args.port, unix=args.unix, protocol=args.protocol, backend=args.backend,
        native={"auto": "auto", "on": True, "off": False}[args.native], backlog=args.backlog,
        grace=args.grace, stats_interval=args.stats_interval, on_exhausted=args.on_exhausted,
        max_accepts=args.max_accepts, reuse_port=args.reuse_port,
    )
    try:
        if args.workers > 1:
            from .workers import supervise

            return supervise(config, args.workers, _worker_args(args))
        return serve(config)
    except (OSError, NativeUnavailableError) as exc:
        print(f"python -m reactor serve: error: {exc}", file=sys.stderr)
        return 1


def machine_facts() -> dict:
    """What ``info`` reports, as a dict (also recorded by the benchmarks)."""
    soft, hard = kernel.fd_limits()
    backends = available_backends()
    return {
        "reactor": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "kernel": platform.release(),
        "cpus": _cpu_count(),
        "backends": {
            name: {
                "max_fd": backend_info(name).max_fd,
                "scaling": backend_info(name).scaling,
                "resolution_s": backend_info(name).resolution,
            }
            for name in backends
        },
        "default_backend": backends[0],
        "somaxconn": kernel.somaxconn(),
        "fd_limit_soft": soft,
        "fd_limit_hard": hard,
        "native": native.native_available(),
        "native_error": native.native_error(),
        "native_env": native.env_setting(),
    }


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_info(args: argparse.Namespace) -> int:
    """Print the machine facts."""
    facts = machine_facts()
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"reactor {facts['reactor']} on {facts['python']}, kernel {facts['kernel']}, {facts['cpus']} CPUs")
    print(f"backends (best first): {', '.join(facts['backends'])}; default: {facts['default_backend']}")
    for name, backend in facts["backends"].items():
        limit = f"fd < {backend['max_fd']}" if backend["max_fd"] else "no fd ceiling"
        print(f"  {name:8} {backend['scaling']:9} {limit}")
    print(f"somaxconn: {facts['somaxconn']} (the largest effective listen backlog)")
    print(f"fd limit: soft {_limit(facts['fd_limit_soft'])}, hard {_limit(facts['fd_limit_hard'])}")
    if facts["native"]:
        status = "available"
    else:
        status = f"off: {facts['native_error']}"
    print(f"native accelerator: {status} (REACTOR_NATIVE={facts['native_env']})")
    return 0


def _limit(value: int) -> str:
    return "unlimited" if value < 0 else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m reactor``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
