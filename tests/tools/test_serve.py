"""``python -m reactor serve`` as a user runs it: a real process, real signals."""

from __future__ import annotations

import math
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from ..support import Server, interrupt_twice_while_stalled


@pytest.fixture
def start_server():
    servers: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(*args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.parametrize("backend", ["select", "poll", "epoll"])
def test_first_line_and_echo(start_server, backend):
    server = start_server("--port", "0", "--backend", backend, "--protocol", "echo")
    assert server.match, server.first_line
    assert server.match["backend"] == backend
    assert server.host == "127.0.0.1" and server.port > 0
    with connect(server) as sock:
        sock.sendall(b"hello reactor")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"hello reactor"
    code, out, err = server.stop()
    assert code == 0, err
    assert re.search(r"^stopped: accepted=1 ", out, re.M), out


def test_sigterm_closes_connections_gracefully(start_server):
    server = start_server("--port", "0", "--protocol", "echo")
    clients = [connect(server) for _ in range(5)]
    try:
        for client in clients:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"  # accepted and served
        server.send_signal(signal.SIGTERM)
        for client in clients:
            # EOF (FIN), not ConnectionResetError (RST)
            assert client.recv(10) == b""
    finally:
        for client in clients:
            client.close()
    code, out, err = server.stop()
    assert code == 0, err
    assert "closed_at_exit=5 aborted_at_exit=0" in out


def test_sigterm_drains_half_sent_requests_and_the_queue(start_server):
    # 200 clients have sent half a request (100 half a head, 100 a head and
    # half its body); with --max-connections 151 and one idle keep-alive
    # connection, 150 are accepted and 50 wait in the kernel's queue. On
    # SIGTERM: the idle one is closed at once; the queue is accepted, not
    # reset; every request in progress is answered once it is complete,
    # with Connection: close. Without the drain, all 200 got EOF (or RST)
    # 0.1 s after the signal.
    from ..support import HalfRequests

    server = start_server("--port", "0", "--protocol", "http", "--max-connections", "151", "--grace", "30")
    idle = connect(server)
    half = None
    try:
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"Hello from reactor\n"):
            first += idle.recv(4096)
        half = HalfRequests(server.port, 200)
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert idle.recv(4096) == b""  # EOF: an idle keep-alive connection is closed at once
        assert time.monotonic() - started < 10  # not after --grace (30 s)
        half.finish()
        answers = half.answers()
        assert all(a.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in a for a in answers), \
            [a[:60] for a in answers if not a.startswith(b"HTTP/1.1 200 OK")][:5]
    finally:
        idle.close()
        if half is not None:
            half.close()
    code, out, err = server.stop()
    assert code == 0, err
    summary = re.search(r"^stopped: accepted=201 .* aborted_at_exit=0 drained_at_exit=(\d+) ", out, re.M)
    assert summary and int(summary[1]) >= 50, out


def test_sigint_also_stops(start_server):
    server = start_server("--port", "0")
    code, out, _ = server.stop(signal.SIGINT)
    assert code == 0
    assert out.startswith("stopped: ")


def test_peer_that_does_not_read_cannot_hold_the_exit(start_server):
    server = start_server("--port", "0", "--protocol", "echo", "--grace", "0.5")
    with connect(server) as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"  # accepted, not still in the queue
        # Fill both directions until the echo server has bytes it cannot
        # send: it then stops reading (its write buffer is over the high
        # mark), and our socket stays unwritable. A socket that becomes
        # writable again means the server is still draining: keep sending.
        client.setblocking(False)
        payload = b"x" * 65536
        sent = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                sent += client.send(payload)
            except BlockingIOError:
                _, writable, _ = select.select([], [client], [], 0.5)
                if not writable:
                    break
        else:
            pytest.fail("the server kept reading: no backpressure")
        assert sent > 0
        started = time.monotonic()
        code, out, err = server.stop()
        elapsed = time.monotonic() - started
    assert code == 0, err
    assert "aborted_at_exit=1" in out
    assert elapsed < 5, f"exit took {elapsed:.1f} s with --grace 0.5"


def test_address_in_use_exits_1_naming_it(start_server):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        done = subprocess.run([sys.executable, "-m", "reactor", "serve", "--port", str(port)],
                              capture_output=True, text=True, timeout=30)
    finally:
        holder.close()
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr


@pytest.mark.parametrize(
    "args",
    [["--port", "70000"], ["--port", "abc"], ["--protocol", "gopher"], ["--backend", "iocp"],
     ["--backlog", "0"], ["--grace", "-1"], ["--stats-interval", "0"], ["--native", "maybe"]],
)
def test_bad_arguments_exit_2_with_usage(args):
    done = subprocess.run([sys.executable, "-m", "reactor", "serve", *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "usage:" in done.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_200_from_http(start_server):
    server = start_server("--port", "0", "--protocol", "http")
    done = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", f"http://127.0.0.1:{server.port}/"],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 OK")
    assert f"X-Reactor-Pid: {server.proc.pid}" in done.stdout
    assert done.stdout.endswith("Hello from reactor\n")
    assert server.stop()[0] == 0


def test_close_protocol_closes_at_once(start_server):
    server = start_server("--port", "0", "--protocol", "close")
    for _ in range(20):
        with connect(server) as sock:
            assert sock.recv(10) == b""
    code, out, _ = server.stop()
    assert code == 0
    assert "accepted=20 " in out


def test_unix_socket(start_server, tmp_path):
    path = str(tmp_path / "echo.sock")
    server = start_server("--unix", path)
    assert server.first_line.startswith(f"listening on {path} backend=")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"unix")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"unix"
    code, _, err = server.stop()
    assert code == 0, err
    assert not os.path.exists(path), "the socket file outlived the server"


def test_stats_lines_at_the_interval_and_on_sigusr1(start_server):
    server = start_server("--port", "0", "--protocol", "close", "--stats-interval", "0.2")
    for _ in range(3):
        with connect(server) as sock:
            sock.recv(1)
    line = server.readline()
    assert line.startswith("stats: accepted/s="), line
    server.send_signal(signal.SIGUSR1)
    lines = [server.readline() for _ in range(3)]
    assert all(line.startswith("stats: ") for line in lines), lines
    code, out, _ = server.stop()
    assert code == 0
    last_stats = [line for line in out.splitlines() if line.startswith("stats: ")]
    summary = [line for line in out.splitlines() if line.startswith("stopped: ")][0]
    assert "accepted=3 " in summary
    if last_stats:
        assert "accepted=3 " in last_stats[-1]


def test_a_second_sigint_aborts_at_once(start_server):
    server = start_server("--port", "0", "--protocol", "echo", "--grace", "60")
    with connect(server) as client:
        code, out, err, elapsed = interrupt_twice_while_stalled(server, client)
    assert code == 0, err
    assert elapsed < 5, f"a second SIGINT took {elapsed:.1f} s with --grace 60"
    assert "closed_at_exit=0 aborted_at_exit=1" in out


def test_connections_accepted_just_before_the_stop_are_answered(start_server):
    # Bytes already sent when SIGTERM arrives are read and answered, not met
    # by RST (a socket closed with unread bytes sends one). The race SETTLE
    # closes is narrower than this test can hit on purpose: the reload test
    # in test_workers.py is the one that saw it.
    server = start_server("--port", "0", "--protocol", "echo")
    clients = [connect(server) for _ in range(20)]
    try:
        for client in clients:
            client.sendall(b"last words")
        server.send_signal(signal.SIGTERM)
        for client in clients:
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"last words"
    finally:
        for client in clients:
            client.close()
    code, out, err = server.stop()
    assert code == 0, err
    assert "accepted=20 " in out


# ------------------------------------------------- limits for a server facing clients

def server_fds(pid: int) -> int:
    """How many fds process ``pid`` has open now."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def summary_of(out: str) -> dict[str, int]:
    line = [line for line in out.splitlines() if line.startswith("stopped: ")][-1]
    return {key: int(value) for key, _, value in (item.partition("=") for item in line.split()[1:])
            if value.isdigit()}


class Slowloris:
    """``count`` connections, each sending one byte of a request head that
    never ends, one byte a second (the attack's shape; bounded by the head's
    length and by ``deadline``), driven from one thread with a selector.
    Records, per connection, when it connected, what it received and when
    it saw EOF (or a reset)."""

    HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\nX-Pad: " + b"p" * 40

    def __init__(self, address: tuple[str, int], count: int) -> None:
        self.socks = []
        self.started: dict[socket.socket, float] = {}
        self.received: dict[socket.socket, bytes] = {}
        self.ended: dict[socket.socket, tuple[float, str]] = {}
        for _ in range(count):
            sock = socket.create_connection(address, timeout=10)
            sock.setblocking(False)
            self.socks.append(sock)
            self.started[sock] = time.monotonic()
            self.received[sock] = b""

    def run(self, seconds: float) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        for sock in self.socks:
            selector.register(sock, selectors.EVENT_READ)
        sent = 0
        next_send = time.monotonic()
        deadline = time.monotonic() + seconds
        try:
            while len(self.ended) < len(self.socks) and time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_send and sent < len(self.HEAD):
                    for sock in self.socks:
                        if sock not in self.ended:
                            try:
                                sock.send(self.HEAD[sent:sent + 1])
                            except OSError:
                                pass  # closed by the server meanwhile: the read below sees it
                    sent += 1
                    next_send += 1.0
                for key, _ in selector.select(max(0.0, min(next_send, deadline) - time.monotonic())):
                    sock = key.fileobj
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data, how = b"", "reset"
                    else:
                        how = "eof"
                    if data:
                        self.received[sock] += data
                    else:
                        self.ended[sock] = (time.monotonic(), how)
                        selector.unregister(sock)
        finally:
            selector.close()

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def test_slowloris_clients_all_get_408_within_the_header_timeout(start_server):
    timeout = 2.0
    server = start_server("--port", "0", "--protocol", "http", "--header-timeout", str(timeout), "--backlog", "1024")
    attack = Slowloris((server.host, server.port), 300)
    try:
        attack.run(seconds=timeout + 10)
        late = {sock: attack.ended.get(sock, (math.inf, "open"))[0] - attack.started[sock] for sock in attack.socks}
        assert len(attack.ended) == 300, f"{300 - len(attack.ended)} connections still open after {timeout + 10} s"
        worst = max(late.values())
        assert worst <= timeout + 1, f"the slowest close took {worst:.2f} s"
        assert min(late.values()) >= timeout - 0.05  # not before the limit (less the clocks' difference)
        answers = [attack.received[sock] for sock in attack.socks]
        assert all(answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n") for answer in answers), \
            {answer[:40] for answer in answers}
        assert all(b"\r\nConnection: close\r\n" in answer for answer in answers)
        assert sorted({how for _, how in attack.ended.values()}) == ["eof"]
    finally:
        attack.close()
    code, out, err = server.stop()
    assert code == 0, err
    counts = summary_of(out)
    assert counts["accepted"] == 300 and counts["header_timeouts"] == 300, out


def test_a_request_in_time_is_served_with_a_header_timeout(start_server):
    server = start_server("--port", "0", "--protocol", "http", "--header-timeout", "1")
    with connect(server) as sock:
        for _ in range(3):  # the keep-alive wait is not the head's: 1.5 s between requests
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
            assert not readable_within(sock, 1.5)
    code, out, _ = server.stop()
    assert code == 0 and summary_of(out)["header_timeouts"] == 0


def readable_within(sock: socket.socket, seconds: float) -> bool:
    return bool(select.select([sock], [], [], seconds)[0])


def test_max_connections_holds_the_rest_in_the_queue_and_serves_all(start_server):
    limit, clients = 100, 500
    server = start_server("--port", "0", "--protocol", "echo", "--max-connections", str(limit),
                          "--backlog", "1024")
    pid = server.proc.pid
    base = server_fds(pid)  # std streams, selector, wake-up, listener
    import selectors

    selector = selectors.DefaultSelector()
    socks = []
    served = 0
    held: dict[socket.socket, float] = {}  # each client holds its connection 50 ms once echoed
    most = 0
    try:
        for _ in range(clients):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((server.host, server.port))  # completes in the kernel's queue
            socks.append(sock)
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + 60
        while served < clients and time.monotonic() < deadline:
            most = max(most, server_fds(pid) - base)
            for key, events in selector.select(0.01):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    sock.send(b"ping")
                    selector.modify(sock, selectors.EVENT_READ)
                elif sock.recv(4) == b"ping":
                    held[sock] = time.monotonic() + 0.05
                    selector.unregister(sock)
            now = time.monotonic()
            for sock, until in list(held.items()):
                if now >= until:
                    del held[sock]
                    sock.close()
                    served += 1
        assert served == clients, f"{served} of {clients} served in 60 s"
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    assert most <= limit, f"the server held {most} connections at once, more than --max-connections {limit}"
    assert most >= limit - 5, f"at most {most} at once: the limit was never reached"
    code, out, err = server.stop()
    assert code == 0, err
    counts = summary_of(out)
    assert counts["accepted"] == clients and counts["limited"] >= 1, out


def test_idle_timeout_closes_a_silent_connection_and_keeps_a_busy_one(start_server):
    server = start_server("--port", "0", "--protocol", "echo", "--idle-timeout", "1")
    with connect(server) as silent, connect(server) as busy:
        started = time.monotonic()
        closed_after = None
        # the busy one talks every 0.25 s for 3 s; the silent one is watched meanwhile
        while time.monotonic() - started < 3:
            busy.sendall(b"ping")
            assert busy.recv(4) == b"ping"
            if closed_after is None and readable_within(silent, 0.25):
                assert silent.recv(10) == b""  # FIN: closed by the server
                closed_after = time.monotonic() - started
        assert closed_after is not None, "the silent connection was not closed within 3 s"
        assert 0.9 <= closed_after <= 2.0, closed_after
        busy.sendall(b"still here")
        assert busy.recv(10) == b"still here"
    code, out, err = server.stop()
    assert code == 0, err
    assert summary_of(out)["idle_closed"] == 1, out


def test_idle_timeout_0_is_off_and_the_summary_shows_the_counters_of_features_on(start_server):
    server = start_server("--port", "0", "--protocol", "echo", "--idle-timeout", "0")
    code, out, _ = server.stop()
    assert code == 0
    assert "idle_closed=" not in out and "limited=" not in out and "tls_failed=" not in out
    server = start_server("--port", "0", "--protocol", "http", "--max-connections", "5")
    code, out, _ = server.stop()
    counts = summary_of(out)
    # on by default: --idle-timeout 60, --header-timeout 10 for http
    assert (counts["idle_closed"], counts["limited"], counts["header_timeouts"]) == (0, 0, 0), out
    assert "tls_failed=" not in out


def test_unix_mode_sets_the_socket_file_mode(start_server, tmp_path):
    path = str(tmp_path / "private.sock")
    server = start_server("--unix", path, "--unix-mode", "600")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"mode")
        assert sock.recv(4) == b"mode"
    code, _, err = server.stop()
    assert code == 0, err


def test_keepalive_and_user_timeout_are_set_on_connections(start_server):
    server = start_server("--port", "0", "--protocol", "echo", "--keepalive", "--user-timeout", "7")
    with connect(server) as sock:
        sock.sendall(b"hi")
        assert sock.recv(2) == b"hi"
        if shutil.which("ss") is not None:
            # the kernel's view of the server's end: a keepalive timer runs
            shown = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{server.port} )"],
                                   capture_output=True, text=True, timeout=10).stdout
            assert "timer:(keepalive," in shown, shown
    code, _, err = server.stop()
    assert code == 0, err


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_host_wildcard_ipv6_is_ipv6_only(start_server):
    server = start_server("--host", "::", "--port", "0")
    assert server.first_line.startswith("listening on [::]:"), server.first_line
    with socket.create_connection(("::1", server.port), timeout=10) as sock:
        sock.sendall(b"six")
        assert sock.recv(3) == b"six"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=10).close()
    code, _, err = server.stop()
    assert code == 0, err


def test_workers_get_the_limits(start_server):
    server = start_server("--port", "0", "--protocol", "http", "--workers", "2", "--idle-timeout", "1",
                          "--header-timeout", "0", "--max-connections", "10")
    with connect(server) as silent:
        started = time.monotonic()
        assert readable_within(silent, 5), "a worker did not apply --idle-timeout"
        assert silent.recv(10) == b""  # no 408: --header-timeout 0 is off; the idle timeout closed it
        assert time.monotonic() - started <= 2.5
    code, out, err = server.stop()
    assert code == 0, err
    counts = summary_of(out)
    assert counts["idle_closed"] == 1 and counts["limited"] == 0, out
    assert "header_timeouts=" not in out


# -------------------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    from ..tlscerts import self_signed

    return self_signed(tmp_path_factory.mktemp("tls"))


def test_openssl_s_client_gets_200_over_tls(start_server, certificate):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed")
    cert, key = certificate
    server = start_server("--port", "0", "--protocol", "http", "--tls-cert", cert, "--tls-key", key)
    done = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", "localhost",
         "-CAfile", cert, "-verify_return_error", "-ign_eof"],
        input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        capture_output=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert b"Verify return code: 0 (ok)" in done.stdout
    assert b"HTTP/1.1 200 OK\r\n" in done.stdout and b"Hello from reactor\n" in done.stdout
    code, out, err = server.stop()
    assert code == 0, err
    assert summary_of(out)["tls_failed"] == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_200_over_tls_and_a_plain_client_counts_as_failed(start_server, certificate):
    cert, key = certificate
    server = start_server("--port", "0", "--protocol", "http", "--tls-cert", cert, "--tls-key", key)
    url = f"https://127.0.0.1:{server.port}/"
    done = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", "--cacert", cert, url, url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("HTTP/1.1 200 OK") == 2
    assert f"X-Reactor-Pid: {server.proc.pid}" in done.stdout
    # plain HTTP to the TLS port: the handshake fails, the connection closes
    with connect(server) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := plain.recv(65536):
            data += chunk
        assert b"200 OK" not in data
    code, out, err = server.stop()
    assert code == 0, err
    counts = summary_of(out)
    assert counts["accepted"] == 2 and counts["tls_failed"] == 1, out


# ------------------------------------------------------ TLS time limits

@pytest.mark.parametrize("limit", ["idle", "header"])
def test_tls_time_limits_free_the_fd_on_time(start_server, tmp_path, limit):
    # A TLS client that goes silent and never answers close_notify: on its
    # idle (after a request) or header (half a head) timeout the server
    # sends close_notify and closes at once, so the client's socket sees the
    # FIN (CLOSE_WAIT) within the limit plus a second. Before, the server
    # waited for the peer's close_notify up to --tls-shutdown-timeout (30 s
    # by default; 20 here, so a wait for it cannot pass by chance).
    import ssl

    from reactor import kernel

    from ..tlscerts import self_signed

    cert, key = self_signed(tmp_path)
    limits = ["--idle-timeout", "1", "--header-timeout", "0"] if limit == "idle" else \
        ["--idle-timeout", "0", "--header-timeout", "1"]
    server = start_server("--port", "0", "--protocol", "http", "--tls-cert", cert, "--tls-key", key, *limits,
                          "--tls-shutdown-timeout", "20", "--tls-handshake-timeout", "5")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection((server.host, server.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        if limit == "idle":
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"Hello from reactor\n"):
                data += tls.recv(4096)
        else:
            tls.sendall(b"GET / HTTP/1.1\r\nHo")
        silent_since = time.monotonic()
        state = kernel.tcp_info(tls).state
        while state == "ESTABLISHED" and time.monotonic() < silent_since + 15:
            time.sleep(0.02)  # polling the kernel's view of our socket: nothing to wait on
            state = kernel.tcp_info(tls).state
        freed_after = time.monotonic() - silent_since
        print(f"\n{limit} timeout 1 s: fd freed {freed_after:.2f} s after the client went silent")
        assert state == "CLOSE_WAIT", state
        # Measured here: 1.25-1.33 s (the limit, then its sweep: within limit + 1 s). The bound
        # only has to tell that from the 20 s wait for a close_notify, whatever the load.
        assert freed_after < 10, f"fd freed {freed_after:.1f} s after the client went silent"
    code, out, err = server.stop()
    assert code == 0, err
    assert ("idle_closed=1" if limit == "idle" else "header_timeouts=1") in out, out
