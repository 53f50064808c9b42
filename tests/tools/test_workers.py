"""``serve --workers N``: SO_REUSEPORT workers under one supervisor."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import pytest

from ..support import Server


def worker_pid(port: int) -> int:
    """Ask the http protocol which process served this connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    match = re.search(rb"X-Reactor-Pid: (\d+)", data)
    assert match, data
    return int(match.group(1))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def workers():
    servers = []

    def start(*args: str) -> tuple[Server, list[int]]:
        server = Server("--workers", "2", "--port", "0", "--protocol", "http", *args)
        servers.append(server)
        assert server.match, server.first_line
        line = server.readline()
        assert line.startswith("workers: 2 pids="), line
        pids = [int(pid) for pid in line.split("pids=")[1].split()]
        return server, pids

    yield start
    for server in servers:
        server.kill()


def test_both_workers_accept_on_one_port_and_stop_cleanly(workers):
    server, pids = workers()
    assert len(set(pids)) == 2 and server.proc.pid not in pids
    seen = {worker_pid(server.port) for _ in range(60)}
    # The kernel hashes each connection's 4-tuple to a worker: with 60
    # connections, missing one of two workers has probability 2**-59.
    assert seen == set(pids)
    code, out, err = server.stop()
    assert code == 0, err
    assert re.search(r"^stopped: workers=2 accepted=60 ", out, re.M), out
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "a worker outlived the supervisor"


def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(workers):
    server, pids = workers()
    os.kill(pids[0], signal.SIGKILL)
    seen: set[int] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(seen - {pids[0]}) < 2:
        try:
            seen.add(worker_pid(server.port))
        except (ConnectionError, AssertionError):
            pass  # the dying worker's queue was reset; try again
    new = seen - set(pids)
    assert len(new) == 1, f"no replacement worker served: saw {seen}, started {pids}"
    assert pids[1] in seen
    code, out, err = server.stop()
    assert code == 0
    assert "restarts=1" in out
    assert f"worker {pids[0]} died (signal 9); restarting" in err


def test_workers_do_not_outlive_a_killed_supervisor(workers):
    server, pids = workers()
    server.proc.kill()
    server.proc.wait(10)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), "orphaned workers after SIGKILL of the supervisor"


def test_workers_with_unix_is_a_usage_error():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "reactor", "serve", "--workers", "2", "--unix", "/tmp/x.sock"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--workers needs a TCP address" in done.stderr
