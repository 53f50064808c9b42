"""System calls per operation on the server, counted by ``strace -f -c``: how
many ``epoll_ctl`` (and ``io_uring_enter``, through which libuv may batch its
epoll changes; with ``--all``, every call) a server makes per accepted
connection or per echo round trip.

    python bench/syscalls.py [--servers reactor,aio,aio-streams,asyncio,asyncio-streams,uvloop,uvloop-streams]
                             [--modes close,echo,patterns] [--count 2000] [--repeat 3]
                             [--trees after=.,before=/path/to/main] [--all]

Each server runs under ``strace -f -c`` (counting only: no per-call
output), serves a fixed number of operations from the C load generator
(``reactor.tools.loadgen``): ``close`` is ``client-close``, where the
server closes each connection in ``connection_made`` (streams: at once in
the handler) and the client closes after its FIN; ``echo`` is 16
connections echoing ``--count`` round trips in all (``patterns``: no server;
a loop on epoll repeats one watcher pattern per iteration, ``PATTERNS``,
and the epoll_ctl per repetition is printed). The server is stopped
with SIGINT, and its counts, less those of the same server started and
stopped with no load, are divided by the operations served: start-up and
shutdown cancel out. Each figure is the median of ``--repeat`` runs, with
the lowest and highest beside it.

``--trees NAME=DIR,...`` runs reactor's servers (reactor, aio, aio-streams)
from each source tree in turn (``DIR`` first on ``PYTHONPATH``; a tree
without a built accelerator runs the pure accept path), so a branch and
main are measured side by side in one run; asyncio and uvloop are measured
once. uvloop is optional: without it, its rows say so and are skipped.
The bench is not part of CI; it needs ``strace`` (Debian: ``apt-get
install strace``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEER = Path("reactor") / "tools" / "peers" / "asyncio_server.py"


def _peer(loop: str, api: str) -> Callable[[str, Path], list[str]]:
    def command(mode: str, tree: Path) -> list[str]:
        extra = ["--backend", "epoll"] if loop == "reactor" else []
        return [sys.executable, str(tree / PEER), "--loop", loop, *extra, "--api", api, "--mode", mode]
    return command


SERVERS: dict[str, Callable[[str, Path], list[str]]] = {
    "reactor": lambda mode, tree: [sys.executable, "-m", "reactor", "serve", "--port", "0", "--backend", "epoll",
                                   "--protocol", mode],
    "aio": _peer("reactor", "protocol"),
    "aio-streams": _peer("reactor", "streams"),
    "asyncio": _peer("asyncio", "protocol"),
    "asyncio-streams": _peer("asyncio", "streams"),
    "uvloop": _peer("uvloop", "protocol"),
    "uvloop-streams": _peer("uvloop", "streams"),
}
#: the servers whose code is reactor's (measured once per tree)
REACTOR_SERVERS = {"reactor", "aio", "aio-streams"}
#: connections of the echo load
ECHO_CONNECTIONS = 16
#: bound on a server's start, its load and its stop
TIMEOUT = 120.0
#: the calls shown without --all
SHOWN = ("epoll_ctl", "io_uring_enter")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def run_server(server: str, mode: str, tree: Path, count: int, out: str) -> dict[str, int]:
    """Start ``server`` from ``tree`` under strace, serve ``count``
    operations (0: none), stop it: {syscall: calls}."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
    env.pop("REACTOR_NATIVE", None)
    proc = subprocess.Popen(["strace", "-f", "-c", "-o", out, *SERVERS[server](mode, tree)], cwd=tree,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on ([\d.]+):(\d+)", line)
        if match is None:
            raise SystemExit(f"{server} ({tree}): no 'listening on' line: {line!r}")
        port = int(match.group(2))
        if count:
            load = [sys.executable, "-m", "reactor.tools.loadgen", "--port", str(port), "--duration", "60",
                    "--count", str(count), "--engine", "c"]
            if mode == "close":
                load += ["--mode", "client-close", "--concurrency", "16"]
            else:
                load += ["--mode", "echo", "--concurrency", str(ECHO_CONNECTIONS)]
            subprocess.run(load, check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT, cwd=ROOT)
        deadline = time.monotonic() + TIMEOUT
        while not (children := _children(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)
        for child in children:
            os.kill(child, signal.SIGINT)
        proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    counts: dict[str, int] = {}
    for row in Path(out).read_text().splitlines():
        fields = row.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


#: ``--modes patterns``: one loop iteration each, on epoll, repeated
#: PATTERN_REPEAT times; epoll_ctl per repetition
#: name -> (a reader watches the socket throughout, the loop body)
PATTERNS = {
    "add+remove in one iteration": (False, "r.add_reader(a, f); r.remove_reader(a); once()"),
    "reader+writer added, a wait, both removed":
        (False, "r.add_reader(a, f); r.add_writer(a, f); once(); r.remove_writer(a); r.remove_reader(a)"),
    "writer added and removed in one iteration, a reader stays":
        (True, "r.add_writer(a, f); r.remove_writer(a); once()"),
}
PATTERN_REPEAT = 500
_PATTERN_SCRIPT = """
import socket, sys, reactor
r = reactor.Reactor(backend="epoll")
a, b = socket.socketpair()
f = lambda: None
def once():
    r.call_soon(r.stop)
    r.run()
once()
if sys.argv[2] == "reader":
    r.add_reader(a, f)
    once()
for _ in range(int(sys.argv[1])):
    {body}
r.close()
"""


def run_pattern(reader: bool, body: str, tree: Path, out: str) -> int:
    """epoll_ctl calls of PATTERN_REPEAT repetitions of ``body``, less those of none."""
    counts = []
    for repeat, what in ((PATTERN_REPEAT, body), (0, "pass")):
        script = _PATTERN_SCRIPT.format(body=what)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
        subprocess.run(["strace", "-f", "-c", "-e", "trace=epoll_ctl", "-o", out, sys.executable, "-c", script,
                        str(repeat), "reader" if reader else "-"], check=True, env=env, cwd=tempfile.gettempdir(),
                       stdout=subprocess.DEVNULL, timeout=TIMEOUT)
        calls = 0
        for row in Path(out).read_text().splitlines():
            fields = row.split()
            if fields and fields[-1] == "epoll_ctl":
                calls = int(fields[3])
        counts.append(calls)
    return counts[0] - counts[1]


def _figure(values: list[float]) -> str:
    median = statistics.median(values)
    low, high = min(values), max(values)
    spread = "" if low == high else f" [{low:.3f}-{high:.3f}]"
    return f"{median:.3f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="reactor,aio,aio-streams,asyncio,asyncio-streams,uvloop,uvloop-streams")
    parser.add_argument("--modes", default="close,echo")
    parser.add_argument("--count", type=int, default=2000, help="operations per run (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (default 3): median [min-max]")
    parser.add_argument("--trees", default=f"this={ROOT}",
                        help="NAME=DIR,... source trees to run reactor's servers from (default: this one)")
    parser.add_argument("--all", action="store_true", help="every system call, not only epoll_ctl")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        raise SystemExit("needs strace (Debian: apt-get install strace)")
    if not 1 <= args.count <= 1_000_000:
        parser.error("--count must be 1..1000000")
    if not 1 <= args.repeat <= 100:
        parser.error("--repeat must be 1..100")
    servers = args.servers.split(",")
    for server in servers:
        if server not in SERVERS:
            parser.error(f"unknown server {server!r}; known: {', '.join(SERVERS)}")
    trees: list[tuple[str, Path]] = []
    for item in args.trees.split(","):
        name, sep, path = item.partition("=")
        tree = Path(path).resolve()
        if not sep or not (tree / "reactor" / "__init__.py").is_file():
            parser.error(f"--trees wants NAME=DIR with DIR a source tree holding reactor/: {item!r}")
        trees.append((name, tree))
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    print(f"strace -f -c, {args.count} operations per run, median [min-max] of {args.repeat} runs; "
          f"{os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            if mode == "patterns":
                for name, (reader, body) in PATTERNS.items():
                    for tree_name, tree in trees:
                        per_time = run_pattern(reader, body, tree, f"{tmp}/pattern") / PATTERN_REPEAT
                        print(f"patterns {name} ({tree_name}): epoll_ctl {per_time:.3f}", flush=True)
                continue
            if mode not in ("close", "echo"):
                parser.error(f"unknown mode {mode!r}; known: close, echo, patterns")
            unit = "connection" if mode == "close" else "round trip"
            for server in servers:
                if server.startswith("uvloop") and not has_uvloop:
                    print(f"{mode:5} {server:16} skipped: uvloop is not installed (pip install uvloop)", flush=True)
                    continue
                for name, tree in trees if server in REACTOR_SERVERS else trees[:1]:
                    per: dict[str, list[float]] = {}
                    for _ in range(args.repeat):
                        idle = run_server(server, mode, tree, 0, f"{tmp}/idle")
                        loaded = run_server(server, mode, tree, args.count, f"{tmp}/loaded")
                        for call in set(loaded) | set(idle) | set(SHOWN):
                            value = (loaded.get(call, 0) - idle.get(call, 0)) / args.count
                            per.setdefault(call, []).append(value)
                    calls = sorted(per) if args.all else list(SHOWN)
                    figures = "  ".join(f"{call} {_figure(per[call])}" for call in calls
                                        if call in SHOWN or max(per[call]) >= 0.0005)
                    if mode == "echo":
                        # the echo load opens its connections once: their share
                        shares = [value * args.count / ECHO_CONNECTIONS for value in per["epoll_ctl"]]
                        figures += f"  (epoll_ctl per connection {_figure(shares)})"
                    label = f"{server} ({name})" if server in REACTOR_SERVERS and len(trees) > 1 else server
                    print(f"{mode:5} {label:24} per {unit}: {figures}", flush=True)


if __name__ == "__main__":
    main()
