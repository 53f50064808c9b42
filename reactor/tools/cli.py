"""``python -m reactor``: info, serve, bench, lab.

Argument errors exit 2 with a usage message (argparse's convention); runtime
failures such as an address in use exit 1 with a message naming the cause.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import __version__
from .._core.backends import available_backends
from .._core.sweep import MIN_INTERVAL
from .bench_apps import APPS, LOOPS
from .benchmark import APIS, PEERS
from .facts import machine_facts

if TYPE_CHECKING:
    from .serve import ServeConfig

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
    serve.add_argument("--host", default=None,
                       help="address to bind (default: 127.0.0.1, loopback only); 0.0.0.0 is every IPv4 "
                            "interface, :: every IPv6 one and IPv6 only (IPV6_V6ONLY: IPv4 clients are not "
                            "served; the listening line shows [::]:PORT)")
    serve.add_argument("--port", type=_port, default=None, help="TCP port; 0 picks a free one (default: 8888)")
    serve.add_argument("--unix", type=_unix_path, metavar="PATH",
                       help=f"listen on a Unix stream socket instead of TCP (at most {MAX_UNIX_PATH} bytes)")
    serve.add_argument("--fd", type=_fd, default=None, metavar="N",
                       help="serve on the listening socket inherited as fd N, used as it is (socket activation; "
                            "systemd's LISTEN_FDS/LISTEN_PID are read too)")
    serve.add_argument("--protocol", choices=["echo", "discard", "close", "http"], default="echo")
    serve.add_argument("--backend", choices=["auto", *available_backends()], default="auto")
    serve.add_argument("--native", choices=["auto", "on", "off"], default="auto",
                       help="use the C accept drain: auto (if built), on (required), off")
    serve.add_argument("--backlog", type=_positive_int, default=None,
                       help="listen backlog (default: min(4096, somaxconn); clamped to somaxconn)")
    serve.add_argument("--max-accepts", type=_positive_int, default=None, help="accepts per readiness event")
    serve.add_argument("--on-exhausted", choices=["pause", "shed"], default="pause",
                       help="when out of fds: pause accepting with backoff, or shed the surplus connections")
    serve.add_argument("--stats-interval", type=_stats_interval, default=None, metavar="S",
                       help="print a stats line every S seconds (also on SIGUSR1)")
    serve.add_argument("--grace", type=_non_negative_float, default=5.0, metavar="S",
                       help="on SIGINT/SIGTERM, abort connections not closed after S seconds (default: 5)")
    serve.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                       help="run N worker processes on one port with SO_REUSEPORT (default: 1)")
    serve.add_argument("--idle-listener", action="store_true",
                       help="also listen on an ephemeral port whose connections are only held open "
                            "(for benchmarks with idle connections)")
    serve.add_argument("--unix-mode", type=_file_mode, default=None, metavar="OCTAL",
                       help="the Unix socket file's mode, e.g. 600 (owner only) or 660 (owner and group); "
                            "default: what bind() gives, 777 minus the umask (755 with umask 022)")
    serve.add_argument("--tls-cert", metavar="PATH",
                       help="serve TLS with this PEM certificate chain (needs --tls-key)")
    serve.add_argument("--tls-key", metavar="PATH", help="the certificate's PEM private key, unencrypted "
                                                          "(needs --tls-cert)")
    serve.add_argument("--idle-timeout", type=_time_limit, default=DEFAULT_IDLE_TIMEOUT, metavar="S",
                       help="close a connection after S seconds without a byte either way (for http also "
                            f"the keep-alive wait between requests); 0 = off (default: {DEFAULT_IDLE_TIMEOUT:g})")
    serve.add_argument("--header-timeout", type=_time_limit, default=None, metavar="S",
                       help="--protocol http: a request head not complete S seconds after its first byte "
                            "(the first request: after the connection) is answered 408 and the connection "
                            f"closed; 0 = off (default: {DEFAULT_HEADER_TIMEOUT:g})")
    serve.add_argument("--max-connections", type=_positive_int, default=None, metavar="N",
                       help="at N open connections stop accepting, and accept again below N; the kernel's "
                            "queue holds the rest (per process: with --workers, each worker's; default: off)")
    serve.add_argument("--keepalive", action="store_true",
                       help="TCP keepalive on every connection (the kernel's timings): a dead peer is found")
    serve.add_argument("--user-timeout", type=_positive_float, default=None, metavar="S",
                       help="TCP_USER_TIMEOUT: a connection whose sent data stays unacknowledged for S "
                            "seconds is dropped (TCP only)")
    serve.add_argument("--proxy-protocol", action="store_true",
                       help="behind a load balancer: every connection starts with a PROXY protocol v1 or v2 "
                            "header (haproxy send-proxy / send-proxy-v2), which gives the client's address; "
                            "a bad or missing header closes the connection")
    serve.add_argument("--proxy-from", type=_cidr_list, default=None, metavar="CIDR[,CIDR...]",
                       help="with --proxy-protocol: the balancers' networks, e.g. 10.0.0.0/8,2001:db8::/32; a "
                            "connection from any other source is closed unread, so a client that reaches the "
                            "port directly cannot forge its address (default: loopback only, 127.0.0.0/8,::1; "
                            "0.0.0.0/0,::/0 trusts every source)")
    serve.add_argument("--tls-handshake-timeout", type=_positive_float, default=None, metavar="S",
                       help="with --tls-cert: a TLS handshake not done within S seconds closes the connection "
                            "(default: 60)")
    serve.add_argument("--tls-shutdown-timeout", type=_positive_float, default=None, metavar="S",
                       help="with --tls-cert: after our close_notify on a plain close, wait at most S seconds "
                            "for the peer's (default: 30; a time limit -- --idle-timeout, --header-timeout -- "
                            "never waits for it)")
    serve.add_argument("--metrics", metavar="HOST:PORT", type=_metrics_address, default=None,
                       help="serve Prometheus metrics at http://HOST:PORT/metrics: the listener's counters, open "
                            "connections, the accept queue, listen overflows, TLS failures, restarts and "
                            "reloads, per worker (needs prometheus_client: pip install 'reactor-loop[metrics]')")
    tracing = serve.add_mutually_exclusive_group()
    tracing.add_argument("--trace", action="store_true",
                         help="print one line per connection event: accepted (with its wait in the accept "
                              "queue), first byte, peer FIN, our FIN, RST in or out, closed (duration, bytes, "
                              "retransmits), each with the kernel's TCP_INFO")
    tracing.add_argument("--trace-json", metavar="PATH", help="write the same events as JSON lines to PATH")
    serve.add_argument("--trace-wire", action="store_true",
                       help="with --trace or --trace-json: tap the port's TCP segments (root or CAP_NET_RAW) and "
                            "print each connection's last ones when it ends (RST or close): why it ended")
    # Set by the supervisor for its workers: bind with SO_REUSEPORT.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    # Set by the supervisor for its workers: print a counts line every S seconds.
    serve.add_argument("--report-interval", type=_positive_float, default=None, help=argparse.SUPPRESS)
    serve.set_defaults(run=run_serve, parser=serve)

    bench = commands.add_parser(
        "bench", help="measure accept, echo or TLS handshake throughput and server CPU, beside peers",
        description="Start each server in its own process, drive it with the load generator, and print a "
                    "table (medians of --repeat runs). A full default run takes about 2 minutes on 2 cores. "
                    "reactor's rows are one per --api × backend × --native × --idle count, named "
                    "'API BACKEND native|pure' (e.g. 'aio-streams epoll pure'); peers run at the first idle "
                    "count, interleaved with reactor's rows (each server in turn, repeat after repeat). "
                    "accept and echo print two tables: a saturation pass led by server CPU per connection "
                    "or request (a rate only where the server, not the client, was the limit), and a latency "
                    "pass at one fixed offered load for every server (open loop: p50/p99/p99.9). The aio "
                    "and aio-streams rows and the asyncio, asyncio-streams, uvloop and "
                    "uvloop-streams peers run the same asyncio server (reactor/tools/peers/asyncio_server.py): "
                    "an asyncio.Protocol (aio, asyncio, uvloop) or asyncio.start_server streams (*-streams), "
                    "on reactor.aio, on stock asyncio or on uvloop. tls: full TLS handshakes (then the "
                    "server's close) against serve --tls-cert (reactor), reactor.aio (aio), asyncio and uvloop, "
                    "with one certificate made for the run; about 30 s. apps: real programs on reactor.aio, uvloop "
                    "and stock asyncio (--apps, --loops): uvicorn and aiohttp servers, asyncpg and redis-py "
                    "clients of a PostgreSQL and a Redis the bench starts on loopback (skipped, with the reason, "
                    "where absent); the program's CPU per operation and the p50/p99 latency at one offered load; "
                    "about 2 minutes.",
    )
    bench.add_argument("workload", choices=["accept", "echo", "tls", "apps"],
                       help="accept: connect and get closed at once; echo: request/response on open connections; "
                            "tls: a TLS handshake per connection; apps: uvicorn, aiohttp, asyncpg and redis-py "
                            "on each loop")
    bench.add_argument("--apps", type=_name_list(list(APPS)), default=None,
                       help=f"bench apps: the apps, comma-separated (default: {','.join(APPS)})")
    bench.add_argument("--loops", type=_name_list(list(LOOPS)), default=None,
                       help=f"bench apps: the loops, comma-separated (default: {','.join(LOOPS)})")
    bench.add_argument("--backends", type=_name_list(available_backends()), default=None,
                       help="comma-separated (default: select,poll,epoll where available)")
    bench.add_argument("--native", type=_on_off_list, default=None, help="on,off (default: both)")
    bench.add_argument("--idle", type=_int_list, default=None, help="idle connections (default: 0,800,10000)")
    bench.add_argument("--api", type=_name_list(list(APIS)), default=None, dest="apis",
                       help="how reactor's servers are written, comma-separated: reactor (a reactor Protocol, "
                            "python -m reactor serve), aio (an asyncio Protocol on reactor.aio), aio-streams "
                            "(asyncio.start_server on reactor.aio) (default: reactor)")
    bench.add_argument("--peers", type=_peer_list, default=None,
                       help=f"{','.join(PEERS)} or none (default: asyncio,uvloop,c,tornado,twisted, where installed); "
                            "*-streams: the asyncio streams server on that loop")
    bench.add_argument("--concurrency", type=_concurrency, default=None,
                       help=f"connections in flight, 1..{MAX_CONCURRENCY} "
                            "(default: 64; tls: 8 client threads; apps: 16, at most 90)")
    bench.add_argument("--duration", type=_positive_float, default=None, help="seconds per run (default: 1)")
    bench.add_argument("--repeat", type=_positive_int, default=None, help="runs per configuration (default: 3)")
    bench.add_argument("--size", type=_positive_int, default=64, help="echo message size in bytes (default: 64)")
    bench.add_argument("--open-loop", action="store_true",
                       help="only the latency pass (a fixed offered load, open loop), no saturation pass")
    bench.add_argument("--rate", type=_positive_float, default=None,
                       help="the latency pass's offered load per second, the same for every server (default: "
                            "40%% of the capacity of the costliest server; with --open-loop: 5000; apps: 1000)")
    bench.add_argument("--quick", action="store_true",
                       help="a short run: idle 0 only, one 0.5 s run per configuration")
    bench.add_argument("--json", metavar="PATH", help="write every figure, the options and the machine as JSON")
    bench.add_argument("--plot", metavar="PATH", help="write a PNG plot (needs matplotlib: pip install '.[plot]')")
    bench.set_defaults(run=run_bench, parser=bench)

    lab = commands.add_parser(
        "lab", help="see the TCP lifecycle: each scenario's timeline of calls, errnos, states and readiness",
        description="Run lifecycle scenarios on this machine's kernel (loopback, or network namespaces the lab "
                    "creates and deletes; those are skipped with the reason where they cannot be made) and print "
                    "each one's timeline: time, side, the call and what it returned, then each socket's TCP state "
                    "and what select, poll and epoll report for it, with the scenario's TCP segments between the "
                    "calls (a packet tap: root or CAP_NET_RAW; without it the timeline says so). Each scenario's "
                    "segments are checked against its script: the exit status is 1 if the kernel parted from one. "
                    "--list names the scenarios.",
    )
    lab.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all)")
    lab.add_argument("--list", action="store_true", help="name the scenarios and what each shows")
    lab.add_argument("--backend", type=_name_list(["select", "poll", "epoll"]), default=None, dest="backends",
                     help="readiness backends to show, comma-separated (default: select,poll,epoll)")
    lab.add_argument("--json", metavar="PATH", help="write every timeline and finding as JSON")
    lab.add_argument("--draw", metavar="DIR", help="write each scenario's ladder diagram to DIR as SVG and PNG "
                                                   "(needs matplotlib: pip install '.[plot]')")
    lab.set_defaults(run=run_lab, parser=lab)
    return parser


def _name_list(allowed: list[str]):
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}, not {text!r}")
        return names

    return parse


def _on_off_list(text: str) -> list[bool]:
    values = [item.strip() for item in text.split(",")]
    if not values or any(value not in ("on", "off") for value in values):
        raise argparse.ArgumentTypeError(f"expected on, off or on,off, not {text!r}")
    return [value == "on" for value in values]


def _int_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 0,1000,10000, not {text!r}") from None
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError("idle counts must be >= 0")
    return values


def _peer_list(text: str) -> list[str]:
    if text.strip() == "none":
        return []
    return _name_list(list(PEERS))(text)


def _checked(convert, expected: str, valid, rule: str):
    """An argparse type: ``convert`` the text, then require ``valid(value)``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, not {text}")
        return value

    return parse


_positive_int = _checked(int, "a whole number", lambda v: v >= 1, ">= 1")
_fd = _checked(int, "a file descriptor number", lambda v: v >= 0, ">= 0")
_port = _checked(int, "a port number", lambda v: 0 <= v <= 65535, "in 0..65535")
# NaN fails both comparisons, so it is refused too.
_non_negative_float = _checked(float, "a number of seconds", lambda v: 0 <= v < math.inf, "a finite number >= 0")
_positive_float = _checked(float, "a number of seconds", lambda v: 0 < v < math.inf, "a finite number > 0")
#: stats lines more often than this are noise that costs CPU (1e-300 gave
#: 2,314 lines/s at 71% CPU)
MIN_STATS_INTERVAL = 0.01
_stats_interval = _checked(float, "a number of seconds", lambda v: MIN_STATS_INTERVAL <= v < math.inf,
                           f"a finite number >= {MIN_STATS_INTERVAL}")
#: connections one bench run may hold open: far above what a machine's fds
#: allow, low enough that a typo is an error and not a traceback
MAX_CONCURRENCY = 100_000
_concurrency = _checked(int, "a whole number", lambda v: 1 <= v <= MAX_CONCURRENCY, f"in 1..{MAX_CONCURRENCY}")
#: serve's time limits when not given (seconds)
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_HEADER_TIMEOUT = 10.0
#: the shortest time limit: the sweep that enforces one runs at most every
#: 10 ms (MIN_INTERVAL), a quarter of this
MIN_TIME_LIMIT = 4 * MIN_INTERVAL
_time_limit = _checked(float, "a number of seconds", lambda v: v == 0 or MIN_TIME_LIMIT <= v < math.inf,
                       f"0 (off) or a finite number >= {MIN_TIME_LIMIT:g}")
#: sockaddr_un.sun_path is 108 bytes on Linux, the terminating NUL included
MAX_UNIX_PATH = 107


def _unix_path(text: str) -> str:
    """An argparse type for --unix: a non-empty path that fits sun_path."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, not an empty string")
    if len(os.fsencode(text)) > MAX_UNIX_PATH:
        raise argparse.ArgumentTypeError(
            f"a Unix socket path is at most {MAX_UNIX_PATH} bytes, not {len(os.fsencode(text))}: {text!r}")
    return text


def _cidr_list(text: str) -> list[str]:
    """An argparse type for --proxy-from: CIDR networks, comma-separated."""
    from .._net.proxy import check_proxy_from

    networks = [item.strip() for item in text.split(",")]
    try:
        check_proxy_from(networks, True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("proxy_from: ")) from None
    return networks


def _metrics_address(text: str) -> str:
    from .metrics import parse_address

    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _file_mode(text: str) -> int:
    """An argparse type for --unix-mode: octal permission bits, 0..777."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an octal mode like 600 or 660, not {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"must be in 0..777 (permission bits), not {text}")
    return mode


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context of --tls-cert/--tls-key, or None; a usage error
    (exit 2) naming the file that cannot be used."""
    from .tlsfiles import load_tls_context

    if args.tls_cert is None and args.tls_key is None:
        return None
    if args.tls_cert is None or args.tls_key is None:
        args.parser.error("--tls-cert and --tls-key go together: give both or neither")
    try:
        return load_tls_context(args.tls_cert, args.tls_key)
    except ValueError as exc:
        args.parser.error(str(exc))
        raise  # not reached


def _check_serve_options(args: argparse.Namespace, sock: socket.socket | None) -> None:
    """Options that depend on each other: a usage error (exit 2) naming them."""
    unix = args.unix is not None or (sock is not None and sock.family == socket.AF_UNIX)
    if unix:
        for flag, given in (("--keepalive", args.keepalive), ("--user-timeout", args.user_timeout is not None)):
            if given:
                args.parser.error(f"{flag} applies to TCP connections, not to a Unix socket")
    if args.unix_mode is not None and args.unix is None:
        args.parser.error("--unix-mode needs --unix PATH (the socket file it applies to)")
    if args.header_timeout is not None and args.protocol != "http":
        args.parser.error(f"--header-timeout applies to --protocol http, not {args.protocol}")
    if args.proxy_from is not None and not args.proxy_protocol:
        args.parser.error("--proxy-from applies with --proxy-protocol (it says who may send the header)")
    tls = args.tls_cert is not None or args.tls_key is not None
    for flag, given in (("--tls-handshake-timeout", args.tls_handshake_timeout is not None),
                        ("--tls-shutdown-timeout", args.tls_shutdown_timeout is not None)):
        if given and not tls:
            args.parser.error(f"{flag} applies with --tls-cert and --tls-key")
    if args.metrics is not None:
        from .metrics import check_available

        missing = check_available()
        if missing:
            args.parser.error(missing)
    if args.trace_wire and not (args.trace or args.trace_json):
        args.parser.error("--trace-wire adds to --trace or --trace-json: name one of them")
    if args.trace_wire and unix:
        args.parser.error("--trace-wire taps TCP segments, not a Unix socket")


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """What ``serve`` runs, loaded once from the arguments and the files
    they name (the certificate and key): usage errors exit 2."""
    from .serve import ServeConfig

    if args.workers > 1 and args.unix:
        args.parser.error("--workers needs a TCP address, not --unix")
    sock = _inherited_socket(args)
    _check_serve_options(args, sock)
    tls = _tls_context(args)
    if args.protocol == "http" and args.header_timeout is None:
        args.header_timeout = DEFAULT_HEADER_TIMEOUT
    args.host = "127.0.0.1" if args.host is None else args.host
    args.port = 8888 if args.port is None else args.port
    native_choices: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
    return ServeConfig(
        host=args.host, port=args.port, unix=args.unix, protocol=args.protocol, backend=args.backend, sock=sock,
        native=native_choices[args.native], backlog=args.backlog,
        grace=args.grace, stats_interval=args.stats_interval, on_exhausted=args.on_exhausted,
        max_accepts=args.max_accepts, reuse_port=args.reuse_port, idle_listener=args.idle_listener,
        trace=args.trace, trace_json=args.trace_json, trace_wire=args.trace_wire,
        proxy_protocol=args.proxy_protocol, proxy_from=args.proxy_from,
        report_interval=args.report_interval,
        ssl=tls, idle_timeout=args.idle_timeout or None, header_timeout=args.header_timeout or None,
        max_connections=args.max_connections, keepalive=args.keepalive, user_timeout=args.user_timeout,
        unix_mode=args.unix_mode, ssl_handshake_timeout=args.tls_handshake_timeout,
        ssl_shutdown_timeout=args.tls_shutdown_timeout, metrics=args.metrics,
    )


def _reloader(args: argparse.Namespace):
    """What a reload (SIGHUP with --workers) reads again from disk: the
    certificate and key. ValueError naming the file that cannot be used."""
    def reload(config: ServeConfig) -> ServeConfig:
        if args.tls_cert is None:
            return config
        from .tlsfiles import load_tls_context

        return dataclasses.replace(config, ssl=load_tls_context(args.tls_cert, args.tls_key))

    return reload


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; exit 1 with a message if the address is unusable."""
    from ..errors import NativeUnavailableError
    from .serve import serve

    config = serve_config(args)
    try:
        if args.trace_json and not args.reuse_port:
            open(args.trace_json, "w").close()  # a new trace; the workers (or we) append to it
        if args.workers > 1:
            from .workers import supervise

            return supervise(config, args.workers, reload_config=_reloader(args))
        return serve(config)
    except (OSError, NativeUnavailableError) as exc:
        print(f"python -m reactor serve: error: {exc}", file=sys.stderr)
        return 1


def _inherited_socket(args: argparse.Namespace) -> socket.socket | None:
    """The socket of ``--fd N`` or of systemd's LISTEN_FDS, or None; a usage
    error (exit 2) when it is not a listening stream socket or comes with an
    address of its own."""
    from .serve import activation_fd, inherited_socket

    try:
        fd = args.fd if args.fd is not None else activation_fd()
        if fd is None:
            return None
        what = f"--fd {fd}" if args.fd is not None else "LISTEN_FDS"
        if args.host is not None or args.port is not None or args.unix:
            args.parser.error(f"{what} serves the inherited socket: it takes no --host, --port or --unix")
        if args.workers > 1:
            args.parser.error(f"{what} serves one process: it takes no --workers")
        return inherited_socket(fd)
    except ValueError as exc:
        args.parser.error(str(exc))  # exits 2
        raise  # not reached


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
    modules = facts["compiled_modules"]
    compiled = [name for name, is_compiled in modules.items() if is_compiled]
    pure = [name for name, is_compiled in modules.items() if not is_compiled]
    print(f"compiled modules (Cython): {', '.join(compiled) or 'none'}"
          + (f"; pure: {', '.join(pure)}" if pure else ""))
    return 0


def _limit(value: int) -> str:
    return "unlimited" if value < 0 else str(value)


def run_bench(args: argparse.Namespace) -> int:
    """Run the benchmark, print progress and the table; write JSON and plot."""
    from .benchmark import (
        Background,
        BenchOptions,
        check_output_paths,
        format_table,
        run_bench,
        write_json,
        write_plot,
    )

    problem = check_output_paths(args.json, args.plot)
    if problem:
        args.parser.error(problem)
    if args.workload == "apps":
        return run_bench_apps(args)
    for name in ("apps", "loops"):
        if getattr(args, name) is not None:
            args.parser.error(f"--{name} applies to bench apps only")
    if args.workload == "tls":
        return run_bench_tls(args)
    concurrency = 64 if args.concurrency is None else args.concurrency
    options = BenchOptions(workload=args.workload, concurrency=concurrency, size=args.size,
                           open_loop=args.open_loop, rate=args.rate)
    if args.quick:
        options.idle, options.repeat, options.duration, options.warmup = [0], 1, 0.5, 0.2
    options.backends = args.backends or [b for b in options.backends if b in available_backends()]
    for name in ("native", "idle", "apis", "peers", "duration", "repeat"):
        value = getattr(args, name)
        if value is not None:
            setattr(options, "natives" if name == "native" else name, value)
    print(f"bench {options.workload}: backends={','.join(options.backends)} "
          f"native={','.join('on' if n else 'off' for n in options.natives)} "
          f"idle={','.join(map(str, options.idle))} api={','.join(options.apis)} "
          f"peers={','.join(options.peers) or 'none'} "
          f"concurrency={options.concurrency} duration={options.duration}s repeat={options.repeat}", flush=True)
    order: list[tuple[str, int, str]] = []
    background = Background()
    results = run_bench(options, progress=lambda line: print(line, flush=True), order=order, background=background)
    print()
    print(format_table(results, options, background))
    if args.json:
        write_json(args.json, results, options, order, background)
        print(f"wrote {args.json}")
    if args.plot:
        write_plot(args.plot, results, options)
        print(f"wrote {args.plot}")
    return 0 if any(r.status == "ok" for r in results) else 1


def run_bench_tls(args: argparse.Namespace) -> int:
    """``bench tls``: handshakes per second and server CPU per handshake."""
    from .tlsbench import SERVERS, TlsOptions, format_tls_table, run_tls_bench

    for name in ("plot", "native", "idle", "open_loop", "rate"):
        if getattr(args, name) not in (None, False):
            args.parser.error(f"--{name.replace('_', '-')} does not apply to bench tls")
    servers = ["reactor", "aio"] if args.apis is None else [
        {"reactor": "reactor", "aio": "aio"}[api] for api in args.apis if api in ("reactor", "aio")]
    peers = ["asyncio", "uvloop"] if args.peers is None else args.peers
    unknown = [p for p in peers if p not in SERVERS]
    if unknown:
        args.parser.error(f"bench tls compares against asyncio and uvloop, not {','.join(unknown)}")
    options = TlsOptions(servers=servers + peers, concurrency=8 if args.concurrency is None else args.concurrency,
                         json_path=args.json)
    if args.backends:
        options.backend = args.backends[0]
    if args.quick:
        options.repeat, options.duration = 1, 1.0
    if args.duration is not None:
        options.duration = args.duration
    if args.repeat is not None:
        options.repeat = args.repeat
    print(f"bench tls: servers={','.join(options.servers)} backend={options.backend} "
          f"client threads={options.concurrency} duration={options.duration}s repeat={options.repeat}", flush=True)
    try:
        results = run_tls_bench(options, progress=lambda line: print(line, flush=True))
    except RuntimeError as exc:  # no openssl command to make the certificate
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print()
    print(format_tls_table(results))
    if args.json:
        print(f"wrote {args.json}")
    return 0 if any(r.rates for r in results) else 1


#: bench apps' connections at most: PostgreSQL's max_connections (100) less
#: its reserved ones and some to spare
MAX_APP_CONNECTIONS = 90


def run_bench_apps(args: argparse.Namespace) -> int:
    """``bench apps``: real programs on each loop, CPU per operation and latency."""
    from .bench_apps import AppsOptions, format_apps_table, run_apps_bench, write_apps_json, write_apps_plot

    for name in ("backends", "native", "idle", "apis", "peers", "open_loop"):
        if getattr(args, name) not in (None, False):
            args.parser.error(f"--{name.replace('_', '-')} does not apply to bench apps")
    if args.size != 64:
        args.parser.error("--size does not apply to bench apps")
    if args.concurrency is not None and args.concurrency > MAX_APP_CONNECTIONS:
        args.parser.error(f"--concurrency: bench apps takes 1..{MAX_APP_CONNECTIONS} "
                          f"(PostgreSQL's max_connections is 100), not {args.concurrency}")
    options = AppsOptions()
    if args.quick:
        options.repeat, options.duration, options.warmup = 1, 0.5, 0.2
    for name in ("apps", "loops", "duration", "repeat", "concurrency", "rate"):
        if getattr(args, name) is not None:
            setattr(options, name, getattr(args, name))
    print(f"bench apps: apps={','.join(options.apps)} loops={','.join(options.loops)} "
          f"concurrency={options.concurrency} rate={options.rate:g}/s duration={options.duration}s "
          f"repeat={options.repeat}", flush=True)
    order: list[dict[str, object]] = []
    rows = run_apps_bench(options, progress=lambda line: print(line, flush=True), order=order)
    print()
    print(format_apps_table(rows, options))
    if args.json:
        write_apps_json(args.json, rows, options, order)
        print(f"wrote {args.json}")
    if args.plot:
        write_apps_plot(args.plot, rows, options)
        print(f"wrote {args.plot}")
    return 0 if any(row.status == "ok" for row in rows) else 1


def run_lab(args: argparse.Namespace) -> int:
    """List the scenarios, or run them and print their timelines."""
    from .lab import SCENARIOS, list_text
    from .lab import run_lab as run

    if args.list:
        print(list_text())
        return 0
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        args.parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.draw:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            args.parser.error("--draw needs matplotlib: pip install -e '.[plot]'")
        if os.path.exists(args.draw) and not os.path.isdir(args.draw):
            args.parser.error(f"--draw {args.draw}: not a directory")
    return run(args.scenarios, args.backends, sys.stdout, json_path=args.json, draw_dir=args.draw)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m reactor``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        # stdout went away (`python -m reactor lab --list | head`): say
        # nothing more, and keep the interpreter's final flush quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


if __name__ == "__main__":
    sys.exit(main())
