"""Instructions per accepted connection, counted by cachegrind: the accept
path's cost as a figure the noisy, shared machine cannot blur.

    python bench/accept_instructions.py [--native on,off] [--connections 500]

One reactor on epoll listens with a protocol that closes each connection in
``connection_made`` (``bench accept``'s server); the same process queues
loopback connections 100 at a time while the listener is paused (connect()
on loopback completes the handshake in the kernel, so they wait in the
accept queue), resumes it and runs the loop until every one is accepted and
closed. The script runs itself under ``valgrind --tool=cachegrind`` with N
and 3N connections and reports (Ir(3N) - Ir(N)) / 2N: the user-space
instructions per connection of the drain, the transport's set-up, the
protocol's callbacks, the close and the client's connect(), start-up and
teardown cancelled out (the C drain's own instructions included). Kernel
work is not counted (``python -m reactor bench accept`` measures that with it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys

#: connections queued before each resume (well under any backlog)
BATCH = 100
#: bound on one run under valgrind (about 50x slower than native)
RUN_TIMEOUT = 600


def accept_closing(count: int, native: bool) -> None:
    import reactor

    class Close(reactor.Protocol):
        def connection_made(self, transport: reactor.Transport) -> None:
            transport.close()

    r = reactor.Reactor(backend="epoll", native=native)
    listener = r.listen(Close, backlog=4 * BATCH)
    done = 0
    while done < count:
        listener.pause()
        clients = []
        for _ in range(min(BATCH, count - done)):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(listener.address)
            clients.append(client)
        done += len(clients)
        listener.resume()
        while listener.stats.accepted < done or listener.stats.active:
            r.call_soon(r.stop)
            r.run()
        for client in clients:
            client.close()
    listener.close()
    r.close()


def instructions(native: bool, count: int) -> int:
    """Ir of one run under cachegrind."""
    command = [sys.executable, __file__, "--run", "on" if native else "off", "--connections", str(count)]
    done = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                           *command], capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the run under valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--native", default="on,off", help="the accept drain: on (C), off (pure), or on,off")
    parser.add_argument("--connections", type=int, default=500, help="N (default 500)")
    parser.add_argument("--run", choices=["on", "off"], help=argparse.SUPPRESS)  # one measured run
    args = parser.parse_args()
    if not 1 <= args.connections <= 5000:
        parser.error("--connections must be 1..5000")
    if args.run:
        accept_closing(args.connections, args.run == "on")
        return
    modes = args.native.split(",")
    if not modes or any(mode not in ("on", "off") for mode in modes):
        parser.error(f"--native takes on, off or on,off, not {args.native!r}")
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind (Debian: apt-get install valgrind)")
    n = args.connections
    for mode in modes:
        # once outside valgrind first: compiling .pyc files must not count in one run and not the other
        subprocess.run([sys.executable, __file__, "--run", mode, "--connections", "1"], check=True,
                       timeout=RUN_TIMEOUT)
        per_connection = (instructions(mode == "on", 3 * n) - instructions(mode == "on", n)) / (2 * n)
        print(f"native {mode:3} {per_connection:8,.0f} instructions per accepted connection")


if __name__ == "__main__":
    main()
