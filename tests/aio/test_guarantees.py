"""Guarantees kept, as asyncio programs: DESIGN section 3's behaviour seen
through ``reactor.aio`` by code written against plain asyncio
(``asyncio.start_server``, streams, a flow-controlled ``asyncio.Protocol``).

Where the test needs an rlimit, or measures CPU, RSS or open fds, the server
is a child process (``sys.executable -c SERVER``): it prints one JSON line
with its port, then one JSON report per command read on stdin ("stats",
"quit"); the parent drives real loopback clients and reads the child's
/proc entries. The TLS tests need neither and run in this process on
``reactor.aio.run``. Every wait has a deadline; the only sleeps are
measurement windows and the pause between two polls of a condition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import random
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import reactor
import reactor.aio
from reactor import kernel

from ..support import LINGER_RST, LOOP_BACKENDS, open_fds, recv_exactly

MiB = 1 << 20

NATIVE = [
    pytest.param(False, id="pure"),
    pytest.param(True, id="native", marks=pytest.mark.skipif(
        not reactor.native_available(), reason=f"C accelerator not built: {reactor.native_error()}")),
]

needs_epoll = pytest.mark.skipif("epoll" not in LOOP_BACKENDS, reason="no epoll backend")


# ------------------------------------------------------------- the child

SERVER = r'''
import asyncio, hashlib, json, os, resource, sys, time

cfg = json.loads(sys.argv[1])
if cfg.get("nofile"):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg["nofile"], hard))

import reactor.aio

MiB = 1 << 20
state = dict(handlers=0, open=0, reset=0, errors=[], written=0, in_drain=False, done=False, digest=None,
             received=0, paused=False, pauses=0)
transports = []   # the last one's buffer and reading state are reported
server = None


def on_error(loop, context):
    state["errors"].append(f"{context.get('message')}: {context.get('exception')!r}")


async def echo(reader, writer):
    """asyncio streams: echo until EOF, drain after every write."""
    state["handlers"] += 1
    state["open"] += 1
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        state["reset"] += 1
    finally:
        state["open"] -= 1
        writer.close()


async def flood(reader, writer):
    """Write cfg["chunks"] MiB to a client, each write followed by drain()."""
    state["handlers"] += 1
    transports.append(writer.transport)
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    try:
        for i in range(cfg["chunks"]):
            chunk = i.to_bytes(4, "big") + block[4:]
            digest.update(chunk)
            writer.write(chunk)
            state["written"] += len(chunk)
            state["in_drain"] = True
            await writer.drain()
            state["in_drain"] = False
        state["digest"] = digest.hexdigest()
        writer.close()
        await writer.wait_closed()
    except ConnectionError:
        state["reset"] += 1
        writer.close()
    finally:
        state["done"] = True


class PausingEcho(asyncio.Protocol):
    """Echo; stops reading while the transport asks us to stop writing."""

    def connection_made(self, transport):
        self.transport = transport
        transports.append(transport)
        state["handlers"] += 1
        state["open"] += 1

    def data_received(self, data):
        state["received"] += len(data)
        self.transport.write(data)

    def pause_writing(self):
        state["paused"] = True
        state["pauses"] += 1
        self.transport.pause_reading()

    def resume_writing(self):
        state["paused"] = False
        self.transport.resume_reading()

    def eof_received(self):
        return False   # close once the echo is flushed

    def connection_lost(self, exc):
        state["open"] -= 1
        state["done"] = True


def report():
    info = dict(state)
    if transports:
        transport = transports[-1]
        info["buffered"] = transport.get_write_buffer_size()
        info["reading"] = transport.is_reading()
    info["stats"] = server.stats.as_dict()
    info["time"] = time.monotonic()
    print(json.dumps(info), flush=True)


async def main():
    global server
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(on_error)
    if cfg["mode"] == "pecho":
        server = await loop.create_server(PausingEcho, "127.0.0.1", 0, backlog=cfg["backlog"])
    else:
        handler = echo if cfg["mode"] == "echo" else flood
        server = await asyncio.start_server(handler, "127.0.0.1", 0, backlog=cfg["backlog"])
    finished = asyncio.Event()
    pending = bytearray()

    def on_stdin():
        data = os.read(0, 4096)
        if not data:
            finished.set()
            return
        pending.extend(data)
        while b"\n" in pending:
            line, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            report()
            if line == b"quit":
                finished.set()

    loop.add_reader(0, on_stdin)
    print(json.dumps(dict(port=server.sockets[0].getsockname()[1], loop=type(loop).__name__,
                          backend=loop.backend, native=loop.native)), flush=True)
    await finished.wait()
    loop.remove_reader(0)
    server.close()
    await server.wait_closed()


reactor.aio.run(main(), backend=cfg["backend"], native=cfg["native"])
'''


class Child:
    """The SERVER script in a child process. Its stdout lines (JSON) go to a
    queue and its stderr lines, stamped with their arrival time, to a list,
    each by a thread, so every read has a deadline. Killed by ``close()``
    if still running."""

    def __init__(self, **cfg: Any) -> None:
        cfg = {"backend": "epoll", "native": False, "backlog": 1024, "mode": "echo", "chunks": 64, **cfg}
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "always::ResourceWarning", "-c", SERVER, json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr: list[tuple[float, str]] = []
        self._threads = [threading.Thread(target=self._pump_stdout, daemon=True),
                         threading.Thread(target=self._pump_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()
        self.info = self.read_json(timeout=30)
        assert self.info["loop"] == "ReactorEventLoop"
        assert self.info["backend"] == cfg["backend"] and self.info["native"] == cfg["native"]
        self.address = ("127.0.0.1", self.info["port"])

    def _pump_stdout(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append((time.monotonic(), line.decode(errors="replace").rstrip("\n")))

    def stderr_text(self) -> str:
        return "\n".join(line for _, line in self.stderr)

    def read_json(self, timeout: float = 10.0) -> Any:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child sent no line within {timeout} s; stderr: {self.stderr_text()[-3000:]}")
        if line is None:
            self.proc.wait(5)
            for thread in self._threads:
                thread.join(5)
            raise AssertionError(f"child exited ({self.proc.returncode}); stderr: {self.stderr_text()[-3000:]}")
        return json.loads(line)

    def command(self, text: str = "stats", timeout: float = 10.0) -> Any:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return self.read_json(timeout)

    def wait(self, predicate: Callable[[Any], bool], timeout: float = 10.0, what: str = "the state") -> Any:
        """Ask for reports until ``predicate(report)``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.command()
            if predicate(report):
                return report
            if time.monotonic() > deadline:
                raise AssertionError(f"child never reached {what} within {timeout} s; last report: {report}")
            time.sleep(0.02)  # between two polls

    def quit(self, timeout: float = 10.0) -> tuple[Any, int]:
        """The final report and the exit status (after a clean shutdown)."""
        report = self.command("quit")
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"child did not exit within {timeout} s of 'quit'")
        for thread in self._threads:
            thread.join(5)
        return report, status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def assert_clean(self) -> None:
        """No traceback and no ResourceWarning in what the child wrote."""
        text = self.stderr_text()
        assert "Traceback" not in text and "ResourceWarning" not in text, text[-3000:]


class Pool:
    """Client sockets, all closed at the end."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def connect(self, address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection(address, timeout=timeout)
        self.socks.append(sock)
        return sock

    def close_all(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


def readable(sock: socket.socket, timeout: float = 0.0) -> bool:
    """poll, not select: client fds here can be past FD_SETSIZE."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> float:
    """Wait until ``predicate()``; fail after ``timeout``; the time it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(poll)  # between two polls
    return time.monotonic() - start


def read_to_eof(sock: socket.socket, seconds: float, what: str) -> tuple[Any, int]:
    """Read ``sock`` to EOF: (its sha256, the byte count); fail after ``seconds``."""
    digest = hashlib.sha256()
    size = 0
    deadline = time.monotonic() + seconds
    while data := sock.recv(1 << 18):
        digest.update(data)
        size += len(data)
        assert time.monotonic() < deadline, f"{what} took too long"
    return digest, size


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def proc_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, T, ...)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_own_fd_limit(extra: int) -> None:
    need = len(open_fds()) + extra
    if kernel.raise_fd_limit(need) < need:
        pytest.skip(f"cannot raise this process's RLIMIT_NOFILE to {need}")


# ------------------------------------------------------------- 1. out of fds

@needs_epoll
@pytest.mark.parametrize("native", NATIVE)
def test_out_of_fds_start_server_neither_spins_nor_floods_the_log_and_serves_again(native):
    """150 clients against a start_server echo server limited to 64 fds:
    the ones it cannot accept wait in the kernel queue while the server
    uses (almost) no CPU and logs at most a line a second; once clients
    leave, the waiting ones and a new one are served."""
    n, limit, window = 150, 64, 2.0
    raise_own_fd_limit(n + 50)
    child = Child(nofile=limit, native=native)
    pool = Pool()
    try:
        for i in range(n):
            pool.connect(child.address).sendall(b"%05d" % i)
        report = child.wait(lambda r: r["stats"]["exhausted"] >= 1, what="exhaustion")
        accepted = report["stats"]["accepted"]
        assert 30 <= accepted < limit, report["stats"]
        # served in queue order until the fds ran out
        for i in range(accepted):
            assert recv_exactly(pool.socks[i], 5) == b"%05d" % i
        # the rest wait in the kernel queue: not closed, not answered
        assert not any(readable(sock) for sock in pool.socks[accepted:])

        before = child.command()
        cpu_first, t_first = cpu_seconds(child.pid), time.monotonic()
        time.sleep(window)  # the measurement window, not a synchronisation
        cpu_last, t_last = cpu_seconds(child.pid), time.monotonic()
        after = child.command()
        elapsed = t_last - t_first
        rate = (cpu_last - cpu_first) / elapsed
        lines = [line for t, line in child.stderr if t_first <= t <= t_last]
        retries = after["stats"]["exhausted"] - before["stats"]["exhausted"]
        print(f"\n[out of fds, native={native}] accepted={accepted} cpu={rate:.3f} s/s "
              f"log lines={len(lines)} in {elapsed:.2f} s, accept retries={retries}")
        assert rate < 0.2, f"{rate:.3f} CPU s/s while exhausted"
        assert len(lines) <= elapsed + 1, lines
        assert after["stats"]["accepted"] == accepted and after["errors"] == []
        assert any("EMFILE" in line for _, line in child.stderr), child.stderr_text()  # it did say so

        # clients leave: the ones still queued are served, and a new one is
        keep = 10
        for sock in pool.socks[:n - keep]:
            sock.close()
        for i in range(n - keep, n):
            assert recv_exactly(pool.socks[i], 5) == b"%05d" % i
        start = time.monotonic()
        fresh = pool.connect(child.address)
        fresh.sendall(b"fresh")
        assert recv_exactly(fresh, 5) == b"fresh"
        assert time.monotonic() - start < 3.0
        pool.close_all()
        child.wait(lambda r: r["open"] == 0, what="every handler finished")
        final, status = child.quit()
        assert status == 0
        assert final["errors"] == [] and final["stats"]["rejected"] == 0
        assert final["stats"]["accepted"] == n + 1
        child.assert_clean()
    finally:
        pool.close_all()
        child.close()


# ---------------------------------------------------------- 2. select's limit

@pytest.mark.skipif("select" not in LOOP_BACKENDS, reason="no select backend")
def test_select_backend_refuses_connections_past_fd_setsize_and_the_rest_carry_on():
    """1,100 connections to a start_server echo server on backend="select":
    those that would land on fd >= 1024 are closed and counted, the early
    ones still echo, the process lives and serves new clients."""
    n, first = 1100, 10
    raise_own_fd_limit(n + 100)
    if kernel.fd_limits()[1] < 2048:
        pytest.skip("the hard RLIMIT_NOFILE is below 2048")
    child = Child(backend="select", nofile=2048, backlog=2048)
    pool = Pool()
    try:
        for _ in range(n):
            pool.connect(child.address)
        report = child.wait(lambda r: r["stats"]["accepted"] == n, timeout=20, what="every connection accepted")
        stats = report["stats"]
        rejected = stats["rejected"]
        print(f"\n[select] accepted={stats['accepted']} rejected={rejected} active={stats['active']}")
        assert rejected > 0
        assert rejected >= n - reactor.FD_SETSIZE
        served = n - rejected
        assert served > 900
        # the refused ones see their connection closed; nobody else does
        wait_for(lambda: sum(readable(sock) for sock in pool.socks) >= rejected, 5.0, "refused clients see EOF")
        refused = [sock for sock in pool.socks if readable(sock)]
        assert len(refused) == rejected
        assert all(sock.recv(16) == b"" for sock in refused)
        # the early connections (and the last one served) still echo
        kept = [sock for sock in pool.socks if sock not in refused]
        for i, sock in enumerate([*pool.socks[:first], kept[-1]]):
            sock.sendall(b"ping%03d" % i)
        for i, sock in enumerate([*pool.socks[:first], kept[-1]]):
            assert recv_exactly(sock, 7) == b"ping%03d" % i
        assert child.proc.poll() is None
        report = child.wait(lambda r: r["handlers"] == served and r["stats"]["active"] == served,
                            what="a handler per served connection")
        warnings = [line for _, line in child.stderr if "FD_SETSIZE" in line]
        assert len(warnings) == 1, child.stderr_text()
        # once low fds are free again, a new client is served
        for sock in pool.socks[:first]:
            sock.close()
        child.wait(lambda r: r["open"] == served - first, what="the closed connections' handlers finished")
        late = pool.connect(child.address)
        late.sendall(b"late")
        assert recv_exactly(late, 4) == b"late"
        pool.close_all()
        child.wait(lambda r: r["open"] == 0, what="every handler finished")
        final, status = child.quit()
        assert status == 0 and final["errors"] == []
        child.assert_clean()
    finally:
        pool.close_all()
        child.close()


# ------------------------------------------------------------ 3. RST storm

@needs_epoll
@pytest.mark.parametrize("native", NATIVE)
def test_rst_storm_leaves_no_fd_behind(native):
    """2,000 connections that connect and reset at once, half of them while
    the child is stopped (so reset while queued, before the accept): the
    child's fd count goes back to its baseline, no handler is left open,
    nothing reaches the exception handler, and it still echoes."""
    total, batch = 2000, 200
    raise_own_fd_limit(batch + 50)
    child = Child(native=native)
    pool = Pool()
    try:
        # one served connection first, so whatever the first one sets up lazily is in the baseline
        probe = pool.connect(child.address)
        probe.sendall(b"probe")
        assert recv_exactly(probe, 5) == b"probe"
        pool.close_all()
        child.wait(lambda r: r["open"] == 0, what="the probe's handler finished")
        baseline = fd_count(child.pid)
        start = time.monotonic()
        for round_ in range(total // batch):
            # every other batch while the child is stopped: those are reset
            # while they wait in the accept queue (accept still returns them)
            stopped = round_ % 2 == 0
            if stopped:
                # the queue must have room for the batch: what came before is accepted
                done = round_ * batch + 1
                child.wait(lambda r, done=done: r["stats"]["accepted"] + r["stats"]["aborted"] >= done,
                           what="the earlier batches accepted")
                child.proc.send_signal(signal.SIGSTOP)
                wait_for(lambda: proc_state(child.pid) == "T", 5.0, "the child stopped")
            try:
                for _ in range(batch):
                    pool.connect(child.address)
                for sock in pool.socks:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
                pool.close_all()
            finally:
                if stopped:
                    child.proc.send_signal(signal.SIGCONT)
        report = child.wait(lambda r: r["stats"]["accepted"] + r["stats"]["aborted"] >= total + 1, timeout=15,
                            what="every connection accepted")
        took = wait_for(lambda: fd_count(child.pid) <= baseline, 5.0, "the fd count back to its baseline")
        report = child.wait(lambda r: r["open"] == 0 and r["stats"]["active"] == 0, what="every handler finished")
        print(f"\n[RST storm, native={native}] {total} resets in {time.monotonic() - start:.2f} s; "
              f"fds back to {baseline} {took:.2f} s after the last accept; {report['reset']} handlers saw the reset; "
              f"stats={report['stats']}")
        assert fd_count(child.pid) == baseline
        assert report["errors"] == []
        assert report["handlers"] == report["stats"]["accepted"]  # each one got its handler, and it ended
        # still serving
        client = pool.connect(child.address)
        client.sendall(b"after")
        assert recv_exactly(client, 5) == b"after"
        pool.close_all()
        child.wait(lambda r: r["open"] == 0, what="the last handler finished")
        final, status = child.quit()
        assert status == 0 and final["errors"] == []
        child.assert_clean()
    finally:
        pool.close_all()
        child.close()


# ----------------------------------------------------------- 4. slow reader

RSS_SLACK = 32 * MiB


def wait_stalled(progress: Callable[[], tuple[int, Any]], blocked: Callable[[Any], bool], still: float = 0.5,
                 timeout: float = 10.0) -> Any:
    """Poll ``progress()`` -> (bytes moved, report) until the child says it
    is held back (``blocked(report)``) and the bytes moved have not changed
    for ``still`` seconds; the last report."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        moved, report = progress()
        now = time.monotonic()
        if moved != last or not blocked(report):
            last, since = moved, now
        elif now - since >= still:
            return report
        if now > deadline:
            raise AssertionError(f"never stalled within {timeout} s; last report: {report}")
        time.sleep(0.05)  # between two polls


@needs_epoll
def test_slow_reader_stream_writer_drain_bounds_memory_and_every_byte_arrives():
    """A start_server handler writes 64 MiB with write() + drain() to a
    client that does not read: the child's RSS stays within 32 MiB of its
    baseline (the writer waits in drain); then the client reads it all,
    byte-exact."""
    chunks = 64
    child = Child(mode="flood", chunks=chunks)
    pool = Pool()
    try:
        baseline = rss_bytes(child.pid)
        peak = baseline
        client = pool.connect(child.address, timeout=10)

        def progress() -> tuple[int, Any]:
            nonlocal peak
            report = child.command()
            peak = max(peak, rss_bytes(child.pid))
            return report["written"] - report.get("buffered", 0), report

        report = wait_stalled(progress, lambda r: r["in_drain"] and r["written"] > 0)
        assert report["in_drain"] and not report["done"], report
        assert report["written"] < chunks * MiB, report  # it waits: not everything is written
        assert report["buffered"] <= 2 * MiB, report
        growth = peak - baseline
        print(f"\n[slow reader, streams] stalled with {report['written'] / MiB:.0f} MiB written, "
              f"{report['buffered']} B buffered; RSS {baseline / MiB:.1f} MiB -> peak {peak / MiB:.1f} MiB")
        assert growth < RSS_SLACK, f"RSS grew by {growth / MiB:.1f} MiB"

        digest, size = read_to_eof(client, 15, "reading 64 MiB")
        peak = max(peak, rss_bytes(child.pid))
        report = child.wait(lambda r: r["done"], what="the writer finished")
        assert size == chunks * MiB
        assert digest.hexdigest() == report["digest"]
        assert peak - baseline < RSS_SLACK
        pool.close_all()
        final, status = child.quit()
        assert status == 0 and final["errors"] == [] and final["reset"] == 0
        child.assert_clean()
    finally:
        pool.close_all()
        child.close()


@needs_epoll
def test_slow_reader_protocol_pauses_reading_while_paused_writing_and_echoes_exactly():
    """An echo Protocol that pauses reading in pause_writing and resumes in
    resume_writing; the client sends 64 MiB without reading: the child's
    RSS stays bounded (the server stops reading, TCP stops the sender);
    then the client reads, and the echo is byte-exact."""
    total, piece = 64 * MiB, 256 * 1024
    child = Child(mode="pecho")
    pool = Pool()
    try:
        baseline = rss_bytes(child.pid)
        peak = baseline
        client = pool.connect(child.address, timeout=20)
        rng = random.Random(4)
        block = rng.randbytes(piece)
        sent_digest = hashlib.sha256()
        sent = 0
        send_error: list[BaseException] = []

        def send() -> None:
            nonlocal sent
            try:
                for i in range(total // piece):
                    data = i.to_bytes(4, "big") + block[4:]
                    sent_digest.update(data)
                    client.sendall(data)
                    sent += len(data)
                client.shutdown(socket.SHUT_WR)
            except BaseException as exc:  # reported to the test
                send_error.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()

        def progress() -> tuple[int, Any]:
            nonlocal peak
            report = child.command()
            peak = max(peak, rss_bytes(child.pid))
            return sent, report

        report = wait_stalled(progress, lambda r: r["paused"] or bool(send_error))
        assert not send_error, send_error
        assert sent < total, "the sender was never stopped"
        assert report["paused"] and report["reading"] is False and report["pauses"] >= 1, report
        assert report["received"] < total
        growth = peak - baseline
        print(f"\n[slow reader, protocol] stalled with {sent / MiB:.1f} MiB sent, {report['received'] / MiB:.1f} MiB "
              f"received, {report['buffered']} B buffered; RSS {baseline / MiB:.1f} -> peak {peak / MiB:.1f} MiB")
        assert growth < RSS_SLACK, f"RSS grew by {growth / MiB:.1f} MiB"

        got_digest, size = read_to_eof(client, 20, "the echo of 64 MiB")
        sender.join(10)
        assert not sender.is_alive() and not send_error, send_error
        peak = max(peak, rss_bytes(child.pid))
        assert size == total
        assert got_digest.hexdigest() == sent_digest.hexdigest()
        assert peak - baseline < RSS_SLACK
        report = child.wait(lambda r: r["done"] and r["open"] == 0, what="the connection closed")
        print(f"[slow reader, protocol] pause_writing called {report['pauses']} times")
        pool.close_all()
        final, status = child.quit()
        assert status == 0 and final["errors"] == []
        child.assert_clean()
    finally:
        pool.close_all()
        child.close()


# -------------------------------------------------------------------- TLS

def _make_certificate(directory: Path) -> tuple[str, str] | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = directory / "cert.pem", directory / "key.pem"
    base = [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "1", "-subj", "/CN=localhost"]
    for extra in (["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], []):
        try:
            done = subprocess.run(base + extra, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0:
            return str(cert), str(key)
    return None


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(certfile, keyfile) for "localhost": made by openssl, else CPython's
    test certificate (keycert.pem), else the test is skipped."""
    made = _make_certificate(tmp_path_factory.mktemp("tls"))
    if made is not None:
        return made
    test_dir = Path(sysconfig.get_paths()["stdlib"]) / "test"
    for candidate in (test_dir / "certdata" / "keycert.pem", test_dir / "keycert.pem"):
        if candidate.exists():
            return str(candidate), str(candidate)
    pytest.skip("no openssl CLI and no CPython test certificate")


def contexts(certificate: tuple[str, str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    return server_ctx, client_ctx


class Handlers:
    """A stream echo handler that counts its connections."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.failures: list[BaseException] = []

    async def echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.started += 1
        try:
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        except Exception as exc:  # reported to the test
            self.failures.append(exc)
            writer.close()
        finally:
            self.finished += 1


def blocking_tls_echo(port: int, client_ctx: ssl.SSLContext, payloads: list[bytes]) -> int:
    """A plain ssl socket (in a thread): send each payload, read it back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            for payload in payloads:
                tls.sendall(payload)
                assert recv_exactly(tls, len(payload)) == payload
            return len(payloads)


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_tls_echo_is_byte_exact(certificate, backend):
    """TLS echo through start_server(ssl=...) on reactor.aio: random payloads
    from 1 B to 1 MiB (several MiB in all), from asyncio clients on the same
    loop (three at once) and from a blocking ssl socket in a thread."""
    server_ctx, client_ctx = contexts(certificate)
    rng = random.Random(5)
    sizes = [1, 2, 100, 1000, 4095, 16383, 16384, 16385, 65536, 100_000, 1 << 20] + \
        [rng.randint(1, 1 << 20) for _ in range(3)] + [rng.randint(1, 5000) for _ in range(20)]
    payloads = [rng.randbytes(size) for size in sizes]
    handlers = Handlers()
    errors: list[dict] = []

    async def client(port: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
        assert writer.get_extra_info("ssl_object") is not None
        for payload in payloads:
            writer.write(payload)
            assert await reader.readexactly(len(payload)) == payload
        writer.close()
        await writer.wait_closed()
        return len(payloads)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, reactor.aio.ReactorEventLoop) and loop.backend == backend
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        server = await asyncio.start_server(handlers.echo, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            async with asyncio.timeout(20):
                counts = await asyncio.gather(client(port), client(port), client(port),
                                              asyncio.to_thread(blocking_tls_echo, port, client_ctx, payloads))
            assert counts == [len(payloads)] * 4
            async with asyncio.timeout(5):
                while handlers.finished < 4:
                    await asyncio.sleep(0.01)  # between two polls

    start = time.monotonic()
    reactor.aio.run(main(), backend=backend)
    print(f"\n[TLS echo, {backend}] 4 x {sum(sizes) / MiB:.1f} MiB echoed in {time.monotonic() - start:.2f} s")
    assert handlers.started == 4 and not handlers.failures, handlers.failures
    assert errors == []


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_idle_tls_connections_hold_no_receive_buffer_of_their_own(certificate, backend):
    """asyncio's TLS layer allocates 256 KiB per connection for its reads;
    on reactor.aio both ends read into the loop's one buffer (tls.SharedBufferSSLProtocol):
    20 idle pairs cost kilobytes per connection end, not a quarter of a MiB."""
    import tracemalloc

    server_ctx, client_ctx = contexts(certificate)
    pairs = 20
    accepted: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    async def main() -> float:
        server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            tracemalloc.start()
            try:
                before = tracemalloc.take_snapshot()
                async with asyncio.timeout(20):
                    clients = [await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                             server_hostname="localhost") for _ in range(pairs)]
                    while len(accepted) < pairs:
                        await asyncio.sleep(0.01)  # between two polls
                grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
            finally:
                tracemalloc.stop()
            for _, writer in clients:
                writer.close()
            for writer in accepted:
                writer.close()
        return grown / (2 * pairs)

    per_end = reactor.aio.run(main(), backend=backend)
    print(f"\n[idle TLS, {backend}] {per_end / 1024:.1f} KiB per connection end")
    assert per_end < 64 * 1024, f"{per_end / 1024:.0f} KiB per TLS connection end"


def silent_client(port: int) -> tuple[float, str]:
    """Connect, send nothing; how long until the server drops us, and how."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        start = time.monotonic()
        try:
            data = sock.recv(1024)
            how = "EOF" if data == b"" else f"data {data!r}"
        except ConnectionResetError:
            how = "reset"
        except TimeoutError:
            how = "nothing within 10 s"
        return time.monotonic() - start, how


@pytest.mark.parametrize("backend", LOOP_BACKENDS)
def test_tls_handshake_timeout_drops_a_silent_client_and_the_server_carries_on(certificate, backend):
    """start_server(ssl=..., ssl_handshake_timeout=0.5): a client that never
    sends its ClientHello is dropped after about 0.5 s (EOF or reset); the
    handler never runs for it; the next TLS client is served."""
    server_ctx, client_ctx = contexts(certificate)
    handlers = Handlers()
    errors: list[dict] = []
    outcome: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        server = await asyncio.start_server(handlers.echo, "127.0.0.1", 0, ssl=server_ctx,
                                            ssl_handshake_timeout=0.5)
        port = server.sockets[0].getsockname()[1]
        async with server:
            async with asyncio.timeout(15):
                outcome["silent"] = await asyncio.to_thread(silent_client, port)
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                               server_hostname="localhost")
                writer.write(b"hello")
                outcome["echo"] = await reader.readexactly(5)
                writer.close()
                await writer.wait_closed()
                while handlers.finished < 1:
                    await asyncio.sleep(0.01)  # between two polls

    reactor.aio.run(main(), backend=backend)
    elapsed, how = outcome["silent"]
    print(f"\n[TLS handshake timeout, {backend}] silent client dropped after {elapsed:.2f} s ({how})")
    assert how in ("EOF", "reset"), how
    assert 0.4 <= elapsed <= 3.0, elapsed
    assert outcome["echo"] == b"hello"
    assert handlers.started == 1 and not handlers.failures, handlers.failures
    assert errors == []
