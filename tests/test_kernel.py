"""reactor.kernel: what the kernel says about queues, overflows and fd limits."""

from __future__ import annotations

import json
import os
import resource
import shutil
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


# ------------------------------------------------- TCP_INFO and sock_diag

SS = shutil.which("ss")
needs_ss = pytest.mark.skipif(SS is None, reason="no `ss` (iproute2) to compare with")
#: ss's names for the states
SS_STATES = {"ESTAB": "ESTABLISHED", "SYN-RECV": "SYN_RECV", "SYN-SENT": "SYN_SENT", "TIME-WAIT": "TIME_WAIT",
             "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "CLOSE-WAIT": "CLOSE_WAIT",
             "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING", "UNCONN": "CLOSE"}


def ss(*args: str) -> str:
    done = subprocess.run([SS, *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout


def port_filter(port: int) -> str:
    return f"( sport = :{port} or dport = :{port} )"


@pytest.fixture
def connected():
    """A listener and one connected pair that has exchanged 5 bytes each way."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    client = socket.create_connection(listener.getsockname(), timeout=5)
    server, _ = listener.accept()
    client.sendall(b"hello")
    assert server.recv(16) == b"hello"
    server.sendall(b"world")
    assert client.recv(16) == b"world"
    yield listener, client, server
    for sock in (client, server, listener):
        sock.close()


def test_tcp_info_of_a_connected_pair(connected):
    _, client, server = connected
    info = kernel.tcp_info(client)
    assert info is not None and info.state == "ESTABLISHED"
    assert info.bytes_received == 5 and info.bytes_acked == 6  # 5 bytes + the SYN
    assert info.rtt > 0 and info.rto >= 200_000  # us; Linux's floor is 200 ms
    assert info.retransmits == 0 and info.total_retrans == 0
    assert info.last_data_recv < 5000 and info.last_data_sent < 5000
    assert kernel.tcp_info(server).bytes_received == 5
    assert kernel.tcp_info(server).as_dict()["state"] == "ESTABLISHED"


def test_tcp_info_of_a_listener_is_its_queue():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(7)
        info = kernel.tcp_info(listener)
        assert info.state == "LISTEN" and (info.unacked, info.sacked) == (0, 7)


def test_tcp_info_is_none_where_it_cannot_tell(tmp_path):
    a, b = socket.socketpair()
    with a, b:
        assert kernel.tcp_info(a) is None
    closed = socket.socket()
    closed.close()
    assert kernel.tcp_info(closed) is None


def test_parse_tcp_info_takes_what_the_kernel_gave():
    assert kernel.parse_tcp_info(b"\x01" * 20) is None  # shorter than any kernel's struct
    with socket.socket() as sock:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)  # up to total_retrans only
    info = kernel.parse_tcp_info(raw)
    assert info.state == "CLOSE" and info.bytes_acked is None and info.snd_wnd is None


@needs_ss
def test_tcp_info_agrees_with_ss(connected):
    _, client, _ = connected
    port = client.getsockname()[1]
    text = ss("-tinH", "state", "established", f"( sport = :{port} )")
    info = kernel.tcp_info(client)
    fields = dict(item.split(":", 1) for item in text.split() if ":" in item and not item.startswith("127."))
    assert int(fields["mss"]) == info.snd_mss
    assert int(fields["cwnd"]) == info.snd_cwnd
    assert int(fields["bytes_acked"]) == info.bytes_acked
    assert int(fields["bytes_received"]) == info.bytes_received
    assert int(fields["segs_out"]) == info.segs_out and int(fields["segs_in"]) == info.segs_in
    assert int(fields["advmss"]) == info.advmss and int(fields["pmtu"]) == info.pmtu
    assert int(fields["snd_wnd"]) == info.snd_wnd and int(fields["rcv_space"]) == info.rcv_space
    assert float(fields["rto"]) == pytest.approx(info.rto / 1000)
    rtt, _rttvar = (float(x) for x in fields["rtt"].split("/"))
    assert rtt == pytest.approx(info.rtt / 1000, abs=0.002)
    assert int(fields["wscale"].split(",")[0]) == info.snd_wscale


def ours(entries, address):
    """The entries with ``address`` at one end: on a busy host, other
    connections may use the same port number on another address."""
    return [e for e in entries if address in (e.local, e.remote)]


def _ss_sockets(port: int, address: tuple[str, int]) -> set[tuple[str, tuple[str, int], tuple[str, int]]]:
    found = set()
    for line in ss("-tanH", port_filter(port)).splitlines():
        state, _rq, _wq, local, remote = line.split()[:5]
        lhost, _, lport = local.rpartition(":")
        rhost, _, rport = remote.rpartition(":")
        entry = (SS_STATES[state], (lhost, int(lport)), (rhost if rhost != "*" else "0.0.0.0",
                                                         0 if rport == "*" else int(rport)))
        if address in entry[1:]:
            found.add(entry)
    return found


@needs_ss
def test_sock_diag_lists_what_ss_lists_syn_recv_and_time_wait_too(connected):
    listener, client, server = connected
    port = listener.getsockname()[1]
    # a TIME_WAIT: the client closes first, then the server
    client.close()
    assert server.recv(16) == b""
    server.close()
    # a SYN_RECV: with TCP_DEFER_ACCEPT the completed handshake stays a request until data comes
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    waiting = socket.create_connection(listener.getsockname(), timeout=5)
    try:
        deadline = time.monotonic() + 5
        address = listener.getsockname()
        # Both come from segments that loopback hands to the softirq: on a
        # loaded machine the last ACK and the server's FIN may not be
        # processed yet (the client still in FIN_WAIT2, the server in
        # LAST_ACK), so wait for both states, bounded.
        while time.monotonic() < deadline and not (
                ours(kernel.tcp_sockets(port, {"SYN_RECV"}), address)
                and ours(kernel.tcp_sockets(port, {"TIME_WAIT"}), address)):
            time.sleep(0.01)
        listed = {(s.state, s.local, s.remote) for s in ours(kernel.tcp_sockets(port), address)}
        assert listed == _ss_sockets(port, address)
        states = [s.state for s in ours(kernel.tcp_sockets(port), address)]
        assert sorted(states) == ["ESTABLISHED", "LISTEN", "SYN_RECV", "TIME_WAIT"]  # ESTABLISHED: the client
        (tw,) = ours(kernel.tcp_sockets(port, {"TIME_WAIT"}), address)
        assert tw.timer == "timewait" and 55_000 < tw.expires_ms <= 60_000 and tw.inode == 0
        # ss prints the same timer, rounded to seconds
        timer = ss("-tanoH", "state", "time-wait", port_filter(port))
        seconds = float(timer.split("timer:(timewait,")[1].split("sec")[0])
        assert abs(seconds - tw.expires_ms / 1000) < 2
        (syn,) = ours(kernel.tcp_sockets(port, {"SYN_RECV"}), address)
        assert syn.local == listener.getsockname() and syn.timer == "on"
        (lst,) = ours(kernel.tcp_sockets(port, {"LISTEN"}), address)
        assert (lst.rqueue, lst.wqueue) == kernel.listen_queue(listener)
        # one connection by its addresses, without a dump
        found = kernel.tcp_socket(tw.local, tw.remote)
        assert found is not None and found.state == "TIME_WAIT"
        assert kernel.tcp_socket(("127.0.0.1", 1), ("127.0.0.1", 2)) is None
    finally:
        waiting.close()


def test_sock_diag_with_tcp_info_and_a_state_filter(connected):
    listener, client, server = connected
    port = listener.getsockname()[1]
    found = ours(kernel.tcp_sockets(port, {"ESTABLISHED"}, info=True), listener.getsockname())
    assert {s.local for s in found} == {client.getsockname(), server.getsockname()}
    for entry in found:
        assert entry.info is not None and entry.info.state == "ESTABLISHED"
        assert entry.info.bytes_received == 5 and entry.shutdown == 0
    client.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + 5
    while kernel.tcp_socket(client.getsockname(), client.getpeername()).shutdown != 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(ValueError, match="unknown TCP states"):
        kernel.tcp_sockets(port, {"ESTABLISHED", "HALF_OPEN"})


def test_sock_diag_counts_by_full_address_in_ipv6_too():
    with socket.socket(socket.AF_INET6) as listener:
        try:
            listener.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        listener.listen(4)
        port = listener.getsockname()[1]
        with socket.create_connection(("::1", port), timeout=5):
            address = ("::1", port)
            states = sorted(s.state for s in ours(kernel.tcp_sockets(port, family=socket.AF_INET6), address))
            assert states == ["ESTABLISHED", "ESTABLISHED", "LISTEN"]
            assert not ours(kernel.tcp_sockets(port, family=socket.AF_INET), ("::1", port))
            counts = kernel.port_states(port, family=socket.AF_INET6)
            assert counts["LISTEN"] >= 1 and counts["ESTABLISHED"] >= 2  # by port: strangers may share it


# --------------------------------------------- tcp_migrate_req (reload, stop)

_MIGRATE_CHILD = r"""
import json, socket

def listener(port):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock

a = listener(0)
port = a.getsockname()[1]
b = listener(port)
clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
a.close()  # with connections of its own still queued (2**-40 that none is)
b.setblocking(False)
accepted = []
while True:
    try:
        accepted.append(b.accept()[0])
    except BlockingIOError:
        break
reset = 0
for client in clients:
    client.setblocking(False)
    try:
        client.recv(1)
    except ConnectionResetError:
        reset += 1
    except BlockingIOError:
        pass
print(json.dumps({"accepted": len(accepted), "reset": reset}))
for sock in accepted + clients + [b]:
    sock.close()
"""


@pytest.mark.netns
@pytest.mark.parametrize("migrate", [0, 1])
def test_tcp_migrate_req_moves_a_closed_reuseport_listeners_queue(migrate):
    # The kernel fact behind serve's drain (README, "Reload figures"): closing
    # one socket of an SO_REUSEPORT group resets the connections in its
    # queue, unless net.ipv4.tcp_migrate_req=1 (per network namespace; Linux
    # 5.14+) moves them to another socket of the group. Checked in a
    # namespace the test makes, so the host's setting is never touched.
    from . import netns

    with netns.Namespaces() as ns:
        name = ns.add()
        if not os.path.exists("/proc/sys/net/ipv4/tcp_migrate_req"):
            pytest.skip("this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+)")
        ns.sysctl(name, "net/ipv4/tcp_migrate_req", str(migrate))
        assert ns.exec(name, "cat", "/proc/sys/net/ipv4/tcp_migrate_req").strip() == str(migrate)
        [result] = ns.run_python(name, _MIGRATE_CHILD)
    if migrate:
        assert result == {"accepted": 40, "reset": 0}, result
    else:
        assert result["accepted"] < 40 and result["reset"] == 40 - result["accepted"], result
