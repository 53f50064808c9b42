"""Listeners on real loopback sockets: the accept drain, RST before accept,
fd exhaustion (in a child process with a low RLIMIT_NOFILE), select's
FD_SETSIZE, and the listener's own API.

The exact errno policy (on a scripted fake socket) is in test_accept_policy.py;
binding (backlog, addresses, Unix socket files, arguments) in test_binding.py.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

import reactor
import reactor._net.listener as listener_mod
from reactor import kernel
from reactor._core.states import TransitionError, check_table
from reactor._net.binding import DEFAULT_BACKLOG
from reactor._net.listener import _TRANSITIONS, Event, State
from reactor.tools.stock import EchoProtocol

from ..support import (
    LINGER_RST,
    LOOP_BACKENDS,
    Clients,
    EchoRecorder,
    Factory,
    open_fds,
    readable,
    recv_exactly,
    registered,
    run_for,
    run_until,
)

# ---------------------------------------- helpers used by this suite only

def move_fd_high(sock: socket.socket, floor: int) -> socket.socket:
    """A socket equal to ``sock`` on the lowest free fd >= ``floor`` (the
    original is closed), so that its fd does not take a low number."""
    import fcntl

    fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor)
    family, type_ = sock.family, sock.type
    timeout = sock.gettimeout()
    sock.close()
    moved = socket.socket(family, type_, 0, fileno=fd)
    moved.settimeout(timeout)
    return moved


class Child:
    """A Python child process speaking JSON lines on stdout, commands on
    stdin; every read is bounded; killed at the end if still running."""

    def __init__(self, script: str, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env,
        )
        self._buffer = b""

    def read_json(self, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"child sent no line within {timeout} s; stderr: {self.stderr_now()}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"child exited early: {self.stderr_now()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def command(self, text: str, timeout: float = 10.0) -> Any:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return self.read_json(timeout)

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")[-3000:]

    def finish(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("child did not exit in time") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


NATIVE_MODES = [False, True]


@pytest.fixture(params=NATIVE_MODES, ids=["pure", "native"])
def server_loop(request, backend, errors):
    """A reactor per backend x accept drain (pure Python / C when built)."""
    if request.param and not reactor.native_available():
        pytest.skip(f"C accelerator not available: {reactor.native_error()}")
    r = reactor.Reactor(backend=backend, native=request.param)
    r.set_exception_handler(errors)
    yield r
    r.close()
    unexpected = errors.take()
    assert not unexpected, f"unexpected exceptions in callbacks: {unexpected}"


# -------------------------------------------------------------- accept drain

class TestDrain:
    @pytest.mark.parametrize("family", ["tcp", "unix"])
    def test_queued_connections_are_all_accepted_in_one_wakeup(self, server_loop, clients, short_dir, family):
        n = 100
        factory = Factory()
        # above the default batch (64): the queue, not the cap, ends this drain
        if family == "tcp":
            lst = server_loop.listen(factory, max_accepts=256)
        else:
            lst = server_loop.listen_unix(factory, os.path.join(short_dir, "s"), max_accepts=256)
        for _ in range(n):
            clients.connect(lst.address)  # completed by the kernel, queued
        if family == "tcp":
            assert kernel.listen_queue(lst.socket)[0] == n
        run_until(server_loop, lambda: factory.made == n)
        s = lst.stats
        assert (s.accepted, s.wakeups, s.batches, s.max_batch, s.empty_wakeups, s.aborted) == (n, 1, 1, n, 0, 0)
        assert s.histogram[n.bit_length()] == 1 and sum(s.histogram) == 1  # 100 is in 64..127
        assert s.active == n
        if family == "tcp":
            assert kernel.listen_queue(lst.socket)[0] == 0

    @pytest.mark.parametrize("k", [1, 7, 50])
    def test_max_accepts_spreads_the_queue_over_wakeups(self, server_loop, clients, k):
        n = 50
        factory = Factory()
        lst = server_loop.listen(factory, max_accepts=k)
        for _ in range(n):
            clients.connect(lst.address)
        run_until(server_loop, lambda: factory.made == n)
        s = lst.stats
        assert s.batches == math.ceil(n / k) == s.wakeups
        assert s.max_batch == k
        expected = [0] * len(s.histogram)
        expected[k.bit_length()] += n // k
        if n % k:
            expected[(n % k).bit_length()] += 1
        assert s.histogram == expected

    def test_default_max_accepts_is_the_backlog_capped(self, server_loop):
        assert listener_mod.MAX_ACCEPTS_CAP == 64  # see the measurements at the constant
        assert server_loop.listen(Factory()).max_accepts == min(kernel.somaxconn(), DEFAULT_BACKLOG, 64)
        assert server_loop.listen(Factory(), backlog=5).max_accepts == 5

    def test_peer_address_comes_from_accept(self, server_loop, clients):
        factory = Factory()
        lst = server_loop.listen(factory)
        client = clients.connect(lst.address)
        run_until(server_loop, lambda: factory.made == 1)
        transport = factory.protocols[0].transport
        assert transport.get_extra_info("peername") == client.getsockname()
        assert transport.get_extra_info("sockname") == client.getpeername()


class TestResetBeforeAccept:
    def test_500_connections_reset_in_the_queue(self, server_loop, clients):
        n = 500
        factory = Factory(EchoRecorder)
        lst = server_loop.listen(factory)
        baseline = open_fds()
        for _ in range(n):
            sock = socket.create_connection(lst.address, timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            sock.close()
        assert open_fds() == baseline
        run_until(server_loop, lambda: factory.lost == n, timeout=20)
        # Linux still returns a connection reset in the queue: accept succeeds,
        # and the first read reports ECONNRESET.
        s = lst.stats
        assert (s.accepted, s.aborted, s.active, s.rejected) == (n, 0, 0, 0)
        for p in factory.protocols:
            assert p.events == ["made", "lost"]
            assert len(p.lost) == 1 and isinstance(p.lost[0], ConnectionResetError)
            assert p.transport.get_extra_info("peername")[0] == "127.0.0.1"
        assert open_fds() == baseline
        # the same listener still serves
        client = clients.connect(lst.address)
        client.sendall(b"still here")
        run_until(server_loop, lambda: len(factory.protocols) == n + 1 and factory.protocols[-1].data == b"still here")
        assert recv_exactly(client, 10) == b"still here"
        assert lst.state == "active"

    def test_listener_keeps_serving_after_resets(self, server_loop, clients):
        factory = Factory(EchoRecorder)
        lst = server_loop.listen(factory)
        for _ in range(20):
            sock = socket.create_connection(lst.address, timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            sock.close()
        client = clients.connect(lst.address)
        client.sendall(b"ping")
        run_until(server_loop, lambda: factory.lost == 20 and len(factory.protocols) == 21)
        assert recv_exactly(client, 4) == b"ping"
        assert lst.state == "active"


# ------------------------------------------------------------ select's limit

@pytest.mark.skipif("select" not in LOOP_BACKENDS, reason="no select backend")
def test_select_refuses_connections_past_fd_setsize_and_keeps_serving(errors, caplog):
    n = 1100
    floor = 8192
    if kernel.raise_fd_limit(floor + n + 200) < floor + n + 200:
        pytest.skip("cannot raise RLIMIT_NOFILE far enough")
    pool = Clients()
    r = reactor.Reactor(backend="select")
    r.set_exception_handler(errors)
    try:
        factory = Factory(EchoRecorder)
        lst = r.listen(factory)
        # Client fds are moved above `floor`, so the server's accepted fds
        # take the low numbers in order and cross FD_SETSIZE mid-way.
        for _ in range(n):
            sock = socket.create_connection(lst.address, timeout=5)
            pool.adopt(move_fd_high(sock, floor))
        with caplog.at_level(logging.WARNING, logger="reactor.listener"):
            run_until(r, lambda: lst.stats.accepted == n, timeout=20)
        made = len(factory.protocols)
        s = lst.stats
        assert s.rejected == n - made
        assert s.rejected >= n - reactor.FD_SETSIZE
        assert made >= 900
        warnings = [rec for rec in caplog.records if rec.name == "reactor.listener"]
        assert len(warnings) == 1 and "FD_SETSIZE" in warnings[0].getMessage()
        served = {p.transport.get_extra_info("peername") for p in factory.protocols}
        served_clients = [c for c in pool.socks if c.getsockname() in served]
        refused = [c for c in pool.socks if c.getsockname() not in served]
        assert len(refused) == s.rejected
        # the refused ones were closed cleanly: EOF
        for sock in refused:
            assert sock.recv(16) == b""
        # the early ones still echo (first, middle, last served)
        for sock in (served_clients[0], served_clients[made // 2], served_clients[-1]):
            sock.sendall(b"ping")
        run_until(r, lambda: sum(p.data == b"ping" for p in factory.protocols) == 3)
        for sock in (served_clients[0], served_clients[made // 2], served_clients[-1]):
            assert recv_exactly(sock, 4) == b"ping"
        # the loop is alive: a timer fires, and once low fds are free again a
        # new connection is served
        for sock in served_clients[:10]:
            sock.close()
        run_until(r, lambda: factory.lost == 10)
        late = move_fd_high(socket.create_connection(lst.address, timeout=5), floor)
        pool.adopt(late)
        late.sendall(b"late")
        run_until(r, lambda: factory.protocols[-1].data == b"late" and len(factory.protocols) == made + 1)
        assert recv_exactly(late, 4) == b"late"
        assert not errors.take()
    finally:
        r.close()
        pool.close_all()


@pytest.mark.skipif("select" not in LOOP_BACKENDS, reason="no select backend")
@pytest.mark.parametrize("max_accepts", [None, 512], ids=["default", "512"])
def test_a_reset_burst_on_select_stays_below_fd_setsize(errors, max_accepts):
    """1100 connections reset while queued -- more than select can watch at
    once. A batch's connections stay open until the next iteration reads
    their RST, and select reports the listener (a low fd) first, so the
    next batch is accepted while the last one is still open: two batches
    of 512 made 1024+ fds and refused the ones past FD_SETSIZE. At the
    default batch the burst costs at most two batches of fds; with a large
    max_accepts the batch is held to the room left below FD_SETSIZE."""
    n = 1100
    if kernel.raise_fd_limit(4096) < 4096:
        pytest.skip("cannot raise RLIMIT_NOFILE to 4096")
    r = reactor.Reactor(backend="select")
    r.set_exception_handler(errors)
    try:
        lst = r.listen(EchoProtocol, backlog=2048, max_accepts=max_accepts)
        if lst.backlog < n:
            pytest.skip(f"somaxconn {lst.backlog} cannot queue {n} connections")
        lst.pause()
        for _ in range(n):
            sock = socket.create_connection(lst.address, timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            sock.close()
        deadline = time.monotonic() + 5
        while kernel.listen_queue(lst.socket)[0] < n:
            assert time.monotonic() < deadline, "the kernel did not queue every connection"
            time.sleep(0.001)
        base = len(open_fds())
        peaks = []
        real_drain = lst._drain

        def drain(batch):
            result = real_drain(batch)
            peaks.append(len(open_fds()))  # fds peak right after a drain, before the batch is read
            return result

        lst._drain = drain
        lst.resume()
        run_until(r, lambda: lst.stats.accepted == n and lst.stats.active == 0, timeout=20)
        s = lst.stats
        assert (s.rejected, s.exhausted, s.aborted) == (0, 0, 0)
        assert max(peaks) <= reactor.FD_SETSIZE  # fds 0 .. FD_SETSIZE - 1 at most
        if max_accepts is None:
            cap = listener_mod.MAX_ACCEPTS_CAP
            assert s.max_batch == cap  # the burst did fill the batches
            assert max(peaks) <= base + 2 * cap  # two batches at most
    finally:
        r.close()


# ---------------------------------------------------------------- exhaustion

EMFILE_CHILD = r"""
import json, os, resource, sys, time
import reactor
from reactor.tools.stock import EchoProtocol

policy, backend, slack = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = reactor.Reactor(backend=backend)
errors = []
r.set_exception_handler(lambda loop, ctx: errors.append(repr(ctx.get("exception"))))
lst = r.listen(EchoProtocol, "127.0.0.1", 0, on_exhausted=policy)
spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]

def open_fds():
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        fds.append(int(name))
    return fds

fds = open_fds()
limit = max(fds) + 1 + slack
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
buffer = b""

def report(**extra):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(dict(state=lst.state, stats=lst.stats.as_dict(), cpu=usage.ru_utime + usage.ru_stime,
                          time=time.monotonic(), errors=errors, **extra)), flush=True)

def on_stdin():
    global buffer
    data = os.read(0, 4096)
    if not data:
        r.stop()
        return
    buffer += data
    while b"\n" in buffer:
        line, buffer = buffer.split(b"\n", 1)
        if line == b"free":
            while spare:
                os.close(spare.pop())
        if line == b"quit":
            r.stop()
        report()

r.add_reader(0, on_stdin)
print(json.dumps(dict(port=lst.address[1], capacity=limit - len(fds), spare=len(spare))), flush=True)
r.run()
r.close()
"""


def wait_child(child, predicate, timeout=10.0):
    """Ask the child for its state until ``predicate(report)``; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        report = child.command("stats")
        if predicate(report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"child never reached the state; last report: {report}")
        time.sleep(0.02)


def cpu_rate(child, window=1.0):
    """CPU seconds per second of the child over ``window`` (its own getrusage,
    cross-checked with /proc/PID/stat)."""
    first = child.command("stats")
    proc_first = proc_cpu_seconds(child.proc.pid)
    time.sleep(window)  # the measurement window, not a synchronisation
    last = child.command("stats")
    proc_last = proc_cpu_seconds(child.proc.pid)
    elapsed = last["time"] - first["time"]
    return (last["cpu"] - first["cpu"]) / elapsed, (proc_last - proc_first) / elapsed, last


@pytest.mark.parametrize("backend", ["epoll", "select"] if "epoll" in LOOP_BACKENDS else ["select"])
class TestExhaustionInAChild:
    def test_pause_waits_without_spinning_and_resumes_by_itself(self, backend):
        child = Child(EMFILE_CHILD, "pause", backend, "20")
        pool = Clients()
        try:
            info = child.read_json()
            address = ("127.0.0.1", info["port"])
            capacity = info["capacity"]
            n = capacity + 25
            for i in range(n):
                pool.connect(address).sendall(b"%05d" % i)
            # served in queue order until the fds run out
            for i in range(capacity):
                assert recv_exactly(pool.socks[i], 5) == b"%05d" % i
            report = wait_child(child, lambda rep: rep["stats"]["exhausted"] >= 1)
            assert report["state"] == "exhausted"
            assert report["stats"]["accepted"] == capacity
            rate, proc_rate, report = cpu_rate(child)
            assert rate < 0.2 and proc_rate < 0.2, (rate, proc_rate)
            assert report["stats"]["exhausted"] <= 20  # backoff, not a busy loop
            assert not any(readable(sock, 0) for sock in pool.socks[capacity:])  # waiting in the queue
            # fds freed by something else: the backoff retry finds them
            child.command("free")
            for i in range(capacity, capacity + info["spare"]):
                assert recv_exactly(pool.socks[i], 5) == b"%05d" % i
            # our own connections closing frees fds: served again
            for sock in pool.socks[:10]:
                sock.close()
            first_waiting = capacity + info["spare"]
            for i in range(first_waiting, first_waiting + 10):
                assert recv_exactly(pool.socks[i], 5) == b"%05d" % i
            final = child.command("quit")
            assert final["errors"] == []
            assert child.finish() == 0
        finally:
            pool.close_all()
            child.close()

    def test_shed_closes_the_surplus_promptly_and_resumes_by_itself(self, backend):
        child = Child(EMFILE_CHILD, "shed", backend, "20")
        pool = Clients()
        try:
            info = child.read_json()
            address = ("127.0.0.1", info["port"])
            capacity = info["capacity"]
            surplus = 25
            start = time.monotonic()
            for _ in range(capacity + surplus):
                pool.connect(address)
            # the surplus sees its connection closed (EOF), not a hang
            for sock in pool.socks[capacity:]:
                assert readable(sock, 3.0)
                assert sock.recv(16) == b""
            assert time.monotonic() - start < 3.0
            report = wait_child(child, lambda rep: rep["stats"]["shed"] == surplus)
            assert report["stats"]["accepted"] == capacity and report["state"] == "active"
            assert report["stats"]["exhausted"] >= 1
            # and the served ones are really served
            for i, sock in enumerate(pool.socks[:capacity]):
                sock.sendall(b"%05d" % i)
            for i, sock in enumerate(pool.socks[:capacity]):
                assert recv_exactly(sock, 5) == b"%05d" % i
            rate, proc_rate, _ = cpu_rate(child)
            assert rate < 0.2 and proc_rate < 0.2, (rate, proc_rate)
            # free fds by closing some of our connections: new ones are served
            for sock in pool.socks[:5]:
                sock.close()
            wait_child(child, lambda rep: rep["stats"]["active"] == capacity - 5)
            fresh = [pool.connect(address) for _ in range(5)]
            for i, sock in enumerate(fresh):
                sock.sendall(b"new%02d" % i)
            for i, sock in enumerate(fresh):
                assert recv_exactly(sock, 5) == b"new%02d" % i
            final = child.command("quit")
            assert final["errors"] == [] and final["stats"]["shed"] == surplus
            assert child.finish() == 0
        finally:
            pool.close_all()
            child.close()


# ----------------------------------------------------------- listener's API

class TestStates:
    """The lifecycle table (reactor/_net/listener.py's module docs)."""

    def test_the_table_is_whole_and_every_state_is_reached(self):
        check_table(_TRANSITIONS, State, Event)
        reached, frontier = {State.NEW}, [State.NEW]
        while frontier:
            for target in _TRANSITIONS[frontier.pop()].values():
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(State)
        assert all(row[Event.CLOSE] is State.CLOSED for state, row in _TRANSITIONS.items() if state != "closed")
        # "closed" means closed: nothing leaves it, and a new listener is not "closed"
        assert _TRANSITIONS[State.CLOSED] == {} and State.NEW != State.CLOSED

    def test_watched_for_reading_exactly_while_active(self, loop, clients):
        lst = loop.listen(Factory(), max_connections=1)
        fd = lst.socket.fileno()
        seen = []

        def step():
            seen.append(lst.state)
            assert registered(loop, fd) == (lst.state == "active"), lst.state

        step()
        lst.pause()
        step()
        lst.resume()
        step()
        client = clients.connect(lst.address)
        run_until(loop, lambda: lst.state == "limited")
        step()
        lst.pause()
        step()
        lst.resume()  # still at the limit
        step()
        client.close()
        run_until(loop, lambda: lst.state == "active")
        step()
        lst.close()
        seen.append(lst.state)
        assert seen == ["active", "paused", "active", "limited", "paused", "limited", "active", "closed"]

    def test_an_illegal_move_raises_at_once_and_changes_nothing(self, loop):
        lst = loop.listen(Factory())
        with pytest.raises(TransitionError, match="no move from state active on room"):
            lst._move(Event.ROOM)
        assert lst.state == "active" and registered(loop, lst.socket.fileno())
        lst.close()
        with pytest.raises(TransitionError, match="no move from state closed on start"):
            lst._move(Event.START)
        lst.close()  # close(), pause() and resume() are no-ops where the table has no move
        lst.pause()
        lst.resume()
        assert lst.state == "closed"


class TestListenerApi:
    def test_pause_queues_resume_accepts(self, loop, clients):
        factory = Factory()
        lst = loop.listen(factory)
        lst.pause()
        assert lst.state == "paused" and not lst.is_serving()
        clients.connect(lst.address)
        run_for(loop, 0.1)
        assert factory.made == 0
        assert kernel.listen_queue(lst.socket)[0] == 1
        lst.pause()  # idempotent
        lst.resume()
        assert lst.state == "active" and lst.is_serving()
        run_until(loop, lambda: factory.made == 1)
        lst.resume()  # idempotent
        assert lst.stats.wakeups == 1

    def test_close_stops_listening_and_keeps_connections(self, loop, clients):
        factory = Factory(EchoRecorder)
        lst = loop.listen(factory)
        listening_fd = lst.socket.fileno()
        before = open_fds()
        client = clients.connect(lst.address)
        run_until(loop, lambda: factory.made == 1)
        lst.close()
        assert lst.state == "closed" and not lst.is_serving()
        assert lst.socket.fileno() == -1
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(lst.address, timeout=5).close()
        client.sendall(b"after")
        run_until(loop, lambda: factory.protocols[0].data == b"after")
        assert recv_exactly(client, 5) == b"after"
        lst.close()  # idempotent
        lst.resume()
        lst.pause()
        assert lst.state == "closed"
        client.close()
        run_until(loop, lambda: factory.lost == 1)
        assert open_fds() == before - {listening_fd}

    def test_stats_repr_and_dict(self, loop):
        lst = loop.listen(Factory())
        d = lst.stats.as_dict()
        for name in ("accepted", "aborted", "exhausted", "shed", "rejected", "batches", "max_batch"):
            assert d[name] == 0
        assert "backlog" in repr(lst)

    def test_listen_on_a_closed_reactor_raises(self, backend):
        r = reactor.Reactor(backend=backend)
        r.close()
        with pytest.raises(reactor.ReactorStateError):
            r.listen(Factory())


def test_echo_protocol_is_served_on_every_backend(loop, clients):
    lst = loop.listen(EchoProtocol)
    client = clients.connect(lst.address)
    client.sendall(b"hello")
    got = bytearray()

    def check():
        if readable(client, 0):
            got.extend(client.recv(100))
        return bytes(got) == b"hello"

    run_until(loop, check)



def test_reactor_close_with_open_connections_leaves_stats_active_at_zero(backend, clients):
    r = reactor.Reactor(backend=backend)
    lst = r.listen(reactor.Protocol)
    for _ in range(3):
        clients.connect(lst.address)
    run_until(r, lambda: lst.stats.active == 3)
    r.close()  # the three connections are aborted by the reactor
    assert lst.stats.active == 0


def test_a_listener_the_backend_cannot_watch_holds_nothing(errors):
    with reactor.Reactor(backend="select") as r:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        high = socket.socket(fileno=os.dup2(sock.detach(), reactor.FD_SETSIZE + 7))
        before = open_fds()
        with pytest.raises(reactor.BackendLimitError):
            r.listen(reactor.Protocol, sock=high, on_exhausted="shed")
        assert open_fds() <= before  # no spare fd left behind; the socket itself was closed
        assert not r._resources


def test_keyboard_interrupt_in_a_batch_leaks_no_accepted_fd(backend, clients):
    calls = []

    def factory():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return reactor.Protocol()

    r = reactor.Reactor(backend=backend)
    try:
        lst = r.listen(factory)
        lst.pause()
        for _ in range(4):
            clients.connect(lst.address)
        baseline = open_fds()
        lst.resume()
        with pytest.raises(KeyboardInterrupt):
            r.call_later(5, r.stop)
            r.run()
        # one transport (the first connection) is open; the other three fds
        # were closed rather than dropped
        assert len(open_fds() - baseline) == 1
    finally:
        r.close()


# ------------------------------------------------- set-up failures (injected)

def _queued_clients(lst, n):
    """``n`` clients connected (and queued: the listener is paused) before
    the listener drains them all in one batch on resume."""
    lst.pause()
    pool = Clients()
    for i in range(n):
        pool.connect(lst.address).sendall(b"%d" % i)
    return pool


def _echoed(sock, i):
    return recv_exactly(sock, len(b"%d" % i)) == b"%d" % i


class FailOnce:
    """Wraps ``real``: the ``nth`` call (1-based) whose arguments ``match``
    raises ``exc`` instead."""

    def __init__(self, real, nth, exc, match=lambda *args: True):
        self.real, self.nth, self.exc, self.match = real, nth, exc, match
        self.calls = 0

    def __call__(self, *args, **kwargs):
        if self.match(*args):
            self.calls += 1
            if self.calls == self.nth:
                raise self.exc
        return self.real(*args, **kwargs)


def _is_transport_fd(loop, lst):
    def match(fd, *rest):
        return fd != lst.socket.fileno() and fd != loop._wake_r.fileno()
    return match


class TestSetupFailures:
    """A connection that cannot be set up is closed at once, counted in
    stats.rejected and reported once; the rest of the batch is served and no
    fd is left behind (both drains)."""

    N = 5

    def _serve_batch(self, loop, lst, errors, factory, failed_index):
        baseline = open_fds()
        pool = _queued_clients(lst, self.N)
        try:
            lst.resume()
            # every other connection read its bytes (and echoed them at once)
            run_until(loop, lambda: lst.stats.accepted == self.N and len(errors.contexts) == 1
                      and sum(1 for p in factory.protocols if p.data) == self.N - 1)
            for i, sock in enumerate(pool.socks):
                if i == 1:
                    # closed at once, not left hanging: RST, since the bytes
                    # it sent were never read (EOF if they had been)
                    with pytest.raises(ConnectionResetError):
                        sock.recv(16)
                else:
                    assert _echoed(sock, i)
            assert lst.stats.rejected == 1 and lst.state == "active"
            (context,) = errors.take()
            pool.close_all()
            run_until(loop, lambda: lst.stats.active == 0)
            assert open_fds() == baseline
            return context
        finally:
            pool.close_all()

    def test_factory_raising_memory_error(self, server_loop, errors):
        calls = []

        def factory():
            calls.append(None)
            if len(calls) == 2:
                raise MemoryError("factory")
            return made.cls()

        made = Factory(EchoRecorder)
        made.cls = EchoRecorder
        wrapped = Factory(lambda: factory())
        lst = server_loop.listen(wrapped)
        context = self._serve_batch(server_loop, lst, errors, wrapped, failed_index=None)
        assert isinstance(context["exception"], MemoryError) and "factory" in context["message"]

    def test_transport_raising_memory_error(self, server_loop, errors, monkeypatch):
        factory = Factory(EchoRecorder)
        lst = server_loop.listen(factory)
        monkeypatch.setattr(lst, "_transport_class", FailOnce(lst._transport_class, 2, MemoryError("Transport")))
        context = self._serve_batch(server_loop, lst, errors, factory, failed_index=1)
        assert isinstance(context["exception"], MemoryError) and "set up" in context["message"]
        assert factory.protocols[1].events == []  # never told connection_made, so never connection_lost

    def test_memory_error_after_the_transport_was_made(self, server_loop, errors, monkeypatch):
        import reactor._net.listener as listener_mod

        factory = Factory(EchoRecorder)
        lst = server_loop.listen(factory, keepalive=True)
        monkeypatch.setattr(listener_mod, "apply_dead_peer_options",
                            FailOnce(listener_mod.apply_dead_peer_options, 2, MemoryError("options")))
        context = self._serve_batch(server_loop, lst, errors, factory, failed_index=1)
        assert isinstance(context["exception"], MemoryError)
        failed = factory.protocols[1]
        assert failed.events == [] and context["peername"] is not None
        assert not server_loop._resources & {p.transport for p in factory.protocols if p.transport}

    @pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                     OSError(errno.ENOMEM, os.strerror(errno.ENOMEM)), MemoryError()],
                             ids=["ENOSPC", "ENOMEM", "MemoryError"])
    def test_registering_the_fd_fails(self, server_loop, errors, monkeypatch, exc):
        factory = Factory(EchoRecorder)
        lst = server_loop.listen(factory)
        selector = server_loop._selector
        monkeypatch.setattr(selector, "register",
                            FailOnce(selector.register, 2, exc, _is_transport_fd(server_loop, lst)))
        context = self._serve_batch(server_loop, lst, errors, factory, failed_index=1)
        assert context["exception"] is exc and "cannot watch" in context["message"]
        failed = factory.protocols[1]
        run_until(server_loop, lambda: failed.lost)
        run_for(server_loop, 0.01)
        # told connection_made, so told connection_lost(exc), exactly once
        assert failed.events == ["made", "lost"] and failed.lost == [exc]
        assert failed.transport.is_closing() and not server_loop._resources & {failed.transport}


# ------------------------------------------------------- closing, draining

@pytest.mark.parametrize("drain", [True, False], ids=["close_draining", "close"])
def test_close_draining_serves_what_the_kernel_queued(loop: reactor.Reactor, drain: bool) -> None:
    # Ten clients complete their handshake and send a request while the
    # loop does not run: they wait in the accept queue. close() resets them
    # (the control: what a drain avoids); close_draining() accepts them
    # first, and each one is answered.
    from ..support import Factory, readable, run_until

    factory = Factory(EchoProtocol)
    listener = loop.listen(factory)
    clients = [socket.create_connection(listener.address, timeout=5) for _ in range(10)]
    try:
        for client in clients:
            client.sendall(b"ping")
        if drain:
            assert listener.close_draining() == 10
        else:
            listener.close()
        assert listener.state == "closed" and listener.socket.fileno() < 0
        if drain:
            run_until(loop, lambda: all(readable(client, 0) for client in clients))
            assert [client.recv(4) for client in clients] == [b"ping"] * 10
        else:
            for client in clients:
                with pytest.raises(ConnectionResetError):
                    client.recv(4)
    finally:
        for client in clients:
            client.close()
        for transport in listener.connections():
            transport.abort()
    run_until(loop, lambda: not listener.connections())
