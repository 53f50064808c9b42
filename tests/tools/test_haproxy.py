"""A real HAProxy in front of reactor servers with ``proxy_protocol=True``:
``send-proxy`` (v1) and ``send-proxy-v2`` to a TCP listener, v2 to a Unix
one, and ``serve --protocol http --proxy-protocol`` answering through both.
The server must see the client's own address (the header's), not
HAProxy's. Skipped when there is no ``haproxy`` binary (Debian: ``apt-get
install haproxy``; .ci/run installs it); the last tests, with a header
written by hand, run without it."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ..support import Server, recv_exactly

#: Debian installs it in /usr/sbin, which a non-root PATH may lack
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="no haproxy binary (Debian package: haproxy)")

#: the backend: for each connection, one JSON line of what the transport says, then an echo
BACKEND = textwrap.dedent("""
    import json, signal, sys
    import reactor

    class Report(reactor.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            proxy = transport.get_extra_info("proxy")
            facts = [transport.get_extra_info("peername"), transport.get_extra_info("socket_peername"),
                     proxy.version if proxy else None, proxy.command if proxy else None]
            transport.write(json.dumps(facts).encode() + b"\\n")

        def data_received(self, data):
            self.transport.write(data)

    r = reactor.Reactor()
    tcp = r.listen(Report, "127.0.0.1", 0, proxy_protocol=True)
    unix = r.listen_unix(Report, sys.argv[1], proxy_protocol=True)
    r.add_signal_handler(signal.SIGTERM, r.stop)
    print(tcp.address[1], flush=True)
    r.run()
    print(tcp.stats.proxy_errors, flush=True)
    tcp.close(); unix.close(); r.close()
""")


def free_port() -> int:
    """A loopback port free right now (HAProxy's config needs numbers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def show_stat(stats_socket: str) -> dict[tuple[str, str], dict[str, str]]:
    """HAProxy's ``show stat`` over its stats socket: (proxy, server) -> the
    CSV row by column name (``status``, ``stot``, ``check_status``, ...)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(stats_socket)
        sock.sendall(b"show stat\n")
        data = bytearray()
        while chunk := sock.recv(65536):  # HAProxy closes after one command
            data += chunk
    header, *rows = data.decode().splitlines()
    names = header.lstrip("# ").split(",")
    table = {}
    for line in rows:
        if line:
            row = dict(zip(names, line.split(","), strict=True))
            table[row["pxname"], row["svname"]] = row
    return table


def wait_stat(proxy: subprocess.Popen, stats_socket: str, predicate: Callable[[dict], bool], what: str,
              timeout: float = 10.0) -> dict:
    """Poll ``show stat`` until ``predicate(table)`` holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    table: dict = {}
    while time.monotonic() < deadline:
        assert proxy.poll() is None, f"haproxy exited: {proxy.communicate(timeout=5)}"
        try:
            table = show_stat(stats_socket)
        except OSError:  # not listening yet
            table = {}
        if table and predicate(table):
            return table
        time.sleep(0.02)
    pytest.fail(f"haproxy: {what} not within {timeout} s; last show stat: {table}")


def launch_haproxy(tmp: str, body: str) -> tuple[subprocess.Popen, str]:
    """HAProxy in the foreground (-db) with ``body`` (defaults, frontends,
    backends) and a stats socket; returns the process and the socket's
    path once every frontend is OPEN. Ready is asked of the stats socket,
    not probed with a connection to a frontend: in TCP mode that would
    open a connection to a backend too, and count in its summary."""
    stats_socket = os.path.join(tmp, "haproxy.stat")
    config = os.path.join(tmp, "haproxy.cfg")
    with open(config, "w") as out:
        out.write(f"global\n    pidfile {tmp}/haproxy.pid\n    maxconn 256\n"
                  f"    stats socket {stats_socket} mode 600 level admin\n" + body)
    assert HAPROXY is not None
    proc = subprocess.Popen([HAPROXY, "-db", "-f", config], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_stat(proc, stats_socket, lambda table: all(row["status"] == "OPEN" for (_, name), row in table.items()
                                                        if name == "FRONTEND"), "frontends OPEN")
    except BaseException:
        stop(proc)
        raise
    return proc, stats_socket


def start_haproxy(tmp: str, routes: dict[str, str]) -> tuple[subprocess.Popen, dict[str, int]]:
    """One TCP-mode frontend per route: name -> ``server`` line tail
    (address and send-proxy option)."""
    ports = {name: free_port() for name in routes}
    sections = []
    for name, server in routes.items():
        sections.append(f"frontend f_{name}\n    bind 127.0.0.1:{ports[name]}\n    default_backend b_{name}\n"
                        f"backend b_{name}\n    server s_{name} {server}\n")
    proc, _ = launch_haproxy(tmp, "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 10s\n"
                                  "    timeout server 10s\n" + "".join(sections))
    return proc, ports


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as path:
        yield path


def read_line(sock: socket.socket) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError(f"EOF after {bytes(line)!r}")
        line += chunk
    return bytes(line)


@needs_haproxy
def test_backend_sees_the_clients_address_through_haproxy(tmp: str) -> None:
    unix_path = os.path.join(tmp, "backend.sock")
    backend = subprocess.Popen([sys.executable, "-c", BACKEND, unix_path], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        port = int(backend.stdout.readline())
        proxy, ports = start_haproxy(tmp, {
            "v1": f"127.0.0.1:{port} send-proxy",
            "v2": f"127.0.0.1:{port} send-proxy-v2",
            "unix": f"unix@{unix_path} send-proxy-v2",
        })
        try:
            for name, version in (("v1", 1), ("v2", 2), ("unix", 2)):
                with socket.create_connection(("127.0.0.1", ports[name]), timeout=10) as client:
                    client.sendall(b"ping\n")
                    peername, socket_peername, seen_version, command = json.loads(read_line(client))
                    assert (seen_version, command) == (version, "PROXY"), name
                    # the client's own address, from the header
                    assert tuple(peername) == client.getsockname(), name
                    # the socket's peer is haproxy's side of its own connection
                    if name == "unix":
                        assert socket_peername in ("", None), name
                    else:
                        assert socket_peername[0] == "127.0.0.1" and socket_peername[1] != peername[1], name
                    assert recv_exactly(client, 5) == b"ping\n", "the bytes after the header arrive intact"
        finally:
            stop(proxy)
        # a connection straight to the backend, without a header, is refused and counted
        with socket.create_connection(("127.0.0.1", port), timeout=10) as direct:
            direct.sendall(b"ping\n")
            try:
                assert direct.recv(100) == b""
            except ConnectionResetError:
                pass
    finally:
        backend.send_signal(signal.SIGTERM)
        out, err = backend.communicate(timeout=20)
    assert backend.returncode == 0, err
    assert out.split() == ["1"], "the direct connection is the one proxy error"


@needs_haproxy
def test_serve_http_with_proxy_protocol_behind_haproxy(tmp: str) -> None:
    server = Server("--protocol", "http", "--proxy-protocol", "--port", "0", "--grace", "1")
    try:
        assert server.match, server.first_line
        proxy, ports = start_haproxy(tmp, {
            "v1": f"127.0.0.1:{server.port} send-proxy",
            "v2": f"127.0.0.1:{server.port} send-proxy-v2",
        })
        try:
            for name in ports:
                with socket.create_connection(("127.0.0.1", ports[name]), timeout=10) as client:
                    client.sendall(b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
                    response = bytearray()
                    while chunk := client.recv(65536):
                        response += chunk
                    assert response.startswith(b"HTTP/1.1 200 "), (name, bytes(response[:200]))
        finally:
            stop(proxy)
        # without a header the server closes the connection: no response
        with socket.create_connection((server.host, server.port), timeout=10) as direct:
            direct.sendall(b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
            try:
                assert direct.recv(100) == b""
            except ConnectionResetError:
                pass
        code, _out, err = server.stop()
        assert code == 0, err
    finally:
        server.kill()


def test_serve_proxy_protocol_with_a_hand_written_header() -> None:
    server = Server("--protocol", "echo", "--proxy-protocol", "--port", "0", "--grace", "1")
    try:
        assert server.match, server.first_line
        with socket.create_connection((server.host, server.port), timeout=10) as client:
            client.sendall(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nhello")
            assert recv_exactly(client, 5) == b"hello", "the header is not echoed, the data is"
        code, _out, err = server.stop()
        assert code == 0, err
    finally:
        server.kill()


def test_cli_passes_proxy_protocol_to_serve_and_workers() -> None:
    # The workers are forked with the supervisor's configuration itself.
    from reactor.tools.cli import build_parser, serve_config

    args = build_parser().parse_args(["serve", "--proxy-protocol", "--workers", "2", "--proxy-from", "10.0.0.0/8"])
    config = serve_config(args)
    assert config.proxy_protocol is True and config.proxy_from == ["10.0.0.0/8"]
    config = serve_config(build_parser().parse_args(["serve"]))
    assert config.proxy_protocol is False and config.proxy_from is None


# ------------------------------------------------------ load through HAProxy

#: what serve --protocol http answers to GET /
HELLO = b"Hello from reactor\n"


def http_get(port: int) -> int:
    """One GET on a new connection (each wait bounded by the socket
    timeout); the pid that served it. Anything but a complete 200 with the
    stock body raises."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    # HAProxy's HTTP mode sends header names in lower case
    match = re.search(rb"\r\nX-Reactor-Pid: (\d+)\r\n", head + b"\r\n", re.IGNORECASE)
    if not head.startswith(b"HTTP/1.1 200 ") or body != HELLO or not match:
        raise EOFError(f"not the stock answer: {bytes(data[:300])!r}")
    return int(match[1])


class Load:
    """``threads`` clients, each making one GET per connection through
    ``port`` until ``stop()``, for at most ``seconds`` and ``limit``
    requests in all: the load is bounded whatever the test waits for.
    Every answer is kept as (time it was asked, pid), every failure by
    kind."""

    def __init__(self, port: int, threads: int = 4, seconds: float = 30.0, limit: int = 20_000) -> None:
        self.port = port
        self.deadline = time.monotonic() + seconds
        self.limit = limit
        self.stopped = threading.Event()
        self.served: list[tuple[float, int]] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.changed = threading.Condition()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            with self.changed:
                if len(self.served) + sum(self.errors.values()) >= self.limit:
                    return
            asked = time.monotonic()
            try:
                pid = http_get(self.port)
            except (OSError, EOFError) as exc:  # refused, reset, timed out, a short or wrong answer
                with self.changed:
                    self.errors[f"{type(exc).__name__}: {exc}"] += 1
                    self.changed.notify_all()
                continue
            with self.changed:
                self.served.append((asked, pid))
                self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` more answers than now (or a failure)."""
        with self.changed:
            target = len(self.served) + count
            if not self.changed.wait_for(lambda: len(self.served) >= target or bool(self.errors), timeout):
                pytest.fail(f"{count} more answers not within {timeout} s ({len(self.served)} so far)")

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(20)
        assert not any(thread.is_alive() for thread in self.threads), "a client did not finish"

    def pids_since(self, moment: float) -> collections.Counter[int]:
        """Who answered the requests asked after ``moment``."""
        with self.changed:
            return collections.Counter(pid for asked, pid in self.served if asked > moment)


#: HAProxy in HTTP mode with an HTTP health check in front of two backends.
#: What makes "no client sees an error" hold while a backend goes away,
#: whatever the timing of the health checks:
HEALTH_CHECKED = """\
defaults
    mode http
    # A stopped backend refuses connects (its listener is closed) until the
    # next check marks it down: each refused connect is retried...
    retries 3
    # ... on the *other* server, at every retry (the default, -1, moves to
    # another server only on the last retry, after a 1 s turn-around wait
    # for each retry on the same one); a redispatch avoids the server that failed.
    option redispatch 1
    # Which failures are retried: conn-failure (refused; the default),
    # empty-response (the connect succeeded but the backend closed without
    # answering: a connection still in its accept queue when it closed its
    # listener is reset), response-timeout. A GET is safe to send twice.
    retry-on conn-failure empty-response response-timeout
    # A connect on loopback is answered at once (SYN-ACK or RST); 1 s only
    # bounds a lost SYN, and is the most a retry on the same server waits.
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    # One server connection per request: no idle kept-alive connection to a
    # backend that is closing it (the client asks Connection: close anyway).
    option http-server-close
frontend f_web
    bind 127.0.0.1:{port}
    default_backend b_web
backend b_web
    balance roundrobin
    # GET / HTTP/1.0, 200 expected; every 100 ms, one failure marks a server
    # down and one success up again
    option httpchk GET /
    http-check expect status 200
    server a 127.0.0.1:{port_a} check inter 100ms fall 1 rise 1
    server b 127.0.0.1:{port_b} check inter 100ms fall 1 rise 1
"""


def status(server: str, wanted: str) -> Callable[[dict], bool]:
    """A ``wait_stat`` predicate: ``server`` of b_web has this status, and
    for UP its last check passed (L7OK: an answer to the HTTP check)."""
    def check(table: dict) -> bool:
        row = table["b_web", server]
        return row["status"] == wanted and (wanted != "UP" or row["check_status"] == "L7OK")
    return check


@needs_haproxy
def test_health_check_moves_traffic_off_a_stopped_backend_and_back(tmp: str) -> None:
    servers = [Server("--protocol", "http", "--port", "0", "--grace", "1") for _ in range(2)]
    a, b = servers
    proxy: subprocess.Popen | None = None
    load: Load | None = None
    try:
        assert a.match and b.match, (a.first_line, b.first_line)
        port = free_port()
        proxy, stats = launch_haproxy(tmp, HEALTH_CHECKED.format(port=port, port_a=a.port, port_b=b.port))
        wait_stat(proxy, stats, lambda t: status("a", "UP")(t) and status("b", "UP")(t), "both servers UP")
        load = Load(port)
        load.wait_for(40)
        # Stop a: its listener closes, the connections it has are answered, it exits.
        code, _, err = a.stop()
        assert code == 0, err
        gone = time.monotonic()
        wait_stat(proxy, stats, status("a", "DOWN"), "a DOWN after it stopped")
        load.wait_for(40)
        # a again, on the same port: the next check marks it up, and it serves again.
        restarted = time.monotonic()
        servers.append(Server("--protocol", "http", "--port", str(a.port), "--grace", "1"))
        again = servers[-1]
        assert again.match, again.first_line
        wait_stat(proxy, stats, status("a", "UP"), "a UP after it started again")
        back = time.monotonic()
        load.wait_for(40)
        load.stop()
        assert load.errors == collections.Counter(), f"{load.errors} with {len(load.served)} answered"
        before = load.pids_since(0) - load.pids_since(gone)
        assert {a.proc.pid, b.proc.pid} <= set(before), ("both served at first", before)
        stopped = load.pids_since(gone) - load.pids_since(restarted)
        assert set(stopped) == {b.proc.pid}, ("only b while a was stopped", stopped)
        after = load.pids_since(back)
        assert set(after) == {again.proc.pid, b.proc.pid}, ("both serve again", after)
        table = show_stat(stats)
        # HAProxy's own view: no answer of its own (5xx) to the clients,
        # every server's sessions add up, and a went down once
        assert table["f_web", "FRONTEND"]["hrsp_5xx"] == "0", table["f_web", "FRONTEND"]
        assert table["b_web", "a"]["chkdown"] == "1", table["b_web", "a"]
        assert int(table["b_web", "BACKEND"]["hrsp_2xx"]) == len(load.served), table["b_web", "BACKEND"]
    finally:
        if load is not None:
            load.stop()
        if proxy is not None:
            stop(proxy)
        for server in servers:
            server.kill()


#: HAProxy in TCP mode, one client connection = one connection to the one
#: backend, so the backend's accepted count is the clients' count. Nothing
#: that could hide a lost connection: no retry, no other server (and no
#: health check, whose connections would count in the backend's summary).
RELOADED = """\
defaults
    mode tcp
    retries 0
    timeout connect 1s
    timeout client 10s
    timeout server 10s
frontend f_web
    bind 127.0.0.1:{port}
    default_backend b_web
backend b_web
    server w 127.0.0.1:{backend}
"""


@needs_haproxy
def test_sighup_behind_haproxy_loses_no_request(tmp: str) -> None:
    server = Server("--workers", "2", "--protocol", "http", "--port", "0", "--grace", "1")
    proxy: subprocess.Popen | None = None
    load: Load | None = None
    try:
        assert server.match, server.first_line
        line = server.readline()
        assert line.startswith("workers: 2 pids="), line
        generations = [{int(pid) for pid in line.split("pids=")[1].split()}]
        port = free_port()
        proxy, stats = launch_haproxy(tmp, RELOADED.format(port=port, backend=server.port))
        load = Load(port)
        load.wait_for(40)
        for _ in range(3):
            server.send_signal(signal.SIGHUP)
            line = server.readline(timeout=20)
            assert line.startswith("reloaded: generation="), line
            generations.append({int(pid) for pid in line.split("pids=")[1].split()})
            load.wait_for(40)  # served by the new generation (and the old one, draining)
        load.stop()
        assert load.errors == collections.Counter(), f"{load.errors} with {len(load.served)} answered"
        table = show_stat(stats)
        code, out, err = server.stop()
        assert code == 0, err
    finally:
        if load is not None:
            load.stop()
        if proxy is not None:
            stop(proxy)
        server.kill()
    served = load.pids_since(0)
    assert set(served) <= set().union(*generations), (served, generations)
    assert generations[-1] & set(served), ("the last generation served", served, generations)
    # what the backend's summary says it accepted is what the clients had answered, and what HAProxy passed on
    summary = re.search(r"^stopped: workers=2 accepted=(\d+) .* reloads=3 ", out, re.M)
    assert summary, out
    assert int(summary[1]) == len(load.served) == int(table["b_web", "BACKEND"]["stot"]), (summary[0], table)
    assert (table["b_web", "w"]["econ"], table["b_web", "w"]["eresp"]) == ("0", "0"), table["b_web", "w"]


# ------------------------------------------------ proxy_errors in the summary

def send_bad_header(host: str, port: int) -> None:
    """A client that reaches the server directly, without a PROXY header: the
    server closes the connection (EOF or RST) and counts it."""
    with socket.create_connection((host, port), timeout=10) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        try:
            assert client.recv(100) == b"", "a bad header gets no answer"
        except ConnectionResetError:
            pass  # closed with our request unread: RST


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers"])
def test_the_summary_counts_proxy_errors(workers: list[str]) -> None:
    server = Server("--protocol", "echo", "--proxy-protocol", "--port", "0", "--grace", "1", *workers)
    try:
        assert server.match, server.first_line
        with socket.create_connection((server.host, server.port), timeout=10) as client:
            client.sendall(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nhello")
            assert recv_exactly(client, 5) == b"hello", "a good header is not an error"
        # the connection is closed once the error is counted: the summary has it
        send_bad_header(server.host, server.port)
        code, out, err = server.stop()
        assert code == 0, err
        summary = [line for line in out.splitlines() if line.startswith("stopped: ")]
        assert len(summary) == 1, out
        assert " accepted=2 " in summary[0] and " proxy_errors=1 " in summary[0], summary[0]
    finally:
        server.kill()


def test_the_summary_has_no_proxy_errors_without_proxy_protocol() -> None:
    server = Server("--protocol", "echo", "--port", "0", "--grace", "1")
    try:
        assert server.match, server.first_line
        code, out, err = server.stop()
        assert code == 0, err
        assert "stopped: accepted=0 " in out and "proxy_errors" not in out, out
    finally:
        server.kill()
