"""``serve --trace`` and ``--trace-json``: one event per step of a
connection's life, with the kernel's view; and nothing at all when off."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
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


def test_the_wrapped_protocols_own_methods_pass_through():
    """serve's drain asks each connection's protocol for drain(): a traced
    one must answer as the protocol it wraps does (it was closed at once)."""
    class Drains(reactor.Protocol):
        def drain(self, settled: bool) -> bool:
            return settled

    tracer = Tracer(io.StringIO())
    assert tracer.wrap(Drains)().drain(True) is True
    assert getattr(tracer.wrap(reactor.Protocol)(), "drain", None) is None


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


# ------------------------------------------------------------ --trace-wire

def wire_tap_or_skip() -> None:
    from reactor.tools.lab.wire import Capture, CaptureUnavailable

    try:
        Capture([]).close()
    except CaptureUnavailable as exc:
        pytest.skip(str(exc))


def wire_events(out: str, conn: int = 1) -> list[dict[str, str]]:
    """The wire events of connection ``conn`` in serve's output (its ring,
    printed when it ended, or at exit: serve prints what waits then)."""
    found = []
    for line in out.splitlines():
        match = EVENT.match(line)
        if match and int(match["conn"]) == conn and match["event"].startswith("wire"):
            found.append({"event": match["event"], **dict(item.split("=", 1) for item in match["fields"].split())})
    return found


def test_trace_wire_prints_the_segments_of_a_connection_that_was_reset(traced_server):
    wire_tap_or_skip()
    server = traced_server("--trace", "--trace-wire")
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    finally:
        sock.close()  # RST
    assert [name for name, _ in events_of(server, 4)][-2:] == ["rst-in", "closed"]
    code, out, err = server.stop()
    assert code == 0, err
    ring = wire_events(out)
    seen = [f"{f['dir']} {f['flags']}" for f in ring]
    assert seen[:4] == ["in SYN", "out SYN/ACK", "in ACK", "in PSH/ACK"], seen
    assert seen[-1] == "in RST/ACK", "why it ended: the client's RST"
    assert {"len": "4", "dir": "out"}.items() <= next(f for f in ring if f["dir"] == "out" and f["len"] != "0").items()
    assert ring[1]["ack"] == "1" and ring[0]["seq"] == "0", "numbered from each side's ISN"
    assert "wire=" in out.splitlines()[-1]


def test_trace_wire_keeps_the_last_segments_and_says_how_many_went(traced_server):
    from reactor.tools.trace import WIRE_RING

    wire_tap_or_skip()
    server = traced_server("--trace", "--trace-wire")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(40):  # 40 round trips: far more segments than a ring keeps
            sock.sendall(b"x")
            assert sock.recv(16) == b"x"
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b""
    assert [name for name, _ in events_of(server, 5)][-1] == "closed"
    code, out, err = server.stop()
    assert code == 0, err
    ring = wire_events(out)
    earlier, segments = ring[0], ring[1:]
    assert earlier["event"] == "wire-earlier" and int(earlier["segments"]) > 40
    assert len(segments) == WIRE_RING, "bounded: the last WIRE_RING segments"
    seen = [f"{f['dir']} {f['flags']}" for f in segments]
    assert "in FIN/ACK" in seen and seen[-2:] == ["out FIN/ACK", "in ACK"], "the close is what is kept"


def test_trace_wire_in_json(traced_server, tmp_path):
    wire_tap_or_skip()
    path = tmp_path / "trace.jsonl"
    server = traced_server("--trace-json", str(path), "--trace-wire")
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"abc")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"abc"
    code, _out, err = server.stop()
    assert code == 0, err
    records = [json.loads(line) for line in path.read_text().splitlines()]
    wire = [r for r in records if r["event"] == "wire"]
    assert [(r["dir"], r["flags"]) for r in wire[:3]] == [("in", "SYN"), ("out", "SYN/ACK"), ("in", "ACK")]
    assert wire[0]["ack"] is None and wire[1]["seq"] == 0 and all(r["conn"] == 1 for r in wire)
    assert any(r["dir"] == "out" and r["len"] == 3 for r in wire)


def test_trace_wire_is_opt_in_and_tcp_only():
    for args, message in ((["--trace-wire"], "--trace-wire adds to --trace or --trace-json"),
                          (["--trace", "--trace-wire", "--unix", "/tmp/never.sock"], "not a Unix socket")):
        done = subprocess.run([sys.executable, "-m", "reactor", "serve", *args], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_trace_wire_without_cap_net_raw_exits_1_saying_why():
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to take CAP_NET_RAW away")
    done = subprocess.run(["setpriv", "--bounding-set", "-net_raw", "--", sys.executable, "-m", "reactor", "serve",
                           "--port", "0", "--trace", "--trace-wire"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "needs CAP_NET_RAW" in done.stderr, done.stdout + done.stderr
    assert "listening on" not in done.stdout


def test_trace_wire_on_ipv6(traced_server):
    """The tap's filter and parser on IPv6 (the lab itself is IPv4 only)."""
    wire_tap_or_skip()
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    server = traced_server("--host", "::1", "--trace", "--trace-wire")
    with socket.create_connection(("::1", server.port), timeout=10) as sock:
        sock.sendall(b"v6")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"v6"
    assert [name for name, _ in events_of(server, 5)][-1] == "closed"
    code, out, err = server.stop()
    assert code == 0, err
    seen = [f"{f['dir']} {f['flags']}" for f in wire_events(out)]
    assert seen[:3] == ["in SYN", "out SYN/ACK", "in ACK"] and seen[-1] == "in ACK", seen
