"""A real HAProxy in front of reactor servers with ``proxy_protocol=True``:
``send-proxy`` (v1) and ``send-proxy-v2`` to a TCP listener, v2 to a Unix
one, and ``serve --protocol http --proxy-protocol`` answering through both.
The server must see the client's own address (the header's), not
HAProxy's. Skipped when there is no ``haproxy`` binary (Debian: ``apt-get
install haproxy``; .ci/run installs it); the last tests, with a header
written by hand, run without it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator

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


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"haproxy exited: {proc.communicate(timeout=5)}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"haproxy did not listen on {port} within {timeout} s")


def start_haproxy(tmp: str, routes: dict[str, str]) -> tuple[subprocess.Popen, dict[str, int]]:
    """HAProxy in the foreground (-db), one TCP-mode frontend per route:
    name -> ``server`` line tail (address and send-proxy option)."""
    ports = {name: free_port() for name in routes}
    sections = []
    for name, server in routes.items():
        sections.append(f"frontend f_{name}\n    bind 127.0.0.1:{ports[name]}\n    default_backend b_{name}\n"
                        f"backend b_{name}\n    server s_{name} {server}\n")
    config = os.path.join(tmp, "haproxy.cfg")
    with open(config, "w") as out:
        out.write(f"global\n    pidfile {tmp}/haproxy.pid\n    maxconn 64\n"
                  "defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 10s\n"
                  "    timeout server 10s\n" + "".join(sections))
    assert HAPROXY is not None
    proc = subprocess.Popen([HAPROXY, "-db", "-f", config], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for port in ports.values():
            wait_listening(port, proc)
    except BaseException:
        stop(proc)
        raise
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
        code, out, err = server.stop()
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
        code, out, err = server.stop()
        assert code == 0, err
    finally:
        server.kill()


def test_cli_passes_proxy_protocol_to_serve_and_workers() -> None:
    from reactor.tools.cli import _worker_args, build_parser

    args = build_parser().parse_args(["serve", "--proxy-protocol", "--workers", "2"])
    assert args.proxy_protocol is True
    assert "--proxy-protocol" in _worker_args(args)
    args = build_parser().parse_args(["serve"])
    assert args.proxy_protocol is False
    assert "--proxy-protocol" not in _worker_args(args)


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
