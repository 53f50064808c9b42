"""The load generator, both engines, against a tiny selectors server in a
thread: each mode completes what it says, stops by itself (at its duration,
its count, or when told), and reports errors by errno."""

from __future__ import annotations

import errno
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable

import pytest

from reactor import native
from reactor.tools import loadgen
from reactor.tools.loadgen import bucket, percentile, run_load, start_load

C_REASON = f"C load generator not available: {native.extension_error()}"
needs_c = pytest.mark.skipif(not loadgen.c_engine_available(), reason=C_REASON)


@pytest.fixture(params=[pytest.param("c", marks=needs_c), "python"])
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


def load(engine: str, port: int, mode: str, **kwargs) -> loadgen.LoadResult:
    kwargs.setdefault("processes", 1)  # the Python engine in this process: quick to start
    if engine == "c":
        kwargs.pop("processes")
    return run_load("127.0.0.1", port, mode, engine=engine, **kwargs)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.005)


class TinyServer:
    """A selectors server in a thread. ``kind``: ``hold`` (read and drop,
    close at EOF), ``close`` (close each connection at once: the client reads
    EOF), ``echo``, ``badecho`` (echoes with the first byte changed)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.accepted = 0
        self.open = 0
        self.peers: set[str] = set()
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4096)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"tiny-{kind}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.lsock, selectors.EVENT_READ, "listen")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        conns: set[socket.socket] = set()
        try:
            while True:
                for key, _ in sel.select(1.0):
                    if key.data == "wake":
                        return
                    if key.data == "listen":
                        self._accept(sel, conns)
                    else:
                        self._serve(sel, conns, key.fileobj)  # type: ignore[arg-type]
        finally:
            for conn in conns:
                conn.close()
            sel.close()

    def _accept(self, sel: selectors.BaseSelector, conns: set[socket.socket]) -> None:
        while True:
            try:
                conn, peer = self.lsock.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            self.peers.add(peer[0])
            if self.kind == "close":
                conn.close()
                continue
            conn.setblocking(False)
            conns.add(conn)
            self.open += 1
            sel.register(conn, selectors.EVENT_READ, "conn")

    def _serve(self, sel: selectors.BaseSelector, conns: set[socket.socket], conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # ECONNRESET from rst mode
            data = b""
        if not data:
            sel.unregister(conn)
            conns.discard(conn)
            conn.close()
            self.open -= 1
        elif self.kind == "echo":
            conn.sendall(data)  # small payloads: fits the send buffer
        elif self.kind == "badecho":
            conn.sendall(bytes([data[0] ^ 0xFF]) + data[1:])

    def close(self) -> None:
        self._wake_w.send(b"x")
        self._thread.join(5)
        assert not self._thread.is_alive()
        for sock in (self.lsock, self._wake_r, self._wake_w):
            sock.close()


@pytest.fixture
def server(request: pytest.FixtureRequest):
    servers: list[TinyServer] = []

    def make(kind: str) -> TinyServer:
        servers.append(TinyServer(kind))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


# ------------------------------------------------------------------- modes


@pytest.mark.parametrize("mode, kind", [("connect-close", "hold"), ("client-close", "close"), ("rst", "hold")])
def test_connection_modes_complete_exactly_count(engine: str, server, mode: str, kind: str):
    srv = server(kind)
    result = load(engine, srv.port, mode, concurrency=4, duration=5.0, count=60)
    assert result.engine == engine
    assert result.stopped_by == "count"
    assert result.completed == result.connections == 60
    assert result.errors == {}
    assert result.open_at_end == 0
    assert 0 < result.p50_us <= result.p99_us
    assert 0 < result.connect_p50_us <= result.connect_p99_us
    wait_for(lambda: srv.accepted == 60)  # the server saw every one, and no more
    if kind == "hold":
        wait_for(lambda: srv.open == 0)  # FIN or RST: the server saw each end


@pytest.mark.parametrize("mode, kind", [("connect-close", "hold"), ("client-close", "close"), ("rst", "hold")])
def test_connection_modes_stop_at_their_duration(engine: str, server, mode: str, kind: str):
    srv = server(kind)
    result = load(engine, srv.port, mode, concurrency=8, duration=0.3)
    assert result.stopped_by == "duration"
    assert 0.3 <= result.wall_s < 1.0
    assert result.completed > 20
    assert not {k: v for k, v in result.errors.items() if k != "timeout"}
    assert result.cpu_s > 0


def test_echo_round_trips(engine: str, server):
    srv = server("echo")
    result = load(engine, srv.port, "echo", concurrency=3, duration=5.0, count=200, size=3000)
    assert result.stopped_by == "count"
    assert result.completed == 200  # round trips, not connections
    assert result.connections == 3
    assert result.errors == {}
    assert result.p50_us is not None


def test_echo_detects_corrupt_replies(engine: str, server):
    srv = server("badecho")
    result = load(engine, srv.port, "echo", concurrency=2, duration=0.3, size=100)
    assert result.completed == 0
    assert result.errors.get("mismatch", 0) >= 2
    assert set(result.errors) == {"mismatch"}


def test_echo_counts_an_early_close(engine: str, server):
    srv = server("close")
    result = load(engine, srv.port, "echo", concurrency=2, duration=0.3, size=10)
    assert result.completed == 0
    # The server closed before replying: EOF, or ECONNRESET/EPIPE when our
    # request reached an already-closed socket.
    assert set(result.errors) <= {"eof", "ECONNRESET", "EPIPE"} and result.errors


def test_hold_keeps_connections_open_until_the_end(engine: str, server):
    srv = server("hold")
    result = load(engine, srv.port, "hold", concurrency=20, duration=0.4)
    assert result.stopped_by == "duration"
    assert result.completed == result.connections == result.open_at_end == 20
    assert srv.accepted == 20
    wait_for(lambda: srv.open == 0)  # closed when the run ended


def test_hold_stops_when_told(engine: str, server):
    srv = server("hold")
    kwargs = {} if engine == "c" else {"processes": 1}
    with start_load(host="127.0.0.1", port=srv.port, mode="hold", concurrency=10, duration=10.0,
                    engine=engine, **kwargs) as background:
        wait_for(lambda: srv.open == 10)
        started = time.monotonic()
        background.stop()
        result = background.result(timeout=5)
    assert time.monotonic() - started < 2
    assert result.stopped_by == "stop"
    assert result.open_at_end == 10
    wait_for(lambda: srv.open == 0)


def test_python_engine_in_several_processes(server):
    srv = server("hold")
    result = run_load("127.0.0.1", srv.port, "connect-close", concurrency=4, duration=10.0, count=40,
                      engine="python", processes=2)
    assert result.processes == 2
    assert result.completed == 40
    assert result.stopped_by == "count"
    wait_for(lambda: srv.accepted == 40)


def test_sources_spread_connections_over_loopback_addresses(engine: str, server):
    srv = server("hold")
    load(engine, srv.port, "connect-close", concurrency=4, duration=5.0, count=12, sources=3)
    wait_for(lambda: srv.accepted == 12)
    assert srv.peers == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}


def test_no_sources_uses_the_kernel_default(engine: str, server):
    srv = server("hold")
    load(engine, srv.port, "connect-close", concurrency=2, duration=5.0, count=4, sources=0)
    wait_for(lambda: srv.accepted == 4)
    assert srv.peers == {"127.0.0.1"}


def test_rate_limits_new_connections(engine: str, server):
    srv = server("hold")
    result = load(engine, srv.port, "connect-close", concurrency=8, duration=0.5, rate=100)
    assert 30 <= result.completed <= 70  # ~50 at 100/s over 0.5 s


@pytest.mark.parametrize("mode, kind", [("client-close", "close"), ("echo", "echo")])
def test_rate_paces_starts_on_a_schedule(engine: str, server, mode: str, kind: str):
    """Open loop: start k is due k / rate s after the start, so k starts take
    at least (k - 1) / rate s, however fast the server answers; echo paces
    requests over connections opened once."""
    srv = server(kind)
    result = load(engine, srv.port, mode, concurrency=4, duration=10.0, count=40, rate=200)
    assert result.stopped_by == "count" and result.completed == 40
    assert result.wall_s >= 39 / 200
    assert result.wall_s < 5.0  # it did not wait for its duration
    assert result.started == (4 if mode == "echo" else 40)
    assert result.late <= result.completed  # late is a count of starts, none missed with a count


def test_late_counts_starts_the_client_could_not_make(engine: str):
    """A server that never accepts holds both slots (each waits for a FIN
    that never comes): every later start is due and cannot leave, so it is
    counted late, not silently dropped from the offered load."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        result = load(engine, listener.getsockname()[1], "client-close", concurrency=2, duration=0.3, rate=1000,
                      timeout=10.0)
    assert result.started == 2 and result.completed == 0 and result.open_at_end == 2
    # ~300 due in 0.3 s at 1000/s (less the last ms), 2 of them left on time
    assert 250 <= result.late <= 300
    assert result.stopped_by == "duration"


def test_without_a_rate_nothing_is_late(engine: str, server):
    srv = server("close")
    result = load(engine, srv.port, "client-close", concurrency=2, duration=5.0, count=20)
    assert result.completed == 20 and result.late == 0


def test_refused_connections_are_errors_not_a_spin(engine: str):
    with socket.socket() as reserved:  # bound, never listening: connects are refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        result = load(engine, port, "connect-close", concurrency=4, duration=0.3)
    assert result.completed == 0
    assert set(result.errors) == {"ECONNREFUSED"}
    assert result.stopped_by == "duration" and result.wall_s < 1.0


# ------------------------------------------------------------- the C side


@needs_c
def test_c_run_does_not_hold_the_gil(server):
    """cffi releases the GIL around C calls in API mode: while the C engine
    runs in a thread, this thread keeps running Python."""
    srv = server("hold")
    with start_load(host="127.0.0.1", port=srv.port, mode="connect-close", concurrency=4, duration=10.0,
                    engine="c") as background:
        time.sleep(0.05)
        ticks = 0
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            ticks += 1
        still_running = background._thread.is_alive()
        background.stop()
        result = background.result(timeout=5)
    assert still_running  # we got 0.3 s of Python in while it ran (a held GIL would block us until it ends)
    assert result.stopped_by == "stop"
    assert ticks > 1000
    assert result.completed > 0


@needs_c
def test_c_refuses_non_loopback_targets_itself():
    module = native.extension()
    cfg = module.ffi.new("struct reactor_load_config *")
    cfg.host = (10 << 24) | 1  # 10.0.0.1
    cfg.port, cfg.mode, cfg.concurrency, cfg.duration, cfg.timeout, cfg.stop_fd = 80, 0, 1, 0.1, 1.0, -1
    res = module.ffi.new("struct reactor_load_result *")
    stdin = os.fstat(0)
    assert module.lib.reactor_load_run(cfg, res) == errno.EINVAL
    assert res.started == 0
    # a refused run closes nothing it did not open (an early exit once closed fd 0: the timerfd's
    # "none" was still memset's 0, and every child started later got a socket as its stdin)
    assert (os.fstat(0).st_dev, os.fstat(0).st_ino) == (stdin.st_dev, stdin.st_ino)


@needs_c
def test_histogram_buckets_match_the_c_side():
    bucket_c = native.extension().lib.reactor_load_bucket
    values = list(range(0, 200)) + [2**k + d for k in range(5, 34) for d in (-1, 0, 1, 2**(k - 5))]
    assert [bucket(v) for v in values] == [bucket_c(v) for v in values]


# ------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs, message", [
    ({"host": "10.0.0.1"}, "127.0.0.0/8"),
    ({"host": "::1"}, "IPv4"),
    ({"duration": 0}, "duration"),
    ({"duration": 10_000}, "duration"),
    ({"mode": "flood"}, "mode"),
    ({"concurrency": 0}, "concurrency"),
    ({"count": 0}, "count"),
    ({"engine": "rust"}, "engine"),
])
def test_invalid_settings_are_refused(kwargs, message):
    args = {"host": "127.0.0.1", "port": 9, "mode": "connect-close", "duration": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        run_load(**args)


def test_percentile_from_buckets():
    hist = [0] * loadgen.NBUCKETS
    assert percentile(hist, 50) is None
    for us in [10] * 98 + [1000, 5000]:
        hist[bucket(us)] += 1
    assert percentile(hist, 50) == 10.5
    assert 960 <= percentile(hist, 99) <= 1040  # the bucket holding 1000, within 1/32
    assert 4800 <= percentile(hist, 100) <= 5200
