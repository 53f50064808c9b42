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
    return parser


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
