"""``serve --trace`` and ``--trace-json``: one event per step of a
connection's life, with the kernel's view; and nothing at all when off."""

from __future__ import annotations

import fcntl
import io
import json
import re
import socket
import struct
import termios
from contextlib import ExitStack

import pytest

import reactor
from reactor.tools.serve import ServeConfig, protocol_factory
from reactor.tools.stock import EchoProtocol
from reactor.tools.trace import Tracer

from ..support import LINGER_RST, Server, run_until

EVENT = re.compile(r"^trace \d\d:\d\d:\d\d\.\d{3} #(?P<conn>\d+) (?P<peer>\S+) (?P<event>\S+)(?P<fields>.*)$")


@pytest.fixture
def traced_server():
    servers: list[Server] = []

    def start(*args: str) -> Server:
        server = Server("--port", "0", "--protocol", "echo", *args)
        servers.append(server)
        assert server.match, server.first_line
        return server

    yield start
    for server in servers:
        server.kill()


def events_of(server: Server, count: int) -> list[tuple[str, dict[str, str]]]:
    """The next ``count`` trace lines: (event, fields)."""
    found = []
    while len(found) < count:
        line = server.readline(timeout=10)
        match = EVENT.match(line)
        if match:
            fields = dict(item.split("=", 1) for item in match["fields"].split())
            found.append((match["event"], fields))
    return found


def recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_client_that_sends_half_closes_and_reads_to_eof(traced_server):
    server = traced_server("--trace")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"hello")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"hello"
    events = events_of(server, 5)
    assert [name for name, _ in events] == ["accepted", "first-byte", "peer-fin", "our-fin", "closed"]
    accepted, first, peer_fin, our_fin, closed = (fields for _, fields in events)
    assert int(accepted["queue_wait_ms"]) >= 0 and accepted["state"] in ("ESTABLISHED", "CLOSE_WAIT")
    assert first["bytes"] == "5"
    assert peer_fin["state"] == "CLOSE_WAIT"
    assert our_fin["via"] == "close" and our_fin["state"] == "CLOSE_WAIT"
    assert closed["how"] == "fin" and closed["in"] == "5" and closed["out"] == "5" and closed["retrans"] == "0"
    assert float(closed["duration_ms"]) >= 0
    code, out, err = server.stop()
    assert code == 0, err
    assert "traced: accepted=1 closed=1 first-byte=1 our-fin=1 peer-fin=1" in out


def test_a_client_that_resets(traced_server):
    server = traced_server("--trace")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    finally:
        sock.close()  # RST
    events = events_of(server, 4)
    assert [name for name, _ in events] == ["accepted", "first-byte", "rst-in", "closed"]
    assert events[-1][1]["how"] == "rst-in" and events[-1][1]["in"] == "4"


def test_trace_json_writes_the_same_events(traced_server, tmp_path):
    path = tmp_path / "trace.jsonl"
    server = traced_server("--trace-json", str(path))
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"abc")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"abc"
    code, out, err = server.stop()
    assert code == 0, err
    assert "trace " not in out, "--trace-json alone prints no trace lines"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["event"] for r in records] == ["accepted", "first-byte", "peer-fin", "our-fin", "closed"]
    assert {r["conn"] for r in records} == {1}
    assert records[-1]["how"] == "fin" and records[-1]["in"] == 3 and records[0]["peer"].startswith("127.0.0.1:")


def test_stats_line_has_the_syn_queue_the_accept_queue_and_time_wait(traced_server):
    server = traced_server("--stats-interval", "0.2")
    line = server.readline(timeout=10)
    while not line.startswith("stats: "):
        line = server.readline(timeout=10)
    assert re.search(r" syn_queue=\d+ queue=\d+/\d+ time_wait=\d+ ", line), line


# --------------------------------------------------------- in one process

def test_tracing_off_hands_the_listener_the_stock_class_itself():
    with ExitStack() as resources:
        factory, tracer = protocol_factory(ServeConfig(protocol="echo"), io.StringIO(), resources)
    assert factory is EchoProtocol and tracer is None


def lines(text: io.StringIO) -> list[tuple[str, str]]:
    out = []
    for line in text.getvalue().splitlines():
        match = EVENT.match(line)
        assert match, line
        out.append((match["event"], match["fields"]))
    return out


class Paused(reactor.Protocol):
    """Reads nothing: what the peer sends stays unread."""

    def connection_made(self, transport):
        self.transport = transport
        transport.pause_reading()


def test_close_with_unread_bytes_is_traced_as_rst_out(loop):
    out = io.StringIO()
    made: list[Paused] = []

    def factory() -> Paused:
        made.append(Paused())
        return made[-1]

    lst = loop.listen(Tracer(out).wrap(factory))
    with socket.create_connection(lst.address, timeout=5) as client:
        run_until(loop, lambda: bool(made) and made[0].transport is not None)
        client.sendall(b"never read")
        sock = made[0].transport.get_extra_info("socket")
        run_until(loop, lambda: kernel_unread(sock) == 10)
        made[0].transport.close()
        run_until(loop, lambda: lst.stats.active == 0)
        loop.call_soon(loop.stop)
        loop.run()  # connection_lost
        client.settimeout(5)
        with pytest.raises(ConnectionResetError):
            client.recv(16)
    events = lines(out)
    assert [name for name, _ in events] == ["accepted", "rst-out", "closed"]
    assert "unread=10" in events[1][1] and "via=close" in events[1][1]
    assert "how=rst-out" in events[2][1]
    lst.close()


def test_abort_is_traced_as_rst_out(loop):
    out = io.StringIO()
    made: list[Paused] = []
    lst = loop.listen(Tracer(out).wrap(lambda: made.append(Paused()) or made[-1]))
    with socket.create_connection(lst.address, timeout=5):
        run_until(loop, lambda: bool(made) and made[0].transport is not None)
        made[0].transport.abort()
        run_until(loop, lambda: lst.stats.active == 0)
        loop.call_soon(loop.stop)
        loop.run()
    assert [name for name, _ in lines(out)] == ["accepted", "rst-out", "closed"]
    assert "via=abort" in lines(out)[1][1]
    lst.close()


def kernel_unread(sock: socket.socket) -> int:
    """SIOCINQ: bytes received and not yet read."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
