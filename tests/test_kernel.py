"""reactor.kernel: what the kernel says about queues, overflows and fd limits."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time

import pytest

import reactor
from reactor import kernel

from .support import run_until


def test_somaxconn_matches_proc():
    with open("/proc/sys/net/core/somaxconn") as f:
        assert kernel.somaxconn() == int(f.read())


@pytest.mark.parametrize("backlog", [5, 64])
def test_listen_queue_counts_unaccepted_connections(backlog):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(backlog)
        assert kernel.listen_queue(listener) == (0, backlog)
        clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(3)]
        try:
            assert kernel.listen_queue(listener) == (3, backlog)
            conn, _ = listener.accept()
            conn.close()
            assert kernel.listen_queue(listener) == (2, backlog)
        finally:
            for client in clients:
                client.close()


def test_listen_queue_of_a_reactor_listener_reports_its_effective_backlog():
    with reactor.Reactor() as r:
        lst = r.listen(reactor.Protocol, backlog=10**6)
        assert lst.backlog == kernel.somaxconn()
        assert kernel.listen_queue(lst.socket) == (0, lst.backlog)


def test_listen_queue_is_none_where_it_cannot_tell(tmp_path):
    with socket.socket() as unbound:
        assert kernel.listen_queue(unbound) is None
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(tmp_path / "s"))
        unix.listen()
        assert kernel.listen_queue(unix) is None


def test_listen_overflows_rise_when_a_backlog_1_queue_is_full():
    before = kernel.listen_overflows()
    if before is None:
        pytest.skip("/proc/net/netstat is not readable here")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        clients = []
        try:
            for _ in range(6):
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(listener.getsockname())
                clients.append(client)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                after = kernel.listen_overflows()
                if after["ListenOverflows"] > before["ListenOverflows"]:
                    break
                time.sleep(0.01)  # the kernel counts as SYNs/ACKs arrive
            assert after["ListenOverflows"] > before["ListenOverflows"]
            assert after["ListenDrops"] >= after["ListenOverflows"] - before["ListenOverflows"]
        finally:
            for client in clients:
                client.close()


def test_listen_overflows_unreadable_path():
    assert kernel.listen_overflows("/nonexistent/netstat") is None


def test_fd_limits_and_raise_in_a_child():
    soft, hard = kernel.fd_limits()
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
    script = (
        "import json, resource; from reactor import kernel\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))\n"
        "raised = kernel.raise_fd_limit()\n"
        "lowered = kernel.raise_fd_limit(32)\n"
        "print(json.dumps([raised, lowered, hard, kernel.fd_limits()[0]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    raised, lowered, child_hard, final = json.loads(done.stdout)
    expected = child_hard if child_hard != resource.RLIM_INFINITY else raised
    assert raised == expected == final
    assert lowered == raised, "raise_fd_limit must never lower the limit"


def test_open_fd_count_follows_sockets():
    before = kernel.open_fd_count()
    a, b = socket.socketpair()
    assert kernel.open_fd_count() == before + 2
    a.close()
    b.close()
    assert kernel.open_fd_count() == before


def test_listener_stats_and_queue_agree_while_paused(loop):
    lst = loop.listen(reactor.Protocol, backlog=16)
    lst.pause()
    clients = [socket.create_connection(lst.address, timeout=5) for _ in range(4)]
    try:
        assert kernel.listen_queue(lst.socket) == (4, 16)
        lst.resume()
        run_until(loop, lambda: lst.stats.accepted == 4)
        assert kernel.listen_queue(lst.socket) == (0, 16)
    finally:
        for client in clients:
            client.close()
        lst.close()
        loop.call_soon(loop.stop)
        loop.run()
